/**
 * Progress of long work, in one shape for every consumer: the CLI's progress bars, a JSON-lines log
 * file, the server's event stream, a queue's job progress and Studio's page all take a `Progress`
 * event and render or forward it; the use cases in app/ only emit them.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { PasticheError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { MemoryPlan } from './memory-plan.js';
import type { TilePass } from './tiled-evaluate.js';

/** A step of work that has no count: 'reading images', 'loading weights', a bench contender. */
export interface StageProgress {
  readonly kind: 'stage';
  readonly stage: string;
}

/** One layer of a forward pass done (classify). */
export interface LayerProgress {
  readonly kind: 'layer';
  readonly image: string;
  readonly done: number;
  readonly total: number;
  readonly layer: string;
}

/** One optimisation step done (stylize). */
export interface IterationProgress {
  readonly kind: 'iteration';
  /** 1-based, counted over all scales. */
  readonly iteration: number;
  readonly of: number;
  /** The longest side being optimised. */
  readonly scale: number;
  readonly content: number;
  readonly style: number;
  readonly tv: number;
  readonly total: number;
  /** Since the optimisation started. */
  readonly seconds: number;
  /** The image at this iteration (mean-subtracted NCHW), valid during the call only. */
  readonly image: Tensor;
}

/** One training step of a style network done (train-style). */
export interface TrainProgress {
  readonly kind: 'train';
  /** Steps done (1-based) and the run's total. */
  readonly iteration: number;
  readonly of: number;
  /** Epochs done: images seen / images in the folder. */
  readonly epoch: number;
  readonly content: number;
  readonly style: number;
  readonly tv: number;
  readonly total: number;
  /** Since this run (or its resumption) started. */
  readonly seconds: number;
  readonly stepsPerSecond: number;
}

/** How a scale of a style transfer is fitted into memory (memory-plan.ts), said before it starts. */
export interface PlanProgress {
  readonly kind: 'plan';
  readonly scale: number;
  readonly plan: MemoryPlan;
  /** describePlan's line. */
  readonly text: string;
}

/** A tile of a tiled style transfer done: at print sizes one iteration takes minutes. */
export interface TileProgress {
  readonly kind: 'tile';
  /** The iteration being computed (1-based, over all scales) and the run's total; for a style network, the image and the images' count. */
  readonly iteration: number;
  readonly of: number;
  /** 'targets': the content and style images' features; 'loss': the Gram matrices; 'gradient': the backward passes. */
  readonly pass: TilePass;
  readonly done: number;
  readonly tiles: number;
}

/** A file written on the way (stylize's snapshots). */
export interface SavedProgress {
  readonly kind: 'saved';
  readonly file: string;
  readonly iteration: number;
}

/** A side output could not be written; the work goes on without it. */
export interface WarningProgress {
  readonly kind: 'warning';
  readonly message: string;
}

export type Progress = StageProgress | LayerProgress | IterationProgress | TrainProgress | PlanProgress | TileProgress | SavedProgress | WarningProgress;

export type OnProgress = (p: Progress) => void;

/** One listener that calls each of several. */
export function fanOut(...listeners: (OnProgress | undefined)[]): OnProgress {
  const all = listeners.filter((l): l is OnProgress => l !== undefined);
  return (p) => {
    for (const l of all) l(p);
  };
}

/** The fields of an iteration or a training step that a log keeps (everything but the image). */
export function iterationRecord(p: IterationProgress | TrainProgress): Record<string, number> {
  const r = { iteration: p.iteration, content: p.content, style: p.style, tv: p.tv, total: p.total, seconds: p.seconds };
  return p.kind === 'train' ? { ...r, epoch: p.epoch } : r;
}

/**
 * A consumer that appends one JSON line per iteration (or training step) to `file`, opened at the first one (a run
 * that fails before it leaves no empty log). If the file cannot be written (a full disk), it says
 * so once through `onProblem` and stops logging: a log is not worth losing a run for.
 */
export function jsonLinesLog(file: string, onProblem: (message: string) => void): OnProgress & { close(): void } {
  let fd: number | undefined;
  let broken = false;
  const close = () => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  const listener = (p: Progress) => {
    if ((p.kind !== 'iteration' && p.kind !== 'train') || broken) return;
    try {
      fd ??= openSync(file, 'w');
      writeSync(fd, `${JSON.stringify(iterationRecord(p))}\n`);
    } catch (e) {
      broken = true;
      close();
      const why = e instanceof PasticheError ? e.message : `${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      onProblem(`${why}; no more log lines are written`);
    }
  };
  return Object.assign(listener, { close });
}
