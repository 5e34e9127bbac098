/**
 * PyTorch's torch.save files, both serialisations, read without running Python or any of the file's
 * code (pickle.ts):
 * - zip (PyTorch >= 1.6): PREFIX/data.pkl, one record per storage at PREFIX/data/KEY;
 * - legacy (before 1.6, e.g. torchvision's 2017-era checkpoints): five pickles in a row (magic
 *   number, protocol version, system info, the object, the storage keys), then each storage as an
 *   int64 element count and its bytes, in key order (torch/serialization.py, _legacy_save).
 */
import { PasticheError } from '../../errors.js';
import { asStateDict, PickleError, storageDtype, unpickle, type PickleValue, type StorageDtype, type StorageRef, type TensorRef } from './pickle.js';
import { isZip, zipDirectory, zipRead, ZipError } from './zip.js';

/** A tensor of a state_dict, as float32 values in row-major order. */
export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  /** What the file stored (float16 and bfloat16 are widened exactly). */
  readonly dtype: StorageDtype;
}

export interface StateDict {
  readonly tensors: Map<string, NamedTensor>;
  readonly serialisation: 'zip' | 'legacy' | 'safetensors';
}

const ELEMENT: Record<StorageDtype, number> = { float32: 4, float16: 2, bfloat16: 2, float64: 8, int64: 8, int32: 4, uint8: 1, bool: 1 };
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** Whether the bytes start like a legacy torch.save file (a protocol-2 pickle of the magic number). */
export function isLegacyTorch(bytes: Uint8Array): boolean {
  return bytes.length > 4 && bytes[0] === 0x80 && bytes[1] === 0x02 && bytes[2] === 0x8a && bytes[3] === 0x0a;
}

export function isTorchFile(bytes: Uint8Array): boolean {
  return isLegacyTorch(bytes) || isZip(bytes);
}

function storageRef(id: readonly PickleValue[], legacy: boolean): StorageRef {
  const [tag, type, key, , numel, view] = id;
  const dtype = storageDtype(type);
  if (tag !== 'storage' || !dtype || typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
    throw new PickleError('a persistent id that is not a tensor storage');
  }
  if (legacy && view !== null && view !== undefined) throw new PickleError('a storage view (not written by state_dict saving)');
  return { kind: 'storage', dtype, key, numel };
}

/** Reads the state_dict in a torch.save file; errors are one line naming `file`. */
export function readTorchStateDict(bytes: Uint8Array, file: string): StateDict {
  try {
    return isZip(bytes) ? readZip(bytes) : readLegacy(bytes);
  } catch (e) {
    if (e instanceof PickleError || e instanceof ZipError) throw new PasticheError(`${file}: ${e.message}`);
    throw e;
  }
}

function readZip(bytes: Uint8Array): StateDict {
  const dir = zipDirectory(bytes);
  const pkl = [...dir.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw new ZipError('a ZIP archive without data.pkl: not a torch.save file');
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const order = dir.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(zipRead(bytes, order)).trim() !== 'little') throw new ZipError('a big-endian torch file (re-save it on a little-endian machine)');
  const { value } = unpickle(zipRead(bytes, dir.get(pkl)!), 0, { persistentLoad: (id) => storageRef(id, false) });
  const state = asStateDict(value);
  const tensors = new Map<string, NamedTensor>();
  for (const [name, t] of state) {
    const entry = dir.get(`${prefix}data/${t.storage.key}`);
    if (!entry) throw new ZipError(`${name}: its storage ${t.storage.key} is missing from the archive`);
    tensors.set(name, materialise(name, t, zipRead(bytes, entry)));
  }
  return { tensors, serialisation: 'zip' };
}

function readLegacy(bytes: Uint8Array): StateDict {
  const magic = unpickle(bytes, 0);
  if (magic.value !== LEGACY_MAGIC) throw new PickleError('not a torch.save file (no magic number)');
  const version = unpickle(bytes, magic.end);
  if (version.value !== 1001) throw new PickleError(`legacy protocol version ${String(version.value)} (1001 is read)`);
  const info = unpickle(bytes, version.end);
  if (info.value instanceof Map && info.value.get('little_endian') === false) throw new PickleError('a big-endian torch file (re-save it on a little-endian machine)');
  const storages = new Map<string, StorageRef>();
  const main = unpickle(bytes, info.end, {
    persistentLoad: (id) => {
      const ref = storageRef(id, true);
      storages.set(ref.key, ref);
      return ref;
    },
  });
  const keys = unpickle(bytes, main.end);
  if (!Array.isArray(keys.value) || !keys.value.every((k) => typeof k === 'string')) throw new PickleError('the storage key list is not a list of names');
  // The storages follow in the order of that list, each as (int64 count, bytes).
  const data = new Map<string, Uint8Array>();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = keys.end;
  for (const key of keys.value as string[]) {
    const ref = storages.get(key);
    if (p + 8 > bytes.length) throw new PickleError(`the file ends before storage ${key}`);
    const count = Number(v.getBigInt64(p, true));
    const length = count * (ref ? ELEMENT[ref.dtype] : 0);
    if (!ref || count !== ref.numel || p + 8 + length > bytes.length) throw new PickleError(`storage ${key} does not match its description or runs past the file's end`);
    data.set(key, bytes.subarray(p + 8, p + 8 + length));
    p += 8 + length;
  }
  const state = asStateDict(main.value);
  const tensors = new Map<string, NamedTensor>();
  for (const [name, t] of state) {
    const raw = data.get(t.storage.key);
    if (!raw) throw new PickleError(`${name}: its storage ${t.storage.key} is missing`);
    tensors.set(name, materialise(name, t, raw));
  }
  return { tensors, serialisation: 'legacy' };
}

/** The tensor's values in row-major order as float32, honouring its offset and strides. */
function materialise(name: string, t: TensorRef, raw: Uint8Array): NamedTensor {
  const { dtype, numel } = t.storage;
  if (raw.length < numel * ELEMENT[dtype]) throw new PickleError(`${name}: its storage holds ${raw.length} bytes, not the ${numel * ELEMENT[dtype]} it says`);
  const size = t.shape.reduce((a, b) => a * b, 1);
  const last = t.offset + t.shape.reduce((s, n, i) => s + (n - 1) * t.stride[i]!, 0);
  if (size > 0 && last >= numel) throw new PickleError(`${name}: shape [${t.shape.join(', ')}] reaches past its storage`);
  const contiguous = t.stride.every((s, i) => s === t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  if (contiguous && dtype === 'float32') {
    // The common case, at memory speed: a view when aligned (torch's zip records are), else a copy.
    const at = raw.byteOffset + 4 * t.offset;
    if (at % 4 === 0) return { shape: t.shape, data: new Float32Array(raw.buffer, at, size), dtype };
    const data = new Float32Array(size);
    new Uint8Array(data.buffer).set(raw.subarray(4 * t.offset, 4 * (t.offset + size)));
    return { shape: t.shape, data, dtype };
  }
  const get = elementReader(dtype, raw);
  const out = new Float32Array(size);
  // Row-major walk over the shape.
  if (contiguous) {
    for (let i = 0; i < size; i++) out[i] = get(t.offset + i);
  } else {
    const idx = new Array<number>(t.shape.length).fill(0);
    for (let i = 0; i < size; i++) {
      let at = t.offset;
      for (let d = 0; d < idx.length; d++) at += idx[d]! * t.stride[d]!;
      out[i] = get(at);
      for (let d = idx.length - 1; d >= 0 && ++idx[d]! === t.shape[d]; d--) idx[d] = 0;
    }
  }
  return { shape: t.shape, data: out, dtype };
}

function elementReader(dtype: StorageDtype, raw: Uint8Array): (i: number) => number {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case 'float32':
      return (i) => v.getFloat32(4 * i, true);
    case 'float64':
      return (i) => v.getFloat64(8 * i, true);
    case 'float16':
      return (i) => halfToFloat(v.getUint16(2 * i, true));
    case 'bfloat16': {
      const f = new DataView(new ArrayBuffer(4));
      return (i) => (f.setUint32(0, v.getUint16(2 * i, true) << 16, true), f.getFloat32(0, true));
    }
    case 'int64':
      return (i) => Number(v.getBigInt64(8 * i, true));
    case 'int32':
      return (i) => v.getInt32(4 * i, true);
    case 'uint8':
    case 'bool':
      return (i) => raw[i]!;
  }
}

/** IEEE 754 binary16 -> number, exactly. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

