/**
 * The real-time style network (TransformerNet of pytorch/examples fast_neural_style): its new ops
 * on small cases worked by hand and against the four-loop reference, the whole network against
 * PyTorch on a checkpoint written by torch.save (fixtures/transformer/make_transformer.py), our
 * safetensors round trip, and `stylize --model` with its one-line errors.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { forwardTiled, networkTile, normStatistics, stylizeWithNetwork } from '../src/app/fast-stylize.js';
import { crop } from '../src/app/tiled-evaluate.js';
import { transformerOnnx, transformerOnnxSession } from '../src/app/onnx-peer.js';
import { rgbToTensor } from '../src/image/rgb.js';
import { getBackend } from '../src/backends/index.js';
import { readRgb } from '../src/image/preprocess.js';
import { TransformerNet, randomTransformerWeights, transformerForwardFlops } from '../src/model/transformer/transformer-net.js';
import { Tensor } from '../src/tensor/tensor.js';
import { readNpy } from '../src/tensor/npy.js';
import { loadTransformerModel, saveTransformerModel } from '../src/weights/transformer-file.js';
import { FIXTURES, TINY, assertClose, randomTensor, runCli } from './helpers.js';
import { checkTransformerBackward } from './transformer-reference.js';
import { tempDir } from './temp.js';

const DIR = `${FIXTURES}transformer/`;
const MODEL = `${DIR}transformer-tiny.pth`;
const loops = getBackend('loops');
const BACKENDS = (['loops', 'ts', 'native'] as const).filter((b) => getBackend(b) !== undefined);

test('reflection padding mirrors without repeating the edge (PyTorch ReflectionPad2d); too large a padding is one line', () => {
  const x = Tensor.from([1, 1, 2, 3], [1, 2, 3, 4, 5, 6]);
  const y = loops.reflectionPad2d(x, 1);
  assert.deepEqual(y.shape, [1, 1, 4, 5]);
  // Rows: 4 5 6 / 1 2 3 / 4 5 6 / 1 2 3 mirrored about the edges, then each row about its ends.
  assert.deepEqual([...y.data], [5, 4, 5, 6, 5, 2, 1, 2, 3, 2, 5, 4, 5, 6, 5, 2, 1, 2, 3, 2]);
  assert.throws(() => loops.reflectionPad2d(x, 2), /reflectionPad2d: reflection padding 2 needs an input larger than it on both sides \(got 2x3\)/);
});

test("a pass's operations: 80.6 GFLOP as direct convolutions at 512 (full width), what loops executes; Winograd on native executes fewer", () => {
  // conv1 9x9 3->32 at 512, two stride-2 3x3 layers to 256 and 128, ten 128->128 at 128, the upsampling 3x3 layers at 256 and 512, 9x9 32->3 at 512.
  const direct = 2 * (3 * 32 * 81 * 512 ** 2 + 32 * 64 * 9 * 256 ** 2 + 64 * 128 * 9 * 128 ** 2 + 10 * 128 * 128 * 9 * 128 ** 2 + 128 * 64 * 9 * 256 ** 2 + 64 * 32 * 9 * 512 ** 2 + 32 * 3 * 81 * 512 ** 2);
  assert.equal(transformerForwardFlops(32, 512), direct);
  for (const upsample of ['nearest', 'deconv'] as const) {
    const w = randomTransformerWeights(16, 1, upsample);
    assert.equal(new TransformerNet(w, loops).forwardWork(64), transformerForwardFlops(16, 64, upsample), upsample);
    if (BACKENDS.includes('native')) assert.ok(new TransformerNet(w, getBackend('native')!).forwardWork(64) < 0.7 * transformerForwardFlops(16, 64, upsample), upsample);
  }
});

test("conv2d with padding 'reflect' and upsample is Upsample, ReflectionPad2d, then the plain convolution, on every backend (strides 1 and 2, kernels 1-9, batch 2); bad values are one line", () => {
  const cases = [
    [[2, 5, 9, 13], 3, 4, 1, 1, 1, 'reflect'], [[1, 3, 11, 10], 9, 5, 4, 1, 1, 'reflect'], [[2, 6, 8, 7], 3, 3, 1, 2, 1, 'reflect'],
    [[1, 2, 5, 6], 5, 2, 2, 1, 1, 'reflect'], [[1, 4, 6, 6], 1, 3, 0, 1, 1, 'reflect'],
    // Upsampled (the style network's upsampling layers), with either border, and a factor of 3.
    [[2, 17, 7, 5], 3, 6, 1, 1, 2, 'reflect'], [[1, 16, 6, 9], 3, 5, 1, 1, 2, 'zeros'], [[1, 3, 4, 5], 3, 2, 2, 1, 3, 'reflect'], [[1, 2, 3, 4], 9, 2, 4, 1, 2, 'reflect'],
  ] as const;
  for (const [i, [xs, k, cout, pad, stride, upsample, padding]] of cases.entries()) {
    const x = randomTensor(xs, 60 + i, -3, 3);
    const w = randomTensor([xs[1], k, k, cout], 70 + i);
    const b = randomTensor([cout], 80 + i);
    const up = loops.upsampleNearest2d(x, upsample);
    const reference = padding === 'reflect' ? loops.conv2d(loops.reflectionPad2d(up, pad), w, b, { pad: 0, stride }, true) : loops.conv2d(up, w, b, { pad, stride }, true);
    for (const name of BACKENDS) {
      assertClose(getBackend(name)!.conv2d(x, w, b, { pad, stride, padding, upsample }, true), reference, 1e-5, `${name} [${xs.join(', ')}] k${k} pad ${pad} s${stride} x${upsample} ${padding}`);
    }
  }
  const [x, w, b] = [randomTensor([1, 2, 4, 9], 1), randomTensor([2, 9, 9, 1], 2), randomTensor([1], 3)];
  assert.throws(() => loops.conv2d(x, w, b, { pad: 4, stride: 1, padding: 'reflect' }), /conv2d: reflection padding 4 needs an input larger than it on both sides \(got 4x9\)/);
  assert.throws(() => loops.conv2d(x, randomTensor([2, 3, 3, 1], 2), b, { pad: 1, stride: 1, upsample: 1.5 }), /conv2d: the upsampling factor must be a whole number of at least 1 \(got 1.5\)/);
});

test('instance norm: each plane to mean 0 and variance 1 (biased), then weight and bias per channel; the ReLU fused', () => {
  const x = randomTensor([2, 3, 5, 7], 1, -4, 9);
  const weight = Tensor.from([3], [1, 2, 0.5]);
  const bias = Tensor.from([3], [0, -1, 3]);
  const y = loops.instanceNorm2d(x, weight, bias, 0);
  for (let plane = 0; plane < 6; plane++) {
    const v = [...y.data.subarray(plane * 35, (plane + 1) * 35)].map((u) => (u - bias.data[plane % 3]!) / weight.data[plane % 3]!);
    const mean = v.reduce((a, b) => a + b, 0) / 35;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / 35;
    assert.ok(Math.abs(mean) < 1e-5 && Math.abs(variance - 1) < 1e-4, `plane ${plane}: mean ${mean}, variance ${variance}`);
  }
  const r = loops.instanceNorm2d(x, weight, bias, 1e-5, true);
  const plain = loops.instanceNorm2d(x, weight, bias, 1e-5);
  assert.deepEqual([...r.data], [...plain.data].map((v) => (v > 0 ? v : 0)));
  assert.throws(() => loops.instanceNorm2d(x, Tensor.from([2], [1, 1]), bias, 1e-5), /instanceNorm2d: 3 channels but 2 weights and 3 biases/);
});

test('batch norm: each channel over the batch and its cells to mean 0 and variance 1 (biased), the statistics returned', () => {
  const x = randomTensor([3, 2, 4, 5], 7, -2, 6);
  const { y, mean, variance } = loops.batchNorm2d(x, Tensor.from([2], [1, 1]), Tensor.from([2], [0, 0]), 0);
  for (let c = 0; c < 2; c++) {
    const cells = [0, 1, 2].flatMap((n) => [...x.data.subarray((n * 2 + c) * 20, (n * 2 + c + 1) * 20)]);
    const m = cells.reduce((a, b) => a + b, 0) / 60;
    const v = cells.reduce((a, b) => a + (b - m) ** 2, 0) / 60;
    assert.ok(Math.abs(mean.data[c]! - m) < 1e-5 && Math.abs(variance.data[c]! - v) < 1e-4, `channel ${c} statistics`);
    const out = [0, 1, 2].flatMap((n) => [...y.data.subarray((n * 2 + c) * 20, (n * 2 + c + 1) * 20)]);
    const om = out.reduce((a, b) => a + b, 0) / 60;
    assert.ok(Math.abs(om) < 1e-5 && Math.abs(out.reduce((a, b) => a + (b - om) ** 2, 0) / 60 - 1) < 1e-4, `channel ${c} normalised`);
  }
  // With one image it is instance norm.
  const one = randomTensor([1, 3, 6, 7], 8);
  const [w3, b3] = [randomTensor([3], 9, 0.5, 1.5), randomTensor([3], 10)];
  assertClose(loops.batchNorm2d(one, w3, b3, 1e-5, true).y, loops.instanceNorm2d(one, w3, b3, 1e-5, true), 1e-6, 'batch of one');
});

test('a per-channel scale and shift (a normalisation with known statistics), the ReLU fused', () => {
  const y = loops.channelAffine2d(Tensor.from([1, 2, 1, 2], [1, -2, 3, 4]), Tensor.from([2], [2, -1]), Tensor.from([2], [1, 0.5]), true);
  assert.deepEqual([...y.data], [3, 0, 0, 0]);
  const z = loops.channelAffine2d(Tensor.from([1, 2, 1, 2], [1, -2, 3, 4]), Tensor.from([2], [2, -1]), Tensor.from([2], [1, 0.5]));
  assert.deepEqual([...z.data], [3, -3, -2.5, -3.5]);
});

test('nearest upsampling repeats each cell factor x factor times', () => {
  const y = loops.upsampleNearest2d(Tensor.from([1, 1, 2, 2], [1, 2, 3, 4]), 2);
  assert.deepEqual([...y.data], [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
  assert.throws(() => loops.upsampleNearest2d(y, 1.5), /whole number/);
});

test('the new ops on ts and native equal loops (batch 2, odd sizes)', () => {
  const x = randomTensor([2, 5, 9, 13], 2, -3, 3);
  const weight = randomTensor([5], 3, 0.5, 1.5);
  const bias = randomTensor([5], 4, -1, 1);
  for (const name of BACKENDS) {
    const be = getBackend(name)!;
    // native's padding and upsampling are its own (C++): every padding up to the largest, factors 1-3.
    for (const pad of [1, 4, 8]) assertClose(be.reflectionPad2d(x, pad), loops.reflectionPad2d(x, pad), 1e-9, `${name} reflectionPad2d ${pad}`);
    for (const f of [1, 3]) assertClose(be.upsampleNearest2d(x, f), loops.upsampleNearest2d(x, f), 1e-9, `${name} upsampleNearest2d x${f}`);
    // native's instance norm is its own (C++, vector sums per block of 1024): planes below a
    // vector, across blocks, with tails; with and without the ReLU.
    for (const [i, shape] of ([[2, 5, 9, 13], [1, 3, 2, 3], [2, 2, 37, 53], [1, 2, 40, 41]] as const).entries()) {
      const xs = randomTensor(shape, 30 + i, -3, 3);
      const [ws, bs] = [randomTensor([shape[1]], 40 + i, 0.5, 1.5), randomTensor([shape[1]], 50 + i, -1, 1)];
      for (const relu of [true, false]) assertClose(be.instanceNorm2d(xs, ws, bs, 1e-5, relu), loops.instanceNorm2d(xs, ws, bs, 1e-5, relu), 1e-6, `${name} instanceNorm2d [${shape.join(', ')}] relu ${relu}`);
    }
    assertClose(be.upsampleNearest2d(x, 2), loops.upsampleNearest2d(x, 2), 1e-9, `${name} upsampleNearest2d`);
    assertClose(be.channelAffine2d(x, weight, bias, true), loops.channelAffine2d(x, weight, bias, true), 1e-9, `${name} channelAffine2d`);
  }
});

/** |a - b| <= tol x the reference's range, everywhere. */
function assertWithinRange(got: Tensor, want: Tensor, tol: number, what: string): void {
  assert.deepEqual(got.shape, want.shape, what);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of want.data) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  let worst = 0;
  for (let i = 0; i < got.size; i++) worst = Math.max(worst, Math.abs(got.data[i]! - want.data[i]!));
  assert.ok(worst <= tol * (hi - lo), `${what}: largest difference ${worst}, ${tol} of the range ${hi - lo} allowed`);
}

const input = await readNpy(`${DIR}input.npy`);
const reference = await readNpy(`${DIR}output.npy`);

for (const name of BACKENDS) {
  test(`a TransformerNet saved by torch.save: the output on ${name} equals PyTorch's (batch 2, 37x53 -> 40x56, 1e-4 of the range)`, async () => {
    const net = new TransformerNet(await loadTransformerModel(MODEL), getBackend(name)!);
    assertWithinRange(await net.forward(input).toHost(), reference, 1e-4, name);
  });
}

test("old checkpoints' InstanceNorm running_* keys are dropped; our safetensors hold the same network", async () => {
  const weights = await loadTransformerModel(MODEL);
  assert.equal(weights.width, 8);
  const legacy = await loadTransformerModel(`${DIR}transformer-tiny-legacy-keys.pth`);
  const be = getBackend();
  const want = await new TransformerNet(weights, be).forward(input).toHost();
  assertClose(await new TransformerNet(legacy, be).forward(input).toHost(), want, 1e-9, 'legacy keys');
  const file = join(tempDir('pastiche-tn-'), 'model.safetensors');
  await saveTransformerModel(file, weights);
  const again = await loadTransformerModel(file);
  assertClose(await new TransformerNet(again, be).forward(input).toHost(), want, 1e-9, 'safetensors round trip');
});

test('stylize --model: one image to a file, several into a folder, equal to the library; the output is the input size', async () => {
  const dir = tempDir('pastiche-fast-');
  const one = join(dir, 'one.png');
  const r = await runCli(['stylize', `${TINY}chelsea.png`, '--model', MODEL, '-o', one, '--size', '120']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^wrote .*one\.png: 120x80 in [\d.]+ s\n$/);
  const got = await readRgb(one);
  const want = await stylizeWithNetwork(new TransformerNet(await loadTransformerModel(MODEL), getBackend()), await readRgb(`${TINY}chelsea.png`, { width: 120, height: 80 }));
  assert.deepEqual([got.width, got.height], [120, 80]);
  let worst = 0;
  for (let i = 0; i < got.data.length; i++) worst = Math.max(worst, Math.abs(got.data[i]! - want.data[i]!));
  assert.ok(worst <= 1, `largest difference ${worst} grey levels`);
  const folder = join(dir, 'many');
  const m = await runCli(['stylize', `${TINY}chelsea.png`, `${FIXTURES}resize/gradient301x199.png`, '--model', MODEL, '-o', folder]);
  assert.equal(m.code, 0, m.stderr);
  assert.deepEqual(readdirSync(folder).sort(), ['chelsea.png', 'gradient301x199.png']);
  const g = await readRgb(join(folder, 'gradient301x199.png'));
  assert.deepEqual([g.width, g.height], [301, 199]);
});

test('stylize --model: a pickle that runs code, a VGG19 file, a flag of the optimisation, no style without --model: one line each, nothing written', async () => {
  const dir = tempDir('pastiche-fast-bad-');
  const out = join(dir, 'x.png');
  const notModel = join(dir, 'notes.pth');
  writeFileSync(notModel, 'just text');
  const cases: [string[], RegExp][] = [
    [['--model', `${FIXTURES}sources/hostile/os-system.pth`], /os-system\.pth: it names the Python global posix\.system, which a state_dict never needs/],
    [['--model', `${FIXTURES}sources/vgg19-tiny-legacy.pth`], /vgg19-tiny-legacy\.pth: no conv1\.conv2d\.weight: not a fast_neural_style TransformerNet \(it holds features\.0\.weight/],
    [['--model', notModel], /notes\.pth: not a style model \(a fast_neural_style \.pth or a Pastiche \.safetensors\)$/],
    [['--model', MODEL, '--iterations', '5'], /^pastiche: --iterations is for the optimisation; --model runs a trained network/],
    [[], /^pastiche: give at least one style image \(or --model MODEL: a trained style network\)$/],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(['stylize', `${TINY}chelsea.png`, ...args, '-o', out]);
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr.trim(), pattern);
    assert.equal(existsSync(out), false);
  }
  // Several images into a folder that does not exist yet: a bad model leaves no empty folder.
  const folder = join(dir, 'results');
  const r = await runCli(['stylize', `${TINY}chelsea.png`, `${FIXTURES}resize/gradient301x199.png`, '--model', notModel, '-o', folder]);
  assert.equal(r.code, 1);
  assert.equal(existsSync(folder), false);
});

for (const model of [MODEL, `${DIR}transformer-deconv-tiny.pth`]) {
  test(`tiled inference (${model.includes('deconv') ? 'transposed convolutions' : 'nearest upsampling'}): statistics gathered tile by tile equal the whole image's, and the tiles equal the untiled pass (1e-4 of the range)`, async () => {
    const weights = await loadTransformerModel(model);
    const net = new TransformerNet(weights, getBackend());
    const x = rgbToTensor(await readRgb(`${TINY}chelsea.png`, { width: 201, height: 150 }), [0, 0, 0]);
    const whole = await normStatistics(net, x, undefined);
    // 201x150 in 64-px tiles: 4 x 3 of them, the last ones partial, crops with 64-px halos.
    const tiled = await normStatistics(net, x, 64);
    for (const [name, s] of whole) {
      const t = tiled.get(name)!;
      for (let k = 0; k < s.mean.length; k++) {
        assert.ok(Math.abs(t.mean[k]! - s.mean[k]!) <= 1e-4 * (Math.abs(s.mean[k]!) + Math.sqrt(s.variance[k]!)), `${name} mean ${k}`);
        assert.ok(Math.abs(t.variance[k]! / s.variance[k]! - 1) <= 1e-3, `${name} variance ${k}: ${t.variance[k]} vs ${s.variance[k]}`);
      }
    }
    const untiled = await net.forward(x).toHost();
    const shortHalo = await forwardTiled(net, x, { tile: 64, stats: tiled, halo: 16 });
    assertWithinRange(await forwardTiled(net, x, { tile: 64, stats: tiled }), crop(untiled, 0, 150, 0, 201), 1e-4, 'tiles');
    // A 16-px halo, far under half the receptive field: the seams differ, so the comparison above can fail.
    assert.throws(() => assertWithinRange(shortHalo, crop(untiled, 0, 150, 0, 201), 1e-4, 'short halo'), /short halo: largest difference/);
  });
}

test('stylize --model --max-memory: a budget that cannot hold the image whole runs it in tiles; too small a budget is one line', async () => {
  const dir = tempDir('pastiche-fast-tiles-');
  const out = join(dir, 'big.png');
  // 400x266 whole would need ~210 MB here (the quarter-width network: 0.5 KB a pixel): 128-px tiles.
  assert.equal(networkTile(266, 400, 8, 200 * 2 ** 20), 128);
  assert.equal(networkTile(266, 400, 8, 400 * 2 ** 20), undefined);
  const r = await runCli(['stylize', `${TINY}chelsea.png`, '--model', MODEL, '-o', out, '--size', '400', '--max-memory', '200M']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await readRgb(out)).width, 400);
  const bad = await runCli(['stylize', `${TINY}chelsea.png`, '--model', MODEL, '-o', join(dir, 'never.png'), '--size', '4000', '--max-memory', '100M']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^pastiche: a 4000x\d+ image needs at least [\d.]+ GiB even in 128-px tiles, more than the 0\.1 GiB given: choose a smaller --size or a larger --max-memory\n$/);
});

/**
 * Central differences of L = sum(op(x) * r) in x at `probes` positions against the backward's
 * dL/dx (dy = r): float32 forward passes, a step of 1e-2, agreement to 2e-3 of the gradient's scale.
 */
function checkGradient(what: string, forward: (x: Tensor) => Tensor, x: Tensor, grad: Tensor, r: Tensor, probes = 12): void {
  const loss = (t: Tensor) => {
    const y = forward(t);
    let s = 0;
    for (let i = 0; i < y.size; i++) s += y.data[i]! * r.data[i]!;
    return s;
  };
  let scale = 0;
  for (const g of grad.data) scale = Math.max(scale, Math.abs(g));
  const h = 1e-2;
  for (let k = 0; k < probes; k++) {
    const i = Math.floor(((k + 0.5) / probes) * x.size);
    const plus = x.clone();
    const minus = x.clone();
    plus.data[i]! += h;
    minus.data[i]! -= h;
    const fd = (loss(plus) - loss(minus)) / (2 * h);
    assert.ok(Math.abs(fd - grad.data[i]!) <= 2e-3 * scale, `${what}: d/dx[${i}] ${grad.data[i]} vs finite differences ${fd}`);
  }
}

test('backward of reflection padding, nearest upsampling and instance norm (with its ReLU): finite differences, batch 2, odd sizes', () => {
  const x = randomTensor([2, 3, 7, 9], 11, -2, 2);
  const padR = randomTensor([2, 3, 13, 15], 12, -1, 1);
  checkGradient('reflectionPad2d', (t) => loops.reflectionPad2d(t, 3), x, loops.reflectionPad2dBackward(padR, x.shape, 3), padR, 40);
  const upR = randomTensor([2, 3, 21, 27], 13, -1, 1);
  checkGradient('upsampleNearest2d', (t) => loops.upsampleNearest2d(t, 3), x, loops.upsampleNearest2dBackward(upR, 3), upR, 40);
  const weight = randomTensor([3], 14, 0.5, 1.5);
  const bias = randomTensor([3], 15, -0.5, 0.5);
  const r = randomTensor([2, 3, 7, 9], 16, -1, 1);
  const g = loops.instanceNorm2dBackward(r, x, weight, 1e-5);
  checkGradient('instanceNorm2d', (t) => loops.instanceNorm2d(t, weight, bias, 1e-5), x, g.dx, r, 40);
  // The weight and bias, by the same differences.
  checkGradient('instanceNorm2d weight', (q) => loops.instanceNorm2d(x, q, bias, 1e-5), weight, g.dw, r, 3);
  checkGradient('instanceNorm2d bias', (q) => loops.instanceNorm2d(x, weight, q, 1e-5), bias, g.db, r, 3);
  // The fused ReLU (its kink makes differences unreliable): the same as the plain backward of dy
  // zeroed where the output is not positive (seed eq. 18).
  const y = loops.instanceNorm2d(x, weight, bias, 1e-5, true);
  const fused = loops.instanceNorm2dBackward(r, x, weight, 1e-5, y);
  const masked = loops.instanceNorm2dBackward(new Tensor(r.shape, r.data.map((v, i) => (y.data[i]! > 0 ? v : 0))), x, weight, 1e-5);
  for (const k of ['dx', 'dw', 'db'] as const) assertClose(fused[k], masked[k], 1e-9, `fused ReLU ${k}`);
  // Batch norm: the same checks, its statistics over the batch and the cells of each channel.
  const bn = loops.batchNorm2dBackward(r, x, weight, 1e-5);
  const bnY = (t: Tensor, q = weight, b = bias) => loops.batchNorm2d(t, q, b, 1e-5).y;
  checkGradient('batchNorm2d', (t) => bnY(t), x, bn.dx, r, 40);
  checkGradient('batchNorm2d weight', (q) => bnY(x, q), weight, bn.dw, r, 3);
  checkGradient('batchNorm2d bias', (q) => bnY(x, weight, q), bias, bn.db, r, 3);
  const bnRelu = loops.batchNorm2d(x, weight, bias, 1e-5, true).y;
  const bnFused = loops.batchNorm2dBackward(r, x, weight, 1e-5, bnRelu);
  const bnMasked = loops.batchNorm2dBackward(new Tensor(r.shape, r.data.map((v, i) => (bnRelu.data[i]! > 0 ? v : 0))), x, weight, 1e-5);
  for (const k of ['dx', 'dw', 'db'] as const) assertClose(bnFused[k], bnMasked[k], 1e-9, `batch norm fused ReLU ${k}`);
  assert.throws(() => loops.upsampleNearest2dBackward(randomTensor([1, 1, 5, 6], 1), 2), /not a whole factor 2/);
});

test('the backward ops on ts and native equal loops', () => {
  const x = randomTensor([2, 5, 9, 13], 21, -3, 3);
  for (const name of BACKENDS) {
    const be = getBackend(name)!;
    // ts shares loops' code (1e-9); native's instance norm is its own C++ (float vectors: 1e-5).
    for (const [i, shape] of ([[2, 5, 9, 13], [1, 3, 2, 3], [2, 2, 37, 53], [1, 2, 40, 41]] as const).entries()) {
      const xs = randomTensor(shape, 60 + i, -3, 3);
      const weight = randomTensor([shape[1]], 70 + i, 0.5, 1.5);
      const dy = randomTensor(shape, 80 + i, -1, 1);
      for (const relu of [true, false]) {
        const y = relu ? loops.instanceNorm2d(xs, weight, randomTensor([shape[1]], 90 + i, -1, 1), 1e-5, true) : undefined;
        const [a, b] = [be.instanceNorm2dBackward(dy, xs, weight, 1e-5, y), loops.instanceNorm2dBackward(dy, xs, weight, 1e-5, y)];
        for (const k of ['dx', 'dw', 'db'] as const) assertClose(a[k], b[k], name === 'native' ? 1e-5 : 1e-9, `${name} instanceNorm2dBackward ${k} [${shape.join(', ')}] relu ${relu}`);
      }
    }
    assertClose(be.reflectionPad2dBackward(randomTensor([2, 5, 17, 21], 25), x.shape, 4), loops.reflectionPad2dBackward(randomTensor([2, 5, 17, 21], 25), x.shape, 4), 1e-9, `${name} reflectionPad2dBackward`);
    assertClose(be.upsampleNearest2dBackward(randomTensor([2, 5, 18, 26], 26), 2), loops.upsampleNearest2dBackward(randomTensor([2, 5, 18, 26], 26), 2), 1e-9, `${name} upsampleNearest2dBackward`);
  }
});

for (const name of BACKENDS) {
  test(`the whole network's backward on ${name}: every parameter's gradient and dL/dx equal PyTorch's autograd (float64), batch 2, 37x53`, async () => {
    await checkTransformerBackward(getBackend(name)!);
  });
  test(`the course's variant with transposed convolutions (--upsample deconv) on ${name}: output and every gradient equal PyTorch's ConvTranspose2d network`, async () => {
    await checkTransformerBackward(getBackend(name)!, 'deconv');
  });
}

test('a transposed-convolution network round-trips through our safetensors, and stays out of the ONNX export', async () => {
  const weights = await loadTransformerModel(`${DIR}transformer-deconv-tiny.pth`);
  const file = join(tempDir('pastiche-deconv-'), 'm.safetensors');
  await saveTransformerModel(file, weights);
  const back = await loadTransformerModel(file);
  assert.equal(back.upsample, 'deconv');
  assert.deepEqual([...back.params.get('deconv1')!.w.shape], [16, 3, 3, 32]);
  for (const [k, p] of weights.params) assert.deepEqual([...back.params.get(k)!.w.data], [...p.w.data], k);
  assert.throws(() => transformerOnnx(weights, 32, 32), /only networks with nearest upsampling and instance norm are exported to ONNX/);
});

test("the ONNX export of the network (bench --sections fast --peers) gives onnxruntime's output equal to ours (1e-4 of the range)", async () => {
  const weights = await loadTransformerModel(MODEL);
  const one = new Tensor([1, 3, 37, 53], input.data.slice(0, 3 * 37 * 53));
  const peer = await transformerOnnxSession(weights, one, 1);
  const ours = await new TransformerNet(weights, getBackend()).forward(one).toHost();
  assertWithinRange(new Tensor(ours.shape, await peer.run()), ours, 1e-4, 'onnxruntime');
});
