/** Shared test helpers: fixture paths, random tensors, tolerant comparisons. */
import * as assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Tensor, type Shape } from '../src/tensor/tensor.js';
import { uniformRng } from '../src/util/random.js';

/** test/fixtures (the compiled tests run from dist/test). */
export const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
export const TINY = `${FIXTURES}vgg19-tiny/`;
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export function randomTensor(shape: Shape, seed: number, lo = -1, hi = 1): Tensor {
  const r = uniformRng(seed);
  const t = new Tensor(shape);
  for (let i = 0; i < t.size; i++) t.data[i] = lo + (hi - lo) * r();
  return t;
}

/** max |a - b| / max |b| */
export function relError(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape], 'shapes differ');
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.size; i++) {
    d = Math.max(d, Math.abs(a.data[i]! - b.data[i]!));
    m = Math.max(m, Math.abs(b.data[i]!));
  }
  return m > 0 ? d / m : d;
}

export function assertClose(a: Tensor, b: Tensor, tol: number, what: string): void {
  const e = relError(a, b);
  assert.ok(e < tol, `${what}: relative error ${e.toExponential(3)} >= ${tol}`);
}
