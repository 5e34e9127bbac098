/**
 * Gradients by finite differences: for L = sum(f(x) * r) with a fixed random r, every analytic
 * gradient must match (L(x + h e_i) - L(x - h e_i)) / 2h on sampled coordinates, on every backend.
 * Inputs are float32, so L is accumulated in float64 and h is large enough to dominate rounding.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { gradCheck, randomTensor } from './helpers.js';

function dot(a: Tensor, r: Tensor): number {
  let s = 0;
  for (let i = 0; i < a.size; i++) s += a.data[i]! * r.data[i]!;
  return s;
}

for (const name of availableBackends()) {
  const be = getBackend(name);

  test(`conv2d gradients (data, weights, bias) match finite differences on ${name}`, () => {
    for (const [shape, k, pad, stride] of [[[2, 3, 6, 5], 3, 1, 1], [[1, 2, 7, 7], 3, 0, 2], [[1, 2, 5, 6], 5, 2, 1]] as const) {
      const x = randomTensor(shape, 1);
      const w = randomTensor([shape[1], k, k, 4], 2, -0.5, 0.5);
      const b = randomTensor([4], 3);
      const p = { pad, stride };
      const y = be.conv2d(x, w, b, p);
      const r = randomTensor(y.shape, 4);
      const L = () => dot(be.conv2d(x, w, b, p), r);
      const { dw, db } = be.conv2dBackwardParams(r, x, k, p);
      gradCheck('dx', x, L, be.conv2dBackwardData(r, w, x.shape, p));
      gradCheck('dw', w, L, dw);
      gradCheck('db', b, L, db);
    }
  });

  test(`max-pool gradient matches finite differences on ${name}`, () => {
    // Distinct values spaced well beyond h, so that no perturbation changes a window's winner.
    const x = new Tensor([2, 2, 5, 7]);
    const perm = Array.from(x.data.keys()).sort((a, b) => Math.sin(a * 12.9898) - Math.sin(b * 12.9898));
    perm.forEach((j, i) => (x.data[j] = i * 0.1));
    for (const p of [{ kernel: 2, stride: 2, pad: 0 }, { kernel: 3, stride: 2, pad: 1 }, { kernel: 3, stride: 1, pad: 0 }]) {
      const r = randomTensor(be.maxPool2d(x, p).shape, 5);
      gradCheck(`pool ${JSON.stringify(p)}`, x, () => dot(be.maxPool2d(x, p), r), be.maxPool2dBackward(r, x, p), { step: Math.max(1, Math.floor(x.size / 70)), h: 1e-3 });
    }
  });

  test(`relu, flatten, linear and softmax cross-entropy gradients match finite differences on ${name}`, () => {
    const x = randomTensor([3, 2, 3, 4], 6);
    for (let i = 0; i < x.size; i++) if (Math.abs(x.data[i]!) < 0.05) x.data[i] = 0.3; // away from the kink
    const r = randomTensor(x.shape, 7);
    gradCheck('relu', x, () => dot(be.relu(x), r), be.reluBackward(r, x));

    const rf = randomTensor([3, 24], 8);
    gradCheck('flatten', x, () => dot(be.flattenNhwc(x), rf), be.flattenNhwcBackward(rf, x.shape));

    const xi = randomTensor([3, 5], 9);
    const w = randomTensor([5, 4], 10);
    const b = randomTensor([4], 11);
    const rl = randomTensor([3, 4], 12);
    const g = be.linearBackward(rl, xi, w);
    const L = () => dot(be.linear(xi, w, b), rl);
    gradCheck('linear dx', xi, L, g.dx);
    gradCheck('linear dw', w, L, g.dw);
    gradCheck('linear db', b, L, g.db);

    const logits = randomTensor([3, 6], 13, -2, 2);
    const labels = Int32Array.from([0, 5, 2]);
    const CE = () => be.crossEntropy(be.softmax(logits), labels).data[0]!;
    gradCheck('softmax cross-entropy', logits, CE, be.softmaxCrossEntropyBackward(be.softmax(logits), labels), { step: 1 });
  });
}

test('softmax rows sum to one and survive large logits', () => {
  const be = getBackend('ts');
  const p = be.softmax(Tensor.from([2, 3], [1000, 1001, 1002, -5, 0, 5]));
  for (let r = 0; r < 2; r++) {
    const s = p.data[3 * r]! + p.data[3 * r + 1]! + p.data[3 * r + 2]!;
    assert.ok(Math.abs(s - 1) < 1e-6 && p.data.every(Number.isFinite));
  }
  assert.ok(Math.abs(p.data[2]! - 0.66524096) < 1e-6);
});
