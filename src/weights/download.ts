/**
 * A resumable HTTP(S) download with a checksum (MD5, or a SHA-256 prefix as torchvision publishes
 * in its file names): bytes go to FILE.part (resumed with a Range request after an interruption,
 * within one run or the next), and FILE appears only once the whole file is there and its checksum
 * is right.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PasticheError } from '../errors.js';

export interface DownloadProgress {
  readonly received: number;
  /** Total size when the server says it; undefined otherwise. */
  readonly total?: number;
}

/** What the file's hash must be: the whole hex digest, or (torchvision's convention) its first digits. */
export interface Checksum {
  readonly algorithm: 'md5' | 'sha256';
  readonly hex: string;
}

export interface DownloadOptions {
  readonly url: string;
  readonly dest: string;
  /** The expected MD5 (32 hex digits); or give `checksum`. */
  readonly md5?: string;
  /** 'unpublished': the source publishes none (the caller must check the file some other way). */
  readonly checksum?: Checksum | 'unpublished';
  /** Called as bytes arrive (also once at the start with what was already on disk). */
  readonly onProgress?: (p: DownloadProgress) => void;
  /** Called when an attempt failed and another one starts. */
  readonly onRetry?: (r: { readonly attempt: number; readonly reason: string; readonly received: number }) => void;
  /** Attempts in a row that make no progress before giving up. */
  readonly maxStalledAttempts?: number;
  /** Socket inactivity timeout of one attempt (connecting included), ms. */
  readonly timeoutMs?: number;
  /**
   * Gives up when no byte has arrived for this long, over all attempts (a dead server costs this
   * much at most, not attempts x timeout), ms.
   */
  readonly stallDeadlineMs?: number;
  /** Text added to network errors: how to get the file another way. */
  readonly manualHint?: string;
}

export type DownloadOutcome = 'downloaded' | 'already-present';

/** MD5 of a file, streamed. */
export function md5OfFile(file: string): Promise<string> {
  return hashOfFile(file, 'md5');
}

async function hashOfFile(file: string, algorithm: Checksum['algorithm']): Promise<string> {
  const h = createHash(algorithm);
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

const matches = async (file: string, c: Checksum) => (await hashOfFile(file, c.algorithm)).startsWith(c.hex);

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return 0;
  }
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

function request(url: string, headers: Record<string, string>, timeoutMs: number, redirects = 5): Promise<Response> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new PasticheError(`invalid URL ${url}`));
      return;
    }
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
    if (!mod) {
      reject(new PasticheError(`unsupported URL scheme in ${url}`));
      return;
    }
    const req = mod.get(u, { headers: { 'user-agent': 'pastiche', ...headers }, timeout: timeoutMs }, (res) => {
      const status = res.statusCode ?? 0;
      const loc = res.headers.location;
      if (status >= 300 && status < 400 && loc) {
        res.resume();
        if (redirects === 0) reject(new PasticheError(`too many redirects from ${url}`));
        else resolve(request(new URL(loc, u).toString(), headers, timeoutMs, redirects - 1));
        return;
      }
      resolve({ status, headers: res.headers, body: res });
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

function describeNetworkError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}${err.message && !err.message.includes(err.code) ? `: ${err.message}` : ''}` : err.message;
}

/** One attempt: appends to `part` from its current size. Resolves with the total size if known. */
async function attempt(opts: DownloadOptions, part: string, timeoutMs: number): Promise<number | undefined> {
  const have = await sizeOf(part);
  const res = await request(opts.url, have > 0 ? { range: `bytes=${have}-` } : {}, timeoutMs);
  if (res.status === 416 && have > 0) {
    res.body.resume();
    return have; // the part already holds everything the server has
  }
  let append = false;
  let total: number | undefined;
  const length = Number(res.headers['content-length']);
  if (res.status === 206) {
    append = true;
    const m = /\/(\d+)\s*$/.exec(String(res.headers['content-range'] ?? ''));
    total = m ? Number(m[1]) : Number.isFinite(length) ? have + length : undefined;
    const start = /bytes\s+(\d+)-/.exec(String(res.headers['content-range'] ?? ''));
    if (start && Number(start[1]) !== have) {
      res.body.resume();
      throw new PasticheError(`the server resumed at byte ${start[1]} instead of ${have}`);
    }
  } else if (res.status === 200) {
    total = Number.isFinite(length) ? length : undefined;
  } else {
    res.body.resume();
    throw new PasticheError(`the server answered HTTP ${res.status} for ${opts.url}`);
  }
  let received = append ? have : 0;
  opts.onProgress?.({ received, total });
  res.body.on('data', (chunk: Buffer) => {
    received += chunk.length;
    opts.onProgress?.({ received, total });
  });
  await pipeline(res.body, createWriteStream(part, { flags: append ? 'a' : 'w' }));
  if (total !== undefined && received < total) {
    throw Object.assign(new Error(`connection closed after ${received} of ${total} bytes`), { code: 'ECONNRESET' });
  }
  return total;
}

/** Removes an empty partial file and the folders this download created for it, if still empty. */
async function cleanUp(part: string, createdFolder: string | undefined): Promise<void> {
  await fs.rm(part, { force: true });
  if (!createdFolder) return;
  for (let d = path.dirname(part); d.startsWith(createdFolder); d = path.dirname(d)) {
    try {
      await fs.rmdir(d); // fails, and stops here, if anything else is in it
    } catch {
      return;
    }
    if (d === createdFolder) return;
  }
}

/**
 * Downloads `url` to `dest`, verifying the MD5. A file already at `dest` with the right checksum is
 * kept. Interrupted transfers are resumed automatically; a wrong checksum removes the partial file.
 */
export async function download(opts: DownloadOptions): Promise<DownloadOutcome> {
  if (opts.md5 !== undefined && !/^[0-9a-f]{32}$/i.test(opts.md5)) throw new PasticheError(`--md5 '${opts.md5}' is not an MD5 checksum (32 hexadecimal digits)`);
  const checksum = opts.md5 !== undefined ? { algorithm: 'md5' as const, hex: opts.md5.toLowerCase() } : opts.checksum;
  if (!checksum || (checksum !== 'unpublished' && !/^[0-9a-f]{8,}$/.test(checksum.hex))) throw new PasticheError('a download needs a checksum (at least 8 hexadecimal digits)');
  const dir = path.dirname(opts.dest);
  // FILE appears only when complete: without a checksum, its presence is the only proof there is.
  if ((await sizeOf(opts.dest)) > 0 && (checksum === 'unpublished' || (await matches(opts.dest, checksum)))) return 'already-present';
  // The first folder this call creates, so that a failed first download leaves no empty folders.
  const created = await fs.mkdir(dir, { recursive: true });
  const part = `${opts.dest}.part`;
  const maxStalled = opts.maxStalledAttempts ?? 4;
  const deadlineMs = opts.stallDeadlineMs ?? 60_000;
  // A third of the deadline per attempt: a stalled connection is retried before the deadline ends.
  const timeoutMs = opts.timeoutMs ?? Math.min(20_000, deadlineMs / 3);
  let stalled = 0;
  let lastByteAt = performance.now();
  const onProgress = (p: DownloadProgress) => {
    lastByteAt = performance.now();
    opts.onProgress?.(p);
  };
  for (let tries = 1; ; tries++) {
    const before = await sizeOf(part);
    // One attempt may not outlive the deadline either.
    const left = Math.max(1, Math.min(timeoutMs, deadlineMs - (performance.now() - lastByteAt)));
    try {
      const total = await attempt({ ...opts, onProgress }, part, left);
      const size = await sizeOf(part);
      if (total === undefined || size >= total) break;
    } catch (e) {
      const after = await sizeOf(part);
      const giveUp = async (message: string) => {
        if (after === 0) await cleanUp(part, created);
        const keep = after > 0 ? ` (${after} bytes kept in ${part}; run again to resume)` : '';
        return new PasticheError(`${message}${keep}${opts.manualHint ? `. ${opts.manualHint}` : ''}`);
      };
      if (e instanceof PasticheError) throw await giveUp(e.message);
      stalled = after > before ? 0 : stalled + 1;
      const silentFor = performance.now() - lastByteAt;
      const reason = describeNetworkError(e);
      if (stalled >= maxStalled || after === 0 || silentFor >= deadlineMs) {
        const why = silentFor >= deadlineMs ? `no data for ${(silentFor / 1000).toFixed(0)} s (${reason})` : reason;
        throw await giveUp(`cannot download ${opts.url}: ${why}`);
      }
      opts.onRetry?.({ attempt: tries + 1, reason, received: after });
      await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** stalled)));
    }
  }
  if (checksum !== 'unpublished' && !(await matches(part, checksum))) {
    const got = await hashOfFile(part, checksum.algorithm);
    await cleanUp(part, created);
    const name = checksum.algorithm === 'md5' ? 'MD5' : 'SHA-256';
    throw new PasticheError(`${opts.url}: checksum mismatch (${name} ${got}, expected ${checksum.hex}${checksum.hex.length < got.length ? '...' : ''}); the download was discarded, run again`);
  }
  await fs.rename(part, opts.dest);
  return 'downloaded';
}
