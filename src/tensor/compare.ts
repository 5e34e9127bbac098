/** Error measures between a result and its reference, as the course grades kernels. */
import { PasticheError } from '../errors.js';
import type { Tensor } from './tensor.js';

export interface ErrorMeasures {
  /** Mean squared error (the course's criterion: below 0.003). */
  readonly mse: number;
  /** max |a - b| / max |b|: the error relative to the reference's scale. */
  readonly maxRelErr: number;
}

export function compare(actual: Tensor, reference: Tensor): ErrorMeasures {
  if (actual.size !== reference.size) throw new PasticheError(`compare: ${actual.size} vs ${reference.size} elements`);
  let se = 0;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < actual.size; i++) {
    const d = actual.data[i]! - reference.data[i]!;
    se += d * d;
    maxDiff = Math.max(maxDiff, Math.abs(d));
    maxRef = Math.max(maxRef, Math.abs(reference.data[i]!));
  }
  return { mse: actual.size ? se / actual.size : 0, maxRelErr: maxRef > 0 ? maxDiff / maxRef : maxDiff };
}

/** The worse of several error measures (for an op with several outputs, such as dx, dw, db). */
export function worst(ms: readonly ErrorMeasures[]): ErrorMeasures {
  return {
    mse: Math.max(...ms.map((m) => m.mse)),
    maxRelErr: Math.max(...ms.map((m) => m.maxRelErr)),
  };
}
