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
import { TransformerNet, type NormStats, type TransformerWeights } from '../model/transformer/transformer-net.js';
import { Tensor } from '../tensor/tensor.js';
import { checkReadableFile, checkWritableFile } from '../util/file-checks.js';
import type { OnProgress } from './progress.js';
import { machineMemoryBudget } from './stylize-job.js';
import { outputSize } from './stylize.js';
import { crop, tileGrid, type TilePass } from './tiled-evaluate.js';

const ZERO_MEAN = [0, 0, 0] as const;

/**
 * One image through the network: RGB in, RGB out, the input's size (the network's output is the
 * input's rounded up to a multiple of 4: pytorch/examples saves that; the extra rows are cropped here).
 */
export async function stylizeWithNetwork(net: TransformerNet, rgb: RgbImage): Promise<RgbImage> {
  const x = rgbToTensor(rgb, ZERO_MEAN);
  const y = await net.forward(x).toHost();
  const out = tensorToRgb(y.shape[2] === rgb.height && y.shape[3] === rgb.width ? y : crop(y, 0, rgb.height, 0, rgb.width), ZERO_MEAN);
  y.dispose();
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
  /** Run in tiles of this many pixels a side (a multiple of 4); default: tiles only where the image does not fit `maxMemory`. */
  readonly tile?: number;
  /** Bytes a pass may use (default: what the machine gives). */
  readonly maxMemory?: number;
  readonly onProgress?: OnProgress;
}

/**
 * Peak bytes per pixel of an untiled pass of the width-32 network, measured on native: 512x512 went
 * from 61 to 514 MB peak RSS (1.7 KB a pixel: the 32-channel maps at full size, their padded copies,
 * the 9x9 convolutions' im2col blocks); 2 KB with room. Since native's convolutions read the padding
 * and upsampling in place it is ~0.9 KB (93 -> 377 MB at 512, 102 -> 1027 MB at 1024), but ts and
 * webgpu still make those copies: the bound stays. Narrower networks scale with their width.
 */
const NETWORK_BYTES_PER_PIXEL = 2048;
const TILE_CHOICES = [2048, 1536, 1024, 768, 512, 384, 256, 128];

/** The tile a height x width image needs in `budget` bytes: undefined when it fits whole. */
export function networkTile(height: number, width: number, netWidth: number, budget: number): number | undefined {
  const perPixel = (NETWORK_BYTES_PER_PIXEL * netWidth) / 32;
  const image = 40 * height * width; // the input and output tensors, the 8-bit pictures
  const need = (h: number, w: number) => 150 * 2 ** 20 + image + perPixel * h * w;
  if (need(height, width) <= budget) return undefined;
  const tile = TILE_CHOICES.find((t) => need(Math.min(height, t + 2 * NETWORK_HALO), Math.min(width, t + 2 * NETWORK_HALO)) <= budget);
  if (tile === undefined) {
    throw new PasticheError(`a ${width}x${height} image needs at least ${(need(128 + 2 * NETWORK_HALO, 128 + 2 * NETWORK_HALO) / 2 ** 30).toFixed(1)} GiB even in 128-px tiles, more than the ${(budget / 2 ** 30).toFixed(1)} GiB given: choose a smaller --size or a larger --max-memory`);
  }
  return tile;
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
    const tile = job.tile ?? networkTile(resized.height, resized.width, job.weights.width, job.maxMemory ?? machineMemoryBudget());
    let out: RgbImage;
    if (tile === undefined) out = await stylizeWithNetwork(net, resized);
    else {
      const x = rgbToTensor(resized, ZERO_MEAN);
      const onTile = (pass: TilePass) => (done: number, tiles: number) => job.onProgress?.({ kind: 'tile', iteration: i + 1, of: job.inputs.length, pass, done, tiles });
      const stats = await normStatistics(net, x, tile, onTile('statistics'));
      out = tensorToRgb(await forwardTiled(net, x, { tile, stats, onTile: onTile('network') }), ZERO_MEAN);
    }
    const seconds = (performance.now() - t0) / 1000;
    await writeRgb(outputs[i]!, out);
    results.push({ file: outputs[i]!, width: out.width, height: out.height, seconds });
  }
  return results;
}

/**
 * Half the style network's receptive field, on its strides' grid of 4: 9x9, two stride-2 3x3 (jumps
 * 2 and 4), ten 3x3 at jump 4, 3x3 at jumps 2 and 1 after the upsamplings, 9x9: 109 px, so 55,
 * rounded up to 64 (the nearest upsampling's rounding wants a little more).
 */
export const NETWORK_HALO = 64;
export const NETWORK_GRID = 4;

export interface TiledNetworkOptions {
  /** Interior size of a tile (a multiple of 4). */
  readonly tile: number;
  /** The instance norms' statistics over the whole image (normStatistics). */
  readonly stats: NormStats;
  readonly onTile?: (done: number, tiles: number) => void;
  /** Overrides the halo (default NETWORK_HALO): only to show what a short one breaks. */
  readonly halo?: number;
}

/** Per-channel count, mean and sum of squared deviations, merged tile by tile (Chan et al.'s pairwise update). */
class ChannelMoments {
  readonly n: Float64Array;
  readonly mean: Float64Array;
  readonly m2: Float64Array;
  constructor(c: number) {
    [this.n, this.mean, this.m2] = [new Float64Array(c), new Float64Array(c), new Float64Array(c)];
  }

  /** Adds rows [r0, r1) x columns [c0, c1) of every channel of `t` ([1, C, H, W], on the host). */
  add(t: Tensor, r0: number, r1: number, c0: number, c1: number): void {
    const [, c, h, w] = t.shape as [number, number, number, number];
    for (let k = 0; k < c; k++) {
      let sum = 0;
      for (let r = r0; r < r1; r++) for (let q = c0; q < c1; q++) sum += t.data[(k * h + r) * w + q]!;
      const nb = (r1 - r0) * (c1 - c0);
      const mb = sum / nb;
      let m2b = 0;
      for (let r = r0; r < r1; r++) for (let q = c0; q < c1; q++) m2b += (t.data[(k * h + r) * w + q]! - mb) ** 2;
      const na = this.n[k]!;
      const delta = mb - this.mean[k]!;
      const n = na + nb;
      this.mean[k] = this.mean[k]! + (delta * nb) / n;
      this.m2[k] = this.m2[k]! + m2b + (delta * delta * na * nb) / n;
      this.n[k] = n;
    }
  }
}

/** The stride of each instance norm's map in image pixels. */
const NORM_STRIDE = (name: string): number => (name === 'in1' || name === 'in5' ? 1 : name === 'in2' || name === 'in4' ? 2 : 4);

/**
 * Every instance norm's input statistics over the whole image, exactly, in the memory of one tile:
 * one pass over the tiles per norm (15), each stopping at that norm's input and normalising the
 * earlier ones with the statistics already gathered; each tile adds its interior positions (halos
 * make them the whole image's own). About 6x the work of the final pass; without tiles, one pass per
 * norm on the whole image.
 */
export async function normStatistics(net: TransformerNet, x: Tensor, tile: number | undefined, onTile?: (done: number, tiles: number) => void): Promise<NormStats> {
  // Batch norm runs with its running statistics: nothing to gather from the image.
  if (net.weights.norm === 'batch') return new Map();
  const [, , height, width] = x.shape as [number, number, number, number];
  const tiles = tile === undefined ? [{ y0: 0, y1: height, x0: 0, x1: width, cy0: 0, cy1: height, cx0: 0, cx1: width }] : tileGrid(height, width, tile, NETWORK_HALO, NETWORK_GRID);
  const stats = new Map<string, { mean: Float64Array; variance: Float64Array }>();
  const names = net.normNames;
  let done = 0;
  for (const name of names) {
    const s = NORM_STRIDE(name);
    let moments: ChannelMoments | undefined;
    for (const t of tiles) {
      const input = await net.forward(tile === undefined ? x : crop(x, t.cy0, t.cy1, t.cx0, t.cx1), { stats, until: name }).toHost();
      const [, c, mh, mw] = input.shape as [number, number, number, number];
      moments ??= new ChannelMoments(c);
      // The interior at this map's stride; the last row and column of tiles reach the map's end.
      const r1 = t.y1 === height ? mh : (t.y1 - t.cy0) / s;
      const c1 = t.x1 === width ? mw : (t.x1 - t.cx0) / s;
      moments.add(input, (t.y0 - t.cy0) / s, r1, (t.x0 - t.cx0) / s, c1);
      input.recycle();
      onTile?.(++done, names.length * tiles.length);
    }
    stats.set(name, { mean: moments!.mean, variance: moments!.m2.map((v, k) => v / moments!.n[k]!) });
  }
  return stats;
}

/**
 * The network over a large image tile by tile, in the memory of one tile: each crop runs with a halo
 * of half the receptive field (so its interior is the image's own, reflection padding included where
 * the crop's border is the image's) and instance norms that use the given statistics instead of
 * the crop's own; the interiors are assembled. With the whole image's exact statistics this equals
 * the untiled pass (tested); with statistics from a smaller copy it differs slightly (measured in
 * the test and the README).
 */
export async function stylizeTiled(net: TransformerNet, rgb: RgbImage, o: TiledNetworkOptions): Promise<RgbImage> {
  return tensorToRgb(await forwardTiled(net, rgbToTensor(rgb, ZERO_MEAN), o), ZERO_MEAN);
}

/** stylizeTiled on a [1, 3, H, W] tensor of 0..255 values: the network's output, unclamped, H x W. */
export async function forwardTiled(net: TransformerNet, x: Tensor, o: TiledNetworkOptions): Promise<Tensor> {
  const [, , height, width] = x.shape as [number, number, number, number];
  const out = new Tensor([1, 3, height, width]);
  const tiles = tileGrid(height, width, o.tile, o.halo ?? NETWORK_HALO, NETWORK_GRID);
  for (const [k, t] of tiles.entries()) {
    const y = await net.forward(crop(x, t.cy0, t.cy1, t.cx0, t.cx1), { stats: o.stats }).toHost();
    const [, , yh, yw] = y.shape as [number, number, number, number];
    for (let ch = 0; ch < 3; ch++)
      for (let r = t.y0; r < t.y1; r++) {
        const src = (ch * yh + r - t.cy0) * yw + (t.x0 - t.cx0);
        out.data.set(y.data.subarray(src, src + t.x1 - t.x0), (ch * height + r) * width + t.x0);
      }
    y.recycle();
    o.onTile?.(k + 1, tiles.length);
  }
  return out;
}
