/**
 * A reader for MATLAB level-5 MAT-files (the format of MatConvNet's .mat models), written from
 * MathWorks' "MAT-File Format" specification: uncompressed and zlib-compressed (miCOMPRESSED)
 * elements, cells, structs, char (UTF-8, UTF-16, 8-bit), logical, single/double and the integer
 * classes, including numbers stored in a smaller type than their class (MATLAB stores whole-number
 * doubles as uint8 and the like).
 *
 * Memory: the file is read one top-level variable at a time, and numeric arrays are views into that
 * variable's bytes where alignment allows, so a 576 MB model costs one copy of its bytes while
 * parsing. Every size read from the file is checked against the bytes that actually exist before
 * anything is allocated, so a corrupt or hostile header cannot make the reader allocate gigabytes.
 *
 * The reader works on a MatSource (bytes by position, and zlib inflation), so that the same code
 * reads a file in Node (mat-file.ts) and a user's File in a browser (mat-blob.ts).
 */
import { fileError } from '../../errors.js';
import type { MatCell, MatChar, MatNumeric, MatStruct, MatValue, NumericClass, NumericData } from './mat-types.js';

/** The largest single element accepted (the real VGG19 file's largest is about 550 MB). */
export const MAX_ELEMENT_BYTES = 2 ** 31 - 1;

// Data types (miXXX) of the specification, table 1-1.
const mi = {
  INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9,
  INT64: 12, UINT64: 13, MATRIX: 14, COMPRESSED: 15, UTF8: 16, UTF16: 17, UTF32: 18,
} as const;

const MI_SIZE: Record<number, number> = {
  [mi.INT8]: 1, [mi.UINT8]: 1, [mi.INT16]: 2, [mi.UINT16]: 2, [mi.INT32]: 4, [mi.UINT32]: 4,
  [mi.SINGLE]: 4, [mi.DOUBLE]: 8, [mi.INT64]: 8, [mi.UINT64]: 8,
  [mi.UTF8]: 1, [mi.UTF16]: 2, [mi.UTF32]: 4,
};

// Array classes (mxXXX_CLASS), table 1-3.
const MX_NUMERIC: Record<number, NumericClass> = {
  6: 'double', 7: 'single', 8: 'int8', 9: 'uint8', 10: 'int16', 11: 'uint16',
  12: 'int32', 13: 'uint32', 14: 'int64', 15: 'uint64',
};
const MX_OTHER: Record<number, string> = { 3: 'object', 5: 'sparse', 16: 'function', 17: 'opaque' };
const MX_CELL = 1;
const MX_STRUCT = 2;
const MX_CHAR = 4;

/** Thrown for malformed content; the caller adds the file name. */
class MatFormatError extends Error {}

function fail(problem: string): never {
  throw new MatFormatError(problem);
}

/** A byte range of one element's payload, read with the file's byte order. */
class Cursor {
  readonly view: DataView;
  pos: number;

  constructor(
    readonly bytes: Uint8Array,
    readonly le: boolean,
    readonly base: number, // file offset of bytes[0], for messages
    start = 0,
    readonly end = bytes.length,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  where(): string {
    return `offset ${this.base + this.pos}`;
  }

  /** Reads one element tag (normal or small format) and returns its type and payload range. */
  tag(): { type: number; start: number; size: number; next: number } {
    if (this.remaining < 8) fail(`truncated element tag at ${this.where()}`);
    const first = this.view.getUint32(this.pos, this.le);
    const small = first >>> 16;
    if (small !== 0) {
      // Small data element: size and type share the first word, data in the next 4 bytes.
      if (small > 4) fail(`invalid small element size ${small} at ${this.where()}`);
      const start = this.pos + 4;
      return { type: first & 0xffff, start, size: small, next: this.pos + 8 };
    }
    const size = this.view.getUint32(this.pos + 4, this.le);
    const start = this.pos + 8;
    if (size > this.end - start) {
      fail(`element at ${this.where()} claims ${size} bytes but only ${this.end - start} remain (truncated or corrupt)`);
    }
    const padded = first === mi.COMPRESSED ? size : Math.ceil(size / 8) * 8;
    return { type: first, start, size, next: Math.min(start + padded, this.end) };
  }
}

function decodeNumbers(c: Cursor, type: number, start: number, size: number): NumericData {
  const width = MI_SIZE[type];
  if (!width || type === mi.UTF8 || type === mi.UTF16 || type === mi.UTF32) fail(`unexpected data type ${type} for numeric data at offset ${c.base + start}`);
  if (size % width !== 0) fail(`data of ${size} bytes is not a whole number of ${width}-byte values at offset ${c.base + start}`);
  const count = size / width;
  const abs = c.bytes.byteOffset + start;
  const ctor = {
    [mi.INT8]: Int8Array, [mi.UINT8]: Uint8Array, [mi.INT16]: Int16Array, [mi.UINT16]: Uint16Array,
    [mi.INT32]: Int32Array, [mi.UINT32]: Uint32Array, [mi.SINGLE]: Float32Array, [mi.DOUBLE]: Float64Array,
    [mi.INT64]: BigInt64Array, [mi.UINT64]: BigUint64Array,
  }[type]!;
  // Zero-copy view when the bytes are little-endian (as this machine) and aligned.
  if (c.le && abs % width === 0) return new ctor(c.bytes.buffer as ArrayBuffer, abs, count);
  const out = new ctor(count);
  const v = c.view;
  for (let i = 0; i < count; i++) {
    const o = start + i * width;
    switch (type) {
      case mi.INT8: out[i] = v.getInt8(o); break;
      case mi.UINT8: out[i] = v.getUint8(o); break;
      case mi.INT16: out[i] = v.getInt16(o, c.le); break;
      case mi.UINT16: out[i] = v.getUint16(o, c.le); break;
      case mi.INT32: out[i] = v.getInt32(o, c.le); break;
      case mi.UINT32: out[i] = v.getUint32(o, c.le); break;
      case mi.SINGLE: out[i] = v.getFloat32(o, c.le); break;
      case mi.DOUBLE: out[i] = v.getFloat64(o, c.le); break;
      case mi.INT64: (out as BigInt64Array)[i] = v.getBigInt64(o, c.le); break;
      case mi.UINT64: (out as BigUint64Array)[i] = v.getBigUint64(o, c.le); break;
    }
  }
  return out;
}

/** Converts stored numbers to the typed array of their MATLAB class (e.g. uint8 storage of a double). */
function toClass(data: NumericData, cls: NumericClass): NumericData {
  const ctor = {
    double: Float64Array, single: Float32Array, int8: Int8Array, uint8: Uint8Array, int16: Int16Array,
    uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  }[cls];
  if (data instanceof ctor) return data;
  const out = new ctor(data.length);
  const big = cls === 'int64' || cls === 'uint64';
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (big && typeof v === 'number' && !Number.isInteger(v)) fail(`a ${cls} array stores the value ${v}, which is not a whole number`);
    (out as unknown as (number | bigint)[])[i] = big ? BigInt(v) : Number(v);
  }
  return out;
}

function decodeText(c: Cursor, type: number, start: number, size: number): string {
  const bytes = c.bytes.subarray(start, start + size);
  switch (type) {
    case mi.UTF8:
      return new TextDecoder('utf-8').decode(bytes);
    case mi.UTF16:
    case mi.UINT16:
    case mi.INT16: {
      if (c.le) return new TextDecoder('utf-16le').decode(bytes);
      // Big-endian: swap each pair into a copy and decode that (spreading the code units into
      // String.fromCharCode overflows the stack for long texts).
      const swapped = new Uint8Array(bytes.length - (bytes.length % 2));
      for (let i = 0; i + 1 < bytes.length; i += 2) {
        swapped[i] = bytes[i + 1]!;
        swapped[i + 1] = bytes[i]!;
      }
      return new TextDecoder('utf-16le').decode(swapped);
    }
    case mi.UINT8:
    case mi.INT8:
      return new TextDecoder('latin1').decode(bytes);
    case mi.UTF32:
    case mi.UINT32:
    case mi.INT32: {
      const cps = decodeNumbers(c, mi.UINT32, start, size) as Uint32Array;
      let s = '';
      for (const cp of cps) s += String.fromCodePoint(cp <= 0x10ffff ? cp : 0xfffd);
      return s;
    }
    default:
      fail(`unexpected data type ${type} for char data at offset ${c.base + start}`);
  }
}

function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Parses the payload of one miMATRIX element (tag already consumed) spanning [start, end). */
function parseMatrix(c0: Cursor, start: number, end: number, depth: number): { name: string; value: MatValue } {
  if (depth > 64) fail('structures nested more than 64 deep');
  if (end === start) return { name: '', value: { kind: 'numeric', class: 'double', dims: [0, 0], data: new Float64Array(0), logical: false, complex: false } };
  const c = new Cursor(c0.bytes, c0.le, c0.base, start, end);

  const flagsTag = c.tag();
  if (flagsTag.type !== mi.UINT32 || flagsTag.size !== 8) fail(`array flags missing at ${c.where()}`);
  const flagWord = c.view.getUint32(flagsTag.start, c.le);
  const cls = flagWord & 0xff;
  const complex = (flagWord & 0x800) !== 0;
  const logical = (flagWord & 0x200) !== 0;
  c.pos = flagsTag.next;

  const dimsTag = c.tag();
  if (dimsTag.type !== mi.INT32 || dimsTag.size < 8 || dimsTag.size % 4 !== 0) fail(`dimensions missing at ${c.where()}`);
  const dims = Array.from(decodeNumbers(c, mi.INT32, dimsTag.start, dimsTag.size) as Int32Array);
  if (dims.some((d) => d < 0)) fail(`negative dimension [${dims.join(', ')}] at ${c.where()}`);
  c.pos = dimsTag.next;

  const nameTag = c.tag();
  if (nameTag.type !== mi.INT8 && nameTag.type !== mi.UINT8) fail(`array name missing at ${c.where()}`);
  const name = new TextDecoder('latin1').decode(c.bytes.subarray(nameTag.start, nameTag.start + nameTag.size));
  c.pos = nameTag.next;

  const count = product(dims);

  if (MX_NUMERIC[cls]) {
    const numClass = MX_NUMERIC[cls]!;
    const re = c.tag();
    const stored = decodeNumbers(c, re.type, re.start, re.size);
    if (stored.length !== count) {
      fail(`array '${name}' has dimensions [${dims.join(', ')}] (${count} values) but holds ${stored.length} values`);
    }
    // The imaginary part, if any, follows; it is not needed by Pastiche and is skipped.
    const value: MatNumeric = { kind: 'numeric', class: numClass, dims, data: toClass(stored, numClass), logical, complex };
    return { name, value };
  }

  if (cls === MX_CHAR) {
    const t = c.tag();
    const raw = decodeText(c, t.type, t.start, t.size);
    const chars = Array.from(raw);
    if (chars.length !== count) fail(`char array '${name}' has dimensions [${dims.join(', ')}] but holds ${chars.length} characters`);
    const rows = dims[0] ?? 0;
    const cols = rows === 0 ? 0 : count / rows;
    const lines: string[] = [];
    for (let r = 0; r < rows; r++) {
      let line = '';
      for (let k = 0; k < cols; k++) line += chars[r + rows * k]!;
      lines.push(line);
    }
    const value: MatChar = { kind: 'char', dims, text: lines.join('\n') };
    return { name, value };
  }

  if (cls === MX_CELL) {
    if (count * 8 > c.remaining) fail(`cell '${name}' claims ${count} elements but only ${c.remaining} bytes remain`);
    const items: MatValue[] = [];
    for (let i = 0; i < count; i++) items.push(parseChild(c, depth));
    const value: MatCell = { kind: 'cell', dims, items };
    return { name, value };
  }

  if (cls === MX_STRUCT) {
    const lenTag = c.tag();
    if (lenTag.type !== mi.INT32 || lenTag.size !== 4) fail(`struct '${name}': field name length missing at ${c.where()}`);
    const fieldLen = c.view.getInt32(lenTag.start, c.le);
    c.pos = lenTag.next;
    const namesTag = c.tag();
    if (fieldLen <= 0 || namesTag.size % fieldLen !== 0) fail(`struct '${name}': malformed field names at ${c.where()}`);
    const nFields = namesTag.size / fieldLen;
    const fields: string[] = [];
    for (let f = 0; f < nFields; f++) {
      const raw = c.bytes.subarray(namesTag.start + f * fieldLen, namesTag.start + (f + 1) * fieldLen);
      const z = raw.indexOf(0);
      fields.push(new TextDecoder('latin1').decode(z >= 0 ? raw.subarray(0, z) : raw));
    }
    c.pos = namesTag.next;
    if (count * nFields * 8 > c.remaining) fail(`struct '${name}' claims ${count}x${nFields} fields but only ${c.remaining} bytes remain`);
    const elements: Record<string, MatValue>[] = [];
    for (let i = 0; i < count; i++) {
      const rec: Record<string, MatValue> = Object.create(null);
      for (const f of fields) rec[f] = parseChild(c, depth);
      elements.push(rec);
    }
    const value: MatStruct = { kind: 'struct', dims, fields, elements };
    return { name, value };
  }

  const other = MX_OTHER[cls];
  if (other) return { name, value: { kind: 'unsupported', class: other, dims } };
  fail(`unknown array class ${cls} for '${name}'`);
}

function parseChild(c: Cursor, depth: number): MatValue {
  const t = c.tag();
  if (t.type !== mi.MATRIX) fail(`expected a matrix element at ${c.where()}, found type ${t.type}`);
  const { value } = parseMatrix(c, t.start, t.start + t.size, depth + 1);
  c.pos = t.next;
  return value;
}

/** Parses a whole top-level element held in `bytes` (its tag at 0). */
function parseTopElement(bytes: Uint8Array, le: boolean, base: number): { name: string; value: MatValue } {
  const c = new Cursor(bytes, le, base);
  const t = c.tag();
  if (t.type !== mi.MATRIX) fail(`expected a matrix element at offset ${base}, found type ${t.type}`);
  return parseMatrix(c, t.start, t.start + t.size, 0);
}

export interface MatHeader {
  readonly text: string;
  readonly littleEndian: boolean;
}

export interface ReadMatOptions {
  /** Read only these top-level variables; the others are skipped without being read or inflated. */
  readonly only?: ReadonlySet<string>;
  /**
   * The most bytes a variable may take once read (inflated), by name; others get
   * MAX_ELEMENT_BYTES. A reader that knows what it expects bounds what a hostile file can make it
   * allocate.
   */
  readonly maxBytes?: ReadonlyMap<string, number>;
}

/** Where a MAT-file's bytes come from. */
export interface MatSource {
  /** The file's name, for messages. */
  readonly name: string;
  readonly size: number;
  /** `length` bytes at `position` (fewer only where the file ends). */
  read(position: number, length: number): Promise<Uint8Array>;
  /**
   * The zlib stream stored at [position, position + length), inflated, as chunks. Stopping the
   * iteration early must release whatever it holds.
   */
  inflate(position: number, length: number): AsyncIterable<Uint8Array>;
}

const latin1 = (bytes: Uint8Array) => new TextDecoder('latin1').decode(bytes);

/**
 * Reads the top-level variables of a MAT-file. Errors are PasticheErrors naming the file.
 */
export async function readMat(source: MatSource, options: ReadMatOptions = {}): Promise<{ header: MatHeader; variables: Map<string, MatValue> }> {
  const file = source.name;
  const fileSize = source.size;
  const head = await source.read(0, 128);
  const text = latin1(head.subarray(0, 116)).replace(/[\s\0]+$/, '');
  const endian = latin1(head.subarray(126, 128));
  // MATLAB's v7.3 files are HDF5 behind a 512-byte user block that starts with a level-5-looking
  // header: the text says 7.3 and the version word is 0x0200 (level 5: 0x0100).
  const version = head.length >= 128 ? new DataView(head.buffer, head.byteOffset + 124, 2).getUint16(0, endian !== 'MI') : 0;
  if (text.startsWith('MATLAB 7.3') || (version === 0x0200 && text.startsWith('MATLAB')) || latin1(head.subarray(0, 8)) === '\x89HDF\r\n\x1a\n') {
    throw fileError(file, "is a MATLAB v7.3 (HDF5) file, which Pastiche does not read: re-save it in MATLAB with save(..., '-v7'), or use the MatConvNet download");
  }
  if (head.length < 128 || !text.startsWith('MATLAB') || (endian !== 'IM' && endian !== 'MI')) {
    throw fileError(file, 'not a MATLAB level-5 .mat file (bad header)');
  }
  const le = endian === 'IM';
  const limitOf = (name: string | undefined) => (name !== undefined ? options.maxBytes?.get(name) : undefined) ?? MAX_ELEMENT_BYTES;
  const variables = new Map<string, MatValue>();
  let pos = 128;
  while (pos + 8 <= fileSize) {
    const tagBytes = await source.read(pos, 8);
    const dv = new DataView(tagBytes.buffer, tagBytes.byteOffset, 8);
    const type = dv.getUint32(0, le);
    const size = dv.getUint32(4, le);
    if (size > fileSize - pos - 8) {
      throw fileError(file, `truncated: the element at offset ${pos} claims ${size} bytes but the file ends after ${fileSize - pos - 8}`);
    }
    const next = pos + 8 + (type === mi.COMPRESSED ? size : Math.ceil(size / 8) * 8);
    let element: Uint8Array;
    let base = pos;
    if (type === mi.COMPRESSED) {
      const inflated = await inflateElement(source, pos + 8, size, le, (name) => {
        if (options.only && name !== undefined && !options.only.has(name)) return 'skip';
        return limitOf(name);
      });
      if (inflated === 'skipped') {
        pos = next;
        continue;
      }
      element = inflated;
      base = pos + 8; // offsets in messages are then inside the decompressed stream
    } else if (type === mi.MATRIX) {
      const peek = peekName(await source.read(pos, 8 + Math.min(size, 256)), pos, le);
      if (options.only && peek !== undefined && !options.only.has(peek)) {
        pos = next;
        continue;
      }
      if (size > limitOf(peek)) throw fileError(file, `corrupt .mat: variable '${peek}' at offset ${pos} claims ${size} bytes, more than the ${limitOf(peek)} it can need`);
      element = await source.read(pos, 8 + size);
      if (element.length < 8 + size) throw fileError(file, 'unexpected end of file');
    } else {
      throw fileError(file, `unexpected top-level element of type ${type} at offset ${pos} (corrupt file?)`);
    }
    try {
      const { name, value } = parseTopElement(element, le, base);
      if (!options.only || options.only.has(name)) {
        // A second variable of the same name would silently replace the first (and hold both).
        if (variables.has(name)) fail(`variable '${name}' appears twice`);
        variables.set(name, value);
      }
    } catch (e) {
      if (e instanceof MatFormatError) throw fileError(file, `corrupt .mat: ${e.message}`);
      throw e;
    }
    pos = next;
  }
  return { header: { text, littleEndian: le }, variables };
}

/** The variable name of an uncompressed top-level matrix, from its first bytes. */
function peekName(buf: Uint8Array, pos: number, le: boolean): string | undefined {
  try {
    const c = new Cursor(buf, le, pos, 8);
    c.pos = c.tag().next; // flags
    c.pos = c.tag().next; // dims
    const t = c.tag();
    return latin1(buf.subarray(t.start, t.start + t.size));
  } catch {
    return undefined;
  }
}

/**
 * Inflates a miCOMPRESSED element without holding its compressed bytes in memory. As soon as the
 * inner element's name is known, `admit` says whether to skip it (nothing more is inflated) or
 * how many bytes it may take. The buffer grows with what actually arrives, up to the size the
 * inner tag claims: a small file that claims gigabytes costs what it really inflates to, and
 * output beyond the claim (a zip bomb) or the limit stops the inflation at once.
 */
async function inflateElement(
  source: MatSource,
  start: number,
  size: number,
  le: boolean,
  admit: (name: string | undefined) => number | 'skip',
): Promise<Uint8Array | 'skipped'> {
  const file = source.name;
  let out = new Uint8Array(0);
  let written = 0;
  let claimed = -1; // the inner element's size with its tag, once known
  let limit = MAX_ELEMENT_BYTES;
  let decided = false;
  let problem: string | undefined;
  let skipped = false;
  const append = (chunk: Uint8Array) => {
    const need = written + chunk.length;
    if (need > out.length) {
      // Real weights barely compress (about 1.1:1), so 8x the compressed size takes a real file in
      // one allocation while a bomb (up to 1000:1) has to deliver before it is given more.
      const cap = claimed >= 0 ? claimed : MAX_ELEMENT_BYTES + 8;
      const grown = new Uint8Array(Math.min(cap, Math.max(need, 2 * out.length, 8 * size, 1 << 16)));
      grown.set(out.subarray(0, written));
      out = grown;
    }
    out.set(chunk, written);
    written = need;
  };
  try {
    for await (const chunk of source.inflate(start, size)) {
      if (claimed < 0 && written + chunk.length >= 8) {
        const head = new Uint8Array(8);
        head.set(out.subarray(0, Math.min(written, 8)));
        if (written < 8) head.set(chunk.subarray(0, 8 - written), written);
        const inner = new DataView(head.buffer).getUint32(4, le);
        if (inner > MAX_ELEMENT_BYTES) {
          problem = `a compressed element claims ${inner} bytes, more than the ${MAX_ELEMENT_BYTES} accepted`;
          break;
        }
        claimed = 8 + inner;
      }
      // Keep only what the claim allows (zlib pads the last block); more than that is a bomb.
      if (claimed >= 0 && written + chunk.length > claimed + 8) {
        problem = 'a compressed element inflates to more bytes than it claims';
        break;
      }
      append(claimed >= 0 ? chunk.subarray(0, Math.max(0, Math.min(chunk.length, claimed - written))) : chunk);
      if (!decided && claimed >= 0 && (written >= Math.min(claimed, 8 + 256))) {
        decided = true;
        const name = peekName(out.subarray(0, written), start, le);
        const verdict = admit(name);
        if (verdict === 'skip') {
          skipped = true;
          break;
        }
        limit = verdict;
        if (claimed - 8 > limit) {
          problem = `variable '${name}' claims ${claimed - 8} bytes, more than the ${limit} it can need`;
          break;
        }
      }
    }
  } catch (e) {
    throw fileError(file, `corrupt .mat: compressed data at offset ${start - 8} is damaged (${zlibReason(e)})`);
  }
  if (skipped) return 'skipped';
  if (problem) throw fileError(file, `corrupt .mat: ${problem}`);
  if (claimed < 0 || written < claimed) {
    throw fileError(file, `corrupt .mat: compressed data at offset ${start - 8} ends early (truncated file?)`);
  }
  return out.length === claimed ? out : out.subarray(0, claimed);
}

/** zlib's reason in words, without Node's error decoration. */
function zlibReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const msg = (err?.message ?? String(e)).split('\n')[0]!.replace(/[\s:]+$/, '');
  return msg || err?.code || 'unknown zlib error';
}
