/**
 * The service's jobs: what a client sees of one (JobView), the work a worker runs (Work), and the
 * messages between the server and its worker thread. Plain data: it crosses postMessage (and, in
 * the queue mode to come, Redis).
 */
import type { Prediction } from '../app/top-k.js';
import type { ParamShapes, StylizeSettings } from '../app/stylize.js';

export type JobKind = 'stylize' | 'classify';
export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobProgressView {
  readonly iteration: number;
  readonly of: number;
  readonly content: number;
  readonly style: number;
  readonly tv: number;
  readonly total: number;
  readonly seconds: number;
  /** Seconds left at the pace so far. */
  readonly etaSeconds: number;
}

export type JobResultView =
  | { readonly kind: 'stylize'; readonly width: number; readonly height: number; readonly bestLoss: number; readonly iterations: number; readonly interrupted: boolean }
  | { readonly kind: 'classify'; readonly top: readonly Prediction[] };

export interface JobView {
  readonly id: string;
  readonly kind: JobKind;
  readonly state: JobState;
  readonly createdAt: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly progress?: JobProgressView;
  /** Increases with every preview image (GET /api/jobs/:id/preview). */
  readonly previews: number;
  readonly result?: JobResultView;
  readonly error?: string;
}

export interface StylizeWork {
  readonly kind: 'stylize';
  readonly settings: StylizeSettings;
  readonly content: string;
  readonly styles: readonly string[];
  readonly output: string;
  /** A preview image every this many iterations. */
  readonly previewEvery: number;
}

export interface ClassifyWork {
  readonly kind: 'classify';
  readonly image: string;
  readonly top: number;
}

export type Work = StylizeWork | ClassifyWork;

/** Server -> worker thread. */
export type ToWorker = { readonly type: 'run'; readonly id: string; readonly work: Work } | { readonly type: 'cancel'; readonly id: string };

/** Worker thread -> server. */
export type FromWorker =
  | { readonly type: 'ready'; readonly weightsFile?: string; readonly shapes?: ParamShapes; readonly error?: string }
  | { readonly type: 'progress'; readonly id: string; readonly progress: JobProgressView }
  | { readonly type: 'preview'; readonly id: string; readonly png: Uint8Array }
  | { readonly type: 'done'; readonly id: string; readonly result: JobResultView }
  | { readonly type: 'failed'; readonly id: string; readonly error: string };
