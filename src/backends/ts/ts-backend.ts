/**
 * `ts`: convolution as im2col + a cache-blocked GEMM, in plain TypeScript (the course's lab 3-3
 * speed-up). Runs anywhere JavaScript runs.
 */
import { convWork, fcWork } from '../conv-work.js';
import { Tensor, type Shape } from '../../tensor/tensor.js';
import type { Backend, Conv2dForwardParams, Conv2dParams, GradientEpilogue, LinearGradients, ParamGradients, Pool2dParams } from '../backend.js';
import { commonOps, conv2dInSteps, conv2dThenMaxPool, convNeedsSteps, linearBackwardByMatmul } from '../common-ops.js';
import {
  applyEpilogue,
  checkBias,
  checkGradShape,
  convGeometry,
  linearGeometry,
  matmulGeometry,
  poolGeometry,
  type ConvGeometry,
  type PoolGeometry,
} from '../shapes.js';
import { gemm, operand } from './gemm.js';
import { col2imAdd, im2col, type ColumnRange } from './im2col.js';

/** Bound on the column buffer (floats): large images are processed in ranges of output positions. */
const MAX_COLS = 1 << 22;
let colsBuffer = new Float32Array(0);

function columnBuffer(size: number): Float32Array {
  if (colsBuffer.length < size) colsBuffer = new Float32Array(size);
  return colsBuffer;
}

/** Splits the Ho*Wo output positions into ranges whose column matrix fits MAX_COLS. */
function* positionRanges(g: ConvGeometry): Generator<ColumnRange> {
  const total = g.ho * g.wo;
  const rows = g.cin * g.k * g.k;
  const step = Math.max(1, Math.min(total, Math.floor(MAX_COLS / rows)));
  for (let p0 = 0; p0 < total; p0 += step) yield { p0, len: Math.min(step, total - p0) };
}

export const tsBackend: Backend = {
  ...commonOps,
  name: 'ts',
  description: 'im2col + cache-blocked GEMM in TypeScript',
  maxTensorBytes: Infinity,
  conv2dWork: (xShape, wShape, p, pass) => convWork(xShape, wShape, p, { kind: 'im2col' }, pass),
  // Every weight row, zero input or not.
  linearWork: (xShape, wShape) => fcWork(xShape, wShape, wShape[0]!),

  conv2d(x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu = false): Tensor {
    const g = convGeometry(x.shape, w.shape, p);
    checkBias(b, g.cout, 'conv2d');
    if (convNeedsSteps(p)) return conv2dInSteps(tsBackend, x, w, b, p, relu);
    const rows = g.cin * g.k * g.k;
    const hw = g.ho * g.wo;
    const y = new Float32Array(g.n * g.cout * hw);
    for (let n = 0; n < g.n; n++) {
      const yOff = n * g.cout * hw;
      for (let co = 0; co < g.cout; co++) y.fill(b.data[co]!, yOff + co * hw, yOff + (co + 1) * hw);
      for (const range of positionRanges(g)) {
        const cols = columnBuffer(rows * range.len);
        im2col(x.data, n * g.cin * g.h * g.w, g, p.pad, p.stride, range, cols);
        // Y[Cout, range] += W^T [Cout, rows] * cols [rows, range]
        gemm(g.cout, range.len, rows, operand(w.data, g.cout, true), operand(cols, range.len), y, hw, true, yOff + range.p0);
      }
    }
    if (relu) for (let i = 0; i < y.length; i++) if (!(y[i]! > 0)) y[i] = 0;
    return new Tensor([g.n, g.cout, g.ho, g.wo], y);
  },

  conv2dBackwardData(dy: Tensor, w: Tensor, xShape: Shape, p: Conv2dParams, epilogue?: GradientEpilogue): Tensor {
    const g = convGeometry(xShape, w.shape, p);
    checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardData');
    const rows = g.cin * g.k * g.k;
    const hw = g.ho * g.wo;
    const dx = new Float32Array(g.n * g.cin * g.h * g.w);
    for (let n = 0; n < g.n; n++) {
      for (const range of positionRanges(g)) {
        const dcols = columnBuffer(rows * range.len);
        // dcols [rows, range] = W [rows, Cout] * dY [Cout, range]
        gemm(rows, range.len, g.cout, operand(w.data, g.cout), operand(dy.data, hw, false, n * g.cout * hw + range.p0), dcols, range.len, false);
        col2imAdd(dcols, g, p.pad, p.stride, range, dx, n * g.cin * g.h * g.w);
      }
    }
    return applyEpilogue(new Tensor(xShape, dx), epilogue);
  },

  conv2dBackwardParams(dy: Tensor, x: Tensor, kernel: number, p: Conv2dParams): ParamGradients {
    const cout = dy.shape[1] ?? 0;
    const g = convGeometry(x.shape, [x.shape[1] ?? 0, kernel, kernel, cout], p);
    checkGradShape(dy, [g.n, g.cout, g.ho, g.wo], 'conv2dBackwardParams');
    const rows = g.cin * g.k * g.k;
    const hw = g.ho * g.wo;
    const dw = new Float32Array(rows * g.cout);
    for (let n = 0; n < g.n; n++) {
      for (const range of positionRanges(g)) {
        const cols = columnBuffer(rows * range.len);
        im2col(x.data, n * g.cin * g.h * g.w, g, p.pad, p.stride, range, cols);
        // dW [rows, Cout] += cols [rows, range] * dY^T [range, Cout]
        gemm(rows, g.cout, range.len, operand(cols, range.len), operand(dy.data, hw, true, n * g.cout * hw + range.p0), dw, g.cout, true);
      }
    }
    const db = new Float32Array(g.cout);
    for (let n = 0; n < g.n; n++)
      for (let co = 0; co < g.cout; co++) {
        let s = 0;
        const off = (n * g.cout + co) * hw;
        for (let i = 0; i < hw; i++) s += dy.data[off + i]!;
        db[co] += s;
      }
    return { dw: new Tensor([g.cin, g.k, g.k, g.cout], dw), db: new Tensor([g.cout], db) };
  },

  conv2dMaxPool(x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu: boolean, pool: Pool2dParams): Tensor {
    return conv2dThenMaxPool(tsBackend, x, w, b, p, relu, pool);
  },

  maxPool2d(x: Tensor, p: Pool2dParams): Tensor {
    const g = poolGeometry(x.shape, p);
    const y = new Float32Array(g.n * g.c * g.ho * g.wo);
    const idx = new Int32Array(1);
    let o = 0;
    for (let plane = 0; plane < g.n * g.c; plane++)
      for (let oh = 0; oh < g.ho; oh++)
        for (let ow = 0; ow < g.wo; ow++, o++) {
          windowArgmax(x.data, plane, g, p, oh, ow, idx);
          y[o] = x.data[idx[0]!]!;
        }
    return new Tensor([g.n, g.c, g.ho, g.wo], y);
  },

  maxPool2dBackward(dy: Tensor, x: Tensor, p: Pool2dParams, reluMask = false): Tensor {
    const g = poolGeometry(x.shape, p);
    checkGradShape(dy, [g.n, g.c, g.ho, g.wo], 'maxPool2dBackward');
    const dx = new Float32Array(x.size);
    const idx = new Int32Array(1);
    let o = 0;
    for (let plane = 0; plane < g.n * g.c; plane++)
      for (let oh = 0; oh < g.ho; oh++)
        for (let ow = 0; ow < g.wo; ow++, o++) {
          windowArgmax(x.data, plane, g, p, oh, ow, idx);
          if (!reluMask || x.data[idx[0]!]! > 0) dx[idx[0]!] += dy.data[o]!;
        }
    return new Tensor(x.shape, dx);
  },

  matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
    const { m, n, k } = matmulGeometry(a, b, transA, transB);
    const c = new Float32Array(m * n);
    gemm(m, n, k, operand(a.data, a.shape[1]!, transA), operand(b.data, b.shape[1]!, transB), c, n, false);
    return new Tensor([m, n], c);
  },

  linear(x: Tensor, w: Tensor, b: Tensor): Tensor {
    const { m, n, k } = linearGeometry(x, w, b);
    const y = new Float32Array(m * n);
    for (let i = 0; i < m; i++) y.set(b.data, i * n);
    gemm(m, n, k, operand(x.data, k), operand(w.data, n), y, n, true);
    return new Tensor([m, n], y);
  },

  linearBackward(dy: Tensor, x: Tensor, w: Tensor): LinearGradients {
    return linearBackwardByMatmul(tsBackend, dy, x, w);
  },
};

/** Flat index of the first maximum in one pooling window of one (n,c) plane, into out[0]. */
function windowArgmax(x: Float32Array, plane: number, g: PoolGeometry, p: Pool2dParams, oh: number, ow: number, out: Int32Array): void {
  const base = plane * g.h * g.w;
  const h0 = oh * p.stride - p.pad;
  const w0 = ow * p.stride - p.pad;
  const h1 = Math.min(h0 + p.kernel, g.h);
  const w1 = Math.min(w0 + p.kernel, g.w);
  let best = -Infinity;
  let bi = -1;
  for (let ih = Math.max(h0, 0); ih < h1; ih++) {
    const row = base + ih * g.w;
    for (let iw = Math.max(w0, 0); iw < w1; iw++) {
      const v = x[row + iw]!;
      if (bi < 0 || v > best) {
        best = v;
        bi = row + iw;
      } else if (Number.isNaN(v) && !Number.isNaN(best)) {
        best = v;
        bi = row + iw;
      }
    }
  }
  out[0] = bi;
}
