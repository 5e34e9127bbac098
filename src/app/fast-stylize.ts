/**
 * Real-time style transfer (the course's labs 4-2/4-3): a trained style network (TransformerNet)
 * stylizes each image in one forward pass. The images are read, optionally resized so that their
 * longest side is `size`, run one at a time (their sizes differ), clamped to 0..255 and written.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { readRgb } from '../image/preprocess.js';
import { rgbToTensor, tensorToRgb, type RgbImage } from '../image/rgb.js';
import { IMAGE_EXTENSIONS, writeRgb } from '../image/tensor-image.js';
import { TransformerNet, type TransformerWeights } from '../model/transformer/transformer-net.js';
import { Tensor } from '../tensor/tensor.js';
import { checkReadableFile, checkWritableFile } from '../util/file-checks.js';
import type { OnProgress } from './progress.js';
import { outputSize } from './stylize.js';

const ZERO_MEAN = [0, 0, 0] as const;

/**
 * One image through the network: RGB in, RGB out, the input's size (the network's output is the
 * input's rounded up to a multiple of 4: pytorch/examples saves that; the extra rows are cropped here).
 */
export async function stylizeWithNetwork(net: TransformerNet, rgb: RgbImage): Promise<RgbImage> {
  const x = rgbToTensor(rgb, ZERO_MEAN);
  const y = await net.forward(x).toHost();
  const out = tensorToRgb(y.shape[2] === rgb.height && y.shape[3] === rgb.width ? y : cropTopLeft(y, rgb.height, rgb.width), ZERO_MEAN);
  y.dispose();
  return out;
}

function cropTopLeft(y: Tensor, h: number, w: number): Tensor {
  const [, c, yh, yw] = y.shape as [number, number, number, number];
  const out = new Tensor([1, c, h, w]);
  for (let ch = 0; ch < c; ch++) for (let r = 0; r < h; r++) out.data.set(y.data.subarray((ch * yh + r) * yw, (ch * yh + r) * yw + w), (ch * h + r) * w);
  return out;
}

export interface FastStylizeJob {
  readonly inputs: readonly string[];
  /** One input: an image file (.png, .jpg); several: a folder (made if missing), one PNG per input. */
  readonly output: string;
  readonly weights: TransformerWeights;
  readonly backend: Backend;
  /** Resize each input so that its longest side is this (the aspect ratio kept); default: as it is. */
  readonly size?: number;
  readonly onProgress?: OnProgress;
}

/** Where each input's result goes: the output file, or OUT/NAME.png for several inputs. */
export function fastOutputs(inputs: readonly string[], output: string): string[] {
  if (inputs.length === 1 && IMAGE_EXTENSIONS.includes(path.extname(output).toLowerCase())) return [output];
  if (inputs.length === 1 && !(existsSync(output) && statSync(output).isDirectory())) {
    throw new PasticheError(`${output}: the output must end in .png, .jpg or .jpeg (or be a folder)`);
  }
  const names = inputs.map((f) => `${path.basename(f, path.extname(f))}.png`);
  const seen = new Set<string>();
  for (const [i, n] of names.entries()) {
    if (seen.has(n)) throw new PasticheError(`${inputs[i]}: another input also gives ${n}; stylize them into different folders`);
    seen.add(n);
  }
  return names.map((n) => path.join(output, n));
}

/** Checks every input can be read and every output written, before any work (the folder is made if missing). */
export function checkFastStylizeFiles(inputs: readonly string[], output: string): string[] {
  for (const f of inputs) checkReadableFile(f);
  const outputs = fastOutputs(inputs, output);
  if (outputs[0] !== output) {
    try {
      mkdirSync(output, { recursive: true });
    } catch (e) {
      throw new PasticheError(`${output}: cannot make the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  for (const o of outputs) checkWritableFile(o);
  return outputs;
}

export interface FastStylizeResult {
  readonly file: string;
  readonly width: number;
  readonly height: number;
  readonly seconds: number;
}

export async function runFastStylize(job: FastStylizeJob): Promise<FastStylizeResult[]> {
  const outputs = fastOutputs(job.inputs, job.output);
  const net = new TransformerNet(job.weights, job.backend);
  const results: FastStylizeResult[] = [];
  for (const [i, input] of job.inputs.entries()) {
    job.onProgress?.({ kind: 'stage', stage: `${path.basename(input)} (${i + 1}/${job.inputs.length})` });
    const rgb = await readRgb(input);
    const resized = job.size ? await readRgb(input, outputSize(rgb, job.size)) : rgb;
    if (Math.min(resized.width, resized.height) < TransformerNet.MIN_SIDE) {
      throw new PasticheError(`${input}: ${resized.width}x${resized.height} is too small for the style network (at least ${TransformerNet.MIN_SIDE} px a side)`);
    }
    const t0 = performance.now();
    const out = await stylizeWithNetwork(net, resized);
    const seconds = (performance.now() - t0) / 1000;
    await writeRgb(outputs[i]!, out);
    results.push({ file: outputs[i]!, width: out.width, height: out.height, seconds });
  }
  return results;
}
