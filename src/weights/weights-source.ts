/**
 * Where the VGG19 weights are: the published files, the per-user cache, and the rule that picks
 * a file for a run (--weights, then PASTICHE_WEIGHTS, then the cache).
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import envPaths from 'env-paths';
import { PasticheError } from '../errors.js';
import type { Checksum } from './download.js';

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

/** The places the VGG19 weights are published, each in its own format (all read by loadVgg19Weights). */
export type SourceName = 'matconvnet' | 'torchvision' | 'keras' | 'caffe';

export interface WeightsSource {
  readonly name: SourceName;
  /** The cache's subfolder for it. */
  readonly dir: string;
  readonly fileName: string;
  readonly url: string;
  /** The publisher's hash, or 'unpublished' (then the file is verified by reading it as VGG19). */
  readonly checksum: Checksum | 'unpublished';
  readonly approxBytes: number;
}

/**
 * Tried in this order by `weights fetch` without --source: the hash-verified ones first. Hashes:
 * MatConvNet's published MD5; torchvision's file name carries the first 8 hex digits of its SHA-256
 * (what torch.hub's check_hash compares); keras.applications.vgg19 passes this MD5 to get_file; the
 * Oxford VGG page publishes no hash for the Caffe model.
 */
export const SOURCES: readonly WeightsSource[] = [
  matconvnet('old'),
  {
    name: 'torchvision',
    dir: 'torchvision',
    fileName: 'vgg19-dcbb9e9d.pth',
    url: 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
    checksum: { algorithm: 'sha256', hex: 'dcbb9e9d' },
    approxBytes: 574_673_361,
  },
  {
    name: 'keras',
    dir: 'keras',
    fileName: 'vgg19_weights_tf_dim_ordering_tf_kernels.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5',
    checksum: { algorithm: 'md5', hex: 'cbe5617147190e668d6c5d5026f83318' },
    approxBytes: 575_000_000, // about: for the progress bar until the server says
  },
  {
    name: 'caffe',
    dir: 'caffe',
    fileName: 'VGG_ILSVRC_19_layers.caffemodel',
    url: 'http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_19_layers.caffemodel',
    checksum: 'unpublished',
    approxBytes: 575_000_000, // about
  },
];

export const SOURCE_NAMES = SOURCES.map((s) => s.name);

/** MatConvNet's file in either layout, as a source. */
export function matconvnet(layout: Layout): WeightsSource {
  const p = PUBLISHED[layout];
  return { name: 'matconvnet', dir: layout, fileName: WEIGHTS_FILE_NAME, url: p.url, checksum: { algorithm: 'md5', hex: p.md5 }, approxBytes: p.approxBytes };
}

/** Where `pastiche weights fetch` puts a source's file. */
export function cachedSourcePath(source: WeightsSource): string {
  return path.join(cacheDir(), source.dir, source.fileName);
}

/** The per-user cache folder: $XDG_CACHE_HOME/pastiche (~/.cache/pastiche) on Linux. */
export function cacheDir(): string {
  return envPaths('pastiche', { suffix: '' }).cache;
}

/** Converted copies of big weights files (weights-cache.ts), read instead of them on later runs. */
export function convertedCacheDir(): string {
  return path.join(cacheDir(), 'converted');
}

/** Where `pastiche weights fetch` puts a layout's file. */
export function cachedWeightsPath(layout: Layout): string {
  return path.join(cacheDir(), layout, WEIGHTS_FILE_NAME);
}

/**
 * The weights file for a run: the explicit option, else $PASTICHE_WEIGHTS, else a fetched file in
 * the cache (MatConvNet's old layout, new layout, then the other sources in SOURCES' order). Throws a message that says exactly what to run when there is none.
 */
export function resolveWeightsFile(explicit?: string): string {
  if (explicit) return explicit;
  const env = process.env['PASTICHE_WEIGHTS'];
  if (env) return env;
  for (const p of [cachedWeightsPath('old'), cachedWeightsPath('new'), ...SOURCES.slice(1).map(cachedSourcePath)]) {
    if (existsSync(p)) return p;
  }
  throw new PasticheError(
    `no VGG19 weights found: run 'pastiche weights fetch' to download ${WEIGHTS_FILE_NAME} (576 MB), ` +
      'or pass --weights FILE, or set PASTICHE_WEIGHTS=FILE',
  );
}
