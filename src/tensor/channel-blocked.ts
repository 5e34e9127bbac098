import { PasticheError } from '../errors.js';
import { shapeToString, type HostLayout, type Shape } from './tensor.js';

/**
 * nChw16c, the channel-blocked layout oneDNN names so: [N][C / 16][H][W][16], a block's 16 channels
 * side by side at every pixel, where one AVX-512 register holds them. Element (n, c, y, x) of an
 * NCHW [N, C, H, W] tensor (C a multiple of 16) lives at
 *   ((n * C / 16 + floor(c / 16)) * H * W + y * W + x) * 16 + c mod 16.
 * native's channel-blocked convolutions hand their outputs to the next one so in a pass that no
 * backward follows (Conv2dForwardParams.ownLayout), and so skip a transpose on each side; with a
 * backward to come, the activations and gradients on either side of VGG19's max-pools, and the
 * style layers' captures that the losses read in place (ForwardOptions.captureOwnLayout).
 */
export const NCHW16C: HostLayout = {
  name: 'nChw16c',
  toNchw: (from, shape, to) => {
    if (!converter) return fromChannelBlocked(from, shape, to);
    const { n, blocks: nb, hw } = blocks(shape);
    converter(from, n * nb, hw, to);
  },
};

let converter: ((from: Float32Array, blocks: number, hw: number, to: Float32Array) => void) | undefined;

/**
 * Sets a faster fromChannelBlocked for the layout's conversions (the native addon sets its own, over
 * its threads, when it loads: a 64-channel 512 px map 24 ms in the TypeScript loop, 3.3 there).
 */
export function setChannelBlockedConverter(fn: typeof converter): void {
  converter = fn;
}

function blocks(shape: Shape): { n: number; blocks: number; hw: number } {
  const [n, c, h, w] = shape;
  if (shape.length !== 4 || c! % 16 !== 0) throw new PasticheError(`nChw16c needs [N, C, H, W] with C a multiple of 16, not ${shapeToString(shape)}`);
  return { n: n!, blocks: c! / 16, hw: h! * w! };
}

/** NCHW `to` from nChw16c `from`, both of `shape`'s size. */
export function fromChannelBlocked(from: Float32Array, shape: Shape, to: Float32Array): void {
  const { n, blocks: nb, hw } = blocks(shape);
  for (let b = 0; b < n * nb; b++)
    for (let l = 0; l < 16; l++) {
      const dst = (b * 16 + l) * hw;
      for (let p = 0, src = b * hw * 16 + l; p < hw; p++, src += 16) to[dst + p] = from[src]!;
    }
}

/** nChw16c `to` from NCHW `from` (the tests' way in; native interleaves its own inputs). */
export function toChannelBlocked(from: Float32Array, shape: Shape, to: Float32Array): void {
  const { n, blocks: nb, hw } = blocks(shape);
  for (let b = 0; b < n * nb; b++)
    for (let l = 0; l < 16; l++) {
      const src = (b * 16 + l) * hw;
      for (let p = 0, dst = b * hw * 16 + l; p < hw; p++, dst += 16) to[dst] = from[src + p]!;
    }
}
