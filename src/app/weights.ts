/**
 * Weights files as use cases: what one holds (`pastiche weights info`: format, the input it expects,
 * its layers) and converting any of them to safetensors (`pastiche weights convert`).
 */
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { PasticheError } from '../errors.js';
import type { InputConvention, Vgg19Weights } from '../model/vgg19-params.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import { checkWritableFile } from '../util/file-checks.js';
import { detectFileFormat, loadVgg19Weights } from '../weights/load-vgg19.js';
import type { SafeDtype } from '../weights/safetensors.js';
import { writeConvertedVgg19 } from '../weights/weights-cache.js';

export interface WeightsInfo {
  readonly file: string;
  readonly format: Vgg19Weights['format'];
  readonly layout: string;
  /** What the file's network is fed. */
  readonly input: InputConvention;
  /** What Pastiche feeds it after folding `input` into conv1_1. */
  readonly meanPixel: readonly [number, number, number];
  /** Layer name -> its parameter shape in Pastiche's layout ([Cin,K,K,Cout], [Din,Dout]). */
  readonly layers: readonly { readonly name: string; readonly shape: readonly number[] }[];
  readonly parameters: number;
  readonly hasClassifier: boolean;
  readonly loadSeconds: number;
}

export async function weightsInfo(file: string): Promise<WeightsInfo> {
  const t0 = performance.now();
  const w = await loadVgg19Weights(file);
  const loadSeconds = (performance.now() - t0) / 1000;
  const layers: { name: string; shape: readonly number[] }[] = [];
  let parameters = 0;
  for (const spec of VGG19_LAYERS) {
    const p = w.layers.get(spec.name);
    if (p?.kind !== 'conv' && p?.kind !== 'fc') continue;
    layers.push({ name: spec.name, shape: p.w.shape });
    parameters += p.w.size + p.b.size;
  }
  return { file, format: w.format, layout: w.layout, input: w.input, meanPixel: w.meanPixel, layers, parameters, hasClassifier: w.hasClassifier, loadSeconds };
}

const FORMAT_NAMES: Record<Vgg19Weights['format'], string> = {
  matconvnet: 'MatConvNet .mat',
  torchvision: 'torchvision state_dict (.pth)',
  caffe: 'Caffe NetParameter (.caffemodel)',
  keras: 'Keras HDF5 weights (.h5)',
  safetensors: 'safetensors',
  random: 'random',
};

/** "RGB / 255, minus (0.485, 0.456, 0.406), divided by (0.229, 0.224, 0.225)". */
export function describeInput(c: InputConvention): string {
  const list = (xs: readonly number[]) => `(${xs.map((x) => +x.toFixed(4)).join(', ')})`;
  const parts = [`${c.order}${c.divisor === 1 ? ' 0..255' : ` / ${c.divisor}`}`, `minus ${list(c.mean)}`];
  if (c.std.some((s) => s !== 1)) parts.push(`divided by ${list(c.std)}`);
  return parts.join(', ');
}

/** The report as lines of text. */
export function formatWeightsInfo(i: WeightsInfo): string[] {
  const convs = i.layers.filter((l) => l.name.startsWith('conv'));
  const fcs = i.layers.filter((l) => l.name.startsWith('fc'));
  const widths = convs.filter((l) => l.name.endsWith('_1')).map((l) => l.shape[3]).join(' ');
  const folded = i.format === 'matconvnet' || i.format === 'random' ? '' : `; folded into conv1_1, so Pastiche feeds RGB 0..255 minus (${i.meanPixel.map((m) => m.toFixed(3)).join(', ')})`;
  return [
    `file:        ${i.file}`,
    `format:      ${FORMAT_NAMES[i.format]}, ${i.layout}`,
    `input:       ${describeInput(i.input)}${folded}`,
    `features:    ${convs.length} convolutions (${convs[0]?.name}..${convs[convs.length - 1]?.name}), widths ${widths} by block`,
    fcs.length
      ? `classifier:  ${fcs.map((l) => `${l.name} ${l.shape[0]}->${l.shape[1]}`).join(', ')}`
      : 'classifier:  none (features only): enough for stylize, not for classify',
    `parameters:  ${i.parameters.toLocaleString('en-US')} (${((i.parameters * 4) / 1e6).toFixed(1)} MB as float32)`,
    `read in:     ${i.loadSeconds.toFixed(2)} s`,
  ];
}

export const CONVERT_DTYPES = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const satisfies Record<string, SafeDtype>;
export type ConvertDtype = keyof typeof CONVERT_DTYPES;

/**
 * Any weights file to a .safetensors in Pastiche's layouts (what the cache holds); float16 and
 * bfloat16 halve it and are widened back to float32 when read.
 */
export async function convertWeights(input: string, output: string, dtype: ConvertDtype = 'float32'): Promise<{ bytes: number; seconds: number }> {
  if (path.extname(output).toLowerCase() !== '.safetensors') throw new PasticheError(`${output}: the output must end in .safetensors`);
  checkWritableFile(output);
  const t0 = performance.now();
  const w = await loadVgg19Weights(input);
  await writeConvertedVgg19(output, w, CONVERT_DTYPES[dtype], { source: path.resolve(input) });
  return { bytes: statSync(output).size, seconds: (performance.now() - t0) / 1000 };
}

/** Whether a browser page can read this weights file: MatConvNet's (its MAT reader runs in browsers; the other readers need Node). */
export async function browserCanRead(file: string): Promise<boolean> {
  return (await detectFileFormat(file)) === 'matconvnet';
}
