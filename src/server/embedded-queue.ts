/**
 * The embedded job queue: `pastiche serve` with nothing else installed. Jobs wait in memory and run
 * one at a time in a worker thread that holds the weights; their inputs and results live in a data
 * folder. A worker that dies fails its running job with the reason and is started again, so the
 * jobs behind it still run.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FromWorker, JobView, ToWorker, Work } from './jobs.js';
import type { JobListener, JobQueue, Submission, Upload, WorkerInfo } from './queue.js';
import { workFor } from './run-work.js';

interface Job {
  view: JobView;
  work: Work;
  dir: string;
  preview?: Uint8Array;
  listeners: Set<JobListener>;
}

export interface EmbeddedQueueOptions {
  /** Where job folders go (created if missing). */
  readonly dataDir: string;
  /** The weights file, as --weights gives it (else $PASTICHE_WEIGHTS, the cache). */
  readonly weights?: string;
  /** Finished jobs kept (with their files); older ones are forgotten and deleted. */
  readonly keepFinished?: number;
}

const WORKER = new URL('./job-worker.js', import.meta.url);

export class EmbeddedQueue implements JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: string[] = [];
  private running?: string;
  private worker!: Worker;
  private info!: Promise<WorkerInfo>;
  private closing = false;

  constructor(private readonly o: EmbeddedQueueOptions) {
    this.startWorker();
  }

  /** Resolves when the worker has loaded (or failed to load) the weights. */
  ready(): Promise<WorkerInfo> {
    return this.info;
  }

  private startWorker(): void {
    this.worker = new Worker(WORKER, { workerData: { weights: this.o.weights } });
    this.info = new Promise<WorkerInfo>((resolve) => {
      const first = (m: FromWorker) => {
        if (m.type !== 'ready') return;
        this.worker.off('message', first);
        resolve({ weightsFile: m.weightsFile, shapes: m.shapes, error: m.error });
        this.next();
      };
      this.worker.on('message', first);
    });
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    this.worker.on('error', (e) => this.onWorkerGone(`the worker failed: ${e.message}`));
    this.worker.on('exit', (code) => this.onWorkerGone(`the worker stopped (exit code ${code})`));
  }

  private onWorkerGone(reason: string): void {
    if (this.closing) return;
    const id = this.running;
    this.running = undefined;
    if (id) this.finish(id, { state: 'failed', error: reason });
    this.worker.removeAllListeners();
    this.startWorker();
  }

  /** Writes the uploads into the job's own folder (by names chosen here) and queues it. */
  async submit(sub: Submission): Promise<JobView> {
    const id = randomUUID();
    const dir = path.join(this.o.dataDir, id);
    await fs.mkdir(dir, { recursive: true });
    const files: Record<Upload['field'], string[]> = { content: [], style: [], image: [] };
    for (const u of sub.uploads) {
      const file = path.join(dir, `${u.field}-${files[u.field].length + 1}`);
      await fs.writeFile(file, u.bytes);
      files[u.field].push(file);
    }
    const work = workFor(sub, files, dir);
    const view: JobView = { id, kind: sub.kind, state: 'queued', createdAt: new Date().toISOString(), previews: 0 };
    this.jobs.set(id, { view, work, dir, listeners: new Set() });
    this.waiting.push(id);
    void this.forgetOld();
    void this.info.then(() => this.next());
    return view;
  }

  async get(id: string): Promise<JobView | undefined> {
    return this.jobs.get(id)?.view;
  }

  async list(): Promise<JobView[]> {
    return [...this.jobs.values()].map((j) => j.view).reverse();
  }

  async queued(): Promise<number> {
    return this.waiting.length;
  }

  /** Cancels a waiting job at once, a running one after its current iteration (its best image is kept). */
  async cancel(id: string): Promise<JobView | undefined> {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    const i = this.waiting.indexOf(id);
    if (i >= 0) {
      this.waiting.splice(i, 1);
      this.finish(id, { state: 'cancelled' });
    } else if (this.running === id) {
      // The worker stops after the current iteration and still writes the best image so far.
      this.worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
    }
    return job.view;
  }

  subscribe(id: string, listener: JobListener): () => void {
    const job = this.jobs.get(id);
    job?.listeners.add(listener);
    return () => job?.listeners.delete(listener);
  }

  async preview(id: string): Promise<Uint8Array | undefined> {
    return this.jobs.get(id)?.preview;
  }

  /** The result image's bytes, once the job has one (done, or cancelled while running: its best image). */
  async result(id: string): Promise<Buffer | undefined> {
    const job = this.jobs.get(id);
    if (!job || job.view.result?.kind !== 'stylize' || job.work.kind !== 'stylize') return undefined;
    return fs.readFile(job.work.output);
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }

  private next(): void {
    if (this.running || this.closing) return;
    const id = this.waiting.shift();
    if (!id) return;
    const job = this.jobs.get(id)!;
    this.running = id;
    this.update(id, { state: 'running', startedAt: new Date().toISOString() }, 'state');
    void this.info.then((info) => {
      if (info.error) {
        this.running = undefined;
        this.finish(id, { state: 'failed', error: info.error });
        this.next();
        return;
      }
      this.worker.postMessage({ type: 'run', id, work: job.work } satisfies ToWorker);
    });
  }

  private onMessage(m: FromWorker): void {
    if (m.type === 'ready') return;
    const job = this.jobs.get(m.id);
    if (!job) return;
    if (m.type === 'progress') this.update(m.id, { progress: m.progress }, 'progress');
    else if (m.type === 'preview') {
      job.preview = m.png;
      this.update(m.id, { previews: job.view.previews + 1 }, 'preview');
    } else {
      if (this.running === m.id) this.running = undefined;
      if (m.type === 'done') {
        const interrupted = m.result.kind === 'stylize' && m.result.interrupted;
        this.finish(m.id, { state: interrupted ? 'cancelled' : 'done', result: m.result });
      } else this.finish(m.id, { state: 'failed', error: m.error });
      this.next();
    }
  }

  private update(id: string, change: Partial<JobView>, what: 'state' | 'progress' | 'preview'): void {
    const job = this.jobs.get(id);
    if (!job) return;
    job.view = { ...job.view, ...change };
    for (const l of job.listeners) l(job.view, what);
  }

  private finish(id: string, change: Partial<JobView>): void {
    this.update(id, { ...change, finishedAt: new Date().toISOString() }, 'state');
  }

  /** Forgets the oldest finished jobs beyond `keepFinished` and deletes their folders. */
  private async forgetOld(): Promise<void> {
    const keep = this.o.keepFinished ?? 100;
    const finished = [...this.jobs.values()].filter((j) => ['done', 'failed', 'cancelled'].includes(j.view.state));
    for (const j of finished.slice(0, Math.max(0, finished.length - keep))) {
      this.jobs.delete(j.view.id);
      await fs.rm(j.dir, { recursive: true, force: true });
    }
  }
}
