/**
 * `loops`: the course's four nested loops, written to be read next to the seed's formulas. This is
 * the ground truth every fast kernel is tested against; it is deliberately not optimised.
 */
import { convWork, fcWork } from '../conv-work.js';
import { Tensor, type Shape } from '../../tensor/tensor.js';
import type { Backend, Conv2dForwardParams, Conv2dParams, ConvPadding, GradientEpilogue, LinearGradients, ParamGradients, Pool2dParams } from '../backend.js';
import { commonOps, conv2dThenMaxPool, linearBackwardByMatmul, reflect } from '../common-ops.js';
import {
  applyEpilogue,
  checkBias,
  checkGradShape,
  convGeometry,
  linearGeometry,
  matmulGeometry,
  poolGeometry,
  type ConvGeometry,
} from '../shapes.js';

/**
 * Xpad: the input surrounded by `pad` rows and columns of zeros (the course pads explicitly), or
 * with 'reflect' of the input mirrored at its edges: Xpad(h, w) = X(reflect(h - pad), reflect(w - pad)).
 * With upsampling by f, X(h, w) is the stored cell (floor(h / f), floor(w / f)) and g.h, g.w the
 * upsampled sizes.
 */
function padInput(x: Float32Array, g: ConvGeometry, pad: number, padding: ConvPadding = 'zeros', up = 1): { data: Float32Array; hp: number; wp: number } {
  const hp = g.h + 2 * pad;
  const wp = g.w + 2 * pad;
  const out = new Float32Array(g.n * g.cin * hp * wp);
  const [sh, sw] = [g.h / up, g.w / up]; // the stored plane
  for (let n = 0; n < g.n; n++)
    for (let c = 0; c < g.cin; c++)
      for (let h = 0; h < hp; h++)
        for (let w = 0; w < wp; w++) {
          const [ih, iw] = padding === 'reflect' ? [reflect(h - pad, g.h), reflect(w - pad, g.w)] : [h - pad, w - pad];
          if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) out[((n * g.cin + c) * hp + h) * wp + w] = x[((n * g.cin + c) * sh + Math.floor(ih / up)) * sw + Math.floor(iw / up)]!;
        }
  return { data: out, hp, wp };
}

export const loopsBackend: Backend = {
  ...commonOps,
  name: 'loops',
  description: "the course's four nested loops (reference, slow)",
  maxTensorBytes: Infinity,

  conv2dWork: (xShape, wShape, p, pass) => convWork(xShape, wShape, p, { kind: 'direct' }, pass),
  // Every weight row, zero input or not.
  linearWork: (xShape, wShape) => fcWork(xShape, wShape, wShape[0]!),

  // Seed eq. 22: Y(n,co,h,w) = sum_{ci,kh,kw} W(ci,kh,kw,co) * Xpad(n,ci,h*s+kh,w*s+kw) + b(co)
  conv2d(x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu = false): Tensor {
    const g = convGeometry(x.shape, w.shape, p);
    checkBias(b, g.cout, 'conv2d');
    const { data: xp, hp, wp } = padInput(x.data, g, p.pad, p.padding, p.upsample);
    const W = w.data;
    const k = g.k;
    const y = new Float32Array(g.n * g.cout * g.ho * g.wo);
    for (let n = 0; n < g.n; n++) {
      for (let co = 0; co < g.cout; co++) {
        for (let h = 0; h < g.ho; h++) {
          for (let wi = 0; wi < g.wo; wi++) {
            let sum = 0;
            for (let ci = 0; ci < g.cin; ci++)
              for (let kh = 0; kh < k; kh++)
                for (let kw = 0; kw < k; kw++)
                  sum +=
                    W[((ci * k + kh) * k + kw) * g.cout + co]! *
                    xp[((n * g.cin + ci) * hp + h * p.stride + kh) * wp + wi * p.stride + kw]!;
            const v = sum + b.data[co]!;
            y[((n * g.cout + co) * g.ho + h) * g.wo + wi] = relu && !(v > 0) ? 0 : v;
          }
        }
      }
    }
    return new Tensor([g.n, g.cout, g.ho, g.wo], y);
  },

  // Each output (n,co,h,w) sent its gradient back to the window it was computed from.
  conv2dBackwardData(dy: Tensor, w: Tensor, xShape: Shape, p: Conv2dParams, epilogue?: GradientEpilogue): Tensor {
    const g = convGeometry(xShape, w.shape, p);
    checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardData');
    const hp = g.h + 2 * p.pad;
    const wp = g.w + 2 * p.pad;
    const dxp = new Float32Array(g.n * g.cin * hp * wp);
    const W = w.data;
    const k = g.k;
    for (let n = 0; n < g.n; n++) {
      for (let co = 0; co < g.cout; co++) {
        for (let h = 0; h < g.ho; h++) {
          for (let wi = 0; wi < g.wo; wi++) {
            const top = dy.data[((n * g.cout + co) * g.ho + h) * g.wo + wi]!;
            for (let ci = 0; ci < g.cin; ci++)
              for (let kh = 0; kh < k; kh++)
                for (let kw = 0; kw < k; kw++)
                  dxp[((n * g.cin + ci) * hp + h * p.stride + kh) * wp + wi * p.stride + kw] +=
                    W[((ci * k + kh) * k + kw) * g.cout + co]! * top;
          }
        }
      }
    }
    // Crop the padding away.
    const dx = new Float32Array(g.n * g.cin * g.h * g.w);
    for (let n = 0; n < g.n; n++)
      for (let c = 0; c < g.cin; c++)
        for (let h = 0; h < g.h; h++)
          for (let wi = 0; wi < g.w; wi++)
            dx[((n * g.cin + c) * g.h + h) * g.w + wi] = dxp[((n * g.cin + c) * hp + h + p.pad) * wp + wi + p.pad]!;
    return applyEpilogue(new Tensor(xShape, dx), epilogue);
  },

  conv2dBackwardParams(dy: Tensor, x: Tensor, kernel: number, p: Conv2dParams): ParamGradients {
    const cout = dy.shape[1] ?? 0;
    const g = convGeometry(x.shape, [x.shape[1] ?? 0, kernel, kernel, cout], p);
    checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardParams');
    const { data: xp, hp, wp } = padInput(x.data, g, p.pad);
    const k = g.k;
    const dw = new Float32Array(g.cin * k * k * g.cout);
    const db = new Float32Array(g.cout);
    for (let n = 0; n < g.n; n++) {
      for (let co = 0; co < g.cout; co++) {
        for (let h = 0; h < g.ho; h++) {
          for (let wi = 0; wi < g.wo; wi++) {
            const top = dy.data[((n * g.cout + co) * g.ho + h) * g.wo + wi]!;
            for (let ci = 0; ci < g.cin; ci++)
              for (let kh = 0; kh < k; kh++)
                for (let kw = 0; kw < k; kw++)
                  dw[((ci * k + kh) * k + kw) * g.cout + co] +=
                    xp[((n * g.cin + ci) * hp + h * p.stride + kh) * wp + wi * p.stride + kw]! * top;
            db[co] += top;
          }
        }
      }
    }
    return { dw: new Tensor([g.cin, k, k, g.cout], dw), db: new Tensor([g.cout], db) };
  },

  // The reference for every backend's fused version: the two ops as written above and below.
  conv2dMaxPool(x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu: boolean, pool: Pool2dParams): Tensor {
    return conv2dThenMaxPool(loopsBackend, x, w, b, p, relu, pool);
  },

  // Seed eq. 23: Y(n,c,h,w) = max_{kh,kw} X(n,c,h*s+kh,w*s+kw)
  maxPool2d(x: Tensor, p: Pool2dParams): Tensor {
    const g = poolGeometry(x.shape, p);
    const y = new Float32Array(g.n * g.c * g.ho * g.wo);
    for (let n = 0; n < g.n; n++)
      for (let c = 0; c < g.c; c++)
        for (let h = 0; h < g.ho; h++)
          for (let w = 0; w < g.wo; w++) {
            const [ih, iw] = argmaxOfWindow(x.data, g, p, n, c, h, w);
            y[((n * g.c + c) * g.ho + h) * g.wo + w] = x.data[((n * g.c + c) * g.h + ih) * g.w + iw]!;
          }
    return new Tensor([g.n, g.c, g.ho, g.wo], y);
  },

  maxPool2dBackward(dy: Tensor, x: Tensor, p: Pool2dParams, reluMask = false): Tensor {
    const g = poolGeometry(x.shape, p);
    checkGradShape(dy, [g.n, g.c, g.ho, g.wo], 'maxPool2dBackward');
    const dx = new Float32Array(x.size);
    for (let n = 0; n < g.n; n++)
      for (let c = 0; c < g.c; c++)
        for (let h = 0; h < g.ho; h++)
          for (let w = 0; w < g.wo; w++) {
            const [ih, iw] = argmaxOfWindow(x.data, g, p, n, c, h, w);
            dx[((n * g.c + c) * g.h + ih) * g.w + iw] += dy.data[((n * g.c + c) * g.ho + h) * g.wo + w]!;
          }
    // Seed eq. 18 for the ReLU whose output x is: zero where x <= 0.
    if (reluMask) for (let i = 0; i < dx.length; i++) if (!(x.data[i]! > 0)) dx[i] = 0;
    return new Tensor(x.shape, dx);
  },

  matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
    const { m, n, k } = matmulGeometry(a, b, transA, transB);
    const [, ac] = a.shape as [number, number];
    const [, bc] = b.shape as [number, number];
    const c = new Float32Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let l = 0; l < k; l++) {
          const av = transA ? a.data[l * ac + i]! : a.data[i * ac + l]!;
          const bv = transB ? b.data[j * bc + l]! : b.data[l * bc + j]!;
          sum += av * bv;
        }
        c[i * n + j] = sum;
      }
    return new Tensor([m, n], c);
  },

  linear(x: Tensor, w: Tensor, b: Tensor): Tensor {
    const { m, n, k } = linearGeometry(x, w, b);
    const y = new Float32Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let l = 0; l < k; l++) sum += x.data[i * k + l]! * w.data[l * n + j]!;
        y[i * n + j] = sum + b.data[j]!;
      }
    return new Tensor([m, n], y);
  },

  linearBackward(dy: Tensor, x: Tensor, w: Tensor): LinearGradients {
    return linearBackwardByMatmul(loopsBackend, dy, x, w);
  },
};

/** Position (row, column in the input) of the first maximum of one pooling window. */
function argmaxOfWindow(
  x: Float32Array,
  g: { c: number; h: number; w: number },
  p: Pool2dParams,
  n: number,
  c: number,
  oh: number,
  ow: number,
): [number, number] {
  let best = -Infinity;
  let bh = -1;
  let bw = -1;
  for (let kh = 0; kh < p.kernel; kh++)
    for (let kw = 0; kw < p.kernel; kw++) {
      const ih = oh * p.stride + kh - p.pad;
      const iw = ow * p.stride + kw - p.pad;
      if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue; // padding never wins
      const v = x[((n * g.c + c) * g.h + ih) * g.w + iw]!;
      if (bh < 0 || v > best || Number.isNaN(v)) {
        best = v;
        bh = ih;
        bw = iw;
        if (Number.isNaN(v)) return [bh, bw];
      }
    }
  return [bh, bw];
}
