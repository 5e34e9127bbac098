/**
 * `--precision bf16` on native: every product's operands rounded to bfloat16, sums in fp32. Ground
 * truth is the four loops on operands rounded by the readable `roundToBf16` (the image-reading
 * layers, at most 4 channels, on the unrounded ones): each convolution algorithm, one and two
 * threads, the forward pass with its fused borders, both gradients, matmul and linear.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { getBackend, nativeBackend, openBackend } from '../src/backends/index.js';
import { createNativeBackend, type NativeBackend } from '../src/backends/native/native-backend.js';
import { nativeAddon } from '../src/backends/native/native-addon.js';
import type { ConvAlgorithm } from '../src/backends/native/native-backend.js';
import { bf16Bits, roundToBf16 } from '../src/tensor/bf16.js';
import { NCHW16C, toChannelBlocked } from '../src/tensor/channel-blocked.js';
import { Tensor } from '../src/tensor/tensor.js';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SUITE_GEMM_SHAPES } from '../src/app/kernel-suite.js';
import { readRgb } from '../src/image/preprocess.js';
import { CONV_SHAPES, FIXTURES, TINY, assertClose, randomTensor, relError, runCli, watchingCalls } from './helpers.js';
import { tempDir } from './temp.js';

const loops = getBackend('loops');
const rounded = (t: Tensor) => new Tensor(t.shape, roundToBf16(t.data));
const hasBf16 = nativeBackend?.addon.cpuHasBf16 ?? false;

test('bf16 rounding (the readable twin): nearest, ties to even, NaN and infinities kept, the exponent range of fp32, subnormals to zero', () => {
  const cases: [number, number][] = [
    [1, 1], [1 + 2 ** -8, 1], [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], [1 + 3 * 2 ** -8, 1 + 2 ** -6], [-1.5, -1.5],
    [Infinity, Infinity], [-Infinity, -Infinity], [3.4e38, Infinity], [1.2e-38, 1.203044999669685e-38], [1e-39, 0], [-1e-40, -0], [0, 0],
  ];
  const got = roundToBf16(Float32Array.from(cases.map((c) => c[0])));
  cases.forEach(([x, want], i) => assert.ok(Object.is(got[i], Math.fround(want)), `round(${x}): ${got[i]}`));
  assert.ok(Number.isNaN(roundToBf16(Float32Array.of(NaN))[0]));
  assert.equal(bf16Bits(0x3f808000), 0x3f80); // a tie: to the even 0x3f80
  assert.equal(bf16Bits(0x3f818000), 0x3f82); // a tie: to the even 0x3f82
});

test('--precision bf16 alone runs on native; without the addon it is one line', async () => {
  const r = await runCli(['classify', `${TINY}chelsea.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '--precision', 'bf16'], { env: { ...process.env, PASTICHE_DISABLE_NATIVE: '1' } });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'pastiche: --precision bf16 needs the native backend, which is not available here: disabled by PASTICHE_DISABLE_NATIVE\n');
  if (!hasBf16) return;
  const ok = await runCli(['classify', `${TINY}chelsea.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '--precision', 'bf16']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /backend: native bf16;/);
});

if (nativeBackend && !hasBf16) {
  test('--precision bf16 on a CPU without AVX512-BF16: refused in one line', async () => {
    await assert.rejects(openBackend('native', { precision: 'bf16' }), /--precision bf16 needs a CPU with AVX512-BF16/);
  });
}

if (nativeBackend && hasBf16) {
  const addon = nativeBackend.addon;
  const bf = (await openBackend('native', { precision: 'bf16' })) as NativeBackend;

  test("native's roundBf16 and toBf16Bits equal the readable rounding, element for element (vector body, masked tail, special values)", () => {
    const x = randomTensor([1037], 5, -3e4, 3e4).data;
    x.set([NaN, Infinity, -Infinity, 0, -0, 1e-42, -1e-39, 1.2e-38, 3.4e38, 1.00390625, 1.01171875], 0);
    const y = new Float32Array(x.length);
    addon.roundBf16(x, y);
    const want = roundToBf16(x);
    for (let i = 0; i < x.length; i++) assert.ok(Object.is(y[i], want[i]), `[${i}] ${x[i]}: ${y[i]} vs ${want[i]}`);
    const bits = new Uint16Array(x.length);
    addon.toBf16Bits(x, bits);
    const u32 = new Uint32Array(x.buffer);
    const wantBits = new Uint32Array(want.buffer);
    for (let i = 0; i < x.length; i++) assert.equal(bits[i], Number.isNaN(x[i]) ? bf16Bits(u32[i]!) : wantBits[i]! >>> 16, `bits [${i}]`);
  });

  // cin > 4 rounds its operands; at most 4 (an image) keeps them in fp32.
  const SHAPES: (readonly [readonly number[], number, number, number, number])[] = [
    ...CONV_SHAPES.map(([xs, k, c, p, s]) => [[...xs], k, c, p, s] as const),
    [[1, 32, 17, 21], 3, 33, 1, 1],
    [[2, 16, 5, 6], 3, 19, 2, 1],
    [[1, 64, 30, 30], 3, 64, 1, 1],
    [[2, 32, 21, 22], 3, 64, 1, 2],
    [[1, 32, 20, 40], 9, 3, 4, 1],
    [[2, 8, 9, 9], 1, 8, 0, 1],
  ];

  // Each case's operands and the loops' results, computed once for the ten runs below.
  const cases = SHAPES.map(([xs, k, cout, pad, stride], i) => {
    const x = randomTensor(xs, 100 + i);
    const w = randomTensor([xs[1]!, k, k, cout], 200 + i);
    const b = randomTensor([cout], 300 + i);
    const p = { pad, stride };
    const r = xs[1]! > 4 ? rounded : (t: Tensor) => t;
    const y = loops.conv2d(r(x), r(w), b, p);
    const dy = randomTensor(y.shape, 400 + i);
    const borders = pad > 0 && pad < Math.min(xs[2]!, xs[3]!);
    const rp = { ...p, padding: 'reflect' } as const;
    const up = { ...rp, upsample: 2 };
    return {
      x, w, b, k, p, rp, up, dy, y, borders,
      what: `${JSON.stringify(xs)} k${k} cout${cout} pad${pad} s${stride}`,
      rounds: xs[1]! > 4,
      y32: loops.conv2d(x, w, b, p),
      yReflect: borders ? loops.conv2d(r(x), r(w), b, rp) : undefined,
      yUp: borders ? loops.conv2d(r(x), r(w), b, up) : undefined,
      dx: loops.conv2dBackwardData(r(dy), r(w), x.shape, p),
      dw: loops.conv2dBackwardParams(r(dy), r(x), k, p).dw,
      // The bias gradient is a sum, not a product: of dy as it is.
      db: loops.conv2dBackwardParams(dy, x, k, p).db,
    };
  });

  for (const threads of [1, 2]) {
    for (const algo of ['auto', 'im2col', 'winograd', 'winograd6', 'direct'] as ConvAlgorithm[]) {
      test(`bf16 conv (${algo}, ${threads} thread(s)) equals loops on rounded operands: forward (zero and mirrored borders, upsampled), dx, dw, db`, () => {
        addon.threads(threads);
        bf.convAlgorithm = algo;
        try {
          for (const c of cases) {
            const wino = c.k === 3 && c.p.stride === 1 && algo !== 'im2col';
            const tol = wino ? 1e-4 : 1e-5;
            const got = bf.conv2d(c.x, c.w, c.b, c.p);
            assertClose(got, c.y, tol, `${c.what} forward`);
            // It is bf16 indeed: fp32's result is further off than the tolerance (where rounding happens).
            if (c.rounds) assert.ok(relError(got, c.y32) > 10 * tol, `${c.what}: the result is fp32's`);
            // From and to nChw16c (the channel-blocked path copies x's rows as they are, and rounds them there).
            if (c.x.shape[1]! % 16 === 0 && c.y.shape[1]! % 16 === 0) {
              const blocked = Tensor.uninitializedIn(NCHW16C, c.x.shape);
              toChannelBlocked(c.x.data, c.x.shape, blocked.arrayIn(NCHW16C)!);
              assertClose(bf.conv2d(blocked, c.w, c.b, { ...c.p, ownLayout: true }), c.y, tol, `${c.what} forward, nChw16c`);
            }
            if (c.borders) {
              assertClose(bf.conv2d(c.x, c.w, c.b, c.rp), c.yReflect!, tol, `${c.what} forward, mirrored border`);
              assertClose(bf.conv2d(c.x, c.w, c.b, c.up), c.yUp!, tol, `${c.what} forward, upsampled`);
            }
            const winoBack = c.k === 3 && c.p.stride === 1 && c.p.pad <= 2 && algo !== 'im2col';
            assertClose(bf.conv2dBackwardData(c.dy, c.w, c.x.shape, c.p), c.dx, winoBack ? 1e-4 : 1e-5, `${c.what} dx`);
            const g = bf.conv2dBackwardParams(c.dy, c.x, c.k, c.p);
            assertClose(g.dw, c.dw, 1e-5, `${c.what} dw`);
            assertClose(g.db, c.db, 1e-5, `${c.what} db`);
          }
        } finally {
          bf.convAlgorithm = 'auto';
          addon.threads(2);
        }
      });
    }
  }

  test('bf16 matmul (every transpose) and linear (a few rows streamed from bf16 weights, and many) equal loops on rounded operands', () => {
    SUITE_GEMM_SHAPES.forEach(([m, n, k], i) => {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        const a = randomTensor(ta ? [k, m] : [m, k], 10 + i);
        const b = randomTensor(tb ? [n, k] : [k, n], 20 + i);
        assertClose(bf.matmul(a, b, ta, tb), loops.matmul(rounded(a), rounded(b), ta, tb), 1e-5, `matmul ${m}x${n}x${k} ${ta} ${tb}`);
      }
    });
    for (const [m, k, n] of [[1, 300, 70], [3, 1000, 33], [8, 257, 40]]) {
      const x = randomTensor([m, k], 1);
      x.data.forEach((v, j) => (x.data[j] = v < -0.5 ? 0 : v)); // zero rows of the input are skipped
      const w = randomTensor([k, n], 2);
      const b = randomTensor([n], 3);
      assertClose(bf.linear(x, w, b), loops.linear(rounded(x), rounded(w), b), 1e-5, `linear ${m}x${k} -> ${n}`);
    }
  });

  for (const threads of [1, 2]) {
    test(`bf16 Gram matrix and d^T F of channel-blocked features (${threads} thread(s)) equal loops on rounded operands`, () => {
      addon.threads(threads);
      try {
        // The addon rounds the pixels a run at a time (256 for the Gram matrix, 96 for d^T F): one
        // pixel, runs with tails, several runs a thread, 512 channels; the results stay nChw16c.
        for (const [c, h, w] of [[16, 1, 1], [48, 7, 11], [64, 40, 33], [80, 30, 41], [512, 23, 24]] as const) {
          const f = randomTensor([1, c, h, w], c + h, -2, 2);
          const fb = Tensor.uninitializedIn(NCHW16C, f.shape);
          toChannelBlocked(f.data, f.shape, fb.arrayIn(NCHW16C)!);
          const d = randomTensor([c, c], c + 1);
          const what = `${c}x${h}x${w}`;
          const g = bf.gram(fb);
          assertClose(g, loops.gram(rounded(f)), 1e-5, `gram ${what}`);
          // Rounded indeed: fp32 operands give another matrix (bf16 keeps 8 significant bits).
          assert.ok(relError(g, loops.gram(f)) > 1e-4, `gram ${what} as fp32's`);
          const y = bf.mixChannels(d, fb);
          assert.equal(y.layout, NCHW16C, `mixChannels ${what} keeps nChw16c`);
          assertClose(y, loops.mixChannels(rounded(d), rounded(f)), 1e-5, `mixChannels ${what}`);
          assert.ok(relError(y, loops.mixChannels(d, f)) > 1e-4, `mixChannels ${what} as fp32's`);
        }
      } finally {
        addon.threads(2);
      }
    });
  }

  test("bf16 weights rounded on the way: Winograd's transforms keep no rounded copy; a fully connected layer's first pass rounds fp32 rows as it reads them, later ones read kept bf16 bits, the same bits", () => {
    const raw = nativeAddon!;
    // The transform of weights rounded on the way is the transform of a rounded copy, bit for bit.
    for (const [cin, cout, rotate, m, c16] of [[32, 48, false, 4, false], [64, 32, true, 6, true], [16, 512, false, 4, false]] as const) {
      const w = randomTensor([cin, 3, 3, cout], cin + cout, -2, 2).data;
      const size = rotate ? raw.winogradWeightsSize(cout, cin, m) : raw.winogradWeightsSize(cin, cout, m);
      const [got, want, unrounded] = [0, 1, 2].map(() => new Float32Array(size));
      raw.winogradWeights(w, cin, cout, rotate, m, got!, c16, true);
      const r = new Float32Array(w.length);
      raw.roundBf16(w, r);
      raw.winogradWeights(r, cin, cout, rotate, m, want!, c16);
      raw.winogradWeights(w, cin, cout, rotate, m, unrounded!, c16);
      assert.deepEqual(got, want, `${cin} -> ${cout} F(${m}x${m})${rotate ? ' rotated' : ''}`);
      assert.notDeepEqual(got, unrounded, `${cin} -> ${cout}: rounded indeed`);
    }
    const backend = createNativeBackend(raw, 'bf16'); // caches of its own, empty
    const calls = { rounded: 0, bits: 0 };
    const kinds: string[] = [];
    // Two Winograd layers (forward and the gradient to the data) and a fully connected one.
    const x = randomTensor([1, 32, 14, 14], 1);
    const [w1, w2] = [randomTensor([32, 3, 3, 32], 2), randomTensor([32, 3, 3, 16], 3)];
    const [b1, b2] = [randomTensor([32], 4), randomTensor([16], 5)];
    const fx = randomTensor([2, 300], 6);
    fx.data.forEach((v, j) => (fx.data[j] = v < -0.5 ? 0 : v));
    const [fw, fb] = [randomTensor([300, 70], 7), randomTensor([70], 8)];
    const p = { pad: 1, stride: 1 };
    const pass = () => {
      const h = backend.conv2d(x, w1, b1, p, true);
      const y = backend.conv2d(h, w2, b2, p);
      return [y, backend.conv2dBackwardData(y, w2, h.shape, p), backend.linear(fx, fw, fb)].map((t) => t.data.slice());
    };
    const seen: (typeof calls)[] = [];
    const watched = { roundBf16: () => calls.rounded++, toBf16Bits: () => calls.bits++, linearBf16: (...a: Parameters<typeof raw.linearBf16>) => kinds.push(a[3].constructor.name) };
    const outputs = watchingCalls(raw, watched, () =>
      [0, 1, 2].map(() => {
        const o = pass();
        seen.push({ ...calls });
        return o;
      }),
    );
    assert.deepEqual(seen, [{ rounded: 0, bits: 0 }, { rounded: 0, bits: 1 }, { rounded: 0, bits: 1 }]);
    assert.deepEqual(kinds, ['Float32Array', 'Uint16Array', 'Uint16Array']);
    assert.deepEqual(outputs[1], outputs[0]);
    assert.deepEqual(outputs[2], outputs[0]);
    const linear = new Tensor([2, 70], outputs[0]![2]!);
    assertClose(linear, loops.linear(rounded(fx), rounded(fw), fb), 1e-5, 'linear against loops on rounded operands');
    assert.ok(relError(linear, loops.linear(fx, fw, fb)) > 1e-4, "linear as fp32's");
  });

  test('an fp32 and a bf16 backend taking turns in one thread each keep their own arithmetic', () => {
    const fp = nativeBackend!;
    const x = randomTensor([1, 16, 12, 12], 7);
    const w = randomTensor([16, 3, 3, 16], 8);
    const b = randomTensor([16], 9);
    const p = { pad: 1, stride: 1 };
    const [y32, y16] = [loops.conv2d(x, w, b, p), loops.conv2d(rounded(x), rounded(w), b, p)];
    for (let i = 0; i < 3; i++) {
      assertClose(fp.conv2d(x, w, b, p), y32, 1e-4, `fp32, turn ${i}`);
      assertClose(bf.conv2d(x, w, b, p), y16, 1e-4, `bf16, turn ${i}`);
    }
  });

  test('pastiche check --precision bf16 grades native bf16 and compares it with fp32: classification, a 5-step style trajectory, speed', async () => {
    const r = await runCli(['check', '--precision', 'bf16', '-r', '1', '-q', '--json', '-w', `${TINY}vgg19-tiny-old.mat`], { timeout: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const { rows, precision } = JSON.parse(r.stdout);
    assert.deepEqual(rows.map((x: { backend: string }) => x.backend), Array(4).fill('native bf16'));
    for (const row of rows) assert.ok(row.pass && row.maxRelErr < 2 ** -8, JSON.stringify(row));
    // The conv rows are bf16's, not fp32's: their error is above fp32's bound.
    assert.ok(rows[0].maxRelErr > 1e-5, `conv forward error ${rows[0].maxRelErr}: fp32's?`);
    assert.equal(precision.reference.backend, 'native fp32');
    assert.equal(precision.reduced.backend, 'native bf16');
    assert.ok(precision.maxProbDiff > 0 && precision.maxProbDiff < 0.02, `probabilities moved by ${precision.maxProbDiff}`);
    assert.deepEqual(precision.trajectories.map((t: { optimizer: string }) => t.optimizer), ['adam', 'lbfgs']);
    for (const t of precision.trajectories) assert.ok(t.reference.length === 5 && t.reduced.length === 5, JSON.stringify(t));
    // Adam follows fp32's path closely (L-BFGS's line search can part ways: printed, not bounded).
    assert.ok(precision.trajectories[0].maxRelDiff < 0.01, JSON.stringify(precision.trajectories[0]));
    assert.ok(precision.reference.forwardMs > 0 && precision.reduced.forwardMs > 0 && precision.stepMs.reduced > 0);
  });

  test('classify, stylize, the style network and its training take --precision bf16; another backend is refused in one line', async () => {
    const classify = async (...more: string[]) => {
      const r = await runCli(['classify', `${TINY}chelsea.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '--json', ...more]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).top[0];
    };
    const [p16, p32] = [await classify('--precision', 'bf16'), await classify()];
    assert.equal(p16.index, p32.index);
    assert.ok(p16.prob !== p32.prob && Math.abs(p16.prob - p32.prob) < 0.01, `${p16.prob} vs ${p32.prob}`);
    const bad = await runCli(['classify', `${TINY}chelsea.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '--precision', 'bf16', '-b', 'ts']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'pastiche: --precision bf16 needs the native backend (got ts)\n');

    const dir = tempDir('pastiche-bf16-');
    const run = async (args: string[]) => {
      const r = await runCli([...args, '-q']);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /warning|error/i);
    };
    await run(['stylize', `${TINY}chelsea.png`, `${FIXTURES}resize/gradient301x199.png`, '-w', `${TINY}vgg19-tiny-old.mat`, '--size', '32', '--iterations', '3', '--precision', 'bf16', '-o', join(dir, 'gatys.png')]);
    // The style network: bf16's picture is fp32's to within a few levels.
    const model = `${FIXTURES}transformer/transformer-tiny.pth`;
    for (const p of ['fp32', 'bf16']) await run(['stylize', `${TINY}chelsea.png`, '--model', model, '--size', '48', '--precision', p, '-o', join(dir, `net-${p}.png`)]);
    const [ia, ib] = [await readRgb(join(dir, 'net-fp32.png')), await readRgb(join(dir, 'net-bf16.png'))];
    let worst = 0;
    for (let i = 0; i < ia.data.length; i++) worst = Math.max(worst, Math.abs(ia.data[i]! - ib.data[i]!));
    assert.ok(worst <= 8, `the two pictures differ by up to ${worst} levels`);
    const content = join(dir, 'content');
    mkdirSync(content);
    for (const n of ['a', 'b']) copyFileSync(`${TINY}chelsea.png`, join(content, `${n}.png`));
    await run(['train-style', `${TINY}chelsea.png`, '--content-dir', content, '-o', join(dir, 'net.safetensors'), '-w', `${TINY}vgg19-tiny-old.mat`, '--size', '32', '--batch', '2', '--width', '4', '--iterations', '2', '--precision', 'bf16']);
  });
}
