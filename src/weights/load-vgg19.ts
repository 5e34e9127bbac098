/**
 * Loading VGG19 weights from disk (Node), whichever form they come in: MatConvNet's .mat (both
 * layouts), torchvision's .pth (zip and legacy), Keras' .h5, Caffe's .caffemodel. The format is
 * told by the file's first bytes, not its name; each reader turns it into the same Vgg19Weights.
 */
import { promises as fs } from 'node:fs';
import { PasticheError } from '../errors.js';
import { checkReadableFile } from '../util/file-checks.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { readMatFile } from './mat/mat-file.js';
import { VGG19_MAT_LIMITS, VGG19_MAT_VARIABLES, vgg19FromMat } from './matconvnet.js';
import { isTorchFile, readTorchStateDict } from './torch/pth.js';
import { vgg19FromStateDict } from './torchvision.js';
import { parseSafetensors } from './safetensors.js';
import { populate, readWholeFile } from './read-file.js';
import { isConvertedVgg19, loadThroughCache, vgg19FromConverted, type CacheOptions } from './weights-cache.js';

export type DetectedFormat = 'matconvnet' | 'torch' | 'hdf5' | 'caffe' | 'safetensors' | 'unknown';

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** The format by the first bytes (and, for the one format without a signature, the name). */
export function detectFormat(head: Uint8Array, file: string): DetectedFormat {
  const text = new TextDecoder('latin1').decode(head.subarray(0, 16));
  if (text.startsWith('MATLAB')) return 'matconvnet';
  if (isTorchFile(head)) return 'torch';
  if (HDF5_SIGNATURE.every((b, i) => head[i] === b)) return 'hdf5';
  // safetensors: an 8-byte little-endian header length, then the JSON header.
  if (head.length >= 9 && head[8] === 0x7b && head[6] === 0 && head[7] === 0) return 'safetensors';
  // A protobuf has no signature: a NetParameter starts with field 1 (name), 2 (V1 layers) or 100 (layer).
  if (/\.caffemodel$/i.test(file) || head[0] === 0x0a || head[0] === 0x12 || (head[0] === 0xa2 && head[1] === 0x06)) return 'caffe';
  return 'unknown';
}

/** The format of a file on disk, by its first bytes. */
export async function detectFileFormat(file: string): Promise<DetectedFormat> {
  return detectFormat(await readHead(file), file);
}

async function readHead(file: string): Promise<Uint8Array> {
  const handle = await fs.open(file, 'r');
  try {
    const head = Buffer.alloc(16);
    const { bytesRead } = await handle.read(head, 0, 16, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

export interface LoadWeightsOptions {
  /** Read big files through converted copies in this cache (weights-cache.ts); absent: read the file itself. */
  readonly cache?: CacheOptions;
  /**
   * false: the features only (the convolutions and pools, hasClassifier false), what style transfer
   * needs; a mapped file's fc6-fc8 (494 of VGG19's 575 MB) are then never read into memory.
   */
  readonly classifier?: boolean;
}

/** Reads VGG19 weights in any supported form. Errors are one-line PasticheErrors naming the file. */
export async function loadVgg19Weights(file: string, o: LoadWeightsOptions = {}): Promise<Vgg19Weights> {
  checkReadableFile(file);
  const lazy = o.classifier === false;
  const read = (f: string) => readWeightsFile(f, lazy);
  const w = o.cache ? await loadThroughCache(file, o.cache, read, lazy) : await read(file);
  return lazy ? featuresOnly(w) : w;
}

/** The convolutions and pools of `w`, their pages mapped now (the file was mapped lazily). */
function featuresOnly(w: Vgg19Weights): Vgg19Weights {
  const layers = new Map([...w.layers].filter(([, p]) => p.kind !== 'fc'));
  for (const p of layers.values()) if (p.kind === 'conv') for (const t of [p.w, p.b]) populate(t.data);
  return { ...w, layers, hasClassifier: false };
}

/** `lazy`: a mapped file's pages are left for the caller to populate (readWholeFile). */
async function readWeightsFile(file: string, lazy = false): Promise<Vgg19Weights> {
  switch (await detectFileFormat(file)) {
    case 'matconvnet':
      return loadMatConvNetVgg19(file);
    case 'torch':
      return vgg19FromStateDict(readTorchStateDict(await readWholeFile(file, lazy), file), file);
    case 'hdf5':
      return (await import('./keras.js')).loadKerasVgg19(file); // h5wasm's WebAssembly only when needed
    case 'caffe':
      return (await import('./caffe.js')).loadCaffeVgg19(file);
    case 'safetensors': {
      // Pastiche's own converted files, or a torchvision state_dict saved as safetensors.
      const f = parseSafetensors(await readWholeFile(file, lazy), file);
      if (isConvertedVgg19(f)) return vgg19FromConverted(f, file);
      const tensors = new Map([...f.tensors].map(([k, t]) => [k, { ...t, dtype: 'float32' as const }]));
      return vgg19FromStateDict({ tensors, serialisation: 'safetensors' }, file);
    }
    default:
      // A .mat that does not start like one: the MAT reader says what is wrong with it.
      if (/\.mat$/i.test(file)) return loadMatConvNetVgg19(file);
      throw new PasticheError(
        `${file}: not a VGG19 weights file Pastiche reads (MatConvNet .mat, torchvision .pth, Keras .h5, Caffe .caffemodel, .safetensors)`,
      );
  }
}

/** Reads a MatConvNet VGG19 file in either layout. */
export async function loadMatConvNetVgg19(file: string): Promise<Vgg19Weights> {
  const { variables } = await readMatFile(file, { only: VGG19_MAT_VARIABLES, maxBytes: VGG19_MAT_LIMITS });
  return vgg19FromMat(variables, file);
}
