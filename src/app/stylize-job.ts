/**
 * Style transfer as a use case on files, as the CLI and the server's workers run it: images read
 * from disk, the memory estimate checked against this machine, snapshots and the result written.
 * The engine itself (stylize.ts) works on decoded images and runs in the browser too.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { getBackend, type Backend } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import { readRgb } from '../image/preprocess.js';
import { tensorToRgb } from '../image/rgb.js';
import { IMAGE_EXTENSIONS, writeRgb } from '../image/tensor-image.js';
import { checkReadableFile, checkWritableFile } from '../util/file-checks.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import type { OnProgress } from './progress.js';
import { stylizeImages, type Init, type StylizeResult, type StylizeSettings } from './stylize.js';

export interface StylizeOptions extends StylizeSettings {
  readonly content: string;
  readonly styles: readonly string[];
  readonly weights: Vgg19Weights;
  /** An opened backend (openBackend); default: the default CPU backend. */
  readonly backend?: Backend;
  /** Called with an 'iteration' event after every step. */
  readonly onProgress?: OnProgress;
  /** Stops after the current iteration; the best image so far is returned. */
  readonly signal?: AbortSignal;
}

/**
 * What a run on this machine may use: 80% of the memory that is free now, plus what this process
 * already holds (the weights are loaded before a run starts).
 */
export function machineMemoryBudget(): number {
  return 0.8 * (os.freemem() + process.memoryUsage().rss);
}

/** Reads the images and stylizes within the memory budget (--max-memory, or machineMemoryBudget). */
export async function stylize(o: StylizeOptions): Promise<StylizeResult> {
  const [content, ...styles] = await Promise.all([o.content, ...o.styles].map((f) => readRgb(f)));
  const initImage = o.init.kind === 'file' ? await readRgb(o.init.file) : undefined;
  return stylizeImages({ ...o, content: content!, styles, initImage, backend: o.backend ?? getBackend(), memoryLimitBytes: machineMemoryBudget() });
}

export interface StylizeJob extends StylizeOptions {
  /** The image file to write (.png, .jpg, .jpeg), atomically. */
  readonly output: string;
  /** Also save the image every this many iterations, as OUT-0050.png and so on. */
  readonly saveEvery?: number;
}

/**
 * The whole use case, as the CLI (and a server's worker) runs it: stylize, save snapshots on the
 * way (a snapshot that cannot be written is one 'warning' event, and no more are tried), write the
 * best image. Outputs are checked by the caller before (checkStylizeFiles).
 */
export async function runStylize(job: StylizeJob): Promise<StylizeResult & { readonly output: string }> {
  const saves: Promise<void>[] = [];
  let snapshotsBroken = false;
  const onProgress: OnProgress = (p) => {
    job.onProgress?.(p);
    if (p.kind !== 'iteration' || !job.saveEvery || p.iteration % job.saveEvery !== 0 || snapshotsBroken) return;
    const file = snapshotName(job.output, p.iteration);
    saves.push(
      writeRgb(file, tensorToRgb(p.image, job.weights.meanPixel)).then(
        () => job.onProgress?.({ kind: 'saved', file, iteration: p.iteration }),
        (e: unknown) => {
          if (snapshotsBroken) return;
          snapshotsBroken = true;
          job.onProgress?.({ kind: 'warning', message: `${e instanceof PasticheError ? e.message : `${file}: ${(e as Error).message}`}; no more snapshots are written` });
        },
      ),
    );
  };
  const result = await stylize({ ...job, onProgress });
  await Promise.all(saves);
  await writeRgb(job.output, result.rgb);
  return { ...result, output: job.output };
}

/** The file an intermediate image is saved to: OUT-0050.png beside OUT.png. */
export function snapshotName(output: string, iteration: number): string {
  const ext = path.extname(output);
  return `${output.slice(0, output.length - ext.length)}-${String(iteration).padStart(4, '0')}${ext}`;
}


/**
 * The files of a run on this machine, checked before any work: the inputs can be read; the output,
 * the first snapshot and the log can be written (a probe file is written and removed), so that an
 * unwritable path never costs a whole optimisation.
 */
export function checkStylizeFiles(files: { content: string; styles: readonly string[]; output: string; init?: Init; saveEvery?: number; logJson?: string }): void {
  if (!IMAGE_EXTENSIONS.includes(path.extname(files.output).toLowerCase())) throw new PasticheError(`${files.output}: the output must end in .png, .jpg or .jpeg`);
  checkWritableFile(files.output);
  if (files.saveEvery) checkWritableFile(snapshotName(files.output, files.saveEvery));
  if (files.logJson) checkWritableFile(files.logJson);
  for (const f of [files.content, ...files.styles]) checkReadableFile(f);
  if (files.init?.kind === 'file') checkReadableFile(files.init.file);
}
