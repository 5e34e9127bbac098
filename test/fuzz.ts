/**
 * A seeded fuzzer for the files Pastiche reads: mutated MAT-files (both layouts, compressed and
 * not), the other weights formats (torch zip and legacy, Caffe, Keras HDF5, safetensors), .npy files
 * and PNG/JPEG images, each read through the same functions the CLI calls. Every
 * outcome must be a result or a one-line PasticheError, in bounded memory; anything else is a
 * finding. `fuzz.test.ts` runs it briefly in `npm test`; `scripts/fuzz.mjs --minutes N` runs it long.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { readClassifierImage } from '../src/app/classify.js';
import { PasticheError } from '../src/errors.js';
import { readNpy } from '../src/tensor/npy.js';
import { uniformRng } from '../src/util/random.js';
import { loadMatConvNetVgg19, loadVgg19Weights } from '../src/weights/load-vgg19.js';
import { writeConvertedVgg19 } from '../src/weights/weights-cache.js';
import { tempDir } from './temp.js';

type Kind = 'mat' | 'weights' | 'npy' | 'image';

interface Seed {
  readonly kind: Kind;
  readonly name: string;
  readonly bytes: Uint8Array;
}

export interface FuzzReport {
  tried: number;
  /** Outcome classes ('ok', or the error message with numbers and paths taken out) and their counts, per kind. */
  outcomes: Record<Kind, Record<string, number>>;
  /** Anything that was not a result or a one-line PasticheError, or that took too much memory or time. */
  findings: string[];
  /** The most array-buffer memory (typed arrays, file bytes) seen after a case, MiB. */
  peakArrayBuffersMB: number;
  peakRssMB: number;
  seconds: number;
}

export interface FuzzOptions {
  readonly seed: number;
  /** Stop after this many inputs... */
  readonly trials?: number;
  /** ...or after this long, whichever comes first. */
  readonly budgetMs?: number;
  /** A case whose array-buffer memory after reading exceeds this is a finding (default 512 MiB). */
  readonly maxArrayBuffersMB?: number;
  /** A case that takes longer is a finding (default 10 s). */
  readonly caseTimeoutMs?: number;
}

async function seeds(fixtures: string): Promise<Seed[]> {
  const tiny = `${fixtures}vgg19-tiny/`;
  const png = readFileSync(`${tiny}chelsea.png`);
  const small = await sharp(png).resize(48, 40).png().toBuffer();
  const sources = `${fixtures}sources/`;
  const converted = join(tempDir('pastiche-fuzz-seed-'), 'w.safetensors');
  await writeConvertedVgg19(converted, await loadVgg19Weights(`${sources}vgg19-tiny-notop.h5`));
  return [
    { kind: 'weights', name: 'zip.pth', bytes: readFileSync(`${sources}vgg19-tiny.pth`) },
    { kind: 'weights', name: 'legacy.pth', bytes: readFileSync(`${sources}vgg19-tiny-legacy.pth`) },
    { kind: 'weights', name: 'v1.caffemodel', bytes: readFileSync(`${sources}vgg19-tiny-v1.caffemodel`) },
    { kind: 'weights', name: 'notop.h5', bytes: readFileSync(`${sources}vgg19-tiny-notop.h5`) },
    { kind: 'weights', name: 'w.safetensors', bytes: readFileSync(converted) },
    { kind: 'mat', name: 'old.mat', bytes: readFileSync(`${tiny}vgg19-tiny-old.mat`) },
    { kind: 'mat', name: 'old-z.mat', bytes: readFileSync(`${tiny}vgg19-tiny-old-z.mat`) },
    { kind: 'mat', name: 'new.mat', bytes: readFileSync(`${tiny}vgg19-tiny-new.mat`) },
    { kind: 'npy', name: 'x.npy', bytes: readFileSync(`${fixtures}style/x.npy`) },
    { kind: 'npy', name: 'prob.npy', bytes: readFileSync(`${tiny}ref-old/prob.npy`) },
    { kind: 'image', name: 'small.png', bytes: small },
    { kind: 'image', name: 'small.jpg', bytes: await sharp(small).jpeg({ quality: 80 }).toBuffer() },
    { kind: 'image', name: 'small-progressive.jpg', bytes: await sharp(small).jpeg({ progressive: true }).toBuffer() },
  ];
}

/** Values that sizes, dimensions and type codes are most often wrong with. */
const INTERESTING = [0, 1, 2, 7, 8, 14, 15, 255, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xfffffff0, 0xffffffff, 1 << 20, 1 << 30];

type Rng = () => number;
const pick = (r: Rng, n: number) => Math.floor(r() * n);

/** One random change of the bytes: flips, interesting 32-bit words, truncation, insertion, a copied run. */
function mutateBytes(r: Rng, input: Uint8Array, keepHead = 0): Uint8Array {
  let b = Buffer.from(input);
  const at = () => keepHead + pick(r, Math.max(1, b.length - keepHead));
  switch (pick(r, 6)) {
    case 0:
      for (let i = 0, n = 1 + pick(r, 8); i < n; i++) b[at()] = pick(r, 256);
      break;
    case 1: {
      const p = at() & ~3;
      if (p + 4 <= b.length) b.writeUInt32LE(INTERESTING[pick(r, INTERESTING.length)]! >>> 0, p);
      break;
    }
    case 2:
      b = b.subarray(0, at());
      break;
    case 3: {
      const p = at();
      const extra = Buffer.alloc(1 + pick(r, 64));
      for (let i = 0; i < extra.length; i++) extra[i] = pick(r, 256);
      b = Buffer.concat([b.subarray(0, p), extra, b.subarray(p)]);
      break;
    }
    case 4: {
      const from = at();
      const to = at();
      const n = Math.min(1 + pick(r, 256), b.length - Math.max(from, to));
      if (n > 0) b.copy(b, to, from, from + n);
      break;
    }
    default: {
      const p = at();
      b.fill(pick(r, 2) ? 0 : 0xff, p, Math.min(b.length, p + 1 + pick(r, 32)));
    }
  }
  return b;
}

/**
 * For MAT-files: mutate inside a compressed element too (re-deflated, so the change reaches the
 * parser instead of only breaking zlib), else the raw bytes after the 128-byte header.
 */
function mutateMat(r: Rng, input: Uint8Array): Uint8Array {
  const b = Buffer.from(input);
  const compressed: [number, number][] = [];
  for (let pos = 128; pos + 8 <= b.length; ) {
    const type = b.readUInt32LE(pos);
    const size = b.readUInt32LE(pos + 4);
    if (type === 15 && pos + 8 + size <= b.length) compressed.push([pos, size]);
    pos += 8 + (type === 15 ? size : Math.ceil(size / 8) * 8);
  }
  if (compressed.length > 0 && r() < 0.7) {
    const [pos, size] = compressed[pick(r, compressed.length)]!;
    let plain: Uint8Array;
    try {
      plain = inflateSync(b.subarray(pos + 8, pos + 8 + size));
    } catch {
      return mutateBytes(r, b, 128); // an earlier mutation already broke this stream
    }
    const inner = mutateBytes(r, plain);
    const z = deflateSync(inner);
    const tag = Buffer.alloc(8);
    tag.writeUInt32LE(15, 0);
    tag.writeUInt32LE(z.length, 4);
    return Buffer.concat([b.subarray(0, pos), tag, z, b.subarray(pos + 8 + size)]);
  }
  return mutateBytes(r, b, r() < 0.9 ? 128 : 0);
}

/** "FILE: problem at offset 1234" -> "problem at offset N": the class of an outcome. */
function outcomeClass(message: string, file: string): string {
  return message
    .split(file)
    .join('FILE')
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, 'N')
    .replace(/'[^']*'/g, "'…'")
    .replace(/"(\\.|[^"\\])*"/g, '"…"')
    .slice(0, 120);
}

async function readAs(kind: Kind, file: string): Promise<void> {
  if (kind === 'mat') await loadMatConvNetVgg19(file);
  else if (kind === 'weights') await loadVgg19Weights(file);
  else if (kind === 'npy') await readNpy(file);
  else await readClassifierImage(file);
}

export async function fuzz(o: FuzzOptions, fixtures: string): Promise<FuzzReport> {
  const r = uniformRng(o.seed);
  const corpus = await seeds(fixtures);
  const dir = tempDir('pastiche-fuzz-');
  const report: FuzzReport = { tried: 0, outcomes: { mat: {}, weights: {}, npy: {}, image: {} }, findings: [], peakArrayBuffersMB: 0, peakRssMB: 0, seconds: 0 };
  const t0 = performance.now();
  const maxBuffers = (o.maxArrayBuffersMB ?? 512) * 2 ** 20;
  const timeoutMs = o.caseTimeoutMs ?? 10_000;
  try {
    while ((o.trials === undefined || report.tried < o.trials) && (o.budgetMs === undefined || performance.now() - t0 < o.budgetMs)) {
      const seed = corpus[pick(r, corpus.length)]!;
      let bytes: Uint8Array = seed.bytes;
      for (let k = 0, n = 1 + pick(r, 3); k < n; k++) bytes = seed.kind === 'mat' ? mutateMat(r, bytes) : mutateBytes(r, bytes);
      const file = join(dir, `case-${report.tried}-${seed.name}`);
      writeFileSync(file, bytes);
      report.tried++;
      const what = `case ${report.tried - 1} (seed ${o.seed}, from ${seed.name}, ${bytes.length} bytes)`;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let outcome: string;
      try {
        await Promise.race([
          readAs(seed.kind, file),
          new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer after ${timeoutMs} ms`)), timeoutMs))),
        ]);
        outcome = 'ok';
      } catch (e) {
        if (e instanceof PasticheError && !e.message.includes('\n')) outcome = outcomeClass(e.message, file);
        else {
          outcome = `finding: ${(e as Error).name}`;
          report.findings.push(`${what}: ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ') ?? String(e)}`);
        }
      } finally {
        clearTimeout(timer);
        rmSync(file, { force: true });
      }
      const counts = report.outcomes[seed.kind];
      counts[outcome] = (counts[outcome] ?? 0) + 1;
      const buffers = process.memoryUsage().arrayBuffers;
      report.peakArrayBuffersMB = Math.max(report.peakArrayBuffersMB, buffers / 2 ** 20);
      if (buffers > maxBuffers) report.findings.push(`${what}: ${(buffers / 2 ** 20).toFixed(0)} MiB of array buffers after reading`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  report.seconds = (performance.now() - t0) / 1000;
  report.peakRssMB = process.resourceUsage().maxRSS / 1024;
  return report;
}
