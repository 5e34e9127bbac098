/**
 * The losses of optimisation-based style transfer (Gatys et al.), with their exact gradients, in the
 * seed's normalisation. F is a layer's activation [N, C, H, W].
 */
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { Tensor, sameShape, shapeToString } from '../tensor/tensor.js';

export interface LossAndGradient {
  readonly loss: number;
  readonly grad: Tensor;
}

function dims(f: Tensor): [number, number, number] {
  if (f.rank !== 4) throw new PasticheError(`style loss: expected [N, C, H, W], got ${shapeToString(f.shape)}`);
  const [n, c, h, w] = f.shape as [number, number, number, number];
  return [n, c, h * w];
}

/** Seed eq. 24: L = 1/(2NCHW) sum (F - P)^2; dL/dF = (F - P) / (NCHW). */
export function contentLoss(f: Tensor, p: Tensor): LossAndGradient {
  if (!sameShape(f.shape, p.shape)) throw new PasticheError(`content loss: ${shapeToString(f.shape)} vs target ${shapeToString(p.shape)}`);
  const n = f.size;
  const grad = new Float32Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const d = f.data[i]! - p.data[i]!;
    sum += d * d;
    grad[i] = d / n;
  }
  return { loss: sum / (2 * n), grad: new Tensor(f.shape, grad) };
}

/** Seed eq. 26: G[n] = F[n] F[n]^T over the H*W positions, [N, C, C]. */
export function gram(backend: Backend, f: Tensor): Tensor {
  const [n, c, hw] = dims(f);
  const out = new Tensor([n, c, c]);
  for (let b = 0; b < n; b++) {
    const fb = new Tensor([c, hw], f.data.subarray(b * c * hw, (b + 1) * c * hw));
    out.data.set(backend.matmul(fb, fb, false, true).data, b * c * c);
  }
  return out;
}

/**
 * Seed eq. 27: L = 1/(4 N C^2 (HW)^2) sum (G - A)^2 with G = gram(F), A the target Gram matrix;
 * dL/dF[n] = (G[n] - A[n]) F[n] / (N C^2 (HW)^2) (G - A is symmetric).
 */
export function styleLoss(backend: Backend, f: Tensor, a: Tensor): LossAndGradient {
  const [n, c, hw] = dims(f);
  if (!sameShape(a.shape, [n, c, c])) throw new PasticheError(`style loss: target Gram ${shapeToString(a.shape)} for ${shapeToString(f.shape)}`);
  const g = gram(backend, f);
  const norm = n * c * c * hw * hw;
  let sum = 0;
  const diff = new Tensor(g.shape);
  for (let i = 0; i < g.size; i++) {
    const d = g.data[i]! - a.data[i]!;
    diff.data[i] = d;
    sum += d * d;
  }
  const grad = new Tensor(f.shape);
  for (let b = 0; b < n; b++) {
    const db = new Tensor([c, c], diff.data.subarray(b * c * c, (b + 1) * c * c));
    const fb = new Tensor([c, hw], f.data.subarray(b * c * hw, (b + 1) * c * hw));
    const gb = backend.matmul(db, fb).data;
    for (let i = 0; i < gb.length; i++) grad.data[b * c * hw + i] = gb[i]! / norm;
  }
  return { loss: sum / (4 * norm), grad };
}

/** Total variation: sum over channels of (x[h+1,w] - x[h,w])^2 + (x[h,w+1] - x[h,w])^2. */
export function tvLoss(x: Tensor): LossAndGradient {
  if (x.rank !== 4) throw new PasticheError(`total variation: expected [N, C, H, W], got ${shapeToString(x.shape)}`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const grad = new Float32Array(x.size);
  const d = x.data;
  let sum = 0;
  for (let p = 0; p < n * c; p++) {
    const o = p * h * w;
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const at = o + i * w + j;
        if (i + 1 < h) {
          const dv = d[at + w]! - d[at]!;
          sum += dv * dv;
          grad[at + w] += 2 * dv;
          grad[at] -= 2 * dv;
        }
        if (j + 1 < w) {
          const dh = d[at + 1]! - d[at]!;
          sum += dh * dh;
          grad[at + 1] += 2 * dh;
          grad[at] -= 2 * dh;
        }
      }
    }
  }
  return { loss: sum, grad: new Tensor(x.shape, grad) };
}
