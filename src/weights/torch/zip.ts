/**
 * The directory of a ZIP archive in memory (PKWARE APPNOTE 6.3: end of central directory, its
 * ZIP64 twin, central directory headers, local headers), enough for the archives torch.save writes:
 * stored entries (the tensors' bytes, 64-byte aligned) and, for other writers, deflated ones.
 * Every size and offset is checked against the archive before anything is read or allocated.
 */
import { inflateRawSync } from 'node:zlib';

export class ZipError extends Error {}

export interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/** The entries by name. */
export function zipDirectory(bytes: Uint8Array): Map<string, ZipEntry> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end record is in the last 64 KiB + 22 bytes (its comment is at most 65535 bytes).
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (v.getUint32(i, true) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('a ZIP archive without its directory (truncated?)');
  let count = v.getUint16(eocd + 10, true);
  let dirSize = v.getUint32(eocd + 12, true);
  let dirOffset = v.getUint32(eocd + 16, true);
  if (eocd >= 20 && v.getUint32(eocd - 20, true) === EOCD64_LOCATOR) {
    const at = Number(v.getBigUint64(eocd - 12, true));
    if (at + 56 > bytes.length || v.getUint32(at, true) !== EOCD64) throw new ZipError('a ZIP64 directory record outside the archive');
    count = Number(v.getBigUint64(at + 32, true));
    dirSize = Number(v.getBigUint64(at + 40, true));
    dirOffset = Number(v.getBigUint64(at + 48, true));
  }
  if (dirOffset + dirSize > bytes.length || count > dirSize / 46) throw new ZipError('a ZIP directory larger than the archive');
  const entries = new Map<string, ZipEntry>();
  let p = dirOffset;
  for (let k = 0; k < count; k++) {
    if (p + 46 > dirOffset + dirSize || v.getUint32(p, true) !== CENTRAL) throw new ZipError('a damaged ZIP directory');
    const method = v.getUint16(p + 10, true);
    let compressedSize = v.getUint32(p + 20, true);
    let size = v.getUint32(p + 24, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    let localOffset = v.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information: the 0xffffffff fields, in order, in extra field 0x0001.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
      const id = v.getUint16(e, true);
      const len = v.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        const next = () => {
          const x = Number(v.getBigUint64(q, true));
          q += 8;
          return x;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localOffset === 0xffffffff) localOffset = next();
      }
      e += 4 + len;
    }
    if (localOffset + 30 + compressedSize > bytes.length) throw new ZipError(`${name} claims ${compressedSize} bytes beyond the archive's end`);
    if (method !== 0 && method !== 8) throw new ZipError(`${name} is compressed by method ${method} (only stored and deflated entries are read)`);
    if (method === 0 && size !== compressedSize) throw new ZipError(`${name}: a stored entry whose sizes differ`);
    // Deflate shrinks at most ~1032:1; a claim beyond that is a lie told to make a reader allocate.
    if (method === 8 && size > compressedSize * 1032 + 64) throw new ZipError(`${name} claims to inflate to ${size} bytes from ${compressedSize}`);
    entries.set(name, { name, method, compressedSize, size, localOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** An entry's bytes: a view into `bytes` when stored, inflated (bounded by its size) when deflated. */
export function zipRead(bytes: Uint8Array, e: ZipEntry): Uint8Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(e.localOffset, true) !== LOCAL) throw new ZipError(`${e.name}: its local header is missing`);
  const start = e.localOffset + 30 + v.getUint16(e.localOffset + 26, true) + v.getUint16(e.localOffset + 28, true);
  if (start + e.compressedSize > bytes.length) throw new ZipError(`${e.name} runs past the archive's end`);
  const raw = bytes.subarray(start, start + e.compressedSize);
  if (e.method === 0) return raw;
  try {
    const out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    if (out.length !== e.size) throw new ZipError(`${e.name} inflates to ${out.length} bytes, not the ${e.size} its directory says`);
    return out;
  } catch (err) {
    if (err instanceof ZipError) throw err;
    throw new ZipError(`${e.name} does not inflate: ${(err as Error).message}`);
  }
}
