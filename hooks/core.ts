// What one tusk process shares between its faces (the HTTP server, the workers): one set of
// Redis connections, one S3 client, one object storage, one status-record store, one access
// control (one JWKS cache), one upload lifecycle, one metrics registry. tusk.ts builds it and
// closes it; nothing else creates these, so nothing else has to remember to close them.
import type { S3 } from '@aws-sdk/client-s3';
import type { DataStore } from '@tus/utils';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { ObjectStorage } from '../lib/object-storage.js';
import type { RecordStore } from '../lib/record-store.js';
import type { RedisKeys } from '../lib/redis-keys.js';
import type { WorkerRegistry } from '../lib/worker-registry.js';
import type { Presigner } from '../lib/s3.js';
import type { Scanner } from '../lib/scanner.js';
import type { DerivedUrlSigner } from '../lib/signed-urls.js';
import type { AccessControl } from './access.js';
import type { UploadLifecycle } from './lifecycle.js';

export interface Core {
  config: Config;
  logger: Logger;
  /** Commands on the request path: fails fast (a 503) rather than queueing for long. */
  redis: Redis;
  /** Pub/sub: lock releases, record events (one subscriber connection, channels dispatched by name). */
  subscriber: Redis;
  /** BullMQ workers (blocking commands, no per-request retry limit). */
  bullmq: Redis;
  keys: RedisKeys;
  /** STORAGE=s3 only. */
  s3: { client: S3; presigner: Presigner; bucket: string } | undefined;
  /** The tus store (uploads' bytes): S3 or local disk. */
  datastore: DataStore;
  /** Reading uploads, writing and serving derived outputs. */
  storage: ObjectStorage;
  /** tusk's signed derived-file URLs (HLS playlists; the file store's outputs). */
  signer: DerivedUrlSigner;
  records: RecordStore;
  access: AccessControl;
  lifecycle: UploadLifecycle;
  /** Which worker processes are alive and what they consume. */
  workers: WorkerRegistry;
  /** Virus scanning of the workers (a clamd, or why there is none yet); set where workers run. */
  scanner?: Scanner;
  /** The process's Prometheus registry and every metric (counted whether or not /metrics is served). */
  metrics: Metrics;
}
