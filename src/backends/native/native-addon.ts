/**
 * Loads the compiled Node-API addon (build/Release/pastiche_native.node, built by node-gyp during
 * `npm ci`). If it is missing or fails to load, `nativeAddon` is undefined and `nativeUnavailable`
 * says why; nothing else in Pastiche depends on it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setChannelBlockedConverter } from '../../tensor/channel-blocked.js';
import { setLargeArrayHook } from '../../tensor/host-pool.js';

export type NativeIsa = 'portable' | 'avx2' | 'avx512';

export type NativePrecision = 'fp32' | 'bf16';

/** A Winograd output tile: F(4x4,3x3) or F(6x6,3x3). */
export type WinogradTile = 4 | 6;

/** conv2d's `blocked` bits (kernels.h's Blocked): x, y in nChw16c. */
export const X_BLOCKED = 1;
export const Y_BLOCKED = 2;

export interface NativeAddon {
  /** The active instruction set; pass one to switch (falls back to the best the CPU has below it). */
  isa(set?: NativeIsa): NativeIsa;
  readonly cpuHasAvx2: boolean;
  readonly cpuHasAvx512: boolean;
  /** AVX512-BF16 (vdpbf16ps): what `--precision bf16` needs. */
  readonly cpuHasBf16: boolean;
  /**
   * The GEMMs of this JavaScript thread's following calls: 'bf16' rounds their operands to bfloat16
   * as it packs them and sums in fp32 (vdpbf16ps). Returns the one in force: 'fp32' where the CPU
   * lacks AVX512-BF16 or AVX-512 is not the active instruction set.
   */
  precision(set?: NativePrecision): NativePrecision;
  /** y = x rounded to the nearest bfloat16 (ties to even, NaN stays NaN), kept as fp32. */
  roundBf16(x: Float32Array, y: Float32Array): void;
  /** y = the bfloat16 bits of x, rounded as roundBf16. */
  toBf16Bits(x: Float32Array, y: Uint16Array): void;
  /** Threads in the pool (including the caller); pass n to resize. */
  threads(n?: number): number;
  sgemm(m: number, n: number, k: number, a: Float32Array, aOff: number, lda: number, transA: boolean,
    b: Float32Array, bOff: number, ldb: number, transB: boolean, c: Float32Array, cOff: number, ldc: number, accumulate: boolean): void;
  /**
   * `wino`: the layer's transformed weights (winogradWeights, for `tile`) to use Winograd, or null for
   * im2col. Winograd only: `reflect`, the border mirrored instead of zero; `upsample`, x read as its
   * nearest upsampling by that factor (h and w are the upsampled sizes); `pool`, y receives the output's
   * 2x2 stride-2 max-pool (floor size), pooled tile by tile. `blocked` (X_BLOCKED | Y_BLOCKED; the
   * channel-blocked path only, x's bit without reflect or upsample, else an error): x and/or y are
   * nChw16c (channel-blocked.ts).
   */
  conv2d(x: Float32Array, n: number, cin: number, h: number, w: number, wt: Float32Array, cout: number, k: number,
    pad: number, stride: number, bias: Float32Array, relu: boolean, y: Float32Array, wino: Float32Array | null, tile: WinogradTile,
    reflect: boolean, upsample: number, pool?: boolean, blocked?: number): void;
  /**
   * `wino`: the rotated transform (winogradWeights with rotate) or null for GEMM + col2im. `c16`:
   * wino in the channel-blocked layout (winogradWeights with c16, where winogradC16(cout, cin,
   * tile) holds), taking that path, where `blocked` may be X_BLOCKED (dy in nChw16c) and/or
   * Y_BLOCKED (dx, and add and mask, in nChw16c).
   */
  conv2dBackwardData(dy: Float32Array, n: number, cin: number, h: number, w: number, wt: Float32Array, cout: number,
    k: number, pad: number, stride: number, dx: Float32Array, wino: Float32Array | null, tile: WinogradTile,
    add: Float32Array | null, mask: Float32Array | null, c16?: boolean, blocked?: number): void;
  winogradWeightsSize(cin: number, cout: number, tile: WinogradTile): number;
  /**
   * Whether a forward cin -> cout convolution with this tile runs channel-blocked (16 channels a
   * vector: F(4x4), both counts multiples of 16, a CPU with AVX-512), its weights laid out for it.
   */
  winogradC16(cin: number, cout: number, tile: WinogradTile): boolean;
  /**
   * `c16`: rotated ones in the channel-blocked layout too (for conv2dBackwardData's c16); the
   * forward's always are, where winogradC16 holds. `round`: of the weights rounded to bfloat16.
   */
  winogradWeights(wt: Float32Array, cin: number, cout: number, rotate: boolean, tile: WinogradTile, out: Float32Array, c16?: boolean, round?: boolean): void;
  conv2dBackwardParams(dy: Float32Array, x: Float32Array, n: number, cin: number, h: number, w: number, cout: number,
    k: number, pad: number, stride: number, dw: Float32Array, db: Float32Array): void;
  /**
   * Direct 3x3 stride-1 pad-1 convolution for cin <= 4 (the course's layout), + bias, optional ReLU;
   * `blocked`: y in nChw16c (cout a multiple of 16, else an error).
   */
  conv2dSmallCin(x: Float32Array, n: number, cin: number, h: number, w: number, wt: Float32Array, cout: number,
    bias: Float32Array, relu: boolean, y: Float32Array, blocked?: boolean): void;
  /**
   * Its gradient to the data (dy: n x cout x h x w, dx: n x cin x h x w; wr: the kernel turned by
   * 180 degrees, [cout, 3, 3, cin]). `blocked`: dy in nChw16c (cout a multiple of 16, else an error).
   */
  conv2dBackwardDataSmallCin(dy: Float32Array, n: number, cin: number, h: number, w: number, wr: Float32Array, cout: number,
    dx: Float32Array, blocked?: boolean): void;
  /** Direct K x K stride-1 convolution (padding `pad`, zero or mirrored) for few input or output channels, + bias, optional ReLU. */
  conv2dDirect(x: Float32Array, n: number, cin: number, h: number, w: number, wt: Float32Array, cout: number, k: number,
    pad: number, reflect: boolean, bias: Float32Array, relu: boolean, y: Float32Array): void;
  /** y = a + alpha b, elementwise. */
  addScaled(a: Float32Array, b: Float32Array, alpha: number, y: Float32Array): void;
  /** G = F F^T for a row-major F [c x k] (a Gram matrix: half the products, K over the threads). */
  gram(f: Float32Array, c: number, k: number, g: Float32Array): void;
  /** L-BFGS's sweep (Backend.sweepF32F64), over the threads. */
  sweepF32F64(q: Float64Array, c: readonly number[], v: readonly Float32Array[], scale: number, u: readonly Float32Array[]): number[];
  /** Backend.gram and Backend.mixChannels (y = d^T x) of an nChw16c x: c channels (a multiple of 16), hw pixels; y nChw16c. */
  gramC16(x: Float32Array, c: number, hw: number, g: Float32Array): void;
  mixChannelsC16(d: Float32Array, c: number, x: Float32Array, hw: number, y: Float32Array): void;
  /** NCHW y from nChw16c x: `blocks` 16-channel blocks (images x C / 16) of hw pixels each. */
  fromNchw16c(x: Float32Array, blocks: number, hw: number, y: Float32Array): void;
  /** y = alpha x, elementwise. */
  scale(x: Float32Array, alpha: number, y: Float32Array): void;
  /** The sum of x^2, accumulated in double. */
  sumOfSquares(x: Float32Array): number;
  /** Reflection padding of planes of h x w by pad; nearest upsampling by a whole factor. */
  reflectionPad(x: Float32Array, planes: number, h: number, w: number, pad: number, y: Float32Array): void;
  upsampleNearest(x: Float32Array, planes: number, h: number, w: number, factor: number, y: Float32Array): void;
  /** Instance normalisation over n * c planes of m values, + ReLU; and its backward (dx, dw, db). */
  instanceNorm(x: Float32Array, n: number, c: number, m: number, w: Float32Array, b: Float32Array, eps: number, relu: boolean, y: Float32Array): void;
  instanceNormBackward(dy: Float32Array, x: Float32Array, reluOut: Float32Array | null, n: number, c: number, m: number, w: Float32Array,
    eps: number, dx: Float32Array, dw: Float32Array, db: Float32Array): void;
  maxPool2d(x: Float32Array, planes: number, h: number, w: number, k: number, stride: number, pad: number,
    y: Float32Array, ho: number, wo: number): void;
  maxPool2dBackward(dy: Float32Array, x: Float32Array, planes: number, h: number, w: number, k: number, stride: number,
    pad: number, dx: Float32Array, ho: number, wo: number, reluMask: boolean): void;
  /** The 2x2 stride-2 max-pool of an nChw16c x into nChw16c y (c a multiple of 16), and its backward (dy and dx nChw16c too). */
  maxPool2dC16(x: Float32Array, n: number, c: number, h: number, w: number, y: Float32Array): void;
  maxPool2dC16Backward(dy: Float32Array, x: Float32Array, n: number, c: number, h: number, w: number, dx: Float32Array, reluMask: boolean): void;
  linear(x: Float32Array, m: number, k: number, w: Float32Array, n: number, b: Float32Array, y: Float32Array): void;
  /**
   * What the Winograd convolutions since the last reset spent per stage: [input transform ms,
   * GEMM ms, output transform ms, GEMM GFLOP, input transform MB, output transform MB, tiles that
   * took the three stages in one pass on one thread (their stage times are thread time over the
   * threads), of those the tiles whose output went out with non-temporal stores]; `reset` starts
   * the count again.
   */
  winogradStages(reset?: boolean): Float64Array;
  /** y [n, hw, c] = x [n, c, hw] (flattenNhwc's order). */
  channelsLast(x: Float32Array, n: number, c: number, hw: number, y: Float32Array): void;
  /**
   * linear with bfloat16 operands, any number of rows streamed: the weights as bf16 bits
   * (toBf16Bits), at half the bytes, or as fp32 rounded as they are read (the same products).
   */
  linearBf16(x: Float32Array, m: number, k: number, w: Uint16Array | Float32Array, n: number, b: Float32Array, y: Float32Array): void;
  relu(x: Float32Array, y: Float32Array): void;
  reluBackward(dy: Float32Array, x: Float32Array, dx: Float32Array): void;
  /**
   * The machine's limits on the active instruction set and the pool's threads: 'fma' runs
   * `n` iterations of 12 independent FMA chains per thread and returns GFLOP/s; 'read' and
   * 'triad' stream arrays of `n` floats and return GB/s (STREAM's byte counts). Best of a few runs.
   */
  probeMachine(what: 'fma' | 'read' | 'triad', n: number): number;
  /**
   * true: sends file descriptor 2 (what native libraries print) to a temporary file; returns
   * whether it did. false: restores it and returns what was printed meanwhile.
   */
  captureStderr(begin: true): boolean;
  captureStderr(begin: false): string;
  /**
   * A file's bytes over a private, copy-on-write memory mapping; null when it cannot be mapped.
   * `populate` false: its pages are mapped when first touched (or by populatePages), not now.
   */
  mapFile(file: string, populate?: boolean): ArrayBuffer | null;
  /** Maps the pages under a view now (a hint; harmless on memory that is not a mapped file). */
  populatePages(view: ArrayBufferView): void;
  /** Puts the array's memory on transparent huge pages where the system allows (see setLargeArrayHook). */
  hugePages(a: Float32Array): void;
  /** How many floats from the array's start to the next 64-byte boundary (0 where it is on one). */
  misalignment(a: Float32Array): number;
  /** `floats` zeroed floats on huge pages from the first touch (below 2 MiB 64-byte aligned), for arrays kept long; null where it cannot. */
  hugeBuffer(floats: number): ArrayBuffer | null;
  /**
   * Gives a hugeBuffer's memory back now instead of after the collector: the buffer is detached
   * (it and its views then have length 0). false, and nothing done, for any other ArrayBuffer.
   */
  releaseHugeBuffer(buffer: ArrayBuffer): boolean;
}

const ADDON_PATH = fileURLToPath(new URL('../../../../build/Release/pastiche_native.node', import.meta.url));

function load(): { addon?: NativeAddon; reason?: string } {
  if (process.env['PASTICHE_DISABLE_NATIVE']) return { reason: 'disabled by PASTICHE_DISABLE_NATIVE' };
  if (!existsSync(ADDON_PATH)) return { reason: 'the addon was not built (run npm ci, or npm run install, with a C++ compiler)' };
  try {
    return { addon: createRequire(import.meta.url)(ADDON_PATH) as NativeAddon };
  } catch (e) {
    return { reason: `the addon failed to load: ${(e as Error).message.split('\n')[0]}` };
  }
}

const loaded = load();
export const nativeAddon: NativeAddon | undefined = loaded.addon;
export const nativeUnavailable: string | undefined = loaded.reason;

/**
 * A zeroed array of `length` floats for the host pool, from `addon`: on huge pages (see the addon's
 * hugePages for why) and starting on a 64-byte boundary, so that a pixel of an nChw16c tensor is one
 * whole cache line, which a convolution can store without reading it first (the addon's
 * streams_output). The heap gives 16-byte alignment: the view starts 0, 16, 32 or 48 bytes into
 * its buffer (a Float64Array over it stays aligned, as optimizers.ts's doubles need).
 */
export function largeHostArray(addon: NativeAddon, length: number): Float32Array {
  const a = new Float32Array(length + 15);
  const view = new Float32Array(a.buffer, 4 * addon.misalignment(a), length);
  addon.hugePages(view);
  return view;
}

// Every backend's large tensors made so from here on (the transformed weights take hugeBuffer).
if (nativeAddon) setLargeArrayHook((length) => largeHostArray(nativeAddon!, length));
// And a channel-blocked tensor read as NCHW converted by the addon, over its threads.
if (nativeAddon) setChannelBlockedConverter(nativeAddon.fromNchw16c);
