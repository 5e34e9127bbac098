/** The fast backend against the four-loop reference on many shapes, and the GEMM against naive. */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { getBackend } from '../src/backends/index.js';
import { gemm, operand } from '../src/backends/ts/gemm.js';
import { Tensor } from '../src/tensor/tensor.js';
import { CONV_SHAPES, assertClose, convCase, randomTensor } from './helpers.js';

const loops = getBackend('loops');
const fast = [getBackend('ts')];
const TOL = 1e-5;

for (const be of fast) {
  test(`${be.name} convolution equals loops (forward, backward data, weights, bias) on ${CONV_SHAPES.length} shapes`, () => {
    CONV_SHAPES.forEach((_, i) => {
      const { x, w, b, k, p, y, dy, what } = convCase(i);
      assertClose(be.conv2d(x, w, b, p), y, TOL, `${what} forward`);
      assertClose(be.conv2dBackwardData(dy, w, x.shape, p), loops.conv2dBackwardData(dy, w, x.shape, p), TOL, `${what} dx`);
      const got = be.conv2dBackwardParams(dy, x, k, p);
      const ref = loops.conv2dBackwardParams(dy, x, k, p);
      assertClose(got.dw, ref.dw, TOL, `${what} dw`);
      assertClose(got.db, ref.db, TOL, `${what} db`);
    });
  });

  test(`${be.name} max-pool equals loops (forward and backward, windows, strides, padding, ties)`, () => {
    const cases: [number[], number, number, number][] = [
      [[2, 3, 8, 6], 2, 2, 0], [[1, 4, 7, 9], 2, 2, 0], [[3, 2, 9, 9], 3, 2, 1], [[2, 2, 6, 5], 3, 1, 1], [[1, 1, 5, 5], 2, 1, 0],
    ];
    cases.forEach(([xs, kernel, stride, pad], i) => {
      const x = randomTensor(xs, 50 + i);
      // Repeated values: ties must go to the same (first) cell in both backends.
      for (let j = 0; j < x.size; j += 3) x.data[j] = 0.5;
      const p = { kernel, stride, pad };
      const y = loops.maxPool2d(x, p);
      assert.deepEqual(be.maxPool2d(x, p).data, y.data);
      const dy = randomTensor(y.shape, 60 + i);
      assert.deepEqual(be.maxPool2dBackward(dy, x, p).data, loops.maxPool2dBackward(dy, x, p).data);
      // Fused with the ReLU whose output x is: the same as the two backward passes one after the other.
      const twoPasses = loops.reluBackward(loops.maxPool2dBackward(dy, x, p), x);
      assert.deepEqual(be.maxPool2dBackward(dy, x, p, true).data, twoPasses.data);
      assert.deepEqual(loops.maxPool2dBackward(dy, x, p, true).data, twoPasses.data);
    });
  });

  test(`${be.name} matmul and linear equal loops with every transpose`, () => {
    for (const [m, n, k] of [[1, 1, 1], [5, 7, 3], [17, 9, 300], [70, 33, 12]]) {
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          const a = randomTensor(ta ? [k!, m!] : [m!, k!], m! + k!);
          const b = randomTensor(tb ? [n!, k!] : [k!, n!], n! * 3);
          assertClose(be.matmul(a, b, ta, tb), loops.matmul(a, b, ta, tb), TOL, `matmul ${m}x${n}x${k} ${ta} ${tb}`);
        }
      }
      const x = randomTensor([m!, k!], 1);
      const w = randomTensor([k!, n!], 2);
      const b = randomTensor([n!], 3);
      assertClose(be.linear(x, w, b), loops.linear(x, w, b), TOL, 'linear');
      const dy = randomTensor([m!, n!], 4);
      const g1 = be.linearBackward(dy, x, w);
      const g2 = loops.linearBackward(dy, x, w);
      assertClose(g1.dx, g2.dx, TOL, 'linear dx');
      assertClose(g1.dw, g2.dw, TOL, 'linear dw');
      assertClose(g1.db, g2.db, TOL, 'linear db');
    }
  });
}

test('the fused gradient epilogue equals ReLU backward of (dx + add) on every backend', async () => {
  const { availableBackends } = await import('../src/backends/index.js');
  for (const name of availableBackends()) {
    const be = getBackend(name);
    for (const [xs, cout, pad] of [[[2, 16, 9, 11], 16, 1], [[1, 3, 8, 8], 5, 0], [[2, 3, 9, 37], 5, 1], [[1, 32, 24, 24], 20, 1]] as const) {
      const x = randomTensor([...xs], 1);
      const w = randomTensor([xs[1], 3, 3, cout], 2);
      const p = { pad, stride: 1 };
      const y = loops.conv2d(x, w, randomTensor([cout], 3), p);
      const dy = randomTensor(y.shape, 4);
      const add = randomTensor(x.shape, 5);
      const mask = randomTensor(x.shape, 6); // about half positive
      const plain = be.conv2dBackwardData(dy, w, x.shape, p);
      const summed = new Tensor(x.shape, plain.data.map((v, i) => v + add.data[i]!));
      const fused = be.conv2dBackwardData(dy, w, x.shape, p, { add, reluMask: mask });
      assertClose(fused, loops.reluBackward(summed, mask), 1e-6, `${name} ${JSON.stringify(xs)} epilogue`);
      assert.ok(fused.data.some((v) => v === 0) && fused.data.some((v) => v !== 0));
      // Either half alone.
      assertClose(be.conv2dBackwardData(dy, w, x.shape, p, { add }), summed, 1e-6, `${name} ${JSON.stringify(xs)} add only`);
      assertClose(be.conv2dBackwardData(dy, w, x.shape, p, { reluMask: mask }), loops.reluBackward(plain, mask), 1e-6, `${name} ${JSON.stringify(xs)} mask only`);
    }
  }
});

test('blocked GEMM crosses its block edges (M, N, K beyond MC, NC, KC) and accumulates', () => {
  const [m, n, k] = [131, 2053, 517];
  const a = randomTensor([m, k], 1);
  const b = randomTensor([k, n], 2);
  const c = new Float32Array(m * n).fill(1);
  gemm(m, n, k, operand(a.data, k), operand(b.data, n), c, n, true);
  for (const [i, j] of [[0, 0], [130, 2052], [64, 2048], [63, 2047], [77, 1000]]) {
    let s = 1;
    for (let l = 0; l < k; l++) s += a.data[i! * k + l]! * b.data[l * n + j!]!;
    assert.ok(Math.abs(c[i! * n + j!]! - s) < 1e-4 * Math.max(1, Math.abs(s)), `C[${i},${j}] ${c[i! * n + j!]} vs ${s}`);
  }
});

test('backends reject mismatched shapes with clear messages', () => {
  for (const be of [loops, ...fast]) {
    const x = new Tensor([1, 3, 4, 4]);
    assert.throws(() => be.conv2d(x, new Tensor([4, 3, 3, 2]), new Tensor([2]), { pad: 1, stride: 1 }), /input has 3 channels but weights \[4, 3, 3, 2\] expect 4/);
    assert.throws(() => be.conv2d(x, new Tensor([3, 3, 3, 2]), new Tensor([5]), { pad: 1, stride: 1 }), /bias has 5 elements, expected 2/);
    assert.throws(() => be.conv2d(x, new Tensor([3, 5, 5, 2]), new Tensor([2]), { pad: 0, stride: 1 }), /does not fit/);
    assert.throws(() => be.maxPool2d(new Tensor([1, 1, 4]), { kernel: 2, stride: 2, pad: 0 }), /must be \[N,C,H,W\]/);
    assert.throws(() => be.matmul(new Tensor([2, 3]), new Tensor([4, 2])), /inner sizes differ/);
    assert.throws(() => be.crossEntropy(new Tensor([1, 3]), Int32Array.from([3])), /label 3 is outside 0..2/);
  }
});

test('the kernel suite (the browser check page runs it on the GPU) passes for ts and native against loops', async () => {
  const { runKernelSuite } = await import('../src/app/kernel-suite.js');
  const { availableBackends } = await import('../src/backends/index.js');
  for (const name of availableBackends().filter((n) => n !== 'loops')) {
    const rows = await runKernelSuite(getBackend(name), loops);
    assert.ok(rows.length > 100);
    assert.deepEqual(rows.filter((r) => !r.pass), [], name);
  }
});
