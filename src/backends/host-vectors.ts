/**
 * The L-BFGS recursion's sweep (style/optimizers.ts) over host vectors, the history's floats against
 * the direction's doubles, as every backend offers it (Backend.sweepF32F64): this one in TypeScript,
 * native's over its threads. The optimiser's state lives on the host whatever the backend computes on.
 */
import type { Backend } from './backend.js';
import { PasticheError } from '../errors.js';

export type HostVectorOps = Pick<Backend, 'sweepF32F64'>;

/** The sweep's operands as Backend.sweepF32F64 allows them: one line for what it does not. */
export function checkSweep(q: Float64Array, c: readonly number[], v: readonly Float32Array[], u: readonly Float32Array[]): void {
  if (v.length > 2 || u.length > 2 || c.length !== v.length) throw new PasticheError(`sweepF32F64: ${c.length} coefficient(s), ${v.length} v and ${u.length} u (at most 2 v, as many coefficients, and 2 u)`);
  for (const a of [...v, ...u]) if (a.length !== q.length) throw new PasticheError(`sweepF32F64: vectors of ${a.length} and ${q.length} elements`);
}

const NONE = new Float32Array(0);

export const hostVectorOps: HostVectorOps = {
  // A missing vector is an empty array that the branches on nv and nu never index. Written without
  // destructuring: V8 did not optimise array-pattern assignments in these loops (2x slower). With
  // 100 pairs at 512 px a step's sweeps take 185-200 ms, one pair a sweep took 203-208 (`node` on
  // Lbfgs.step, the two builds alternating).
  sweepF32F64(q: Float64Array, c: readonly number[], v: readonly Float32Array[], scale: number, u: readonly Float32Array[]): number[] {
    checkSweep(q, c, v, u);
    const n = q.length;
    const nv = v.length;
    const nu = u.length;
    const v0 = v[0] ?? NONE;
    const v1 = v[1] ?? NONE;
    const c0 = c[0] ?? 0;
    const c1 = c[1] ?? 0;
    const u0 = u[0] ?? NONE;
    const u1 = u[1] ?? NONE;
    const writes = nv > 0 || scale !== 1;
    // Four running sums per dot product: one waits an add's latency per element.
    let a0 = 0;
    let a1 = 0;
    let a2 = 0;
    let a3 = 0;
    let b0 = 0;
    let b1 = 0;
    let b2 = 0;
    let b3 = 0;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      let x0 = q[j]!;
      let x1 = q[j + 1]!;
      let x2 = q[j + 2]!;
      let x3 = q[j + 3]!;
      if (nv > 0) {
        x0 += c0 * v0[j]!;
        x1 += c0 * v0[j + 1]!;
        x2 += c0 * v0[j + 2]!;
        x3 += c0 * v0[j + 3]!;
      }
      if (nv > 1) {
        x0 += c1 * v1[j]!;
        x1 += c1 * v1[j + 1]!;
        x2 += c1 * v1[j + 2]!;
        x3 += c1 * v1[j + 3]!;
      }
      if (writes) {
        x0 *= scale;
        x1 *= scale;
        x2 *= scale;
        x3 *= scale;
        q[j] = x0;
        q[j + 1] = x1;
        q[j + 2] = x2;
        q[j + 3] = x3;
      }
      if (nu > 0) {
        a0 += u0[j]! * x0;
        a1 += u0[j + 1]! * x1;
        a2 += u0[j + 2]! * x2;
        a3 += u0[j + 3]! * x3;
      }
      if (nu > 1) {
        b0 += u1[j]! * x0;
        b1 += u1[j + 1]! * x1;
        b2 += u1[j + 2]! * x2;
        b3 += u1[j + 3]! * x3;
      }
    }
    for (; j < n; j++) {
      let x = q[j]!;
      if (nv > 0) x += c0 * v0[j]!;
      if (nv > 1) x += c1 * v1[j]!;
      if (writes) {
        x *= scale;
        q[j] = x;
      }
      if (nu > 0) a0 += u0[j]! * x;
      if (nu > 1) b0 += u1[j]! * x;
    }
    return [a0 + a1 + (a2 + a3), b0 + b1 + (b2 + b3)].slice(0, nu);
  },
};
