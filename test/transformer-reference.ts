/**
 * The real-time style network's backward pass against PyTorch's autograd on the fixture
 * (fixtures/transformer/make_transformer.py): shared by the CPU tests and the webgpu ones.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Backend } from '../src/backends/backend.js';
import { TransformerNet, toOihw } from '../src/model/transformer/transformer-net.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { readTorchStateDict } from '../src/weights/torch/pth.js';
import { loadTransformerModel } from '../src/weights/transformer-file.js';
import { FIXTURES, assertClose } from './helpers.js';

const DIR = `${FIXTURES}transformer/`;

/**
 * The network's forward pass (the variant with transposed convolutions: its output to 1e-4 of the
 * range; the other's is checked in its own tests) and backward pass against PyTorch's autograd:
 * make_transformer.py's fixture, or make_transformer_deconv.py's.
 */
export async function checkTransformerBackward(backend: Backend, upsample: 'nearest' | 'deconv' = 'nearest'): Promise<void> {
  const name = `${backend.name}${upsample === 'deconv' ? ' (transposed convolutions)' : ''}`;
  const MODEL = `${DIR}${upsample === 'deconv' ? 'transformer-deconv-tiny.pth' : 'transformer-tiny.pth'}`;
  const file = (f: string) => `${DIR}${upsample === 'deconv' ? 'deconv-' : ''}${f}`;
  const weights = await loadTransformerModel(MODEL);
  assert.equal(weights.upsample, upsample);
  const net = new TransformerNet(weights, backend);
  const { output, backward } = net.forwardForTraining(await readNpy(`${DIR}input.npy`));
  const y = await output.toHost();
  const ref = await readNpy(file('output.npy'));
  assert.deepEqual(y.shape, ref.shape);
  if (upsample === 'deconv') {
    let [lo, hi, worst] = [Infinity, -Infinity, 0];
    for (let i = 0; i < ref.size; i++) [lo, hi, worst] = [Math.min(lo, ref.data[i]!), Math.max(hi, ref.data[i]!), Math.max(worst, Math.abs(y.data[i]! - ref.data[i]!))];
    assert.ok(worst <= 1e-4 * (hi - lo), `${name}: output off by ${worst} of a range of ${hi - lo}`);
  }
  const { dx, grads } = backward(await readNpy(`${DIR}dy.npy`));
  assertClose(await dx.toHost(), await readNpy(file('input-grad.npy')), 1e-4, `${name} dL/dx`);
  // PyTorch's gradients, flattened in its state_dict order (the .pth's), [Cout, Cin, K, K] for
  // convolutions, [Cin, Cout, K, K] for transposed ones (toOihw turns ours into either).
  const want = (await readNpy(file('param-grads.npy'))).data;
  const largest = Math.max(...want.map(Math.abs));
  let offset = 0;
  for (const [key, t] of readTorchStateDict(new Uint8Array(readFileSync(MODEL)), MODEL).tensors) {
    const size = t.data.length;
    const layer = key.replace(/\.(conv2d|conv_transpose)/, '').replace(/\.(weight|bias)$/, '');
    const g = grads.get(layer)!;
    const ours = key.endsWith('.bias') ? await g.db.toHost() : key.includes('conv') ? new Tensor(t.shape, toOihw(await g.dw.toHost()).data) : await g.dw.toHost();
    // Relative to the parameter's own gradient. A bias before an instance norm (every convolution's
    // but the last, transposed or not) has a true gradient of 0 (the norm removes any per-channel
    // constant): only rounding is left, held to 1e-6 of the largest gradient.
    const ref = want.subarray(offset, offset + size);
    const dead = /^(conv\d|res\d\.conv\d|deconv[12])\.(conv2d|conv_transpose)\.bias$/.test(key);
    const scale = dead ? 1e-2 * largest : Math.max(...ref.map(Math.abs), 1e-3 * largest);
    let worst = 0;
    for (let i = 0; i < size; i++) worst = Math.max(worst, Math.abs(ours.data[i]! - ref[i]!));
    assert.ok(worst <= 1e-4 * scale, `${name} ${key}: largest difference ${worst}, gradient scale ${scale}`);
    offset += size;
  }
  assert.equal(offset, want.length);
}
