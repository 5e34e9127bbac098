/**
 * Training a style network as a use case on files, as the CLI runs it: the content folder listed,
 * the style image read, a model or a checkpoint to start from, checkpoints on the way and on a
 * stop, the model written at the end. The loop itself is train-style.ts.
 */
import { readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { readRgb } from '../image/preprocess.js';
import type { RgbImage } from '../image/rgb.js';
import { IMAGE_EXTENSIONS, writeRgb } from '../image/tensor-image.js';
import { initialTransformerWeights, type TransformerWeights } from '../model/transformer/transformer-net.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { checkReadableFile, checkWritableFile } from '../util/file-checks.js';
import { loadTrainingCheckpoint, loadTransformerModel, saveTrainingCheckpoint, saveTransformerModel, type TrainingCheckpoint } from '../weights/transformer-file.js';
import type { OnProgress } from './progress.js';
import { resizeLongest, trainStyle, type ContentSource, type TrainSettings, type TrainStyleResult } from './train-style.js';

/** Folders deeper than this are not searched for content images (COCO is one level; ImageFolder two). */
const MAX_DEPTH = 4;

/**
 * The images under `dir` (its subfolders too, as torchvision's ImageFolder reads pytorch/examples'
 * dataset folder), sorted by path so that every machine sees the same order.
 */
export function listContentImages(dir: string): string[] {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new PasticheError(`${dir}: no such folder`);
  }
  if (!st.isDirectory()) throw new PasticheError(`${dir}: not a folder (--content-dir takes a folder of images)`);
  const out: string[] = [];
  const walk = (d: string, depth: number) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch (e) {
      throw new PasticheError(`${d}: cannot list (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && depth < MAX_DEPTH) walk(p, depth + 1);
      else if (e.isFile() && IMAGE_EXTENSIONS.includes(path.extname(e.name).toLowerCase())) out.push(p);
    }
  };
  walk(dir, 0);
  if (out.length === 0) throw new PasticheError(`${dir}: holds no images (${IMAGE_EXTENSIONS.join(', ')})`);
  return out.sort();
}

/** A folder's images as a ContentSource: decoded when a batch needs them. */
export function folderSource(files: readonly string[]): ContentSource {
  return { count: files.length, name: (i) => files[i]!, load: (i) => readRgb(files[i]!) };
}

/** Where checkpoints go by default: MODEL.ckpt.safetensors beside MODEL.safetensors. */
export function checkpointName(output: string): string {
  return output.replace(/(\.safetensors)?$/i, '.ckpt.safetensors');
}

export interface TrainStyleJob extends TrainSettings {
  readonly style: string;
  readonly contentFiles: readonly string[];
  /** The model to write (.safetensors), atomically. */
  readonly output: string;
  readonly vgg: Vgg19Weights;
  readonly backend: Backend;
  /** Start from this model's weights (a fresh optimiser). */
  readonly init?: TransformerWeights;
  /** Continue this checkpoint. */
  readonly resume?: TrainingCheckpoint;
  readonly checkpoint: string;
  readonly checkpointEvery?: number;
  /** A picture to stylize every `previewEvery` steps (default 100) and at the end, into MODEL-preview-0100.png and so on. */
  readonly preview?: string;
  readonly previewEvery?: number;
  readonly onProgress?: OnProgress;
  readonly signal?: AbortSignal;
}

/** The settings a resumed run must share with the checkpoint's (all but how long it runs). */
export function settingsRecord(s: TrainSettings, style: string, contentCount: number): Record<string, unknown> {
  return {
    style: path.basename(style), contentCount, size: s.size, batch: s.batch, lr: s.lr, seed: s.seed, shuffle: s.shuffle, width: s.width, upsample: s.upsample, norm: s.norm, styleSize: s.styleSize ?? null,
    contentWeight: s.contentWeight, styleWeight: s.styleWeight, tvWeight: s.tvWeight, contentLayers: s.contentLayers, styleLayers: s.styleLayers,
  };
}

/** Says which setting differs between a checkpoint and this run, in one line. */
export function checkResumable(checkpoint: TrainingCheckpoint, file: string, now: Record<string, unknown>): void {
  let then: Record<string, unknown>;
  try {
    then = JSON.parse(checkpoint.settings) as Record<string, unknown>;
  } catch {
    throw new PasticheError(`${file}: the checkpoint's settings are damaged`);
  }
  for (const [k, v] of Object.entries(now)) {
    if (JSON.stringify(then[k]) !== JSON.stringify(v)) {
      throw new PasticheError(`${file} was trained with ${k} ${JSON.stringify(then[k])}, this run has ${JSON.stringify(v)}: resume with the same settings (only --iterations / --epochs may change)`);
    }
  }
}

/** Where the preview after `iteration` steps goes: MODEL-preview-0100.png beside MODEL.safetensors. */
export function previewName(output: string, iteration: number): string {
  return `${output.replace(/\.safetensors$/i, '')}-preview-${String(iteration).padStart(4, '0')}.png`;
}

/** Checks before any work: the style image, the preview picture and the outputs. */
export function checkTrainFiles(files: { style: string; output: string; checkpoint: string; logJson?: string; preview?: string }): void {
  if (path.extname(files.output).toLowerCase() !== '.safetensors') throw new PasticheError(`${files.output}: the model is written as .safetensors`);
  checkReadableFile(files.style);
  if (files.preview) {
    checkReadableFile(files.preview);
    checkWritableFile(previewName(files.output, 0));
  }
  checkWritableFile(files.output);
  checkWritableFile(files.checkpoint);
  if (files.logJson) checkWritableFile(files.logJson);
}

export interface TrainStyleJobResult extends TrainStyleResult {
  /** The model written; on an interrupted run, the checkpoint. */
  readonly file: string;
}

export async function runTrainStyle(job: TrainStyleJob): Promise<TrainStyleJobResult> {
  const style = await readRgb(job.style);
  // A preview is resized once, to at most 512 px: it shows the training, it is not the product.
  const previewRgb = job.preview ? await readRgb(job.preview) : undefined;
  const preview = previewRgb && {
    image: Math.max(previewRgb.width, previewRgb.height) > 512 ? resizeLongest(previewRgb, 512) : previewRgb,
    every: job.previewEvery ?? 100,
    onPreview: async (rgb: RgbImage, iteration: number) => {
      const file = previewName(job.output, iteration);
      await writeRgb(file, rgb);
      job.onProgress?.({ kind: 'saved', file, iteration });
    },
  };
  const settings = JSON.stringify(settingsRecord(job, job.style, job.contentFiles.length));
  const net = job.resume?.weights ?? job.init ?? initialTransformerWeights(job.width, job.seed, job.upsample, job.norm);
  const from = job.resume ? 'the checkpoint' : '--init';
  if (net.width !== job.width) throw new PasticheError(`${from} is a network of width ${net.width}, not ${job.width} (give --width ${net.width})`);
  if (net.upsample !== job.upsample) throw new PasticheError(`${from} upsamples with ${net.upsample === 'deconv' ? 'transposed convolutions' : 'nearest + convolution'} (give --upsample ${net.upsample})`);
  if (net.norm !== job.norm) throw new PasticheError(`${from} is a ${net.norm}-norm network (give --norm ${net.norm})`);
  const save = (s: { weights: TransformerWeights; adam?: TrainingCheckpoint['adam']; iteration: number }) => saveTrainingCheckpoint(job.checkpoint, { ...s, settings });
  const result = await trainStyle({
    ...job, style, content: folderSource(job.contentFiles), net, preview,
    resume: job.resume ? { adam: job.resume.adam, iteration: job.resume.iteration } : undefined,
    onCheckpoint: async (s) => {
      await save(s);
      job.onProgress?.({ kind: 'saved', file: job.checkpoint, iteration: s.iteration });
    },
  });
  if (result.interrupted) {
    await save(result);
    return { ...result, file: job.checkpoint };
  }
  await saveTransformerModel(job.output, result.weights, { style: path.basename(job.style), iterations: String(result.iteration), settings });
  return { ...result, file: job.output };
}

/** --init or --resume, read and checked against the run's width. */
export async function loadTrainStart(o: { init?: string; resume?: string }): Promise<{ init?: TransformerWeights; resume?: TrainingCheckpoint }> {
  if (o.init && o.resume) throw new PasticheError('give --init or --resume, not both (a checkpoint carries its own weights)');
  if (o.init) return { init: await loadTransformerModel(o.init) };
  if (o.resume) return { resume: await loadTrainingCheckpoint(o.resume) };
  return {};
}
