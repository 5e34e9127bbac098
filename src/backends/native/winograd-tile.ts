/**
 * Which Winograd tile the native backend takes for a convolution: a policy of plain numbers (no
 * addon), shared with the memory plan (app/memory-plan.ts), which counts the transformed weights
 * each tile keeps.
 */
import type { WinogradTile } from './native-addon.js';

/**
 * Convolution algorithm: 'auto' chooses per layer (see winogradTile); the others force one where it
 * applies ('winograd': F(4x4,3x3), 'winograd6': F(6x6,3x3)).
 */
export type ConvAlgorithm = 'auto' | 'im2col' | 'winograd' | 'winograd6' | 'direct';

/**
 * The largest transformed weights F(6x6,3x3) takes on any plane: 256 -> 256 channels (16 MiB) but
 * not the 512-channel layers (67 MB each way). Measured on a 512x512 style iteration: F(4x4)
 * everywhere 398 ms and 1799 MiB peak RSS; F(6x6) up to this cap 377 ms and 1861 MiB; F(6x6)
 * everywhere 375 ms and 2066 MiB (before the channel-blocked path).
 */
const F6_MAX_WEIGHT_BYTES = 24 * 2 ** 20;

/**
 * Past that cap, F(6x6) where its GEMMs use each transformed weight for at least this many tiles:
 * a 512-channel layer's 67 MB come from memory once a pass, which 25 tiles (28x28: VGG19's conv4 at
 * 224 px) do not repay and 36 (36x36) do. Measured with both tiles in one process, taking turns
 * (`node` on the bench's style runner and on profileStyleIteration, 8-20 rounds): conv4's layers at
 * 512 px 13.8-14.0 -> 11.8-12.2 ms each way (conv4_1 7.5-7.7 -> 6.6-6.8), the style iteration
 * 297-302 -> 285-291 ms; at 288 px 102.0 -> 97.0, 384 px 175.4 -> 167.7, 640 px 478.6 -> 464.6;
 * at 224 px 66.4 -> 69.3 (slower: 25 tiles), VGG19's 224 forward conv4 2.72 -> 2.92-3.14 ms a layer.
 * It costs memory: a 512 px `stylize` peaked at 1.89 GB of RSS with F(4x4) there, 2.17 with F(6x6);
 * the memory plan asks for `lean` weights where that would cost a run a smaller tile.
 */
const F6_MIN_TILES_PAST_CAP = 32;

/**
 * The Winograd tile for a convolution, or 0 for none. Winograd applies to 3x3 stride-1
 * convolutions. 'auto' also wants enough input channels and enough 4x4 output tiles to pay off:
 * below that, streaming the transformed weights (4x the raw ones) costs more than the
 * multiplications saved (measured with cold caches: VGG19's 14x14 layers 1.7 ms against 3.0 as
 * GEMM, 512 channels at 10x10 1.7 against 2.3, a tie at 7x7).
 *
 * F(6x6,3x3) needs 64 products per 36 outputs where F(4x4,3x3) needs 36 per 16, but a 6x6 tiling
 * wastes more at the edges and its GEMMs are as wide as the tile count rounded up to 16 columns:
 * it is taken where those padded GEMM columns x planes come to under 95% of F(4x4)'s (measured:
 * 10-23% faster from 28x28 up, slower at 14x14 and 32x32, a tie at 56x56), and where its
 * transformed weights (7.1x the raw ones instead of 4x, kept for the whole run) stay small or
 * serve enough tiles: see F6_MAX_WEIGHT_BYTES and F6_MIN_TILES_PAST_CAP. `channelBlocked(m)`:
 * whether the addon runs that tile channel-blocked (NativeAddon.winogradC16), whose GEMMs take
 * the tiles as rows, not rounded up: VGG19's 56x56 layers then take F(6x6), 0.91x of the
 * channel-blocked F(4x4)'s time at 256 -> 256 channels (stop 33's note). `lean`
 * (Conv2dParams.leanWeights): never past F6_MAX_WEIGHT_BYTES, where memory is worth more.
 */
export function winogradTile(
  algo: ConvAlgorithm,
  k: number,
  stride: number,
  pad: number,
  channelsIn: number,
  channelsOut: number,
  ho: number,
  wo: number,
  channelBlocked: (m: WinogradTile) => boolean = () => false,
  lean = false,
): WinogradTile | 0 {
  if (k !== 3 || stride !== 1 || pad > 2 || algo === 'im2col') return 0;
  if (algo === 'winograd') return 4;
  if (algo === 'winograd6') return 6;
  const tiles = (m: number) => Math.ceil(ho / m) * Math.ceil(wo / m);
  if (channelsIn < 16 || tiles(4) < 9) return 0;
  // Unrounded only from a whole panel's worth of 6x6 tiles: below, F(6x6) saves little, and on the
  // transposed-convolution test network's 10x14 residual layers (F(6x6) forward, F(4x4) for their
  // gradients) dL/dx came out 1.3e-3 off PyTorch's, where F(6x6) or F(4x4) for both stays within
  // 1e-4 (test/transformer.test.ts; why that mix rounds worse was not pinned down).
  const columns = (m: WinogradTile) => (channelBlocked(m) && tiles(6) >= 16 ? tiles(m) : Math.ceil(tiles(m) / 16) * 16);
  if (64 * 4 * channelsIn * channelsOut > F6_MAX_WEIGHT_BYTES && (lean || tiles(6) < F6_MIN_TILES_PAST_CAP)) return 4;
  return columns(6) * 64 < 0.95 * columns(4) * 36 ? 6 : 4;
}

/**
 * The tile for a convolution's gradient to its input (h x w): a convolution from channelsOut to
 * channelsIn channels with the kernel turned, which 'auto' gives Winograd only where both sides
 * are wide (VGG19's gradient to the 3-channel image is faster as GEMM + col2im), on the 8-lane
 * policy's columns.
 */
export function backwardDataWinogradTile(
  algo: ConvAlgorithm,
  k: number,
  stride: number,
  pad: number,
  channelsIn: number,
  channelsOut: number,
  h: number,
  w: number,
  lean = false,
): WinogradTile | 0 {
  const forced = algo === 'winograd' || algo === 'winograd6';
  return forced || channelsIn >= 16 ? winogradTile(algo, k, stride, pad, channelsOut, channelsIn, h, w, undefined, lean) : 0;
}
