/**
 * The scale-out queue: jobs on BullMQ over Redis, run by any number of `pastiche worker` processes
 * on this or other machines. Everything a job needs or makes lives in Redis (the uploads, the
 * result, the latest preview, with a TTL), so any `serve` instance shows any job and no file system
 * is shared. BullMQ gives retries with backoff and recovers a job whose worker died (its lock
 * lapses and the job goes back to the queue).
 */
import { randomUUID } from 'node:crypto';
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { ParamShapes } from '../app/stylize.js';
import { PasticheError } from '../errors.js';
import type { JobKind, JobProgressView, JobResultView, JobState, JobView } from './jobs.js';
import type { JobListener, JobQueue, Submission, WorkerInfo } from './queue.js';

export const QUEUE_NAME = 'pastiche';
/** How long uploads, results and previews stay in Redis. */
export const BLOB_TTL_SECONDS = 24 * 3600;

/** Our keys beside BullMQ's. */
export const keys = {
  blob: (id: string, name: string) => `pastiche:job:${id}:${name}`,
  cancel: (id: string) => `pastiche:job:${id}:cancel`,
  workers: 'pastiche:workers',
};

/** What a BullMQ job carries: the request, and where its uploads are. */
export interface RedisJobData {
  readonly kind: JobKind;
  readonly settings?: Submission['settings'];
  readonly top?: number;
  readonly previewEvery: number;
  readonly inputs: readonly { readonly field: 'content' | 'style' | 'image'; readonly key: string }[];
}

/** What a worker reports as progress and returns. */
export interface RedisProgress {
  readonly progress?: JobProgressView;
  readonly previews: number;
}
export interface RedisReturn {
  /** Absent when the job was cancelled before it started. */
  readonly result?: JobResultView;
  readonly cancelled?: boolean;
}

/** A worker's announcement of its weights (one hash field per worker process). */
export interface WorkerAnnouncement {
  readonly weightsFile?: string;
  readonly shapes?: [string, unknown][];
  readonly error?: string;
}

/**
 * A connection to `url`. Workers and event listeners block on Redis and wait through a restart
 * (BullMQ needs maxRetriesPerRequest null there); an HTTP server's commands fail fast instead
 * (`failFast`), so that a request gets a 503 rather than hanging while Redis is away. ioredis
 * reconnects by itself; its 'error' events are counted here, not printed as "unhandled".
 */
export function redisConnection(url: string, o: { failFast?: boolean; onError?: (e: Error) => void } = {}): Redis {
  const r = o.failFast ? new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false }) : new Redis(url, { maxRetriesPerRequest: null });
  r.on('error', (e: Error) => o.onError?.(e));
  return r;
}

/** Errors that say no Redis is there, rather than one slow to answer: not worth waiting out the timeout. */
const NOBODY_THERE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * A fail-fast connection once it is ready; a one-line error (and nothing left running) if Redis
 * refuses the connection (at once) or does not answer within `timeoutMs`.
 */
export async function connected(url: string, timeoutMs = 5000): Promise<Redis> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let refused: (() => void) | undefined;
  const redis = redisConnection(url, { failFast: true, onError: (e) => NOBODY_THERE.has((e as NodeJS.ErrnoException).code ?? '') && refused?.() });
  try {
    await Promise.race([
      new Promise<void>((resolve) => redis.once('ready', () => resolve())),
      new Promise<never>((_, reject) => {
        const fail = () => reject(new PasticheError(`cannot reach Redis at ${url} (start redis-server, or check --redis)`));
        refused = fail;
        timer = setTimeout(fail, timeoutMs);
      }),
    ]);
    return redis;
  } catch (e) {
    redis.disconnect();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

export class RedisQueue implements JobQueue {
  private readonly redis: Redis;
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  /** BullMQ leaves connections it was given open: they are closed here. */
  private readonly connections: Redis[];
  private readonly listeners = new Map<string, Set<JobListener>>();

  /**
   * Connects to Redis first (a one-line error if it does not answer within `timeoutMs`), and only
   * then makes BullMQ's queue and event listener, whose own connections would otherwise keep
   * retrying a Redis that is not there.
   */
  static async open(url: string, timeoutMs = 5000): Promise<RedisQueue> {
    return new RedisQueue(url, await connected(url, timeoutMs));
  }

  private constructor(
    private readonly url: string,
    redis: Redis,
  ) {
    this.redis = redis;
    const queueConnection = redisConnection(url, { failFast: true });
    const eventsConnection = redisConnection(url);
    this.connections = [this.redis, queueConnection, eventsConnection];
    this.queue = new Queue(QUEUE_NAME, { connection: queueConnection });
    this.queue.on('error', () => undefined); // reported per request, as a 503
    this.events = new QueueEvents(QUEUE_NAME, { connection: eventsConnection });
    this.events.on('error', () => undefined); // it reconnects by itself
    const tell = (what: 'state' | 'progress' | 'preview') => async ({ jobId }: { jobId: string }) => {
      const ls = this.listeners.get(jobId);
      if (!ls?.size) return;
      const view = await this.get(jobId).catch(() => undefined);
      if (view) for (const l of ls) l(view, what);
    };
    this.events.on('active', tell('state'));
    this.events.on('completed', tell('state'));
    this.events.on('failed', tell('state'));
    this.events.on('progress', tell('progress'));
  }

  /** The weights some worker announced; no worker yet is no error (jobs wait for one). */
  async ready(): Promise<WorkerInfo> {
    const all = Object.values(await this.redis.hgetall(keys.workers)).map((v) => JSON.parse(v) as WorkerAnnouncement);
    const good = all.find((a) => a.shapes);
    if (good) return { weightsFile: good.weightsFile, shapes: new Map(good.shapes) as ParamShapes };
    return all.length > 0 && all.every((a) => a.error) ? { error: all[0]!.error } : {};
  }

  async submit(s: Submission): Promise<JobView> {
    const id = randomUUID();
    const counts: Record<string, number> = {};
    const inputs: { field: 'content' | 'style' | 'image'; key: string }[] = [];
    const multi = this.redis.multi();
    for (const u of s.uploads) {
      counts[u.field] = (counts[u.field] ?? 0) + 1;
      const key = keys.blob(id, `${u.field}-${counts[u.field]}`);
      multi.set(key, u.bytes, 'EX', BLOB_TTL_SECONDS);
      inputs.push({ field: u.field, key });
    }
    await multi.exec();
    const data: RedisJobData = { kind: s.kind, settings: s.settings, top: s.top, previewEvery: s.previewEvery, inputs };
    await this.queue.add(s.kind, data, {
      jobId: id,
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: BLOB_TTL_SECONDS, count: 1000 },
      removeOnFail: { age: BLOB_TTL_SECONDS, count: 1000 },
    });
    return (await this.get(id))!;
  }

  async get(id: string): Promise<JobView | undefined> {
    const job = await Job.fromId<RedisJobData, RedisReturn>(this.queue, id);
    if (!job) return undefined;
    const raw = await job.getState();
    const cancelled = (await this.redis.exists(keys.cancel(id))) === 1;
    const done = raw === 'completed';
    const returned = job.returnvalue as RedisReturn | undefined;
    const interrupted = returned?.result?.kind === 'stylize' && returned.result.interrupted;
    const state: JobState =
      raw === 'active' ? 'running' : done ? (interrupted || returned?.cancelled ? 'cancelled' : 'done') : raw === 'failed' ? 'failed' : cancelled ? 'cancelled' : 'queued';
    const p = (typeof job.progress === 'object' ? job.progress : {}) as RedisProgress;
    const iso = (ms?: number) => (ms ? new Date(ms).toISOString() : undefined);
    return {
      id,
      kind: job.data.kind,
      state,
      createdAt: iso(job.timestamp)!,
      startedAt: iso(job.processedOn),
      finishedAt: iso(job.finishedOn),
      progress: p.progress,
      previews: p.previews ?? 0,
      result: returned?.result,
      error: raw === 'failed' ? job.failedReason : undefined,
    };
  }

  async list(): Promise<JobView[]> {
    const jobs = await this.queue.getJobs(['active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed'], 0, 99);
    const views = await Promise.all(jobs.filter((j) => j.id).map((j) => this.get(j.id!)));
    return views.filter((v): v is JobView => v !== undefined).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  async queued(): Promise<number> {
    return this.queue.getWaitingCount();
  }

  /** Sets the job's cancel flag: a worker checks it before it starts the job and after every iteration. */
  async cancel(id: string): Promise<JobView | undefined> {
    if (!(await Job.fromId(this.queue, id))) return undefined;
    await this.redis.set(keys.cancel(id), '1', 'EX', BLOB_TTL_SECONDS);
    const view = await this.get(id);
    for (const l of this.listeners.get(id) ?? []) if (view) l(view, 'state');
    return view;
  }

  subscribe(id: string, listener: JobListener): () => void {
    let ls = this.listeners.get(id);
    if (!ls) this.listeners.set(id, (ls = new Set()));
    ls.add(listener);
    return () => {
      ls!.delete(listener);
      if (ls!.size === 0) this.listeners.delete(id);
    };
  }

  async preview(id: string): Promise<Uint8Array | undefined> {
    return (await this.redis.getBuffer(keys.blob(id, 'preview'))) ?? undefined;
  }

  async result(id: string): Promise<Buffer | undefined> {
    return (await this.redis.getBuffer(keys.blob(id, 'result'))) ?? undefined;
  }

  async close(): Promise<void> {
    // BullMQ's close waits for a connection that may never come (Redis down): not for long.
    const closing = Promise.all([this.events.close(), this.queue.close()]).catch(() => undefined);
    await Promise.race([closing, new Promise((r) => setTimeout(r, 2000).unref())]);
    for (const c of this.connections) c.disconnect();
  }

  toString(): string {
    return `Redis queue at ${this.url}`;
  }
}
