/**
 * One job's work, as both kinds of worker run it (the embedded worker thread and a BullMQ sandboxed
 * processor): the same app/ use cases as the CLI, with progress and preview images handed to hooks.
 */
import { classifyImage } from '../app/classify.js';
import { runStylize } from '../app/stylize-job.js';
import type { Backend } from '../backends/index.js';
import { tensorToRgb } from '../image/rgb.js';
import { encodeRgb } from '../image/tensor-image.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { Vgg19 } from '../model/vgg19.js';
import * as path from 'node:path';
import type { JobProgressView, JobResultView, Work } from './jobs.js';
import type { Submission, Upload } from './queue.js';

export interface WorkHooks {
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: JobProgressView) => void;
  /** A PNG of the image so far, every `previewEvery` iterations (and after the first). */
  readonly onPreview?: (png: Uint8Array) => void;
}

/** A job's uploads once on disk, by field, in upload order. */
export type InputFiles = Readonly<Record<Upload['field'], readonly string[]>>;

/** The work of a submission whose uploads are in `files`; the result image goes into `dir`. */
export function workFor(s: Pick<Submission, 'kind' | 'settings' | 'top' | 'previewEvery'>, files: InputFiles, dir: string): Work {
  return s.kind === 'classify'
    ? { kind: 'classify', image: files.image[0]!, top: s.top ?? 5 }
    : { kind: 'stylize', settings: s.settings!, content: files.content[0]!, styles: files.style, output: path.join(dir, 'result.png'), previewEvery: s.previewEvery };
}

const classifiers = new WeakMap<Vgg19Weights, Vgg19>();

export async function runWork(work: Work, weights: Vgg19Weights, backend: Backend, hooks: WorkHooks = {}): Promise<JobResultView> {
  if (work.kind === 'classify') {
    let model = classifiers.get(weights);
    if (!model) classifiers.set(weights, (model = new Vgg19(weights, backend)));
    const r = await classifyImage(model, work.image, { top: work.top });
    return { kind: 'classify', top: r.top };
  }
  const t0 = performance.now();
  const previews: Promise<void>[] = [];
  const result = await runStylize({
    ...work.settings,
    content: work.content,
    styles: work.styles,
    output: work.output,
    weights,
    backend,
    signal: hooks.signal,
    onProgress: (p) => {
      if (p.kind !== 'iteration') return;
      const seconds = (performance.now() - t0) / 1000;
      hooks.onProgress?.({ iteration: p.iteration, of: p.of, content: p.content, style: p.style, tv: p.tv, total: p.total, seconds, etaSeconds: (seconds / p.iteration) * (p.of - p.iteration) });
      if (hooks.onPreview && (p.iteration === 1 || p.iteration % work.previewEvery === 0)) {
        const onPreview = hooks.onPreview;
        previews.push(encodeRgb(tensorToRgb(p.image, weights.meanPixel), 'png').then((png) => onPreview(new Uint8Array(png))));
      }
    },
  });
  await Promise.all(previews);
  return { kind: 'stylize', width: result.rgb.width, height: result.rgb.height, bestLoss: result.bestLoss, iterations: result.iterations, interrupted: result.interrupted };
}
