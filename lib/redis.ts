// Redis connections. tusk uses several: commands, a subscriber for lock-release messages,
// and BullMQ's own (which must not retry per request, see BullMQ docs).
import { Redis, type RedisOptions } from 'ioredis';

/** Opens a Redis connection from a redis://, rediss:// or unix:///path/to/socket URL. */
export function connectRedis(url: string, options: RedisOptions = {}): Redis {
  const base: RedisOptions = { lazyConnect: false, enableOfflineQueue: true, ...options };
  if (url.startsWith('unix:')) {
    const socketPath = decodeURIComponent(new URL(url).pathname);
    return new Redis({ ...base, path: socketPath });
  }
  return new Redis(url, base);
}

/** Connection options BullMQ wants for Workers and QueueEvents (blocking commands). */
export const bullmqConnectionOptions: RedisOptions = { maxRetriesPerRequest: null };
