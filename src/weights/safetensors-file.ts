/**
 * Writing safetensors files (Node): the format itself, parsed and encoded, is safetensors.ts, which
 * the browser pages use too.
 */
import { promises as fs } from 'node:fs';
import { PasticheError } from '../errors.js';
import { temporaryNameFor } from '../util/atomic-write.js';
import { DTYPE_BYTES, encodeTensor, type SafeDtype, type SafeTensor } from './safetensors.js';

/** Writes the file atomically (a temporary beside it, then a rename): a reader never sees half of it. */
export async function writeSafetensors(file: string, tensors: ReadonlyMap<string, SafeTensor>, metadata: Record<string, string>, dtype: SafeDtype = 'F32'): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = t.data.length * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8);
  const tmp = temporaryNameFor(file);
  const handle = await fs.open(tmp, 'w');
  try {
    await handle.write(head);
    for (const t of tensors.values()) await handle.write(encodeTensor(t, dtype));
    await handle.close();
    await fs.rename(tmp, file);
  } catch (e) {
    await handle.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw new PasticheError(`${file}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
