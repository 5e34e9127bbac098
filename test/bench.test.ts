/** The benchmark's machinery and its peer: the ONNX model Pastiche writes computes the same network. */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { forwardRunner, styleIterationRunner, timeInterleaved, vgg19ForwardFlops } from '../src/app/bench.js';
import { vgg19Onnx } from '../src/app/onnx-peer.js';
import { getBackend } from '../src/backends/index.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { randomVgg19Weights } from '../src/weights/vgg19-weights.js';
import { TINY, assertClose } from './helpers.js';

test('VGG19 at 224 is 39.3 GFLOP of convolutions and fully connected layers', () => {
  // 2 * sum over layers of Cin*9*Cout*H*W, plus fc: the published 19.6 G multiply-adds.
  const full = randomVgg19Weights(1, 1);
  assert.equal(Math.round(vgg19ForwardFlops(full, 224) / 1e8) / 10, 39.3);
});

test('timeInterleaved runs every contender in turn and reports medians', async () => {
  const order: string[] = [];
  const rows = await timeInterleaved([{ name: 'a', run: () => order.push('a') }, { name: 'b', run: async () => order.push('b') }], 3, 1);
  assert.deepEqual(order, ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
  assert.deepEqual(rows.map((r) => [r.name, r.runs.length]), [['a', 3], ['b', 3]]);
});

test('the forward and style-iteration runners run on a small network', async () => {
  const w = randomVgg19Weights(2, 32);
  await timeInterleaved([forwardRunner(w, getBackend('ts')), styleIterationRunner(w, getBackend('ts'), 48)], 1, 0);
});

test('onnxruntime runs the exported VGG19 to the same probabilities as PyTorch (tiny fixture)', async () => {
  const ort = await import('onnxruntime-node');
  const weights = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
  const session = await ort.InferenceSession.create(vgg19Onnx(weights, 224, 'prob'));
  const input = await readNpy(`${TINY}ref-old/input.npy`);
  const out = await session.run({ input: new ort.Tensor('float32', input.data, [1, 3, 224, 224]) });
  const prob = out['prob']!.data as Float32Array;
  assertClose(new Tensor([1, 1000], prob), await readNpy(`${TINY}ref-old/prob.npy`), 1e-4, 'onnxruntime prob');
  const partial = await ort.InferenceSession.create(vgg19Onnx(weights, 224, 'pool5'));
  const p5 = (await partial.run({ input: new ort.Tensor('float32', input.data, [1, 3, 224, 224]) }))['pool5']!.data as Float32Array;
  assertClose(new Tensor([1, 32, 7, 7], p5), await readNpy(`${TINY}ref-old/pool5.npy`), 1e-4, 'onnxruntime pool5');
});
