/**
 * `pastiche weights fetch` as a use case: download VGG19 from one source, or from the first of the
 * sources that answers. Each download is resumable and checked (download.ts); a source that
 * publishes no hash is checked by reading the file as VGG19. A dead server costs seconds: a refused
 * connection fails at once, a silent one after `connectTimeoutMs`, and the next source is tried.
 */
import { rm } from 'node:fs/promises';
import { PasticheError } from '../errors.js';
import { download, type DownloadOptions } from '../weights/download.js';
import { loadVgg19Weights } from '../weights/load-vgg19.js';
import { cachedSourcePath, matconvnet, SOURCES, type Layout, type SourceName, type WeightsSource } from '../weights/weights-source.js';

/**
 * The sources a fetch tries, from what a person asked: one named source or all in order (MatConvNet
 * in the layout asked for); a mirror (`url`) or an `md5` stands for the first of them.
 */
export function chooseSources(o: { source?: SourceName; layout?: Layout; url?: string; md5?: string }): WeightsSource[] {
  if (o.md5 !== undefined && !/^[0-9a-f]{32}$/i.test(o.md5)) throw new PasticheError(`--md5 '${o.md5}' is not an MD5 checksum (32 hexadecimal digits)`);
  const sources = (o.source ? SOURCES.filter((s) => s.name === o.source) : SOURCES).map((s) => (s.name === 'matconvnet' ? matconvnet(o.layout ?? 'old') : s));
  if (!o.url && !o.md5) return sources;
  const s = sources[0]!;
  return [{ ...s, url: o.url ?? s.url, checksum: o.md5 ? { algorithm: 'md5', hex: o.md5.toLowerCase() } : s.checksum }];
}

export interface FetchOptions {
  /** The sources to try, in order (default: all of SOURCES). */
  readonly sources?: readonly WeightsSource[];
  /** Write here instead of each source's place in the cache. */
  readonly output?: string;
  /** Give up on a source when no byte has come for this long, over its retries, ms. */
  readonly stallDeadlineMs: number;
  /** A source that does not answer at all is left after this long, ms (when several are tried). */
  readonly connectTimeoutMs?: number;
  readonly onStart?: (source: WeightsSource, dest: string) => void;
  readonly onProgress?: DownloadOptions['onProgress'];
  readonly onRetry?: DownloadOptions['onRetry'];
  /** A source failed and the next is tried. */
  readonly onSourceFailed?: (source: WeightsSource, reason: string) => void;
}

export interface FetchResult {
  readonly source: WeightsSource;
  readonly file: string;
  readonly outcome: 'downloaded' | 'already-present';
}

export async function fetchWeights(o: FetchOptions): Promise<FetchResult> {
  const sources = o.sources ?? SOURCES;
  const failures: string[] = [];
  for (const source of sources) {
    const dest = o.output ?? cachedSourcePath(source);
    o.onStart?.(source, dest);
    try {
      const outcome = await download({
        url: source.url,
        dest,
        checksum: source.checksum,
        stallDeadlineMs: o.stallDeadlineMs,
        timeoutMs: sources.length > 1 ? o.connectTimeoutMs : undefined,
        onProgress: o.onProgress,
        onRetry: o.onRetry,
      });
      if (source.checksum === 'unpublished') await verifyByReading(dest);
      return { source, file: dest, outcome };
    } catch (e) {
      if (!(e instanceof PasticheError)) throw e;
      failures.push(`${source.name}: ${e.message}`);
      if (source !== sources[sources.length - 1]) o.onSourceFailed?.(source, e.message);
    }
  }
  if (sources.length === 1) throw new PasticheError(failures[0]!.slice(sources[0]!.name.length + 2));
  throw new PasticheError(`no source answered (${sources.map((s) => s.name).join(', ')}); the last: ${failures[failures.length - 1]}`);
}

/** Without a published hash, a whole, readable VGG19 is the proof; anything else is removed. */
async function verifyByReading(file: string): Promise<void> {
  try {
    await loadVgg19Weights(file);
  } catch (e) {
    await rm(file, { force: true });
    throw new PasticheError(`the download does not read as VGG19 and was removed (${(e as Error).message})`);
  }
}
