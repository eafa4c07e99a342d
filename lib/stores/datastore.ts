// Chooses the tus DataStore from the configuration: S3 (production) or local disk (embedded).
// The server and the workers (cleanup of expired uploads) build it the same way, here.
import path from 'node:path';
import type { S3 } from '@aws-sdk/client-s3';
import type { DataStore } from '@tus/utils';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { s3ClientConfig } from '../s3.js';
import { TuskFileStore } from './file-store.js';
import { TuskS3Store } from './s3-store.js';

export function uploadsDirectory(config: Config): string {
  return path.join(config.dataDir, 'uploads');
}

export function createDatastore(config: Config, redis: Redis, logger: Logger, client?: S3, metrics?: Metrics): DataStore {
  if (config.storage === 's3' && config.s3) {
    return new TuskS3Store({
      client,
      s3ClientConfig: { ...s3ClientConfig(config.s3), bucket: config.s3.bucket },
      partSize: config.s3.partSize,
      maxConcurrentPartUploads: config.s3.maxConcurrentPartUploads,
      expirationPeriodInMilliseconds: config.uploadExpiryMs,
      redis,
      redisPrefix: config.redisPrefix,
      handOver: { abandonAfterMs: config.s3.abandonBufferedAfterMs, handOverTimeoutMs: config.lockAcquireTimeoutMs },
      logger: logger.child({ component: 's3-store' }),
      metrics,
    });
  }
  return new TuskFileStore({
    directory: uploadsDirectory(config),
    expirationPeriodInMilliseconds: config.uploadExpiryMs,
  });
}

/** Where this process takes PATCH bodies other instances forward (UPLOAD_ACK=disk), if it does. */
export function writeBufferPeerUrl(datastore: DataStore): string | undefined {
  return datastore instanceof TuskS3Store ? datastore.peerUrl : undefined;
}
