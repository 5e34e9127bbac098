/**
 * `pastiche serve` put together: the embedded queue (a worker thread holding the weights, state in
 * memory, files in a data folder) behind the HTTP API. Nothing else needs to be installed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PasticheError } from '../errors.js';
import { buildApi } from './api.js';
import { EmbeddedQueue } from './embedded-queue.js';
import type { JobQueue, WorkerInfo } from './queue.js';

export interface ServiceOptions {
  readonly port?: number;
  readonly host?: string;
  /** The VGG19 weights (as --weights; else $PASTICHE_WEIGHTS, then the fetched file). */
  readonly weights?: string;
  /** Job folders go here; default: a temporary folder, removed when the service stops. */
  readonly dataDir?: string;
  readonly token?: string;
  readonly maxUploadBytes?: number;
  readonly maxPixels?: number;
  readonly maxQueued?: number;
  readonly rateLimit?: number;
  /** Jobs go to BullMQ on this Redis (redis://HOST:PORT) for `pastiche worker` processes; default: run here. */
  readonly redis?: string;
}

export interface Service {
  readonly url: string;
  /** The worker's weights, once loaded (or why not). */
  readonly ready: Promise<WorkerInfo>;
  close(): Promise<void>;
}

export async function startService(o: ServiceOptions = {}): Promise<Service> {
  const ownDir = o.dataDir === undefined && !o.redis;
  const dataDir = o.dataDir ?? (o.redis ? '' : mkdtempSync(path.join(os.tmpdir(), 'pastiche-serve-')));
  let queue: JobQueue;
  if (o.redis) {
    const { RedisQueue } = await import('./redis-queue.js'); // BullMQ and ioredis only in queue mode
    queue = await RedisQueue.open(o.redis);
  } else {
    queue = new EmbeddedQueue({ dataDir, weights: o.weights });
  }
  const app = await buildApi({
    queue,
    token: o.token,
    maxUploadBytes: o.maxUploadBytes ?? 32 * 2 ** 20,
    maxPixels: o.maxPixels ?? 40_000_000,
    maxQueued: o.maxQueued ?? 20,
    rateLimit: o.rateLimit ?? 600,
    // The CLI refuses more than 80% of the machine; a server leaves room for itself and the uploads.
    memoryLimit: 0.6 * os.totalmem(),
    // The embedded worker's file is on this machine; in queue mode only a --weights given to serve is.
    browserWeights: async () => {
      if (o.redis) return o.weights;
      const info = await queue.ready();
      return info.error ? undefined : info.weightsFile;
    },
  });
  const host = o.host ?? '127.0.0.1';
  try {
    await app.listen({ port: o.port ?? 0, host });
  } catch (e) {
    await queue.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new PasticheError(
      code === 'EADDRINUSE' ? `port ${o.port} is in use: choose another with --port` : code === 'EADDRNOTAVAIL' ? `--host ${host} is not an address of this machine` : `cannot serve on ${host}:${o.port}: ${code ?? (e as Error).message}`,
    );
  }
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    ready: queue.ready().catch((e: unknown) => ({ error: (e as Error).message })),
    close: async () => {
      await app.close();
      await queue.close();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
