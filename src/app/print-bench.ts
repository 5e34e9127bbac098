/**
 * `bench --sections print`: style transfer at print sizes within a memory budget. Each size runs in
 * its own process, so that its peak resident memory (VmHWM) is its own: a run of a few
 * iterations on synthetic pictures, with the plan memory-plan.ts chose (tile, history), the seconds
 * of each iteration, and how many pixels the halos make it compute per output pixel.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PasticheError } from '../errors.js';
import type { BackendName } from '../backends/backend.js';
import type { MemoryPlan } from './memory-plan.js';
import type { OnProgress } from './progress.js';

export interface PrintSize {
  readonly width: number;
  readonly height: number;
}

/** '1024,2048,4000x3000' -> squares and width x height. */
export function parsePrintSizes(text: string, flag = '--print-sizes'): PrintSize[] {
  return text.split(',').map((part) => {
    const m = /^\s*(\d+)(?:x(\d+))?\s*$/.exec(part);
    const [width, height] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [NaN, NaN];
    if (!(width >= 64 && height >= 64 && width <= 16384 && height <= 16384)) throw new PasticheError(`${flag}: '${part}' is not a size such as 2048 or 4000x3000 (64 to 16384 px)`);
    return { width, height };
  });
}

/** What a child is asked. */
export interface PrintRequest extends PrintSize {
  readonly weightsFile?: string;
  readonly backend: BackendName;
  readonly iterations: number;
  readonly maxMemory?: number;
  /** The style image's longest side (style images are usually far smaller than a print). */
  readonly styleSide: number;
}

export interface PrintRow extends PrintSize {
  readonly plan: MemoryPlan;
  /** Computed pixels (crops with their halos) per output pixel, per pass. */
  readonly haloOverhead: number;
  /** The content and style targets, seconds. */
  readonly targetsSeconds: number;
  /** Each iteration's seconds. */
  readonly iterationSeconds: readonly number[];
  /** The peak resident set of the run's process, bytes. */
  readonly peakRssBytes: number;
}

export interface PrintBenchOptions {
  readonly sizes: readonly PrintSize[];
  readonly weightsFile?: string;
  readonly backend: BackendName;
  readonly iterations: number;
  readonly maxMemory?: number;
  readonly onProgress?: OnProgress;
}

/** Runs each size in a child process, one after another (they would share the cores). */
export async function benchPrintSizes(o: PrintBenchOptions): Promise<PrintRow[]> {
  const rows: PrintRow[] = [];
  for (const size of o.sizes) {
    o.onProgress?.({ kind: 'stage', stage: `print size ${size.width}x${size.height}` });
    rows.push(await runChild({ ...size, weightsFile: o.weightsFile, backend: o.backend, iterations: o.iterations, maxMemory: o.maxMemory, styleSide: 512 }, o.onProgress));
  }
  return rows;
}

function runChild(request: PrintRequest, onProgress?: OnProgress): Promise<PrintRow> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(new URL('./print-bench-child.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let done = false;
    child.on('message', (m: { row?: PrintRow; error?: string; stage?: string }) => {
      if (m.stage) onProgress?.({ kind: 'stage', stage: `${request.width}x${request.height}: ${m.stage}` });
      if (m.row) {
        done = true;
        resolve(m.row);
      }
      if (m.error) {
        done = true;
        reject(new PasticheError(`${request.width}x${request.height}: ${m.error}`));
      }
    });
    child.on('exit', (code, signal) => {
      if (!done) reject(new PasticheError(`${request.width}x${request.height}: the run's process ended (${signal ?? `exit code ${code}`}) without a result: out of memory?`));
    });
    child.send(request);
  });
}
