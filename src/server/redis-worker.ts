/**
 * `pastiche worker --redis URL`: takes jobs from the Redis queue and runs them in BullMQ's sandboxed
 * child processes (redis-processor.ts), `concurrency` at a time.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';
import { QUEUE_NAME, redisConnection } from './redis-queue.js';

const PROCESSOR = fileURLToPath(new URL('./redis-processor.js', import.meta.url));

export interface RedisWorkerOptions {
  readonly url: string;
  readonly weights?: string;
  readonly concurrency?: number;
  /** How long a job's lock lives without renewal: a worker that dies gives its job back after this. */
  readonly lockDurationMs?: number;
  /** How often stalled jobs (their worker gone) are looked for. */
  readonly stalledIntervalMs?: number;
}

export function startRedisWorker(o: RedisWorkerOptions): Worker {
  // The sandboxed children inherit the environment: that is how they learn the queue and the weights.
  process.env['PASTICHE_REDIS_URL'] = o.url;
  process.env['PASTICHE_WORKER_WEIGHTS'] = o.weights ?? '';
  const connection = redisConnection(o.url);
  const worker = new Worker(QUEUE_NAME, PROCESSOR, {
    connection,
    concurrency: o.concurrency ?? 1,
    lockDuration: o.lockDurationMs ?? 30_000,
    stalledInterval: o.stalledIntervalMs ?? 30_000,
    maxStalledCount: 2,
  });
  // BullMQ leaves a connection it was given open.
  worker.on('closed', () => connection.disconnect());
  return worker;
}
