/**
 * The native backend against the four-loop reference: every kernel, each convolution algorithm,
 * one and two threads, the AVX2 and the portable path; and the fallback when the addon is missing.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { getBackend, nativeBackend, nativeUnavailable } from '../src/backends/index.js';
import { hostVectorOps } from '../src/backends/host-vectors.js';
import { type NativeIsa, largeHostArray, nativeAddon } from '../src/backends/native/native-addon.js';
import { type ConvAlgorithm, createNativeBackend, winogradTile } from '../src/backends/native/native-backend.js';
import { LARGE_ARRAY_FLOATS, newHostArray, setLargeArrayHook } from '../src/tensor/host-pool.js';
import { NCHW16C, toChannelBlocked } from '../src/tensor/channel-blocked.js';
import { Tensor } from '../src/tensor/tensor.js';
import { CLI, TINY, assertClose, randomTensor, watchingCalls } from './helpers.js';

const loops = getBackend('loops');

/** t's elements in nChw16c, as a channel-blocked convolution hands them to the next. */
function inNchw16c(t: Tensor): Tensor {
  const b = Tensor.uninitializedIn(NCHW16C, t.shape);
  toChannelBlocked(t.data, t.shape, b.arrayIn(NCHW16C)!);
  return b;
}

test('the native backend is built and loads (set PASTICHE_DISABLE_NATIVE to run without it)', () => {
  if (process.env['PASTICHE_DISABLE_NATIVE']) return;
  assert.ok(nativeBackend, `native backend unavailable: ${nativeUnavailable}`);
});

const native = nativeBackend;
if (native) {
  const addon = native.addon;
  const best = addon.isa();
  const isas = [...(addon.cpuHasAvx512 ? ['avx512'] : []), ...(addon.cpuHasAvx2 ? ['avx2'] : []), 'portable'] as NativeIsa[];

  // [N, Cin, H, W], kernel, Cout, pad, stride
  const SHAPES: [number[], number, number, number, number][] = [
    [[1, 16, 8, 8], 3, 16, 1, 1],
    [[2, 17, 9, 7], 3, 13, 1, 1],
    [[1, 20, 13, 11], 3, 7, 0, 1],
    [[2, 16, 5, 6], 3, 19, 2, 1],
    [[1, 32, 17, 21], 3, 33, 1, 1],
    [[3, 3, 10, 9], 3, 8, 1, 1],
    // The direct kernel for cin <= 4: rows of whole 3-vector tiles plus a tail, cout not a multiple of 4.
    [[1, 3, 7, 70], 3, 10, 1, 1],
    [[2, 1, 5, 33], 3, 5, 1, 1],
    // A whole tile, two whole vectors left (one tile of 2 vectors with AVX-512), a partial one.
    [[1, 3, 6, 85], 3, 10, 1, 1],
    // Its gradient to the data: dy's channels in groups of 16 (40 = 16 + 16 + 8, 17 = 16 + 1), rows
    // in bands of 32 (37 = 32 + 5: a last band of odd height), two images.
    [[1, 3, 37, 40], 3, 40, 1, 1],
    [[2, 2, 35, 20], 3, 17, 1, 1],
    [[1, 4, 4, 50], 3, 7, 1, 1],
    // Into nChw16c for a channel-blocked layer next (AVX-512 CPUs): tiles of 12 pixels x 2 blocks,
    // 6 or 3 pixels (by the forced ISA's width), then one of 8 and single pixels, two images; the
    // 48-channel shape below takes a pair of blocks and a last one alone.
    [[2, 3, 13, 33], 3, 32, 1, 1],
    [[1, 1, 5, 50], 3, 16, 1, 1],
    // Its gradient from an nChw16c dy: bands of 32 rows, 32, 32 and 6, three blocks, odd rows (more
    // at the end of the list).
    [[1, 3, 70, 37], 3, 48, 1, 1],
    [[2, 5, 11, 9], 3, 6, 1, 2],
    [[1, 6, 13, 11], 5, 3, 2, 2],
    [[2, 7, 5, 5], 1, 9, 0, 1],
    [[1, 64, 14, 14], 3, 64, 1, 1],
    // 49 tiles of F(4x4), 7 a row: every group of 8 spans two tile rows; the GEMMs' columns are 3
    // whole panels and 1 more.
    [[1, 24, 28, 28], 3, 20, 1, 1],
    // 18 tiles of F(4x4): one whole panel of 16 columns and 2 columns by rows (the GEMMs' leftover kernel).
    [[2, 8, 12, 24], 3, 9, 1, 1],
    // A row of more than 8 tiles with a partial last group and odd sides: the 2x2 pool fused into
    // Winograd's output stage stores 8 pooled tiles at once there, then the rest one by one.
    [[1, 16, 11, 75], 3, 9, 1, 1],
    // Channel-blocked F(4x4) (channels multiples of 16, AVX-512 CPUs; the forced ISA runs its own
    // build of the same kernels): 32 tiles as GEMM row tiles of 6, 6, 5, 5, 5, 5 and 48 output
    // channels (a column block of 3 vectors), two images; 80 = 64 + 16 output channels over 18
    // tiles of 3 a row; no padding with 12 tiles a row (output runs of 4 tiles); 19 tiles a row
    // (pooled runs of 8, 8 and 3, odd sides).
    [[2, 16, 13, 30], 3, 48, 1, 1],
    [[1, 16, 22, 9], 3, 80, 1, 1],
    [[1, 48, 9, 50], 3, 32, 0, 1],
    [[1, 16, 11, 75], 3, 32, 1, 1],
    // Channel-blocked F(6x6) (AVX-512), 256 input channels: 6 tiles a row (36 output columns:
    // two whole 16-column stores and 4), 11 a row upsampled (output runs of 8 tiles and 3), odd
    // pooled sides, two images.
    [[2, 256, 9, 31], 3, 32, 1, 1],
    // Transformed weights past the fused path's 4 MiB (F(4x4) 4.9 MB, F(6x6) 8.7 MB): the phased
    // channel-blocked path, its gradient epilogue taken as an nChw16c dx is stored.
    [[1, 176, 13, 12], 3, 192, 1, 1],
    // The direct kernel for larger kernels with few channels on one side (the style network's 9x9
    // layers): partial channel blocks, rows of whole tiles plus tails, padding, and its backward.
    [[2, 3, 21, 37], 9, 5, 0, 1],
    [[1, 10, 19, 60], 9, 3, 0, 1],
    [[2, 4, 9, 11], 5, 6, 2, 1],
    [[1, 12, 12, 70], 7, 2, 3, 1],
    // Rows wide enough for whole tiles of the kernel's wider tiles for 1-3 output channels (one image
    // for the single channel: over two, its 3552-term bias sum nearly cancels and loops' float32
    // sum, not native's double one, is 7e-5 off).
    [[1, 5, 12, 230], 9, 3, 0, 1],
    [[1, 4, 10, 300], 5, 1, 0, 1],
    [[1, 3, 9, 270], 5, 2, 2, 1],
    // Blocks of 8 output channels (AVX-512), then 4, then 3.
    [[1, 3, 13, 45], 9, 19, 4, 1],
    // The gradient from an nChw16c dy read in place: tiles of 8 pixels for up to 3 channels (a
    // first and a last one at the row's edges, a partial one), of 4 for 4 channels, a row of whole
    // tiles (its last one's taps past the edge) and a row no longer than one tile and its taps.
    [[1, 4, 9, 21], 3, 32, 1, 1],
    [[2, 2, 6, 10], 3, 16, 1, 1],
    [[1, 3, 5, 24], 3, 16, 1, 1],
    [[1, 3, 4, 6], 3, 16, 1, 1],
  ];

  test('native im2col in chunks (a layer whose column matrix is larger than the 16 MiB buffer): strides 1 and 2, chunks starting mid-row, equal loops', () => {
    native.convAlgorithm = 'im2col';
    try {
      for (const [xs, k, cout, pad, stride] of [[[1, 64, 100, 97], 3, 5, 1, 1], [[1, 64, 200, 150], 3, 4, 1, 2], [[1, 40, 60, 300], 5, 3, 2, 2]] as const) {
        const x = randomTensor(xs, 1);
        const w = randomTensor([xs[1], k, k, cout], 2);
        const b = randomTensor([cout], 3);
        const p = { pad, stride };
        const y = loops.conv2d(x, w, b, p);
        assertClose(native.conv2d(x, w, b, p), y, 1e-5, `[${xs.join(', ')}] k${k} s${stride} forward`);
        const dy = randomTensor(y.shape, 4);
        const [g1, g2] = [native.conv2dBackwardParams(dy, x, k, p), loops.conv2dBackwardParams(dy, x, k, p)];
        assertClose(g1.dw, g2.dw, 1e-5, `[${xs.join(', ')}] k${k} s${stride} dw`);
      }
    } finally {
      native.convAlgorithm = 'auto';
    }
  });

  // Each shape's operands and loops' results, computed once for the 30 tests below (the four loops
  // are most of their time).
  const refs = new Map<number, Record<string, unknown>>();
  const refOf = <T>(i: number, what: string, compute: () => T): T => {
    const r = refs.get(i) ?? {};
    refs.set(i, r);
    return (r[what] ??= compute()) as T;
  };

  for (const isa of isas) {
    for (const threads of [1, 2]) {
      for (const algo of ['auto', 'im2col', 'winograd', 'winograd6', 'direct'] as ConvAlgorithm[]) {
        test(`native conv (${algo}, ${isa}, ${threads} thread(s)) equals loops: forward, backward data, weights, bias`, () => {
          addon.isa(isa);
          addon.threads(threads);
          native.convAlgorithm = algo;
          try {
            SHAPES.forEach(([xs, k, cout, pad, stride], i) => {
              const x = refOf(i, 'x', () => randomTensor(xs, 100 + i));
              const w = refOf(i, 'w', () => randomTensor([xs[1]!, k, k, cout], 200 + i));
              const b = refOf(i, 'b', () => randomTensor([cout], 300 + i));
              const p = { pad, stride };
              const what = `${JSON.stringify(xs)} k${k} cout${cout} pad${pad} s${stride}`;
              // Winograd's extra additions cost precision: 1e-4 there, 1e-5 for direct products.
              const wino = k === 3 && stride === 1 && algo !== 'im2col';
              const y = refOf(i, 'y', () => loops.conv2d(x, w, b, p));
              assertClose(native.conv2d(x, w, b, p), y, wino ? 1e-4 : 1e-5, `${what} forward`);
              // nChw16c in and out (Conv2dForwardParams.ownLayout) where the channel-blocked path
              // runs; elsewhere the same calls read and write NCHW, converting a blocked x first.
              // The image's convolution (cin <= 4, direct) writes nChw16c too, for the layer after it.
              const smallCin = xs[1]! <= 4 && k === 3 && pad === 1 && stride === 1 && native.conv2dWork(x.shape, w.shape, p).algorithm === 'direct';
              if (smallCin && cout % 16 === 0) {
                const yo = native.conv2d(x, w, b, { ...p, ownLayout: true }, true);
                assert.equal(yo.layout?.name, addon.cpuHasAvx512 ? 'nChw16c' : undefined, `${what}: the output's layout`);
                assertClose(yo, refOf(i, 'yRelu', () => loops.conv2d(x, w, b, p, true)), 1e-5, `${what} forward, ReLU, to nChw16c`);
              }
              if (xs[1]! % 16 === 0 && cout % 16 === 0) {
                const c16 = native.conv2dWork(x.shape, w.shape, p).algorithm.endsWith(' 16c');
                const own = { ...p, ownLayout: true };
                const yo = native.conv2d(x, w, b, own);
                assert.equal(yo.layout?.name, c16 ? 'nChw16c' : undefined, `${what}: the output's layout`);
                assertClose(yo, y, wino ? 1e-4 : 1e-5, `${what} forward to nChw16c`);
                assertClose(native.conv2d(inNchw16c(x), w, b, p), y, wino ? 1e-4 : 1e-5, `${what} forward from nChw16c`);
                // nChw16c in and out: small weights take the three stages a tile row at a time
                // (fused), with the very bits of the phased path that reads x as NCHW.
                const yb = native.conv2d(inNchw16c(x), w, b, own);
                assertClose(yb, y, wino ? 1e-4 : 1e-5, `${what} forward nChw16c to nChw16c`);
                assert.deepEqual(yb.data, yo.data, `${what}: nChw16c to nChw16c, the bits of NCHW to nChw16c`);
                if (y.shape[2]! >= 2 && y.shape[3]! >= 2) {
                  const pool = { kernel: 2, stride: 2, pad: 0 };
                  const yp = native.conv2dMaxPool(inNchw16c(x), w, b, own, true, pool);
                  assert.equal(yp.layout?.name, c16 ? 'nChw16c' : undefined, `${what}: the pooled output's layout`);
                  assertClose(yp, refOf(i, 'poolRelu', () => loops.conv2dMaxPool(x, w, b, p, true, pool)), wino ? 1e-4 : 1e-5, `${what} forward, ReLU, 2x2 max-pool, nChw16c to nChw16c`);
                  assert.deepEqual(yp.data, native.conv2dMaxPool(x, w, b, own, true, pool).data, `${what}: pooled nChw16c to nChw16c, the bits of NCHW to nChw16c`);
                }
              }
              // The mirrored border, which the direct and Winograd kernels fill while copying their
              // input, and the nearest upsampling Winograd reads there too.
              if (pad > 0 && pad < Math.min(xs[2]!, xs[3]!)) {
                const r = { ...p, padding: 'reflect' } as const;
                assertClose(native.conv2d(x, w, b, r), refOf(i, 'reflect', () => loops.conv2d(x, w, b, r)), wino ? 1e-4 : 1e-5, `${what} forward, reflected border`);
                const u = { ...r, upsample: 2 };
                assertClose(native.conv2d(x, w, b, u), refOf(i, 'upsample', () => loops.conv2d(x, w, b, u)), wino ? 1e-4 : 1e-5, `${what} forward, upsampled, reflected border`);
              }
              // The 2x2 max-pool fused into the convolution (Winograd's output stage; the other
              // algorithms take the two steps), with and without the ReLU, floor-sized.
              if (y.shape[2]! >= 2 && y.shape[3]! >= 2) {
                const pool = { kernel: 2, stride: 2, pad: 0 };
                const relu = i % 2 === 0;
                assertClose(native.conv2dMaxPool(x, w, b, p, relu, pool), refOf(i, 'pool', () => loops.conv2dMaxPool(x, w, b, p, relu, pool)), wino ? 1e-4 : 1e-5, `${what} forward, ReLU ${relu}, 2x2 max-pool`);
              }
              const dy = refOf(i, 'dy', () => randomTensor(y.shape, 400 + i));
              const winoBack = k === 3 && stride === 1 && pad <= 2 && algo !== 'im2col';
              const dx = refOf(i, 'dx', () => loops.conv2dBackwardData(dy, w, x.shape, p));
              assertClose(native.conv2dBackwardData(dy, w, x.shape, p), dx, winoBack ? 1e-4 : 1e-5, `${what} dx`);
              // With the epilogue fused into its output stage: (dx + add) * (mask > 0).
              const e = refOf(i, 'epilogue', () => ({ add: randomTensor(x.shape, 500 + i), reluMask: randomTensor(x.shape, 600 + i) }));
              const dxe = refOf(i, 'dxEpilogue', () => new Tensor(x.shape, dx.data.map((v, j) => (e.reluMask.data[j]! > 0 ? v + e.add.data[j]! : 0))));
              assertClose(native.conv2dBackwardData(dy, w, x.shape, p, e), dxe, winoBack ? 1e-4 : 1e-5, `${what} dx with the epilogue`);
              // The image's convolution's gradient from an nChw16c dy (VGG19's gradient to relu1_1),
              // read in place: a pixel's 16 channels a vector FMA, their lanes summed at the end.
              if (smallCin && cout % 16 === 0) {
                const dxb = native.conv2dBackwardData(inNchw16c(dy), w, x.shape, p);
                assertClose(dxb, dx, 1e-5, `${what} dx from an nChw16c dy`);
              }
              // The channel-blocked path from an nChw16c dy (with the epilogue after its output
              // stage), and into an nChw16c dx (Vgg19.backward's gradients around its max-pools).
              if (xs[1]! % 16 === 0 && cout % 16 === 0) {
                const c16 = native.conv2dWork(x.shape, w.shape, p, 'backward-data', true).algorithm.endsWith(' 16c');
                assertClose(native.conv2dBackwardData(inNchw16c(dy), w, x.shape, p), dx, winoBack ? 1e-4 : 1e-5, `${what} dx from an nChw16c dy`);
                assertClose(native.conv2dBackwardData(inNchw16c(dy), w, x.shape, p, e), dxe, winoBack ? 1e-4 : 1e-5, `${what} dx from an nChw16c dy, with the epilogue`);
                for (const dyIn of [dy, inNchw16c(dy)]) {
                  const dxo = native.conv2dBackwardData(dyIn, w, x.shape, p, undefined, true);
                  assert.equal(dxo.layout?.name, c16 ? 'nChw16c' : undefined, `${what}: dx's layout`);
                  assertClose(dxo, dx, winoBack ? 1e-4 : 1e-5, `${what} dx to nChw16c`);
                }
                // With the epilogue: dx nChw16c where its operands are (a mask Vgg19 kept so), else NCHW.
                assert.equal(native.conv2dBackwardData(dy, w, x.shape, p, e, true).layout, undefined, `${what}: dx with an NCHW epilogue stays NCHW`);
                const eb = { add: inNchw16c(e.add), reluMask: inNchw16c(e.reluMask) };
                for (const dyIn of [dy, inNchw16c(dy)]) {
                  const dxeb = native.conv2dBackwardData(dyIn, w, x.shape, p, eb, true);
                  assert.equal(dxeb.layout?.name, c16 ? 'nChw16c' : undefined, `${what}: dx's layout with an nChw16c epilogue`);
                  assertClose(dxeb, dxe, winoBack ? 1e-4 : 1e-5, `${what} dx to nChw16c with an nChw16c epilogue`);
                  assertClose(native.conv2dBackwardData(dyIn, w, x.shape, p, eb), dxe, winoBack ? 1e-4 : 1e-5, `${what} dx to NCHW with an nChw16c epilogue`);
                }
              }
              const got = native.conv2dBackwardParams(dy, x, k, p);
              const ref = refOf(i, 'params', () => loops.conv2dBackwardParams(dy, x, k, p));
              assertClose(got.dw, ref.dw, 1e-5, `${what} dw`);
              assertClose(got.db, ref.db, 1e-5, `${what} db`);
            });
          } finally {
            native.convAlgorithm = 'auto';
            addon.isa(best);
            addon.threads(2);
          }
        });
      }

      test(`native pool, matmul, linear, relu, instance norm, Gram (also of nChw16c), mixChannels, scale, sum of squares, L-BFGS sweeps (${isa}, ${threads} thread(s)) equal loops`, () => {
        addon.isa(isa);
        addon.threads(threads);
        try {
          for (const [xs, kernel, stride, pad] of [[[2, 3, 8, 6], 2, 2, 0], [[1, 4, 7, 9], 2, 2, 0], [[3, 2, 9, 9], 3, 2, 1], [[2, 2, 6, 5], 3, 1, 1], [[2, 3, 6, 70], 2, 2, 0], [[1, 2, 5, 67], 2, 2, 0]] as const) {
            const x = randomTensor(xs, 7);
            for (let j = 0; j < x.size; j += 3) x.data[j] = 0.5; // ties
            for (let j = 5; j < x.size; j += 97) x.data[j] = NaN; // a NaN wins its window, as in loops
            const p = { kernel, stride, pad };
            const y = loops.maxPool2d(x, p);
            assert.deepEqual(native.maxPool2d(x, p).data, y.data);
            const dy = randomTensor(y.shape, 8);
            assert.deepEqual(native.maxPool2dBackward(dy, x, p).data, loops.maxPool2dBackward(dy, x, p).data);
            assert.deepEqual(native.maxPool2dBackward(dy, x, p, true).data, loops.reluBackward(loops.maxPool2dBackward(dy, x, p), x).data, 'pool + ReLU backward');
          }
          // 2x2 stride-2 pools of nChw16c tensors (a training pass's, around VGG19's convolutions),
          // in and out of nChw16c where asked: odd sizes (a last row and column in no window), a
          // row shorter than a window, two images, ties between any two corners (+0 and -0 too: the
          // first of the maxima wins, to the bit) and NaNs: two values in three drawn from four.
          for (const xs of [[1, 16, 2, 2], [2, 32, 7, 9], [1, 48, 13, 70], [1, 16, 5, 3], [2, 16, 1, 6]] as const) {
            const x = randomTensor(xs, 9);
            for (let j = 0; j < x.size; j++) {
              const r = Math.imul(j, 2654435761) >>> 0;
              if (r % 3 !== 0) x.data[j] = [0.5, 0, -0, -0.25][(r >>> 8) % 4]!;
            }
            for (let j = 5; j < x.size; j += 97) x.data[j] = NaN;
            const p = { kernel: 2, stride: 2, pad: 0 };
            if (xs[2] < 2) {
              assert.throws(() => native.maxPool2d(inNchw16c(x), p, true), /does not fit/);
              continue;
            }
            const y = loops.maxPool2d(x, p);
            const yb = native.maxPool2d(inNchw16c(x), p, true);
            assert.equal(yb.layout?.name, 'nChw16c', `${xs}: the pooled layout`);
            assert.deepStrictEqual(yb.data, y.data, `${xs}: nChw16c pool`);
            assert.deepStrictEqual(native.maxPool2d(inNchw16c(x), p).data, y.data, `${xs}: nChw16c pool to NCHW`);
            const dy = randomTensor(y.shape, 10);
            for (const relu of [false, true]) {
              const ref = relu ? loops.reluBackward(loops.maxPool2dBackward(dy, x, p), x) : loops.maxPool2dBackward(dy, x, p);
              const dxb = native.maxPool2dBackward(inNchw16c(dy), inNchw16c(x), p, relu, true);
              assert.equal(dxb.layout?.name, 'nChw16c', `${xs}: the gradient's layout`);
              assert.deepStrictEqual(dxb.data, ref.data, `${xs}: nChw16c pool backward, ReLU ${relu}`);
              assert.deepStrictEqual(native.maxPool2dBackward(dy, inNchw16c(x), p, relu, true).data, ref.data, `${xs}: NCHW dy, nChw16c x, ReLU ${relu}`);
            }
          }
          for (const [m, n, k] of [[1, 1, 1], [5, 7, 3], [17, 9, 300], [70, 33, 12], [13, 49, 517], [2, 1000, 517], [131, 100, 260], [50, 50, 70], [100, 83, 300], [61, 18, 9]]) {
            for (const ta of [false, true])
              for (const tb of [false, true]) {
                const a = randomTensor(ta ? [k!, m!] : [m!, k!], m! + k!);
                const b = randomTensor(tb ? [n!, k!] : [k!, n!], n! * 3);
                assertClose(native.matmul(a, b, ta, tb), loops.matmul(a, b, ta, tb), 1e-5, `matmul ${m}x${n}x${k} ${ta} ${tb}`);
              }
            const x = randomTensor([m!, k!], 1);
            for (let j = 0; j < x.size; j += 4) x.data[j] = 0; // zeros, as after a ReLU
            for (let i = 0; i < m! && k! > 2; i++) x.data[i * k! + 2] = 0; // an input that is zero in every row
            const w = randomTensor([k!, n!], 2);
            const b = randomTensor([n!], 3);
            assertClose(native.linear(x, w, b), loops.linear(x, w, b), 1e-5, `linear ${m}x${n}x${k}`);
            const dy = randomTensor([m!, n!], 4);
            const g1 = native.linearBackward(dy, x, w);
            const g2 = loops.linearBackward(dy, x, w);
            assertClose(g1.dx, g2.dx, 1e-5, 'linear dx');
            assertClose(g1.dw, g2.dw, 1e-5, 'linear dw');
            assertClose(g1.db, g2.db, 1e-5, 'linear db');
          }
          // A matrix times its own transpose (the style losses' Gram matrices): the symmetric kernel
          // from 4e6 products up (K split over the threads, the tiles right of the diagonal
          // mirrored), row counts off the panels' 6 and 16, K off the 16-float split.
          for (const [c, k] of [[3, 5], [17, 300], [16, 16000], [70, 1030], [64, 4099], [130, 600], [37, 70001]]) {
            const f = randomTensor([c!, k!], c! + k!);
            const g = native.matmul(f, f, false, true);
            assertClose(g, loops.matmul(f, f, false, true), 1e-5, `gram ${c}x${k}`);
            for (let i = 0; i < c!; i++) for (let j = 0; j < i; j++) assert.equal(g.data[i * c! + j], g.data[j * c! + i], `gram ${c}x${k} symmetric at ${i},${j}`);
          }
          // The same Gram matrix, and d^T F, from nChw16c features as read in place (Backend.gram,
          // Backend.mixChannels): 16 to 80 channels (3-block tiles and their remainders), 512 (the
          // deepest style layers), pixels below the 6-pixel tiles, off the 96- and 256-pixel runs,
          // and split over the threads; the element-wise ops keep the layout.
          for (const [c, h, w] of [[16, 1, 1], [32, 3, 5], [48, 7, 11], [64, 17, 19], [80, 30, 41], [512, 9, 13]] as const) {
            const f = randomTensor([1, c, h, w], c + h + w, -2, 2);
            const fb = inNchw16c(f);
            const d = loops.addScaled(randomTensor([c, c], c), loops.matmul(randomTensor([c, c], c + 1), randomTensor([c, c], c + 1), true, false), 0.5);
            const g = native.gram(fb);
            assertClose(g, loops.gram(f), 1e-5, `gram of nChw16c ${c}x${h}x${w}`);
            for (let i = 0; i < c; i++) for (let j = 0; j < i; j++) assert.equal(g.data[i * c + j], g.data[j * c + i], `gram ${c} symmetric at ${i},${j}`);
            const y = native.mixChannels(d, fb);
            assert.equal(y.layout, NCHW16C, 'mixChannels keeps nChw16c');
            assertClose(y, loops.mixChannels(d, f), 1e-5, `mixChannels of nChw16c ${c}x${h}x${w}`);
            const diff = native.addScaled(fb, inNchw16c(y), -0.3);
            assert.equal(diff.layout, NCHW16C, 'addScaled keeps nChw16c');
            assertClose(diff, loops.addScaled(f, y, -0.3), 1e-5, `addScaled of nChw16c ${c}`);
            assertClose(native.scale(diff, 2), loops.scale(loops.addScaled(f, y, -0.3), 2), 1e-5, `scale of nChw16c ${c}`);
            const [got, want] = [native.sumOfSquares(diff).data[0]!, loops.sumOfSquares(loops.addScaled(f, y, -0.3)).data[0]!];
            assert.ok(Math.abs(got - want) <= 1e-5 * want, `sumOfSquares of nChw16c ${c}: ${got} vs ${want}`);
          }
          // One image's features: a batch is one line (losses.ts takes a batch image by image).
          assert.throws(() => native.gram(inNchw16c(randomTensor([2, 16, 3, 3], 1))), /^PasticheError: gram: one image's features, got \[2, 16, 3, 3\]$/);
          assert.throws(() => native.mixChannels(randomTensor([16, 16], 1), inNchw16c(randomTensor([2, 16, 3, 3], 1))), /mixChannels: one image's features/);
          // nChw16c read as NCHW (Tensor.data) through the addon's conversion: pixel runs below a
          // vector, off the 4096-pixel runs, several images and blocks; the same bits as the loop's.
          for (const shape of [[1, 16, 1, 1], [1, 32, 3, 5], [2, 48, 37, 113], [1, 16, 65, 65]] as const) {
            const f = randomTensor(shape, shape[2] + shape[3]);
            const blocked = inNchw16c(f);
            const out = new Float32Array(f.size);
            addon.fromNchw16c(blocked.arrayIn(NCHW16C)!, (shape[0] * shape[1]) / 16, shape[2] * shape[3], out);
            assert.deepEqual(out, f.data, `fromNchw16c [${shape.join(', ')}]`);
            assert.deepEqual(inNchw16c(f).data, f.data, `Tensor.data of nChw16c [${shape.join(', ')}]`);
          }
          // Instance norm (the style network's): planes below a vector, across sum blocks, with tails.
          for (const [i, shape] of ([[2, 3, 5, 7], [1, 2, 37, 53], [2, 2, 1, 3]] as const).entries()) {
            const xs = randomTensor(shape, 20 + i, -3, 3);
            const [w, b, dy] = [randomTensor([shape[1]], 30 + i, 0.5, 1.5), randomTensor([shape[1]], 40 + i), randomTensor(shape, 50 + i)];
            for (const relu of [false, true]) {
              const y = loops.instanceNorm2d(xs, w, b, 1e-5, relu);
              assertClose(native.instanceNorm2d(xs, w, b, 1e-5, relu), y, 1e-5, `instanceNorm2d [${shape.join(', ')}] relu ${relu}`);
              const [g1, g2] = [native.instanceNorm2dBackward(dy, xs, w, 1e-5, relu ? y : undefined), loops.instanceNorm2dBackward(dy, xs, w, 1e-5, relu ? y : undefined)];
              for (const k of ['dx', 'dw', 'db'] as const) assertClose(g1[k], g2[k], 1e-5, `instanceNorm2dBackward ${k} [${shape.join(', ')}] relu ${relu}`);
            }
          }
          const r = randomTensor([3, 4, 5, 7], 9); // 420: whole vectors and a tail
          r.data[3] = NaN;
          r.data[40] = -0;
          assert.deepEqual(native.relu(r).data, loops.relu(r).data);
          const rd = randomTensor(r.shape, 10);
          assert.deepEqual(native.reluBackward(rd, r).data, loops.reluBackward(rd, r).data);
          assert.deepEqual(native.reluBackward(rd.clone(), r, true).data, loops.reluBackward(rd, r).data, 'in place');
          // The style losses' scale and sum of squares: below a vector, whole blocks and tails, across
          // the 65536-float tasks.
          for (const size of [1, 15, 256 + 17, 65536 * 2 + 300, 200003]) {
            const v = randomTensor([size], size, -40, 40);
            assertClose(native.scale(v, -0.37), loops.scale(v, -0.37), 1e-6, `scale ${size}`);
            const [got, want] = [native.sumOfSquares(v).data[0]!, loops.sumOfSquares(v).data[0]!];
            assert.ok(Math.abs(got - want) <= 1e-6 * want, `sumOfSquares ${size}: ${got} vs ${want}`);
          }
          // L-BFGS's sweep, float vectors against a double one: below a vector, across the 32768-value
          // tasks, 0 to 2 vectors added to q (scaled or not) and 0 to 2 dot products after.
          for (const size of [1, 7, 33, 32768 + 5, 100003]) {
            const floats = (seed: number) => randomTensor([size], seed, -3, 3).data;
            const [v0, v1, u0, u1] = [floats(1), floats(2), floats(4), floats(5)];
            const q = Float64Array.from(floats(3), (x) => x * 1.000001);
            const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * (Math.abs(b) + size), `${what} ${size}: ${a} vs ${b}`);
            for (const nv of [0, 1, 2])
              for (const nu of [0, 1, 2])
                for (const scale of nv === 0 ? [1, 1.3] : [1.3]) {
                  const [qa, qb] = [q.slice(), q.slice()];
                  const [c, v, u] = [[-0.7, 0.45].slice(0, nv), [v0, v1].slice(0, nv), [u0, u1].slice(0, nu)];
                  const got: number[] = native.sweepF32F64(qa, c, v, scale, u);
                  const want: number[] = hostVectorOps.sweepF32F64(qb, c, v, scale, u);
                  const what = `sweepF32F64 (${nv} v, ${nu} u, scale ${scale})`;
                  assert.equal(got.length, nu, `${what}: the dot products`);
                  got.forEach((d, j) => close(d, want[j]!, `${what} u[${j}].q`));
                  for (let j = 0; j < size; j++) close(qa[j]!, qb[j]!, `${what}'s q[${j}]`);
                }
          }
          assert.throws(() => native.sweepF32F64(new Float64Array(2), [], [], 1, [new Float32Array(3)]), /sweepF32F64: vectors of 3 and 2 elements/);
          assert.throws(() => native.sweepF32F64(new Float64Array(2), [1, 2, 3], [1, 2, 3].map(() => new Float32Array(2)), 1, []), /at most 2 v/);
        } finally {
          addon.isa(best);
          addon.threads(2);
        }
      });
    }
  }

  test('the channel-blocked Winograd path is taken where it should be: forward, channels multiples of 16, AVX-512', () => {
    const c16 = addon.cpuHasAvx512;
    assert.equal(addon.winogradC16(256, 256, 4), c16);
    assert.equal(addon.winogradC16(16, 48, 4), c16);
    assert.equal(addon.winogradC16(256, 32, 6), c16);
    assert.equal(addon.winogradC16(64, 128, 6), c16);
    assert.equal(addon.winogradC16(24, 32, 4), false);
    assert.equal(addon.winogradC16(32, 40, 4), false);
    // The layer table names it; the gradient to the data (rotated weights) keeps the other layout.
    native.convAlgorithm = 'winograd';
    try {
      assert.equal(native.conv2dWork([1, 256, 56, 56], [256, 3, 3, 256], { pad: 1, stride: 1 }).algorithm, c16 ? 'winograd F(4x4) 16c' : 'winograd F(4x4)');
      assert.equal(native.conv2dWork([1, 256, 56, 56], [256, 3, 3, 256], { pad: 1, stride: 1 }, 'backward-data').algorithm, 'winograd F(4x4)');
      native.convAlgorithm = 'auto'; // F(6x6) where channel-blocked: the tiles are not rounded up to GEMM panels
      assert.equal(native.conv2dWork([1, 256, 56, 56], [256, 3, 3, 256], { pad: 1, stride: 1 }).algorithm, c16 ? 'winograd F(6x6) 16c' : 'winograd F(4x4)');
      assert.equal(native.conv2dWork([1, 128, 56, 56], [128, 3, 3, 256], { pad: 1, stride: 1 }).algorithm, c16 ? 'winograd F(6x6) 16c' : 'winograd F(4x4)');
      assert.equal(native.conv2dWork([1, 512, 14, 14], [512, 3, 3, 512], { pad: 1, stride: 1 }).algorithm, c16 ? 'winograd F(4x4) 16c' : 'winograd F(4x4)');
    } finally {
      native.convAlgorithm = 'auto';
    }
  });

  test("the channel-blocked layout's transformed weights, 16 output channels a vector, are G g G^T's float32 bits at their places, each ISA", { skip: !addon.cpuHasAvx512 && 'the channel-blocked layout needs AVX-512' }, () => {
    // u = G g for three values, each operation rounded to float32 as the addon's g_transform does.
    const f = Math.fround;
    const gt = (m: number, [g0, g1, g2]: readonly number[]): number[] => {
      const d = (a: number, b: number) => f(a / b);
      if (m === 4) return [f(g0! * 0.25), d(-f(f(g0! + g1!) + g2!), 6), d(-f(f(g0! - g1!) + g2!), 6), f(f(d(g0!, 24) + d(g1!, 12)) + d(g2!, 6)), f(f(d(g0!, 24) - d(g1!, 12)) + d(g2!, 6)), g2!];
      const c = f(-2 / 9), [a, b, e] = [d(f(32 * g0!), 45), d(f(16 * g1!), 45), d(f(8 * g2!), 45)];
      return [g0!, f(c * f(f(g0! + g1!) + g2!)), f(c * f(f(g0! - g1!) + g2!)), f(f(d(g0!, 90) + d(g1!, 45)) + d(f(2 * g2!), 45)), f(f(d(g0!, 90) - d(g1!, 45)) + d(f(2 * g2!), 45)), f(f(a + b) + e), f(f(a - b) + e), g2!];
    };
    // [wcin, wcout, tile, rotate]: 80 output channels are a block of 64 and one of 16 (U^T's blocks).
    for (const [wcin, wcout, m, rotate] of [[16, 32, 4, false], [48, 80, 6, false], [80, 48, 4, true], [32, 64, 6, true]] as const) {
      const wt = randomTensor([wcin, 3, 3, wcout], 7).data;
      const [cin, cout] = rotate ? [wcout, wcin] : [wcin, wcout];
      const t = m + 2, stride = cout * cin + 16; // plane_stride
      const want = new Float32Array(addon.winogradWeightsSize(cin, cout, m));
      for (let co = 0; co < cout; co++)
        for (let ci = 0; ci < cin; ci++) {
          const g = (kh: number, kw: number) => (rotate ? wt[((co * 3 + 2 - kh) * 3 + 2 - kw) * wcout + ci]! : wt[((ci * 3 + kh) * 3 + kw) * wcout + co]!);
          const cols = [0, 1, 2].map((kw) => gt(m, [g(0, kw), g(1, kw), g(2, kw)]));
          const b0 = Math.floor(co / 64) * 64, bw = Math.min(64, cout - b0);
          for (let i = 0; i < t; i++) gt(m, [cols[0]![i]!, cols[1]![i]!, cols[2]![i]!]).forEach((u, j) => (want[(i * t + j) * stride + b0 * cin + ci * bw + co - b0] = u));
        }
      for (const isa of isas) {
        addon.isa(isa);
        const got = new Float32Array(want.length);
        addon.winogradWeights(wt, wcin, wcout, rotate, m, got, true);
        assert.deepEqual(got, want, `${wcin} -> ${wcout} F(${m}x${m})${rotate ? ' rotated' : ''} on ${isa}`);
      }
      addon.isa(best);
    }
  });

  test('the fused channel-blocked path (nChw16c in and out, weights of at most 4 MiB): where it runs, and the bits of the phased path', () => {
    // The addon's stage counters over one call (the result recycled after).
    const stagesOf = (run: () => Tensor): Float64Array => {
      addon.winogradStages(true);
      const y = run();
      const s = addon.winogradStages(true);
      y.recycle();
      return s;
    };
    const fusedTiles = (run: () => Tensor): number => stagesOf(run)[6]!;
    const pool = { kernel: 2, stride: 2, pad: 0 };
    // 128 -> 128 F(6x6) at 400 px wide: a tile row's V and M (67 tiles x 64 KB) pass 4 MiB, so
    // each row is two runs (34 + 33 tiles); 64 -> 64 F(4x4) with two images; 48 -> 32 unpadded.
    for (const [xs, cout, algo, pad] of [[[1, 128, 9, 400], 128, 'winograd6', 1], [[2, 64, 14, 23], 64, 'winograd', 1], [[1, 48, 10, 35], 32, 'winograd6', 0]] as const) {
      const x = randomTensor([...xs], 1);
      const w = randomTensor([xs[1], 3, 3, cout], 2);
      const b = randomTensor([cout], 3);
      const what = `[${xs.join(', ')}] -> ${cout} ${algo}`;
      native.convAlgorithm = algo;
      try {
        const q = { pad, stride: 1 };
        const qo = { ...q, ownLayout: true };
        const tiles = fusedTiles(() => native.conv2d(inNchw16c(x), w, b, qo));
        assert.equal(tiles > 0, addon.cpuHasAvx512, `${what}: fused tiles ${tiles}`);
        assert.equal(fusedTiles(() => native.conv2d(x, w, b, qo)), 0, `${what}: NCHW in is phased`);
        assert.equal(fusedTiles(() => native.conv2d(inNchw16c(x), w, b, q)), 0, `${what}: NCHW out is phased`);
        assert.deepEqual(native.conv2d(inNchw16c(x), w, b, qo, true).data, native.conv2d(x, w, b, qo, true).data, `${what}: the bits of the phased path`);
        assert.deepEqual(native.conv2dMaxPool(inNchw16c(x), w, b, qo, true, pool).data, native.conv2dMaxPool(x, w, b, qo, true, pool).data, `${what}: pooled`);
      } finally {
        native.convAlgorithm = 'auto';
      }
    }
    // From 4 MiB an nChw16c output (64-byte aligned, as the pool's arrays are) goes out with
    // non-temporal stores, the gradient epilogue's too: the same bits as the phased path's stores.
    const streamed = (run: () => Tensor): number => {
      const s = stagesOf(run);
      return s[6]! > 0 ? s[7]! : -1;
    };
    {
      const x = randomTensor([1, 64, 130, 128], 7); // y: 64 x 130 x 128 floats, 4.06 MiB
      const [w, b] = [randomTensor([64, 3, 3, 64], 8), randomTensor([64], 9)];
      const q = { pad: 1, stride: 1, ownLayout: true };
      assert.equal(streamed(() => native.conv2d(inNchw16c(x), w, b, q, true)), addon.cpuHasAvx512 ? 1 * 22 * 22 : -1, '4 MiB out: streamed');
      assert.deepEqual(native.conv2d(inNchw16c(x), w, b, q, true).data, native.conv2d(x, w, b, q, true).data, '4 MiB out: the bits of the phased path');
      const small = randomTensor([1, 64, 126, 128], 7); // 3.94 MiB
      assert.equal(streamed(() => native.conv2d(inNchw16c(small), w, b, q, true)), addon.cpuHasAvx512 ? 0 : -1, 'under 4 MiB: plain stores');
      const [dy, add, mask] = [randomTensor(x.shape, 10), randomTensor(x.shape, 11), randomTensor(x.shape, 12)].map(inNchw16c) as [Tensor, Tensor, Tensor];
      const e = { add, reluMask: mask };
      assert.equal(streamed(() => native.conv2dBackwardData(dy, w, x.shape, q, e, true)), addon.cpuHasAvx512 ? 22 * 22 : -1, 'the gradient, 4 MiB: streamed');
      const nchw = (t: Tensor) => new Tensor(t.shape, Float32Array.from(t.data));
      assertClose(native.conv2dBackwardData(dy, w, x.shape, q, e, true), loops.conv2dBackwardData(nchw(dy), w, x.shape, q, { add: nchw(add), reluMask: nchw(mask) }), 1e-4, 'the gradient with its epilogue, streamed, against loops');
    }
    // The image's convolution (direct, 3 -> 64 channels) takes the same rule (streams_output): an
    // nChw16c output of 4 MiB or more on a cache line goes out with non-temporal stores, each ISA.
    if (addon.cpuHasAvx512) {
      const [x, w, b] = [randomTensor([1, 3, 130, 128], 13), randomTensor([3, 3, 3, 64], 14), randomTensor([64], 15)];
      const q = { pad: 1, stride: 1 };
      const want = loops.conv2d(x, w, b, q, true);
      for (const isa of isas) {
        addon.isa(isa);
        const y = native.conv2d(x, w, b, { ...q, ownLayout: true }, true);
        const blocked = y.arrayIn(NCHW16C)!;
        assert.ok(blocked.byteLength >= 4 << 20 && addon.misalignment(blocked) === 0, `${isa}: a streamed output (${blocked.byteLength} bytes)`);
        assertClose(y, want, 1e-5, `3 -> 64 channels at 130 x 128 to nChw16c, streamed, on ${isa}`);
      }
      // So does the max-pool's gradient (with the ReLU's mask): dx 4.06 MiB, dy and x nChw16c.
      const [px, pdy] = [randomTensor([1, 64, 130, 128], 16), randomTensor([1, 64, 65, 64], 17)];
      const pool = { kernel: 2, stride: 2, pad: 0 };
      const pwant = loops.maxPool2dBackward(pdy, px, pool, true);
      for (const isa of isas) {
        addon.isa(isa);
        const dx = native.maxPool2dBackward(inNchw16c(pdy), inNchw16c(px), pool, true, true);
        const blocked = dx.arrayIn(NCHW16C)!;
        assert.ok(blocked.byteLength >= 4 << 20 && addon.misalignment(blocked) === 0, `${isa}: a streamed gradient (${blocked.byteLength} bytes)`);
        assert.deepEqual(dx.data, pwant.data, `the max-pool's gradient to nChw16c, streamed, on ${isa}`);
      }
      addon.isa(best);
    }
    // 256 -> 256: 16 MB of weights, read once per block by the phased path instead.
    const x = inNchw16c(randomTensor([1, 256, 12, 12], 4));
    const own = { pad: 1, stride: 1, ownLayout: true };
    assert.equal(fusedTiles(() => native.conv2d(x, randomTensor([256, 3, 3, 256], 5), randomTensor([256], 6), own)), 0, '256 -> 256');
  });

  test('Winograd over several tile blocks (block edges inside a tile row; 12 and 48 MiB budgets) equals im2col, with the epilogue', () => {
    // 256->256 at 60x60: 225 tiles in blocks of 160; 256->512 at 88x88: 484 tiles in blocks of 448.
    for (const [c, cout, s] of [[256, 256, 60], [256, 512, 88]] as const) {
      const x = randomTensor([1, c, s, s], 1);
      const w = randomTensor([c, 3, 3, cout], 2);
      const wb = randomTensor([cout, 3, 3, c], 3); // the backward runs cout -> c
      const b = randomTensor([cout], 4);
      const dy = randomTensor([1, c, s, s], 5);
      const e = { add: randomTensor([1, cout, s, s], 6), reluMask: randomTensor([1, cout, s, s], 7) };
      const p = { pad: 1, stride: 1 };
      const run = (algo: ConvAlgorithm): [Tensor, Tensor] => {
        native.convAlgorithm = algo;
        return [native.conv2d(x, w, b, p, true), native.conv2dBackwardData(dy, wb, [1, cout, s, s], p, e)];
      };
      const [yi, dxi] = run('im2col');
      const pool = { kernel: 2, stride: 2, pad: 0 };
      for (const algo of ['winograd', 'winograd6'] as const) {
        const [yw, dxw] = run(algo);
        assertClose(yw!, yi!, 1e-4, `${algo} ${c}->${cout} at ${s}: forward`);
        assertClose(dxw!, dxi!, 1e-4, `${algo} ${cout}<-${c} at ${s}: backward data with epilogue`);
        // Pooled in the output stage: the very bits of pooling the unfused output.
        assert.deepEqual(native.conv2dMaxPool(x, w, b, p, true, pool).data, native.maxPool2d(yw!, pool).data, `${algo} ${c}->${cout} at ${s}: fused max-pool`);
        // Other windows are not fused: the two steps.
        const wide = { kernel: 3, stride: 2, pad: 1 };
        assert.deepEqual(native.conv2dMaxPool(x, w, b, p, true, wide).data, native.maxPool2d(yw!, wide).data, `${algo} ${c}->${cout} at ${s}: 3x3 max-pool`);
      }
      native.convAlgorithm = 'auto';
    }
  });

  test("Winograd's GEMMs with 1-4 columns of tiles past the last whole panel, U streamed (512 channels) or blocked, equal im2col", () => {
    // 512 -> 512 at 28x28: F(4x4) 49 tiles (48 + 1 columns), F(6x6) 25 (16 + 9, a padded panel as before);
    // 512 -> 520 at 20x28: F(4x4) 35 tiles (32 + 3), F(6x6) 20 (16 + 4), 520 rows (a partial panel).
    // 512 -> 100 at 20x28: U not streamed (blocks of 96 rows and K in slices of 256, the second
    // added to the first), F(6x6)'s 4 columns two row panels at a time and then one (102 rows).
    for (const [h, w, cout] of [[28, 28, 512], [20, 28, 520], [20, 28, 100]] as const) {
      const x = randomTensor([1, 512, h, w], 1);
      const wt = randomTensor([512, 3, 3, cout], 2);
      const b = randomTensor([cout], 3);
      const dy = randomTensor([1, cout, h, w], 4);
      const p = { pad: 1, stride: 1 };
      const run = (algo: ConvAlgorithm): [Tensor, Tensor] => {
        native.convAlgorithm = algo;
        return [native.conv2d(x, wt, b, p, true), native.conv2dBackwardData(dy, wt, x.shape, p)];
      };
      try {
        const [yi, dxi] = run('im2col');
        for (const isa of isas.filter((i) => i !== 'portable')) {
          addon.isa(isa);
          for (const algo of ['winograd', 'winograd6'] as const) {
            const [yw, dxw] = run(algo);
            assertClose(yw, yi, 1e-4, `${isa} ${algo} 512->${cout} at ${h}x${w}: forward`);
            assertClose(dxw, dxi, 1e-4, `${isa} ${algo} ${cout}->512 at ${h}x${w}: backward data`);
          }
        }
      } finally {
        native.convAlgorithm = 'auto';
        addon.isa(best);
      }
    }
  });

  test('the portable path gives the same results as the SIMD paths', { skip: !addon.cpuHasAvx2 && 'this CPU has no AVX2: only the portable path exists' }, () => {
    const x = randomTensor([2, 24, 15, 45], 1);
    const w = randomTensor([24, 3, 3, 40], 2);
    const b = randomTensor([40], 3);
    const p = { pad: 1, stride: 1 };
    const dy = randomTensor([2, 40, 15, 45], 4);
    const e = { add: randomTensor(x.shape, 5), reluMask: randomTensor(x.shape, 6) };
    addon.isa('portable');
    assert.equal(addon.isa(), 'portable');
    // 80 channels at 60x60 (F(6x6): 64 planes x 80 channels x 112 tiles): Winograd's V is over 2
    // MiB, written with each ISA's non-temporal stores.
    const [xl, wl, bl] = [randomTensor([1, 80, 60, 60], 7), randomTensor([80, 3, 3, 32], 8), randomTensor([32], 9)];
    const portable = [native.conv2d(x, w, b, p), native.conv2dBackwardData(dy, w, x.shape, p, e), native.maxPool2d(x, { kernel: 2, stride: 2, pad: 0 }), native.conv2d(xl, wl, bl, p)];
    assertClose(portable[3]!, loops.conv2d(xl, wl, bl, p), 1e-4, 'portable: 80 channels at 60x60 against loops');
    for (const isa of isas.filter((i) => i !== 'portable')) {
      assert.equal(addon.isa(isa), isa);
      // FMA rounds once where the portable path rounds twice: equal to within float32 noise.
      assertClose(native.conv2d(x, w, b, p), portable[0]!, 1e-5, `portable vs ${isa}`);
      assertClose(native.conv2dBackwardData(dy, w, x.shape, p, e), portable[1]!, 1e-5, `portable vs ${isa}: backward with epilogue`);
      assert.deepEqual(native.maxPool2d(x, { kernel: 2, stride: 2, pad: 0 }).data, portable[2]!.data, `portable vs ${isa}: pool`);
      assertClose(native.conv2d(xl, wl, bl, p), portable[3]!, 1e-5, `portable vs ${isa}: 80 channels at 60x60`);
    }
    addon.isa(best);
  });
}

test('the native backend gives the same results from concurrent worker threads', { skip: !nativeBackend && 'native backend unavailable' }, async () => {
  const { Worker } = await import('node:worker_threads');
  const backends = new URL('../src/backends/index.js', import.meta.url).href;
  const helpers = new URL('./helpers.js', import.meta.url).href;
  const code = `
    const { parentPort } = await import('node:worker_threads');
    const { nativeBackend } = await import(${JSON.stringify(backends)});
    const { randomTensor } = await import(${JSON.stringify(helpers)});
    const x = randomTensor([1, 32, 40, 40], 1), w = randomTensor([32, 3, 3, 48], 2), b = randomTensor([48], 3);
    let y;
    for (let i = 0; i < 20; i++) y = nativeBackend.conv2d(x, w, b, { pad: 1, stride: 1 });
    parentPort.postMessage(y.data);`;
  const run = () => new Promise<Float32Array>((resolve, reject) => {
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), { type: 'module' } as never);
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const [a, b] = await Promise.all([run(), run()]);
  const expected = native!.conv2d(randomTensor([1, 32, 40, 40], 1), randomTensor([32, 3, 3, 48], 2), randomTensor([48], 3), { pad: 1, stride: 1 });
  assert.deepEqual(a, expected.data);
  assert.deepEqual(b, expected.data);
});

test('large host arrays come from the hook from 4 MiB up, and the addon makes them 64-byte aligned on huge pages (and its kept buffers)', async () => {
  const seen: number[] = [];
  setLargeArrayHook((length) => (seen.push(length), new Float32Array(length)));
  try {
    assert.equal(newHostArray(LARGE_ARRAY_FLOATS - 1).length, LARGE_ARRAY_FLOATS - 1);
    const big = newHostArray(LARGE_ARRAY_FLOATS);
    assert.deepEqual(seen, [LARGE_ARRAY_FLOATS]);
    assert.ok(big.every((v) => v === 0));
  } finally {
    setLargeArrayHook(nativeAddon && ((length) => largeHostArray(nativeAddon!, length)));
  }
  if (!nativeAddon) return;
  // The heap's 16-byte alignment, then the views the pool hands out: on a cache line, zeroed, whole.
  const odd = [0, 1, 2, 3, 4, 5, 6, 7].map(() => nativeAddon!.misalignment(new Float32Array(LARGE_ARRAY_FLOATS + 1)));
  assert.ok(odd.every((f) => Number.isInteger(f) && f >= 0 && f < 16), `misalignment in floats: ${odd}`);
  for (const length of [LARGE_ARRAY_FLOATS, LARGE_ARRAY_FLOATS + 3, 3 << 20]) {
    const a = newHostArray(length);
    assert.equal(nativeAddon.misalignment(a), 0, `${length} floats start on a 64-byte boundary`);
    assert.equal(a.length, length);
    assert.ok(a.byteOffset < 64 && a.buffer.byteLength >= a.byteOffset + 4 * length);
    assert.ok(a.every((v) => v === 0));
  }
  // In a fresh process: AnonHugePages (smaps_rollup) after writing 32 MB taken from the pool, 32 MB
  // of hugeBuffer, and a plain array of the same size (4 KiB pages without the advice: 0 MB here).
  const thp = existsSync('/sys/kernel/mm/transparent_hugepage/enabled') ? readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8') : '[never]';
  const pool = new URL('../src/tensor/host-pool.js', import.meta.url).href;
  const backends = new URL('../src/backends/index.js', import.meta.url).href;
  const addon = new URL('../src/backends/native/native-addon.js', import.meta.url).href;
  const code = `
    const { readFileSync } = await import('node:fs');
    await import(${JSON.stringify(backends)});
    const { takeHostArray } = await import(${JSON.stringify(pool)});
    const { nativeAddon } = await import(${JSON.stringify(addon)});
    const huge = () => +readFileSync('/proc/self/smaps_rollup', 'utf8').match(/AnonHugePages:\\s+(\\d+)/)[1] / 1024;
    let h = huge();
    const pooled = takeHostArray(8 << 20).fill(1);
    const fromPool = huge() - h;
    h = huge();
    const kept = new Float32Array(nativeAddon.hugeBuffer(8 << 20));
    const zeros = kept.every((v) => v === 0);
    kept.fill(1);
    const buffer = huge() - h;
    h = huge();
    const plain = new Float32Array(8 << 20).fill(1);
    const plainMB = huge() - h;
    // Memory that was touched and freed (onnxruntime building a session does this) is kept by the
    // heap for reuse, and on 4 KiB pages: hugeBuffer must not hand it out again.
    let junk = [0, 1, 2, 3].map(() => new Float32Array(8 << 20).fill(1));
    junk = null;
    for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 20)); }
    h = huge();
    const again = new Float32Array(nativeAddon.hugeBuffer(8 << 20));
    const againZeros = again.every((v) => v === 0);
    again.fill(1);
    const afterFree = huge() - h;
    console.log(JSON.stringify({ fromPool, buffer, zeros, plain: plainMB, afterFree, againZeros, small: [...new Float32Array(nativeAddon.hugeBuffer(1000))].filter((v) => v === 0).length, sum: pooled[0] + kept[0] + plain[0] + again[0] }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--input-type=module', '-e', code]);
  const r = JSON.parse(stdout) as { fromPool: number; buffer: number; zeros: boolean; plain: number; afterFree: number; againZeros: boolean; small: number; sum: number };
  assert.equal(r.sum, 4);
  assert.ok(r.zeros && r.againZeros, 'hugeBuffer gives zeros');
  assert.equal(r.small, 1000, 'below one huge page hugeBuffer gives zeros too (from the heap, 64-byte aligned)');
  if (!thp.includes('[never]')) {
    assert.ok(r.fromPool >= 16, `32 MB from the pool, ${r.fromPool} MB of it on huge pages (plain array: ${r.plain} MB)`);
    assert.ok(r.buffer >= 16, `32 MB from hugeBuffer, ${r.buffer} MB of it on huge pages (plain array: ${r.plain} MB)`);
    assert.ok(r.afterFree >= 16, `32 MB from hugeBuffer after 128 MB were touched and freed, ${r.afterFree} MB of it on huge pages`);
  }
});

test('releaseHugeBuffer detaches a hugeBuffer and gives its memory back at once; any other buffer is left as it is', { skip: !nativeBackend && 'native backend unavailable' }, async () => {
  // In a fresh process, so that its resident memory moves only with these buffers.
  const addon = new URL('../src/backends/native/native-addon.js', import.meta.url).href;
  const code = `
    const { readFileSync } = await import('node:fs');
    const { nativeAddon } = await import(${JSON.stringify(addon)});
    const rss = () => +readFileSync('/proc/self/status', 'utf8').match(/VmRSS:\\s+(\\d+)/)[1] / 1024;
    const r0 = rss();
    const buffer = nativeAddon.hugeBuffer(16 << 20);
    if (!buffer) { console.log('null'); process.exit(0); }
    const view = new Float32Array(buffer);
    view.fill(1);
    const r1 = rss();
    const released = nativeAddon.releaseHugeBuffer(buffer);
    const r2 = rss();
    const plain = new ArrayBuffer(64);
    console.log(JSON.stringify({ grew: r1 - r0, gaveBack: r1 - r2, released, bytes: buffer.byteLength, length: view.length,
      again: nativeAddon.releaseHugeBuffer(buffer), plain: nativeAddon.releaseHugeBuffer(plain), plainBytes: plain.byteLength }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', code]);
  if (stdout.trim() === 'null') return; // PASTICHE_SYSTEM_MALLOC: no hugeBuffer to release
  const r = JSON.parse(stdout) as { grew: number; gaveBack: number; released: boolean; bytes: number; length: number; again: boolean; plain: boolean; plainBytes: number };
  assert.ok(r.grew >= 48, `64 MB written, resident memory grew by ${r.grew} MB`);
  assert.ok(r.gaveBack >= 48, `released, resident memory fell by ${r.gaveBack} MB`);
  assert.deepEqual([r.released, r.bytes, r.length, r.again], [true, 0, 0, false]);
  assert.deepEqual([r.plain, r.plainBytes], [false, 64]);
});

test("a weight array's first Winograd transform goes into one shared scratch buffer, its second is kept; every pass gives the same bits", { skip: !nativeBackend && 'native backend unavailable' }, () => {
  const raw = nativeAddon!;
  const backend = createNativeBackend(raw); // caches of its own, empty
  const x = randomTensor([1, 32, 28, 28], 1);
  const w1 = randomTensor([32, 3, 3, 32], 2), w2 = randomTensor([32, 3, 3, 64], 3);
  const b1 = randomTensor([32], 4), b2 = randomTensor([64], 5);
  // Both layers take Winograd (3x3, 32 channels in, 49 tiles of 4x4); the second's transform is the larger.
  const p = { pad: 1, stride: 1 };
  const pass = () => backend.conv2d(backend.conv2d(x, w1, b1, p, true), w2, b2, p);
  const calls = { transforms: 0, buffers: 0, released: 0 };
  const seen: (typeof calls)[] = [];
  const counted = { winogradWeights: () => calls.transforms++, hugeBuffer: () => calls.buffers++, releaseHugeBuffer: () => calls.released++ };
  const outputs = watchingCalls(raw, counted, () =>
    [0, 1, 2].map(() => {
      const y = pass().data.slice();
      seen.push({ ...calls });
      return y;
    }),
  );
  // Pass 1: both into the scratch, grown once for the second layer (the smaller one given back).
  // Pass 2: the scratch given back, both kept. Pass 3: nothing to transform.
  assert.deepEqual(seen, [
    { transforms: 2, buffers: 2, released: 1 },
    { transforms: 4, buffers: 4, released: 2 },
    { transforms: 4, buffers: 4, released: 2 },
  ]);
  assert.deepEqual(outputs[1], outputs[0]);
  assert.deepEqual(outputs[2], outputs[0]);
  const expected = loops.conv2d(loops.conv2d(x, w1, b1, p, true), w2, b2, p);
  assertClose(pass(), expected, 1e-4, "the two layers against loops");
});

test('without the addon Pastiche falls back to ts and says so once, in one line', async () => {
  const run = promisify(execFile);
  const env = { ...process.env, PASTICHE_DISABLE_NATIVE: '1' };
  const { stdout, stderr } = await run(process.execPath, [CLI, 'classify', `${TINY}chelsea.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '--json'], { env });
  assert.match(stdout, /"index":185/);
  assert.equal(stderr.trim(), 'pastiche: native backend unavailable (disabled by PASTICHE_DISABLE_NATIVE); using ts');
  await assert.rejects(run(process.execPath, [CLI, 'classify', `${TINY}chelsea.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '-b', 'native'], { env }), (e: Error & { stderr: string }) => /the native backend is not available here/.test(e.stderr));
});

test('the Winograd tile follows the measured policy: F(6x6) on large planes, for 512 channels from 36 tiles up, F(4x4) elsewhere', () => {
  const tile = (cin: number, cout: number, size: number) => winogradTile('auto', 3, 1, 1, cin, cout, size, size);
  assert.equal(tile(64, 64, 224), 6); // VGG19's conv1_2 at 224
  assert.equal(tile(128, 128, 112), 6);
  assert.equal(tile(256, 256, 56), 4); // 6x6 tiles waste too much at 56 (a tie measured)
  assert.equal(winogradTile('auto', 3, 1, 1, 256, 256, 56, 56, () => true), 6); // channel-blocked: 100 x 64 products against 196 x 36
  assert.equal(winogradTile('auto', 3, 1, 1, 32, 32, 10, 14, () => true), 4); // but fewer than 16 tiles of 6x6 count as a panel
  assert.equal(tile(256, 256, 128), 6);
  assert.equal(tile(512, 512, 64), 6); // its F(6x6) weights are 67 MB each way, but 121 tiles use them
  assert.equal(tile(512, 512, 36), 6); // 36 tiles
  assert.equal(tile(512, 512, 28), 4); // 25 tiles (VGG19's conv4 at 224 px) do not repay them
  assert.equal(winogradTile('auto', 3, 1, 1, 512, 512, 28, 28, () => true), 4);
  assert.equal(tile(256, 256, 28), 6); // where they are small, any tile count that saves products
  assert.equal(winogradTile('auto', 3, 1, 1, 512, 512, 64, 64, () => true, true), 4); // lean: never past the cap
  assert.equal(winogradTile('auto', 3, 1, 1, 256, 256, 64, 64, () => true, true), 6);
  assert.equal(tile(128, 128, 14), 4); // small planes: 6x6 tiles waste a third
  assert.equal(tile(8, 8, 64), 0); // too few channels for Winograd
  assert.equal(tile(64, 64, 8), 0); // too few tiles
  assert.equal(winogradTile('auto', 3, 2, 1, 64, 64, 64, 64), 0); // stride 2
  assert.equal(winogradTile('winograd6', 3, 1, 1, 8, 8, 8, 8), 6); // forced
  assert.equal(winogradTile('im2col', 3, 1, 1, 64, 64, 224, 224), 0);
});
