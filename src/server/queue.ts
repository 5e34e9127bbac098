/**
 * What the HTTP API needs of a job queue, whichever runs the jobs: the embedded one (a worker thread
 * in this process) or Redis with BullMQ (workers anywhere). Uploads are handed over as bytes: each
 * queue keeps them where its workers can read them (a local folder, or Redis).
 */
import type { ParamShapes, StylizeSettings } from '../app/stylize.js';
import type { JobKind, JobView } from './jobs.js';

export interface Upload {
  readonly field: 'content' | 'style' | 'image';
  readonly bytes: Buffer;
}

export interface Submission {
  readonly kind: JobKind;
  readonly uploads: readonly Upload[];
  readonly settings?: StylizeSettings;
  readonly top?: number;
  /** A preview image every this many iterations. */
  readonly previewEvery: number;
}

/** What the workers know: their weights file and its shapes (for the memory estimate), or why they have none. */
export interface WorkerInfo {
  readonly weightsFile?: string;
  readonly shapes?: ParamShapes;
  readonly error?: string;
}

/** A change a subscriber hears of: the job's new view, and what changed. */
export type JobListener = (view: JobView, what: 'state' | 'progress' | 'preview') => void;

export interface JobQueue {
  /** The workers' weights (embedded: once loaded; Redis: as a worker announced them, if any has). */
  ready(): Promise<WorkerInfo>;
  submit(s: Submission): Promise<JobView>;
  get(id: string): Promise<JobView | undefined>;
  /** Recent jobs, newest first. */
  list(): Promise<JobView[]>;
  /** Jobs waiting for a worker. */
  queued(): Promise<number>;
  /** A waiting job ends at once, a running one after its current iteration (its best image kept). */
  cancel(id: string): Promise<JobView | undefined>;
  subscribe(id: string, listener: JobListener): () => void;
  preview(id: string): Promise<Uint8Array | undefined>;
  result(id: string): Promise<Buffer | undefined>;
  close(): Promise<void>;
}
