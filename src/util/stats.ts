/** Small numeric helpers for reports: timing medians and error measures. */
import { PasticheError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs `fn` `repeat` times and returns the median wall time in milliseconds and the last result. */
/** timeMedian for work that finishes asynchronously (a GPU backend: until its results are read back). */
export async function timeMedianAsync<T>(repeat: number, fn: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const times: number[] = [];
  let result!: T;
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    result = await fn();
    times.push(performance.now() - t0);
  }
  return { ms: median(times), result };
}

export function timeMedian<T>(repeat: number, fn: () => T): { ms: number; result: T } {
  const times: number[] = [];
  let result!: T;
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    result = fn();
    times.push(performance.now() - t0);
  }
  return { ms: median(times), result };
}

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
