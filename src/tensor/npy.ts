/**
 * numpy's .npy format (version 1.0-3.0), float32 and float64, C order: enough to exchange any
 * activation with numpy or PyTorch. https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import { promises as fs } from 'node:fs';
import { fileError, PasticheError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { checkReadableFile } from '../util/file-checks.js';
import { Tensor, sizeOf } from './tensor.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses .npy bytes into a float32 tensor. `name` is used in error messages. */
export function parseNpy(bytes: Uint8Array, name = 'npy'): Tensor {
  const bad = (problem: string) => fileError(name, `not a readable .npy file: ${problem}`);
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw bad('missing magic string');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw bad('truncated header');
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw bad(`unsupported version ${major}`);
  }
  if (start + headerLen > bytes.length) throw bad('truncated header');
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw bad('malformed header');
  }
  if (fortran === 'True') throw bad('Fortran-ordered arrays are not supported');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw bad(`bad shape ${JSON.stringify(`(${shapeText.slice(0, 60)})`)}`);
  const n = sizeOf(shape);
  const dataStart = start + headerLen;
  const item = descr === '<f4' ? 4 : descr === '<f8' ? 8 : 0;
  if (item === 0) throw bad(`unsupported dtype ${JSON.stringify(descr.slice(0, 40))} (only little-endian float32/float64: '<f4', '<f8')`);
  if (bytes.length - dataStart < n * item) throw bad('truncated data');
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = item === 4 ? view.getFloat32(dataStart + 4 * i, true) : view.getFloat64(dataStart + 8 * i, true);
  }
  return new Tensor(shape, out);
}

/** Serialises a tensor as a version-1.0 float32 .npy file. */
export function formatNpy(t: Tensor): Uint8Array {
  const dims = t.shape.length === 1 ? `${t.shape[0]},` : t.shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  // The data must start on a 64-byte boundary; the header ends with '\n'.
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const out = new Uint8Array(10 + header.length + 4 * t.size);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  const dv = new DataView(out.buffer, 10 + header.length);
  for (let i = 0; i < t.size; i++) dv.setFloat32(4 * i, t.data[i]!, true);
  return out;
}

export async function readNpy(file: string): Promise<Tensor> {
  checkReadableFile(file);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw fileError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return parseNpy(bytes, file);
}

export async function writeNpy(file: string, t: Tensor): Promise<void> {
  if (!file.endsWith('.npy')) throw new PasticheError(`${file}: the file name must end in .npy`);
  await writeFileAtomic(file, formatNpy(t));
}
