/**
 * Training steps against a PyTorch float64 replay (fixtures/transformer/make_training.py): shared
 * by the CPU tests (train-style.test.ts) and the webgpu ones.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { StyleTrainer } from '../src/app/train-style.js';
import type { Backend } from '../src/backends/backend.js';
import type { RgbImage } from '../src/image/rgb.js';
import { transformerFromStateDict, unflattenTransformerWeights, type TransformerWeights } from '../src/model/transformer/transformer-net.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { readTorchStateDict } from '../src/weights/torch/pth.js';
import { loadTransformerModel } from '../src/weights/transformer-file.js';
import { FIXTURES, TINY } from './helpers.js';

const DIR = `${FIXTURES}transformer/`;
const MODEL = `${DIR}transformer-tiny.pth`;
const vgg = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);

/** [1, 3, H, W] 0..255 -> an RGB image. */
function toRgb(t: Tensor): RgbImage {
  const [, , h, w] = t.shape as [number, number, number, number];
  const data = new Uint8Array(h * w * 3);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < 3; c++) data[3 * i + c] = t.data[c * h * w + i]!;
  return { width: w, height: h, data };
}

/** A flat vector of the parameters in PyTorch's state_dict order (the .pth's) as a network's in ours. */
function fromStateOrder(flat: Float32Array, model = MODEL): TransformerWeights {
  const tensors = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  let at = 0;
  for (const [k, t] of readTorchStateDict(new Uint8Array(readFileSync(model)), model).tensors) {
    // Buffers (batch norm's running statistics) are not parameters: the file's own values.
    if (/running_|num_batches/.test(k)) {
      tensors.set(k, t);
      continue;
    }
    tensors.set(k, { shape: t.shape, data: flat.subarray(at, at + t.data.length) });
    at += t.data.length;
  }
  assert.equal(at, flat.length);
  return transformerFromStateDict(tensors, 'reference');
}

/**
 * The largest difference in any parameter's gradient, relative to that tensor's largest reference
 * value; for the DEAD parameters (true gradient 0: only rounding is left to compare), relative to
 * the largest gradient of all.
 */
function worstGradient(ours: TransformerWeights, ref: TransformerWeights): { live: number; dead: number; where: string } {
  let largest = 0;
  for (const p of ref.params.values()) for (const t of [p.w, p.b]) for (const v of t.data) largest = Math.max(largest, Math.abs(v));
  const worst = { live: 0, dead: 0, where: '' };
  for (const [name, p] of ref.params) {
    for (const [which, t] of [['weight', p.w], ['bias', p.b]] as const) {
      const o = which === 'weight' ? ours.params.get(name)!.w : ours.params.get(name)!.b;
      const dead = which === 'bias' && DEAD.test(name);
      const scale = dead ? largest : Math.max(...t.data.map(Math.abs));
      for (let i = 0; i < t.size; i++) {
        const r = Math.abs(o.data[i]! - t.data[i]!) / scale;
        if (dead) worst.dead = Math.max(worst.dead, r);
        else if (r > worst.live) [worst.live, worst.where] = [r, `${name}.${which}[${i}]`];
      }
    }
  }
  return worst;
}

const steps = JSON.parse(readFileSync(`${DIR}train-steps.json`, 'utf8')) as { alpha: number; beta: number; gamma: number; lr: number; content: Record<string, number>; style: Record<string, number>; steps: { content: number; style: number; tv: number; total: number }[]; num_batches_tracked?: number };
const objective = {
  contentWeight: steps.alpha, styleWeight: steps.beta, tvWeight: steps.gamma,
  contentLayers: Object.entries(steps.content).map(([name, weight]) => ({ name, weight })),
  styleLayers: Object.entries(steps.style).map(([name, weight]) => ({ name, weight })),
};

/**
 * Step 1's gradients (1e-4 of each tensor's largest), the losses of three Adam steps (1e-3) and the
 * weights after them (per tensor `perTensor` of its norm, 1e-3 over the network) against PyTorch.
 */
export async function checkTrainingReplay(backend: Backend, perTensor: number, norm: 'instance' | 'batch' = 'instance'): Promise<void> {
  const name = `${backend.name}${norm === 'batch' ? ' (batch norm)' : ''}`;
  const model = norm === 'batch' ? `${DIR}transformer-bn-tiny.pth` : MODEL;
  const file = (f: string) => `${DIR}${norm === 'batch' ? f.replace('train-', 'train-bn-') : f}`;
  const want = norm === 'batch' ? (JSON.parse(readFileSync(file('train-steps.json'), 'utf8')) as typeof steps) : steps;
  const batches = await readNpy(`${DIR}train-batches.npy`);
  const [count, n, c, h, w] = batches.shape as number[];
  const batch = (k: number) => new Tensor([n!, c!, h!, w!], batches.data.slice(k * n! * c! * h! * w!, (k + 1) * n! * c! * h! * w!));
  const init = await loadTransformerModel(model);
  assert.equal(init.norm, norm);
  const trainer = new StyleTrainer({ vgg, backend, net: init, style: toRgb(await readNpy(`${DIR}train-style.npy`)), objective, lr: steps.lr });
  const first = await trainer.gradients(batch(0));
  const grads = unflattenTransformerWeights(trainer.weights, first.grad);
  const g = worstGradient(grads, fromStateOrder((await readNpy(file('train-grads.npy'))).data, model));
  assert.ok(g.live <= 1e-4, `${name}: gradient ${g.where} off by ${g.live} of its tensor's largest`);
  assert.ok(g.dead <= 1e-6, `${name}: a gradient that should be 0 is ${g.dead} of the largest`);
  for (let k = 0; k < count!; k++) {
    // Step 1 applies the gradients just checked (step() would compute them again: a quarter of the replay).
    if (k === 0) trainer.apply(first);
    const losses = k === 0 ? first.losses : await trainer.step(batch(k));
    for (const key of ['content', 'style', 'tv', 'total'] as const) {
      const ref = want.steps[k]![key];
      assert.ok(Math.abs(losses[key] - ref) <= 1e-3 * Math.abs(ref), `${name} step ${k + 1} ${key}: ${losses[key]} vs PyTorch ${ref}`);
    }
  }
  // The weights after three steps. Adam's first steps are about lr x sign(gradient), so an element
  // whose gradient is within float32 rounding of 0 may step the other way: held to the norm of each
  // tensor. Parameters that cannot change the output (DEAD) have a true gradient of 0: PyTorch's
  // does not move them, ours moves them by rounding noise, at most lr a step.
  const after = fromStateOrder((await readNpy(file('train-weights.npy'))).data, model);
  let [se, sw] = [0, 0];
  for (const [layer, p] of after.params) {
    for (const [which, ref] of [['weight', p.w], ['bias', p.b]] as const) {
      const ours = which === 'weight' ? trainer.weights.params.get(layer)!.w : trainer.weights.params.get(layer)!.b;
      const start = which === 'weight' ? init.params.get(layer)!.w : init.params.get(layer)!.b;
      if (which === 'bias' && DEAD.test(layer)) {
        for (let i = 0; i < ref.size; i++) {
          assert.ok(Math.abs(ref.data[i]! - start.data[i]!) < 1e-9, `PyTorch moved ${layer}.bias`);
          assert.ok(Math.abs(ours.data[i]! - start.data[i]!) <= 3 * steps.lr * 1.0001, `${layer}.bias[${i}]`);
        }
        continue;
      }
      let [e, n2] = [0, 0];
      for (let i = 0; i < ref.size; i++) [e, n2] = [e + (ours.data[i]! - ref.data[i]!) ** 2, n2 + ref.data[i]! ** 2];
      [se, sw] = [se + e, sw + n2];
      const rel = Math.sqrt(e / n2);
      assert.ok(rel <= perTensor, `${name}: ${layer}.${which} off by ${rel.toExponential(2)} of its norm`);
    }
  }
  assert.ok(Math.sqrt(se / sw) <= 1e-3, `${name}: the weights off by ${Math.sqrt(se / sw).toExponential(2)} of their norm`);
  if (norm === 'batch') {
    // The running statistics PyTorch kept over the three batches (each norm's mean, then its variance).
    // Batch statistics of float32 activations: held to 1e-3 of each layer's scale (its largest
    // |mean| or standard deviation).
    const ref = (await readNpy(file('train-running.npy'))).data;
    let at = 0;
    for (const [layer, r] of trainer.weights.running!) {
      const c = r.mean.length;
      const [m, v] = [ref.subarray(at, at + c), ref.subarray(at + c, at + 2 * c)];
      const scale = Math.max(...m.map(Math.abs), ...v.map(Math.sqrt));
      for (let i = 0; i < c; i++) {
        assert.ok(Math.abs(r.mean[i]! - m[i]!) <= 1e-3 * scale, `${name} ${layer} running mean[${i}]: ${r.mean[i]} vs ${m[i]}`);
        assert.ok(Math.abs(r.variance[i]! - v[i]!) <= 1e-3 * scale * scale, `${name} ${layer} running variance[${i}]: ${r.variance[i]} vs ${v[i]}`);
      }
      at += 2 * c;
    }
    assert.equal(at, ref.length);
    assert.equal(trainer.weights.batchesTracked, want.num_batches_tracked);
  }
}

/**
 * Parameters whose gradient is 0 in exact arithmetic: a convolution's bias before an instance norm
 * (the norm removes per-channel constants), and a residual block's second norm's bias (a constant
 * added to the residual stream stays constant through reflection padding and convolutions until the
 * next norm removes it).
 */
const DEAD = /^(conv\d|res\d\.conv\d|deconv[12]|res\d\.in2)$/;

