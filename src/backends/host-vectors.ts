/**
 * The L-BFGS recursion's sweeps (style/optimizers.ts) over host vectors, the history's floats against
 * the direction's doubles, as every backend offers them (Backend.dotF32F64,
 * Backend.axpyThenDotF32F64): these in TypeScript, native's over its threads. The optimiser's state
 * lives on the host whatever the backend computes on.
 */
import type { Backend } from './backend.js';

export type HostVectorOps = Pick<Backend, 'dotF32F64' | 'axpyThenDotF32F64'>;

export const hostVectorOps: HostVectorOps = {
  // Four sums: one running sum waits an add's latency per element.
  dotF32F64(u: Float32Array, v: Float64Array): number {
    const n = v.length;
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      a0 += u[j]! * v[j]!;
      a1 += u[j + 1]! * v[j + 1]!;
      a2 += u[j + 2]! * v[j + 2]!;
      a3 += u[j + 3]! * v[j + 3]!;
    }
    for (; j < n; j++) a0 += u[j]! * v[j]!;
    return a0 + a1 + (a2 + a3);
  },

  // Written without destructuring: V8 did not optimise array-pattern assignments in this loop (2x slower).
  axpyThenDotF32F64(q: Float64Array, c: number, v: Float32Array, scale: number, u?: Float32Array): number {
    const n = q.length;
    if (!u) {
      for (let j = 0; j < n; j++) q[j] = (q[j]! + c * v[j]!) * scale;
      return 0;
    }
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const q0 = (q[j]! + c * v[j]!) * scale;
      const q1 = (q[j + 1]! + c * v[j + 1]!) * scale;
      const q2 = (q[j + 2]! + c * v[j + 2]!) * scale;
      const q3 = (q[j + 3]! + c * v[j + 3]!) * scale;
      q[j] = q0;
      q[j + 1] = q1;
      q[j + 2] = q2;
      q[j + 3] = q3;
      a0 += u[j]! * q0;
      a1 += u[j + 1]! * q1;
      a2 += u[j + 2]! * q2;
      a3 += u[j + 3]! * q3;
    }
    for (; j < n; j++) {
      q[j] = (q[j]! + c * v[j]!) * scale;
      a0 += u[j]! * q[j]!;
    }
    return a0 + a1 + (a2 + a3);
  },
};
