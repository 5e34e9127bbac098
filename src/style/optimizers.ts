/** Optimisers over the image: Adam (seed eqs. 30-34) and L-BFGS. Both update x in place. */
import { hostVectorOps, type HostVectorOps } from '../backends/host-vectors.js';
import { newHostArray } from '../tensor/host-pool.js';

export interface Optimizer {
  /** One step from the gradient of the loss at x; x is changed in place. */
  step(x: Float32Array, grad: Float32Array, loss: number): void;
}

/** Adam with bias-corrected moments (seed eqs. 30-34; eq. 33 divides by 1 - beta2^t). */
export class Adam implements Optimizer {
  private m?: Float32Array;
  private v?: Float32Array;
  private t = 0;

  constructor(
    readonly lr: number,
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    readonly eps = 1e-8,
  ) {}

  /** The moments and the step count: what a training checkpoint keeps so that resuming changes nothing. */
  get state(): { readonly m: Float32Array; readonly v: Float32Array; readonly t: number } | undefined {
    return this.m && this.v ? { m: this.m, v: this.v, t: this.t } : undefined;
  }

  /** Continues from a saved state (its arrays are copied). */
  restore(state: { readonly m: Float32Array; readonly v: Float32Array; readonly t: number }): void {
    if (state.m.length !== state.v.length) throw new Error('Adam state: moments of different lengths');
    [this.m, this.v, this.t] = [Float32Array.from(state.m), Float32Array.from(state.v), state.t];
  }

  step(x: Float32Array, grad: Float32Array): void {
    if (this.m && this.m.length !== x.length) throw new Error(`Adam state holds ${this.m.length} values, the parameters ${x.length}`);
    this.m ??= new Float32Array(x.length);
    this.v ??= new Float32Array(x.length);
    this.t++;
    const { m, v, beta1, beta2, eps, lr } = this;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    for (let i = 0; i < x.length; i++) {
      const g = grad[i]!;
      m[i] = beta1 * m[i]! + (1 - beta1) * g;
      v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
      x[i] -= (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + eps);
    }
  }
}

/**
 * L-BFGS (Nocedal & Wright, algorithm 7.4: the two-loop recursion) with a fixed step as in
 * torch.optim.LBFGS without line search: the first step is scaled to min(1, 1/|g|_1) * lr, later
 * ones are lr; curvature pairs with y.s <= 1e-10 are skipped.
 *
 * The pairs are kept in floats, as torch keeps them for float32 parameters: s and y are differences
 * of float32 images and gradients, which a float holds exactly when the two are within a factor of
 * two (Sterbenz), and otherwise to its rounding. Their dot products and the direction q are in
 * doubles. Once the history is full it holds 2 (history + 1) floats per element of x (the next
 * pair's arrays are written before the pair is known to be kept), the last image and gradient and
 * this one as floats and q as doubles: memory-plan.ts counts them; at 4000x3000, 0.29 GB per pair.
 * Floats instead of doubles halve both that and what each step streams: the recursion reads the
 * whole history twice.
 */
export class Lbfgs implements Optimizer {
  private readonly s: Float32Array[] = [];
  private readonly y: Float32Array[] = [];
  private readonly rho: number[] = [];
  /** cross[i] = s[i - 1].y[i], taken as pair i is made: the recursion's sweeps take two pairs at once. */
  private readonly cross: number[] = [];
  /** The next pair's arrays: reused while pairs are skipped, and a full history's oldest pair becomes them. */
  private spare?: [Float32Array, Float32Array];
  /** The last image and gradient, this gradient and the direction, reused: at print sizes each is hundreds of MB. */
  private prevX?: Float32Array;
  private prevG?: Float32Array;
  private g?: Float32Array;
  private q?: Float64Array;
  private hDiag = 1;
  private iteration = 0;

  /** `vectors`: the sweeps' kernels; a backend's (native runs them over its threads). */
  constructor(
    readonly lr = 1,
    readonly history = 100,
    private readonly vectors: HostVectorOps = hostVectorOps,
  ) {}

  step(x: Float32Array, grad: Float32Array): void {
    const n = x.length;
    if (!this.g) [this.g, this.prevG, this.prevX] = vectors(n, 3);
    const g = this.g;
    g.set(grad);
    if (this.iteration > 0) {
      const [prevX, prevG] = [this.prevX!, this.prevG!];
      const [s, y] = (this.spare ??= vectors(n, 2) as [Float32Array, Float32Array]);
      // y.s and y.y of the pair as kept (rounded to floats), so that rho and the recursion agree;
      // and the newest kept pair's s with this y (its cross term, 0 while there is none).
      const before = this.s[this.s.length - 1] ?? s;
      let ys = 0;
      let yy = 0;
      let sy = 0;
      for (let i = 0; i < n; i++) {
        const si = Math.fround(x[i]! - prevX[i]!);
        const yi = Math.fround(g[i]! - prevG[i]!);
        s[i] = si;
        y[i] = yi;
        ys += yi * si;
        yy += yi * yi;
        sy += before[i]! * yi;
      }
      if (ys > 1e-10) {
        this.s.push(s);
        this.y.push(y);
        this.rho.push(1 / ys);
        this.cross.push(this.s.length > 1 ? sy : 0);
        this.hDiag = ys / yy;
        this.spare = undefined;
        if (this.s.length > this.history) {
          this.spare = [this.s.shift()!, this.y.shift()!];
          this.rho.shift();
          this.cross.shift();
        }
      }
    }
    // Two-loop recursion: d = -H g, two pairs a sweep. A sweep over q applies two pairs' updates and
    // takes the next two pairs' dot products with the updated q (Backend.sweepF32F64); the second
    // pair's dot product as the recursion wants it, with q after the first pair's update, follows
    // from the cross term: s_b.(q - alpha_a y_a) = s_b.q - alpha_a s_b.y_a. One sweep per two pairs
    // and loop: q (6 MB of doubles at 512 px) goes through the caches half as often. With 100 pairs
    // at 512 px, within a stylize step on native: 49-50 -> 35-41 ms (`node` on evaluate and
    // Lbfgs.step, the two builds alternating). Taking every dot product from small matrices of
    // s_i.y_j and y_i.y_j instead (two sweeps in all) measured slower, with the pairs in doubles
    // and the sweeps in TypeScript (210 ms against 180), bound by the same reads of the history.
    const q = (this.q ??= doubles(n));
    q.set(g);
    const k = this.s.length;
    const [S, Y, rho, cross, v] = [this.s, this.y, this.rho, this.cross, this.vectors];
    const alpha = new Array<number>(k);
    const pairsFrom = (from: number, to: number, of: Float32Array[]) => of.slice(Math.max(0, from), Math.max(0, to));
    // First loop, newest pair first, a = i and b = i - 1 a sweep: alpha_i = rho_i s_i.q, then q -=
    // alpha_i y_i. After the oldest, q is scaled by hDiag (the initial inverse Hessian, gamma I) and
    // the second loop's first dot products (y_0.q, y_1.q) taken.
    let dots = k > 0 ? v.sweepF32F64(q, [], [], 1, pairsFrom(k - 2, k, S).reverse()) : [];
    for (let a = k - 1; a >= 0; a -= 2) {
      const b = a - 1;
      alpha[a] = rho[a]! * dots[0]!;
      if (b >= 0) alpha[b] = rho[b]! * (dots[1]! - alpha[a]! * cross[a]!);
      const last = b <= 0;
      const next = last ? pairsFrom(0, Math.min(2, k), Y) : pairsFrom(a - 3, a - 1, S).reverse();
      const group = b >= 0 ? [a, b] : [a];
      dots = v.sweepF32F64(q, group.map((j) => -alpha[j]!), group.map((j) => Y[j]!), last ? this.hDiag : 1, next);
    }
    if (k === 0) for (let j = 0; j < n; j++) q[j] *= this.hDiag;
    // Second loop, oldest pair first, i and i + 1 a sweep: beta_i = rho_i y_i.q, then q += (alpha_i -
    // beta_i) s_i; y_{i+1}.q after that update is y_{i+1}.q + (alpha_i - beta_i) s_i.y_{i+1}.
    for (let i = 0; i < k; i += 2) {
      const wi = alpha[i]! - rho[i]! * dots[0]!;
      const w = i + 1 < k ? [wi, alpha[i + 1]! - rho[i + 1]! * (dots[1]! + wi * cross[i + 1]!)] : [wi];
      dots = v.sweepF32F64(q, w, S.slice(i, i + w.length), 1, pairsFrom(i + 2, Math.min(i + 4, k), Y));
    }
    let step = this.lr;
    if (this.iteration === 0) {
      let l1 = 0;
      for (let j = 0; j < n; j++) l1 += Math.abs(g[j]!);
      step = Math.min(1, 1 / Math.max(l1, 1e-30)) * this.lr;
    }
    this.prevX!.set(x);
    // The last gradient's array takes the next one.
    [this.g, this.prevG] = [this.prevG!, g];
    for (let j = 0; j < n; j++) x[j] -= step * q[j]!;
    this.iteration++;
  }
}

/**
 * `count` vectors of n floats in one host array, so that they come on huge pages where the addon is
 * loaded from an image of a million values down (host-pool.ts: arrays from 4 MiB), where a lone
 * vector would need two million. At 512 px with 100 pairs, right after a network pass, an L-BFGS
 * step took 216-242 ms (medians of 7) with each vector an array of its own (3 MB: 4 KiB pages),
 * 82-86 ms with the pairs as one array (`node` on evaluate and Lbfgs.step, alternating processes).
 */
function vectors(n: number, count: number): Float32Array[] {
  const a = newHostArray(count * n);
  return Array.from({ length: count }, (_, i) => a.subarray(i * n, (i + 1) * n));
}

/**
 * A zeroed array of n doubles in a host array's memory: where the native addon is loaded, large ones
 * come on huge pages (host-pool.ts). With the history in doubles and the sweeps in TypeScript, a step
 * right after a network pass took 0.7-1.7 s on 4 KiB pages (the page walks of a 1.3 GB stream),
 * 0.2-0.7 s on huge pages (`node` on the bench's stylize step, the arrays copied to and from them).
 */
function doubles(n: number): Float64Array {
  const a = newHostArray(2 * n);
  return new Float64Array(a.buffer, a.byteOffset, n);
}
