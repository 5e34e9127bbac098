/**
 * Converted weights: any source's VGG19 saved as safetensors in the layouts Pastiche computes in, so
 * that a later run reads it in a fraction of a second (a float32 tensor is a view of the file's
 * bytes: no parsing, no transposing). On first use of a big source file, loadVgg19Weights writes
 * one to the cache and later runs read that instead, for as long as the source is unchanged (same
 * size, modification time and a fingerprint of its first and last MiB).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PasticheError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import type { InputConvention, LayerWeights, Vgg19Weights, WeightsFormat } from '../model/vgg19-params.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import { readWholeFile } from './read-file.js';
import { parseSafetensors, type SafeDtype, type SafeTensor, type SafetensorsFile } from './safetensors.js';
import { writeSafetensors } from './safetensors-file.js';

/** Bumped when the layout of the converted file changes: older caches are then rebuilt. */
const VERSION = '1';

export async function writeConvertedVgg19(file: string, w: Vgg19Weights, dtype: SafeDtype = 'F32', source: Record<string, string> = {}): Promise<void> {
  const tensors = new Map<string, SafeTensor>();
  const pools: Record<string, { kernel: number; stride: number; pad: number }> = {};
  for (const spec of VGG19_LAYERS) {
    const p = w.layers.get(spec.name);
    if (p?.kind === 'pool') pools[spec.name] = { kernel: p.kernel, stride: p.stride, pad: p.pad };
    if (p?.kind !== 'conv' && p?.kind !== 'fc') continue;
    tensors.set(`${spec.name}.weight`, { shape: p.w.shape, data: p.w.data });
    tensors.set(`${spec.name}.bias`, { shape: p.b.shape, data: p.b.data });
  }
  await writeSafetensors(file, tensors, {
    pastiche: VERSION,
    format: w.format,
    layout: w.layout,
    input: JSON.stringify(w.input),
    meanPixel: JSON.stringify(w.meanPixel),
    hasClassifier: String(w.hasClassifier),
    pools: JSON.stringify(pools),
    classes: JSON.stringify(w.classes),
    ...source,
  }, dtype);
}

/** Whether a parsed safetensors file is one of Pastiche's converted VGG19s. */
export function isConvertedVgg19(f: SafetensorsFile): boolean {
  return f.metadata['pastiche'] !== undefined;
}

export function vgg19FromConverted(f: SafetensorsFile, file: string): Vgg19Weights {
  const m = f.metadata;
  if (m['pastiche'] !== VERSION) throw new PasticheError(`${file}: converted by another version of Pastiche (${m['pastiche']}); convert it again`);
  const json = <T>(key: string): T => {
    try {
      return JSON.parse(m[key] ?? '') as T;
    } catch {
      throw new PasticheError(`${file}: its metadata '${key}' is damaged`);
    }
  };
  const pools = json<Record<string, { kernel: number; stride: number; pad: number }>>('pools');
  const layers = new Map<string, LayerWeights>();
  for (const spec of VGG19_LAYERS) {
    if (spec.kind === 'pool') {
      const p = pools[spec.name];
      if (!p) throw new PasticheError(`${file}: ${spec.name} is missing`);
      layers.set(spec.name, { kind: 'pool', method: 'max', kernel: p.kernel, stride: p.stride, pad: p.pad });
    }
    if (spec.kind !== 'conv' && spec.kind !== 'fc') continue;
    const w = f.tensors.get(`${spec.name}.weight`);
    const b = f.tensors.get(`${spec.name}.bias`);
    if (!w || !b) {
      if (spec.kind === 'fc' && m['hasClassifier'] === 'false') continue;
      throw new PasticheError(`${file}: ${spec.name} is missing`);
    }
    const wt = new Tensor(w.shape, w.data);
    const bt = new Tensor(b.shape, b.data);
    layers.set(spec.name, spec.kind === 'conv' ? { kind: 'conv', w: wt, b: bt, pad: 1, stride: 1 } : { kind: 'fc', w: wt, b: bt });
  }
  return {
    layers,
    meanPixel: json<[number, number, number]>('meanPixel'),
    classes: json<string[]>('classes'),
    source: file,
    format: (m['format'] ?? 'safetensors') as WeightsFormat,
    layout: `${m['layout']}, converted${f.dtype === 'F32' ? '' : ` to ${f.dtype}`}`,
    input: json<InputConvention>('input'),
    hasClassifier: m['hasClassifier'] !== 'false',
  };
}

/** What identifies a source file's contents cheaply: size, modification time, first and last MiB. */
async function fingerprint(file: string): Promise<Record<string, string>> {
  const st = await fs.stat(file);
  const handle = await fs.open(file, 'r');
  try {
    const span = Math.min(st.size, 2 ** 20);
    const head = Buffer.alloc(span);
    const tail = Buffer.alloc(span);
    await handle.read(head, 0, span, 0);
    await handle.read(tail, 0, span, st.size - span);
    const hash = createHash('sha256').update(head).update(tail).digest('hex');
    return { sourceSize: String(st.size), sourceMtimeMs: String(Math.floor(st.mtimeMs)), sourceFingerprint: hash };
  } finally {
    await handle.close();
  }
}

export interface CacheOptions {
  /** The folder converted files go to. */
  readonly dir: string;
  /** Sources smaller than this are read directly (they load fast anyway). */
  readonly minBytes: number;
  /** A cache that could not be used or written: said once, the run goes on. */
  readonly onWarning?: (message: string) => void;
}

/**
 * The weights of `file` through the cache: the converted file when it matches the source, else
 * `read(file)` and a new converted file (written atomically: concurrent first runs each write a
 * whole file and the last rename wins). `lazy`: the converted file is mapped without its pages
 * (readWholeFile), for a caller that keeps part of it.
 */
export async function loadThroughCache(file: string, o: CacheOptions, read: (file: string) => Promise<Vgg19Weights>, lazy = false): Promise<Vgg19Weights> {
  const st = await fs.stat(file);
  if (st.size < o.minBytes) return read(file);
  const real = await fs.realpath(file);
  const cached = path.join(o.dir, `${path.basename(file).replace(/[^\w.-]/g, '_')}-${createHash('sha256').update(real).digest('hex').slice(0, 12)}.safetensors`);
  const id = await fingerprint(file);
  const bytes = await readWholeFile(cached, lazy).catch(() => undefined);
  if (bytes) {
    try {
      const f = parseSafetensors(bytes, cached);
      if (Object.entries(id).every(([k, v]) => f.metadata[k] === v)) return { ...vgg19FromConverted(f, cached), source: file };
    } catch (e) {
      o.onWarning?.(`the converted weights ${cached} are damaged (${(e as Error).message.replace(`${cached}: `, '')}); converting again`);
    }
  }
  const w = await read(file);
  try {
    await fs.mkdir(o.dir, { recursive: true });
    await writeConvertedVgg19(cached, w, 'F32', { ...id, source: real });
  } catch (e) {
    o.onWarning?.(`cannot keep converted weights in ${o.dir} (${(e as Error).message}); the next run reads ${file} again`);
  }
  return w;
}
