/**
 * The real-time style network (TransformerNet of pytorch/examples fast_neural_style): its new ops
 * on small cases worked by hand and against the four-loop reference, the whole network against
 * PyTorch on a checkpoint written by torch.save (fixtures/transformer/make_transformer.py), our
 * safetensors round trip, and `stylize --model` with its one-line errors.
 */
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stylizeWithNetwork } from '../src/app/fast-stylize.js';
import { getBackend } from '../src/backends/index.js';
import { readRgb } from '../src/image/preprocess.js';
import { TransformerNet } from '../src/model/transformer/transformer-net.js';
import { Tensor } from '../src/tensor/tensor.js';
import { readNpy } from '../src/tensor/npy.js';
import { loadTransformerModel, saveTransformerModel } from '../src/weights/transformer-file.js';
import { FIXTURES, TINY, assertClose, randomTensor, runCli } from './helpers.js';

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
  assert.throws(() => loops.reflectionPad2d(x, 2), /reflectionPad2d: padding 2 needs an input larger than it on both sides \(got 2x3\)/);
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
    assertClose(be.reflectionPad2d(x, 4), loops.reflectionPad2d(x, 4), 1e-9, `${name} reflectionPad2d`);
    assertClose(be.instanceNorm2d(x, weight, bias, 1e-5, true), loops.instanceNorm2d(x, weight, bias, 1e-5, true), 1e-6, `${name} instanceNorm2d`);
    assertClose(be.upsampleNearest2d(x, 2), loops.upsampleNearest2d(x, 2), 1e-9, `${name} upsampleNearest2d`);
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
  const file = join(mkdtempSync(join(tmpdir(), 'pastiche-tn-')), 'model.safetensors');
  await saveTransformerModel(file, weights);
  const again = await loadTransformerModel(file);
  assertClose(await new TransformerNet(again, be).forward(input).toHost(), want, 1e-9, 'safetensors round trip');
});

test('stylize --model: one image to a file, several into a folder, equal to the library; the output is the input size', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pastiche-fast-'));
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
  const dir = mkdtempSync(join(tmpdir(), 'pastiche-fast-bad-'));
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
});
