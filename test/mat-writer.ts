/**
 * A small MAT level-5 writer for tests: re-serialises values the way MATLAB itself writes them
 * (UTF-16 chars, whole-number doubles stored as uint8, compressed variables, big-endian files), so
 * the reader is tested on what MATLAB writes and scipy does not. Not part of the library.
 */
import { deflateSync } from 'node:zlib';
import type { MatValue } from '../src/weights/mat/mat-types.js';

export interface WriterOptions {
  readonly littleEndian?: boolean;
  readonly chars?: 'utf8' | 'utf16' | 'uint16';
  /** Store doubles that are whole numbers in 0..255 as miUINT8, as MATLAB does. */
  readonly shrinkWholeDoubles?: boolean;
  readonly compress?: boolean;
  /** Store a class's values as another data type (MATLAB may store an int64 array's values as doubles). */
  readonly storeAs?: Readonly<Record<string, string>>;
}

const CLASS_CODE: Record<string, number> = {
  cell: 1, struct: 2, char: 4, double: 6, single: 7, int8: 8, uint8: 9, int16: 10, uint16: 11, int32: 12, uint32: 13,
  int64: 14, uint64: 15,
};
const MI: Record<string, [number, number]> = {
  double: [9, 8], single: [7, 4], int8: [1, 1], uint8: [2, 1], int16: [3, 2], uint16: [4, 2], int32: [5, 4], uint32: [6, 4],
};

class Writer {
  constructor(private readonly o: WriterOptions) {}
  get le(): boolean {
    return this.o.littleEndian ?? true;
  }

  element(type: number, data: Uint8Array): Uint8Array {
    if (data.length <= 4 && data.length > 0 && type !== 14) {
      const out = new Uint8Array(8);
      const dv = new DataView(out.buffer);
      dv.setUint32(0, (data.length << 16) | type, this.le);
      out.set(data, 4);
      return out;
    }
    const padded = Math.ceil(data.length / 8) * 8;
    const out = new Uint8Array(8 + padded);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, type, this.le);
    dv.setUint32(4, data.length, this.le);
    out.set(data, 8);
    return out;
  }

  numbers(type: string, values: ArrayLike<number>): Uint8Array {
    return this.element(MI[type]![0], this.raw(type, values));
  }

  raw(type: string, values: ArrayLike<number>): Uint8Array {
    const width = MI[type]![1];
    const bytes = new Uint8Array(values.length * width);
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      const o = i * width;
      switch (type) {
        case 'double': dv.setFloat64(o, v, this.le); break;
        case 'single': dv.setFloat32(o, v, this.le); break;
        case 'int8': dv.setInt8(o, v); break;
        case 'uint8': dv.setUint8(o, v); break;
        case 'int16': dv.setInt16(o, v, this.le); break;
        case 'uint16': dv.setUint16(o, v, this.le); break;
        case 'int32': dv.setInt32(o, v, this.le); break;
        case 'uint32': dv.setUint32(o, v, this.le); break;
      }
    }
    return bytes;
  }

  matrix(name: string, v: MatValue): Uint8Array {
    const parts: Uint8Array[] = [];
    const cls = v.kind === 'numeric' ? v.class : v.kind;
    const flags = (CLASS_CODE[cls] ?? 0) | (v.kind === 'numeric' && v.logical ? 0x200 : 0);
    parts.push(this.numbers('uint32', [flags, 0]));
    parts.push(this.numbers('int32', v.dims));
    parts.push(this.element(1, new TextEncoder().encode(name)));
    switch (v.kind) {
      case 'numeric': {
        const values = Array.from(v.data as ArrayLike<number>);
        const whole = values.every((x) => Number.isInteger(x) && x >= 0 && x <= 255);
        const type = this.o.storeAs?.[v.class] ?? (v.class === 'double' && this.o.shrinkWholeDoubles && whole ? 'uint8' : v.class);
        parts.push(this.numbers(type, values));
        break;
      }
      case 'char': {
        const enc = this.o.chars ?? 'utf8';
        const codes = Array.from(v.text, (c) => c.charCodeAt(0));
        if (enc === 'utf8') parts.push(this.element(16, new TextEncoder().encode(v.text)));
        else parts.push(this.element(enc === 'utf16' ? 17 : 4, this.raw('uint16', codes)));
        break;
      }
      case 'cell':
        for (const item of v.items) parts.push(this.matrix('', item));
        break;
      case 'struct': {
        const len = Math.max(...v.fields.map((f) => f.length)) + 1;
        parts.push(this.numbers('int32', [len]));
        const names = new Uint8Array(len * v.fields.length);
        v.fields.forEach((f, i) => names.set(new TextEncoder().encode(f), i * len));
        parts.push(this.element(1, names));
        for (const el of v.elements) for (const f of v.fields) parts.push(this.matrix('', el[f]!));
        break;
      }
      case 'unsupported':
        throw new Error('cannot write unsupported values');
    }
    const body = concat(parts);
    const out = new Uint8Array(8 + body.length);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, 14, this.le);
    dv.setUint32(4, body.length, this.le);
    out.set(body, 8);
    return out;
  }
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function matHeader(littleEndian = true): Uint8Array {
  const h = new Uint8Array(128).fill(0x20);
  h.set(new TextEncoder().encode('MATLAB 5.0 MAT-file, written by the Pastiche tests'), 0);
  h.fill(0, 116, 124);
  const dv = new DataView(h.buffer);
  dv.setUint16(124, 0x0100, littleEndian);
  h.set(new TextEncoder().encode(littleEndian ? 'IM' : 'MI'), 126);
  return h;
}

/** A whole MAT-file holding `variables`. */
export function writeMat(variables: Map<string, MatValue>, o: WriterOptions = {}): Uint8Array {
  const w = new Writer(o);
  const le = o.littleEndian ?? true;
  const parts = [matHeader(le)];
  for (const [name, v] of variables) {
    const m = w.matrix(name, v);
    if (o.compress) {
      const z = deflateSync(m);
      const tag = new Uint8Array(8);
      const dv = new DataView(tag.buffer);
      dv.setUint32(0, 15, le);
      dv.setUint32(4, z.length, le);
      parts.push(tag, z);
    } else {
      parts.push(m);
    }
  }
  return concat(parts);
}
