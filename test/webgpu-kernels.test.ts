/**
 * Every webgpu kernel against the four-loop reference on many shapes (odd sizes, batch > 1,
 * strides, padding, ties), in fp32 (relative error < 1e-4) and in the fp16 mode.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { getBackend } from '../src/backends/index.js';
import { PasticheError } from '../src/errors.js';
import { Tensor } from '../src/tensor/tensor.js';
import { CONV_SHAPES, assertClose, convCase, randomTensor, relError } from './helpers.js';
import { testGpu } from './webgpu-env.js';

const loops = getBackend('loops');
const gpu = await testGpu();
const TOL = 1e-4;

async function close(got: Tensor, ref: Tensor, tol: number, what: string): Promise<void> {
  assert.ok(got.onDevice, `${what}: a webgpu result lives on the GPU`);
  await got.toHost();
  assertClose(got, ref, tol, what);
}

test(`webgpu reports its adapter (${gpu.adapterName})`, () => {
  assert.equal(gpu.name, 'webgpu');
  assert.ok(gpu.adapterName.length > 0);
  assert.match(gpu.description, /WGSL kernels on/);
});

test(`webgpu convolution equals loops (forward +ReLU, backward data +epilogue, weights, bias) on ${CONV_SHAPES.length} shapes`, async () => {
  for (let i = 0; i < CONV_SHAPES.length; i++) {
    const { x, w, b, k, p, y, dy, what } = convCase(i);
    await close(gpu.conv2d(x, w, b, p), y, TOL, `${what} forward`);
    await close(gpu.conv2d(x, w, b, p, true), loops.conv2d(x, w, b, p, true), TOL, `${what} forward+relu`);
    await close(gpu.conv2dBackwardData(dy, w, x.shape, p), loops.conv2dBackwardData(dy, w, x.shape, p), TOL, `${what} dx`);
    const add = randomTensor(x.shape, 50 + i);
    const mask = randomTensor(x.shape, 60 + i);
    const e = { add, reluMask: mask };
    await close(gpu.conv2dBackwardData(dy, w, x.shape, p, e), loops.conv2dBackwardData(dy, w, x.shape, p, e), TOL, `${what} dx epilogue`);
    const got = gpu.conv2dBackwardParams(dy, x, k, p);
    const ref = loops.conv2dBackwardParams(dy, x, k, p);
    await close(got.dw, ref.dw, TOL, `${what} dw`);
    await close(got.db, ref.db, TOL, `${what} db`);
  }
});

test('webgpu split-K (few output tiles, long K) equals loops: weight gradient of a large image, fc layers', async () => {
  const x = randomTensor([2, 3, 40, 50], 1);
  const dy = randomTensor([2, 8, 40, 50], 3);
  const p = { pad: 1, stride: 1 };
  const got = gpu.conv2dBackwardParams(dy, x, 3, p);
  const ref = loops.conv2dBackwardParams(dy, x, 3, p);
  await close(got.dw, ref.dw, TOL, 'dw K=4000');
  await close(got.db, ref.db, TOL, 'db K=4000');
  const a = randomTensor([3, 6000], 4);
  const fw = randomTensor([6000, 70], 5);
  const fb = randomTensor([70], 6);
  await close(gpu.linear(a, fw, fb), loops.linear(a, fw, fb), TOL, 'linear K=6000');
});

test('webgpu input stays on the device: a device tensor feeds the next op without a copy', async () => {
  const x = randomTensor([2, 4, 9, 7], 7);
  const w = randomTensor([4, 3, 3, 5], 8);
  const b = randomTensor([5], 9);
  const p = { pad: 1, stride: 1 };
  const y = gpu.conv2d(x, w, b, p, true);
  const z = gpu.maxPool2d(y, { kernel: 2, stride: 2, pad: 0 });
  assert.ok(y.onDevice && z.onDevice);
  assert.throws(() => y.data, /lives on webgpu: await tensor.toHost\(\)/);
  assert.throws(() => loops.relu(y), PasticheError);
  await close(z, loops.maxPool2d(loops.conv2d(x, w, b, p, true), { kernel: 2, stride: 2, pad: 0 }), TOL, 'conv -> pool');
});

test('webgpu max and average pooling equal loops (windows, strides, padding, ties)', async () => {
  const cases: [number[], number, number, number][] = [
    [[2, 3, 8, 6], 2, 2, 0], [[1, 4, 7, 9], 2, 2, 0], [[3, 2, 9, 9], 3, 2, 1], [[2, 2, 6, 5], 3, 1, 1], [[1, 1, 5, 5], 2, 1, 0],
  ];
  for (const [i, [xs, kernel, stride, pad]] of cases.entries()) {
    const x = randomTensor(xs, 50 + i);
    for (let j = 0; j < x.size; j += 3) x.data[j] = 0.5; // ties go to the first cell everywhere
    const p = { kernel, stride, pad };
    const y = loops.maxPool2d(x, p);
    const gy = await gpu.maxPool2d(x, p).toHost();
    assert.deepEqual(gy.data, y.data, `max-pool ${JSON.stringify(xs)}`);
    const dy = randomTensor(y.shape, 60 + i);
    await close(gpu.maxPool2dBackward(dy, x, p), loops.maxPool2dBackward(dy, x, p), 1e-6, `max-pool backward ${JSON.stringify(xs)}`);
    await close(gpu.maxPool2dBackward(dy, x, p, true), loops.reluBackward(loops.maxPool2dBackward(dy, x, p), x), 1e-6, `max-pool + ReLU backward ${JSON.stringify(xs)}`);
    await close(gpu.avgPool2d(x, p), loops.avgPool2d(x, p), 1e-6, `avg-pool ${JSON.stringify(xs)}`);
    await close(gpu.avgPool2dBackward(dy, x.shape, p), loops.avgPool2dBackward(dy, x.shape, p), 1e-6, `avg-pool backward ${JSON.stringify(xs)}`);
  }
});

test('webgpu matmul and linear equal loops with every transpose', async () => {
  for (const [m, n, k] of [[1, 1, 1], [5, 7, 3], [17, 9, 300], [70, 33, 12], [65, 129, 17]] as const) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = randomTensor(ta ? [k, m] : [m, k], m + k);
        const b = randomTensor(tb ? [n, k] : [k, n], n * 3);
        await close(gpu.matmul(a, b, ta, tb), loops.matmul(a, b, ta, tb), TOL, `matmul ${m}x${n}x${k} ${ta} ${tb}`);
      }
    }
    const x = randomTensor([m, k], 1);
    const w = randomTensor([k, n], 2);
    const b = randomTensor([n], 3);
    await close(gpu.linear(x, w, b), loops.linear(x, w, b), TOL, 'linear');
    const dy = randomTensor([m, n], 4);
    const g1 = gpu.linearBackward(dy, x, w);
    const g2 = loops.linearBackward(dy, x, w);
    await close(g1.dx, g2.dx, TOL, 'linear dx');
    await close(g1.dw, g2.dw, TOL, 'linear dw');
    await close(g1.db, g2.db, TOL, 'linear db');
  }
});

test('webgpu ReLU, flatten, softmax, cross-entropy and the small ops equal loops', async () => {
  const x = randomTensor([2, 5, 3, 7], 1);
  const dy = randomTensor(x.shape, 2);
  await close(gpu.relu(x), loops.relu(x), 1e-12, 'relu');
  await close(gpu.reluBackward(dy, x), loops.reluBackward(dy, x), 1e-12, 'relu backward');
  const owned = gpu.scale(dy, 1);
  const inPlace = gpu.reluBackward(owned, x, true);
  assert.equal(inPlace, owned, 'in place: the same tensor comes back');
  await close(inPlace, loops.reluBackward(dy, x), 1e-12, 'relu backward in place');
  await close(gpu.flattenNhwc(x), loops.flattenNhwc(x), 1e-12, 'flatten');
  const fd = randomTensor([2, 105], 3);
  await close(gpu.flattenNhwcBackward(fd, x.shape), loops.flattenNhwcBackward(fd, x.shape), 1e-12, 'flatten backward');
  await close(gpu.addScaled(x, dy, -0.37), loops.addScaled(x, dy, -0.37), 1e-6, 'addScaled');
  await close(gpu.scale(x, 3.5), loops.scale(x, 3.5), 1e-6, 'scale');
  const big = randomTensor([300007], 4); // more than one workgroup's share: the two-stage sum
  await close(gpu.sumOfSquares(big), loops.sumOfSquares(big), 1e-5, 'sum of squares');
  const logits = randomTensor([3, 1000], 5, -20, 20);
  const labels = Int32Array.from([0, 999, 421]);
  const prob = gpu.softmax(logits);
  await close(prob, loops.softmax(logits), 1e-5, 'softmax');
  const ref = loops.softmax(logits);
  await close(gpu.crossEntropy(prob, labels), loops.crossEntropy(ref, labels), 1e-5, 'cross-entropy');
  await close(gpu.softmaxCrossEntropyBackward(prob, labels), loops.softmaxCrossEntropyBackward(ref, labels), 1e-5, 'softmax cross-entropy backward');
});

test('webgpu rejects mismatched shapes with the same clear messages', () => {
  const x = new Tensor([1, 3, 4, 4]);
  assert.throws(() => gpu.conv2d(x, new Tensor([4, 3, 3, 2]), new Tensor([2]), { pad: 1, stride: 1 }), /input has 3 channels but weights \[4, 3, 3, 2\] expect 4/);
  assert.throws(() => gpu.conv2d(x, new Tensor([3, 3, 3, 2]), new Tensor([5]), { pad: 1, stride: 1 }), /bias has 5 elements, expected 2/);
  assert.throws(() => gpu.matmul(new Tensor([2, 3]), new Tensor([4, 2])), /inner sizes differ/);
  assert.throws(() => gpu.crossEntropy(new Tensor([1, 3]), Int32Array.from([3])), /label 3 is outside 0..2/);
  assert.throws(() => gpu.pool.take(2 ** 40), /exceeds this GPU's .* buffer limit/);
});

test('a disposed webgpu tensor cannot be used again', () => {
  const t = gpu.relu(randomTensor([4], 1));
  t.dispose();
  t.dispose(); // twice is harmless
  assert.throws(() => gpu.relu(t), /used after dispose/);
});

test('fp16 mode rounds the GEMM operands to f16: errors of fp16 size, within the course\'s MSE mark', async () => {
  const { openWebGpu } = await import('../src/backends/index.js');
  const half = await openWebGpu('fp16');
  assert.ok(half.precision === 'fp16' || half.precision === 'fp16-native');
  const x = randomTensor([1, 16, 12, 10], 1);
  const w = randomTensor([16, 3, 3, 8], 2);
  const b = randomTensor([8], 3);
  const p = { pad: 1, stride: 1 };
  const ref = loops.conv2d(x, w, b, p);
  const y = await half.conv2d(x, w, b, p).toHost();
  const e = relError(y, ref);
  assert.ok(e > 1e-5 && e < 1e-2, `fp16 relative error ${e}`);
  const y32 = await gpu.conv2d(x, w, b, p).toHost();
  assert.ok(relError(y32, ref) < e / 10, 'fp32 is far closer');
});
