/**
 * Where the VGG19 weights are: the published files, the per-user cache, and the rule that picks
 * a file for a run (--weights, then PASTICHE_WEIGHTS, then the cache).
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import envPaths from 'env-paths';
import { PasticheError } from '../errors.js';

export type Layout = 'old' | 'new';

export interface PublishedWeights {
  readonly layout: Layout;
  readonly url: string;
  readonly md5: string;
  /** Size in bytes, for messages before the download starts. */
  readonly approxBytes: number;
}

export const WEIGHTS_FILE_NAME = 'imagenet-vgg-verydeep-19.mat';

/** MatConvNet's two releases of the same network (see the seed's README). */
export const PUBLISHED: Readonly<Record<Layout, PublishedWeights>> = {
  old: {
    layout: 'old',
    url: `https://www.vlfeat.org/matconvnet/models/beta16/${WEIGHTS_FILE_NAME}`,
    md5: '8ee3263992981a1d26e73b3ca028a123',
    approxBytes: 576_042_600,
  },
  new: {
    layout: 'new',
    url: `https://www.vlfeat.org/matconvnet/models/${WEIGHTS_FILE_NAME}`,
    md5: '106118b7cf60435e6d8e04f6a6dc3657',
    approxBytes: 576_000_000,
  },
};

/** The per-user cache folder: $XDG_CACHE_HOME/pastiche (~/.cache/pastiche) on Linux. */
export function cacheDir(): string {
  return envPaths('pastiche', { suffix: '' }).cache;
}

/** Where `pastiche weights fetch` puts a layout's file. */
export function cachedWeightsPath(layout: Layout): string {
  return path.join(cacheDir(), layout, WEIGHTS_FILE_NAME);
}

/**
 * The weights file for a run: the explicit option, else $PASTICHE_WEIGHTS, else a fetched file in
 * the cache (old layout first). Throws a message that says exactly what to run when there is none.
 */
export function resolveWeightsFile(explicit?: string): string {
  if (explicit) return explicit;
  const env = process.env['PASTICHE_WEIGHTS'];
  if (env) return env;
  for (const layout of ['old', 'new'] as const) {
    const p = cachedWeightsPath(layout);
    if (existsSync(p)) return p;
  }
  throw new PasticheError(
    `no VGG19 weights found: run 'pastiche weights fetch' to download ${WEIGHTS_FILE_NAME} (576 MB), ` +
      'or pass --weights FILE, or set PASTICHE_WEIGHTS=FILE',
  );
}
