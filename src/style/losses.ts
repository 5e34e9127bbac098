/**
 * The losses of optimisation-based style transfer (Gatys et al.), with their exact gradients, in the
 * seed's normalisation. F is a layer's activation [N, C, H, W].
 */
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { Tensor, sameShape, shapeToString, type Shape } from '../tensor/tensor.js';

/**
 * A loss as a one-element tensor (computed where the features live: on a GPU it stays there until
 * the caller reads all losses at once) and its gradient with respect to the features.
 */
export interface LossAndGradient {
  readonly loss: Tensor;
  readonly grad: Tensor;
}

function dims(f: Tensor): [number, number, number] {
  if (f.rank !== 4) throw new PasticheError(`style loss: expected [N, C, H, W], got ${shapeToString(f.shape)}`);
  const [n, c, h, w] = f.shape as [number, number, number, number];
  return [n, c, h * w];
}

/**
 * Seed eq. 24: L = 1/(2NCHW) sum (F - P)^2; dL/dF = (F - P) / (NCHW). The gradient comes times
 * `gradScale` (the loss's weight in the objective: one pass over F's size instead of two).
 */
export function contentLoss(backend: Backend, f: Tensor, p: Tensor, gradScale = 1): LossAndGradient {
  if (!sameShape(f.shape, p.shape)) throw new PasticheError(`content loss: ${shapeToString(f.shape)} vs target ${shapeToString(p.shape)}`);
  const n = f.size;
  const diff = backend.addScaled(f, p, -1);
  const sum = backend.sumOfSquares(diff);
  const loss = backend.scale(sum, 1 / (2 * n));
  const grad = backend.scale(diff, gradScale / n);
  sum.recycle();
  diff.recycle();
  return { loss, grad };
}

/**
 * Runs fn on each image of f ([1, C, H, W]) and stacks the results: a single image (style transfer's
 * case) is f itself, so it stays where it lives and in the backend's layout (Backend.gram and
 * Backend.mixChannels read native's channel-blocked features as they are); a batch is sliced on the host.
 */
function perImage(f: Tensor, outShape: Shape, fn: (image: Tensor, b: number) => Tensor): Tensor {
  const [n, c, hw] = dims(f);
  if (n === 1) return fn(f, 0);
  const out = new Tensor(outShape);
  const per = out.size / n;
  for (let b = 0; b < n; b++) {
    const r = fn(new Tensor([1, c, ...f.shape.slice(2)], f.data.subarray(b * c * hw, (b + 1) * c * hw)), b);
    out.data.set(r.data, b * per);
  }
  return out;
}

/** Seed eq. 26: G[n] = F[n] F[n]^T over the H*W positions, [N, C, C] (Backend.gram, image by image). */
export function gram(backend: Backend, f: Tensor): Tensor {
  const [n, c] = dims(f);
  return perImage(f, [n, c, c], (image) => backend.gram(image).reshape([1, c, c]));
}

/**
 * Seed eq. 27: L = 1/(4 N C^2 (HW)^2) sum (G - A)^2 with G = gram(F), A the target Gram matrix;
 * dL/dF[n] = (G[n] - A[n]) F[n] / (N C^2 (HW)^2) (G - A is symmetric). The gradient comes times
 * `gradScale` (the loss's weight in the objective), applied with the normalisation to the C x C
 * difference before the product, so that the large F-sized result is written once.
 */
export function styleLoss(backend: Backend, f: Tensor, a: Tensor, gradScale = 1): LossAndGradient {
  const [n, c, hw] = dims(f);
  if (!sameShape(a.shape, [n, c, c])) throw new PasticheError(`style loss: target Gram ${shapeToString(a.shape)} for ${shapeToString(f.shape)}`);
  const g = gram(backend, f);
  const norm = n * c * c * hw * hw;
  const diff = backend.addScaled(g, a, -1);
  const sum = backend.sumOfSquares(diff);
  const loss = backend.scale(sum, 1 / (4 * norm));
  const scaled = backend.scale(diff, gradScale / norm);
  // (G - A)^T F = (G - A) F (Backend.mixChannels): in f's layout.
  const d = (b: number) => (n === 1 ? scaled.reshape([c, c]) : new Tensor([c, c], scaled.data.subarray(b * c * c, (b + 1) * c * c)));
  const grad = perImage(f, f.shape, (image, b) => backend.mixChannels(d(b), image));
  for (const t of [g, diff, scaled, sum]) t.recycle();
  return { loss, grad };
}

/** Total variation (on the host: the image is there for the optimiser anyway): sum over channels of (x[h+1,w] - x[h,w])^2 + (x[h,w+1] - x[h,w])^2. */
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
  return { loss: Tensor.from([1], [sum]), grad: new Tensor(x.shape, grad) };
}
