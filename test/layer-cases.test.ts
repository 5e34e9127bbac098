/** Every layer against PyTorch's float64 reference outputs and gradients (shared fixtures). */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { availableBackends, getBackend } from '../src/backends/index.js';
import { ConvolutionalLayer } from '../src/layers/convolutional-layer.js';
import { FullyConnectedLayer } from '../src/layers/fully-connected-layer.js';
import { FlattenLayer, MaxPoolingLayer } from '../src/layers/simple-layers.js';
import { readNpy } from '../src/tensor/npy.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { TINY, assertClose } from './helpers.js';

const CASES = `${TINY}layer-cases/`;
const spec = JSON.parse(readFileSync(`${CASES}cases.json`, 'utf8')) as {
  cases: Record<string, { kind: string; params: { kernel?: number; pad?: number; stride?: number } }>;
};
const TOL = 1e-5;

async function load(name: string, files: string[]): Promise<Record<string, Tensor>> {
  const out: Record<string, Tensor> = {};
  for (const f of files) out[f] = await readNpy(`${CASES}${name}/${f}.npy`);
  return out;
}

for (const backendName of availableBackends()) {
  const backend = getBackend(backendName);
  for (const [name, c] of Object.entries(spec.cases)) {
    test(`${name} (${c.kind}) equals PyTorch on ${backendName}`, async () => {
      if (c.kind === 'conv') {
        const d = await load(name, ['x', 'w', 'b', 'y', 'dy', 'dx', 'dw', 'db']);
        const [cin, k, , cout] = d['w']!.shape as number[];
        const layer = new ConvolutionalLayer(name, backend, k!, cin!, cout!, c.params.pad!, c.params.stride!);
        layer.loadParam(d['w']!, d['b']!);
        assertClose(layer.forward(d['x']!), d['y']!, TOL, 'y');
        assertClose(layer.backward(d['dy']!), d['dx']!, TOL, 'dx');
        assertClose(layer.dWeight!, d['dw']!, TOL, 'dw');
        assertClose(layer.dBias!, d['db']!, TOL, 'db');
      } else if (c.kind === 'maxpool') {
        const d = await load(name, ['x', 'dy', 'dx']);
        const layer = new MaxPoolingLayer(name, backend, c.params.kernel!, c.params.stride!, c.params.pad ?? 0);
        const y = layer.forward(d['x']!);
        assert.deepEqual([...y.shape], [...d['dy']!.shape]);
        assertClose(layer.backward(d['dy']!), d['dx']!, TOL, 'dx');
        // forward has no y.npy here: every output must be its window's maximum of x
        const [n, ch, h, w] = d['x']!.shape as number[];
        const [, , ho, wo] = y.shape as number[];
        for (let i = 0; i < n! * ch!; i++)
          for (let oh = 0; oh < ho!; oh++)
            for (let ow = 0; ow < wo!; ow++) {
              let m = -Infinity;
              for (let a = 0; a < 2; a++) for (let b = 0; b < 2; b++) m = Math.max(m, d['x']!.data[(i * h! + 2 * oh + a) * w! + 2 * ow + b]!);
              assert.equal(y.data[(i * ho! + oh) * wo! + ow], m);
            }
      } else if (c.kind === 'flatten_fc') {
        const d = await load(name, ['x', 'w', 'b', 'y', 'dy', 'dx', 'dw', 'db']);
        const flat = new FlattenLayer('flatten', backend);
        const fc = new FullyConnectedLayer(name, backend, d['w']!.shape[0]!, d['w']!.shape[1]!);
        fc.loadParam(d['w']!, d['b']!);
        assertClose(fc.forward(flat.forward(d['x']!)), d['y']!, TOL, 'y');
        assertClose(flat.backward(fc.backward(d['dy']!)), d['dx']!, TOL, 'dx');
        assertClose(fc.dWeight!, d['dw']!, TOL, 'dw');
        assertClose(fc.dBias!, d['db']!, TOL, 'db');
      } else {
        assert.fail(`unknown case kind ${c.kind}`);
      }
    });
  }
}
