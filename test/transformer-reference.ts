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
const MODEL = `${DIR}transformer-tiny.pth`;

export async function checkTransformerBackward(backend: Backend): Promise<void> {
  const name = backend.name;
  const net = new TransformerNet(await loadTransformerModel(MODEL), backend);
  const { output, backward } = net.forwardForTraining(await readNpy(`${DIR}input.npy`));
  const y = await output.toHost();
  assert.deepEqual(y.shape, (await readNpy(`${DIR}output.npy`)).shape);
  const { dx, grads } = backward(await readNpy(`${DIR}dy.npy`));
  assertClose(await dx.toHost(), await readNpy(`${DIR}input-grad.npy`), 1e-4, `${name} dL/dx`);
  // PyTorch's gradients, flattened in its state_dict order (the .pth's), [Cout, Cin, K, K] for convolutions.
  const want = (await readNpy(`${DIR}param-grads.npy`)).data;
  const largest = Math.max(...want.map(Math.abs));
  let offset = 0;
  for (const [key, t] of readTorchStateDict(new Uint8Array(readFileSync(MODEL)), MODEL).tensors) {
    const size = t.data.length;
    const layer = key.replace(/\.conv2d/, '').replace(/\.(weight|bias)$/, '');
    const g = grads.get(layer)!;
    const ours = key.endsWith('.bias') ? await g.db.toHost() : key.includes('conv') ? new Tensor(t.shape, toOihw(await g.dw.toHost()).data) : await g.dw.toHost();
    // Relative to the parameter's own gradient, or to 1e-3 of the largest where it is smaller (a
    // convolution's bias before an instance norm: the norm removes any per-channel constant).
    const ref = want.subarray(offset, offset + size);
    const scale = Math.max(...ref.map(Math.abs), 1e-3 * largest);
    let worst = 0;
    for (let i = 0; i < size; i++) worst = Math.max(worst, Math.abs(ours.data[i]! - ref[i]!));
    assert.ok(worst <= 1e-4 * scale, `${name} ${key}: largest difference ${worst}, gradient scale ${scale}`);
    offset += size;
  }
  assert.equal(offset, want.length);
}
