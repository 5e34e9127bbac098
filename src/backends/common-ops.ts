/**
 * Ops whose simplest form is already linear-time and memory-bound: both CPU backends share them,
 * and the four-loop backend's version is this one. (A GPU backend implements its own.)
 */
import { PasticheError } from '../errors.js';
import { Tensor, expectRank, shapeToString, type Shape } from '../tensor/tensor.js';
import type { Backend, Conv2dForwardParams, LinearGradients, NormGradients, Pool2dParams } from './backend.js';
import { hostVectorOps } from './host-vectors.js';
import { checkChannelParams, checkGradShape, checkLabels, checkReflectionPad, poolGeometry } from './shapes.js';

type CommonOps = Pick<
  Backend,
  | 'avgPool2d'
  | 'avgPool2dBackward'
  | 'relu'
  | 'reluBackward'
  | 'flattenNhwc'
  | 'flattenNhwcBackward'
  | 'softmax'
  | 'crossEntropy'
  | 'addScaled'
  | 'gram'
  | 'mixChannels'
  | 'scale'
  | 'sumOfSquares'
  | 'sweepF32F64'
  | 'softmaxCrossEntropyBackward'
  | 'reflectionPad2d'
  | 'instanceNorm2d'
  | 'upsampleNearest2d'
  | 'channelAffine2d'
  | 'instanceNorm2dBackward'
  | 'batchNorm2d'
  | 'batchNorm2dBackward'
  | 'reflectionPad2dBackward'
  | 'upsampleNearest2dBackward'
>;

/** Calls fn(plane offset, input cell, output cell, 1/count) for every cell of every window. */
function forEachWindowCell(xShape: Shape, p: Pool2dParams, fn: (xi: number, yi: number, inv: number) => void): number[] {
  const g = poolGeometry(xShape, p);
  for (let plane = 0; plane < g.n * g.c; plane++) {
    for (let oh = 0; oh < g.ho; oh++) {
      for (let ow = 0; ow < g.wo; ow++) {
        const h0 = Math.max(oh * p.stride - p.pad, 0), h1 = Math.min(oh * p.stride - p.pad + p.kernel, g.h);
        const w0 = Math.max(ow * p.stride - p.pad, 0), w1 = Math.min(ow * p.stride - p.pad + p.kernel, g.w);
        const inv = 1 / ((h1 - h0) * (w1 - w0));
        const yi = (plane * g.ho + oh) * g.wo + ow;
        for (let ih = h0; ih < h1; ih++) for (let iw = w0; iw < w1; iw++) fn((plane * g.h + ih) * g.w + iw, yi, inv);
      }
    }
  }
  return [g.n, g.c, g.ho, g.wo];
}

/** Index i of a line of n cells, mirrored at both ends (no edge repeat): -1 -> 1, n -> n - 2. */
export function reflect(i: number, n: number): number {
  return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
}

/** Whether conv2d's parameters ask for more than zero padding (see conv2dInSteps). */
export function convNeedsSteps(p: Conv2dForwardParams): boolean {
  return p.padding === 'reflect' || (p.upsample ?? 1) > 1;
}

/**
 * conv2d with upsampling and a mirrored border as separate steps, the upsampled copy, the padded
 * copy and then the plain convolution: for a backend (or an algorithm of one) that does not read
 * its input that way itself.
 */
export function conv2dInSteps(be: Backend, x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu: boolean): Tensor {
  const up = p.upsample ?? 1;
  const upsampled = up > 1 ? be.upsampleNearest2d(x, up) : x;
  const reflect = p.padding === 'reflect';
  const padded = reflect ? be.reflectionPad2d(upsampled, p.pad) : upsampled;
  try {
    return be.conv2d(padded, w, b, { pad: reflect ? 0 : p.pad, stride: p.stride }, relu);
  } finally {
    if (padded !== x) padded.recycle();
    if (upsampled !== x && upsampled !== padded) upsampled.recycle();
  }
}

/** conv2dMaxPool as its two steps: the convolution's whole output, then the pool over it. */
export function conv2dThenMaxPool(be: Backend, x: Tensor, w: Tensor, b: Tensor, p: Conv2dForwardParams, relu: boolean, pool: Pool2dParams): Tensor {
  const y = be.conv2d(x, w, b, p, relu);
  try {
    return be.maxPool2d(y, pool);
  } finally {
    y.recycle();
  }
}

export function columnSums(d: Float32Array, rows: number, cols: number): Tensor {
  const s = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) s[j] += d[r * cols + j]!;
  return new Tensor([cols], s);
}

/**
 * Seed eqs. 8, 9, 12 through a backend's own matmul: dx = dy W^T, dW = x^T dy, db = sum_n dy (on
 * the host unless the backend sums dy's rows where dy lives).
 */
export function linearBackwardByMatmul(
  be: Pick<Backend, 'matmul'>,
  dy: Tensor,
  x: Tensor,
  w: Tensor,
  sumRows: (dy: Tensor, rows: number, cols: number) => Tensor = (t, rows, cols) => columnSums(t.data, rows, cols),
): LinearGradients {
  const n = x.shape[0]!;
  const dout = w.shape[1]!;
  checkGradShape(dy, [n, dout], 'linearBackward');
  return { dx: be.matmul(dy, w, false, true), dw: be.matmul(x, dy, true, false), db: sumRows(dy, n, dout) };
}

/**
 * The cells of normalisation group g: `segments` runs of m cells, run k at ((k * groups + g) * m).
 * Instance norm: a group per (n, c) plane, one run; batch norm: a group per channel, one run per image.
 */
function groupCells(g: number, groups: number, segments: number, m: number): (t: number) => number {
  return segments === 1 ? (t) => g * m + t : (t) => (((t / m) | 0) * groups + g) * m + (t % m);
}

/** Mean and biased variance of a group, two passes in float64 (no cancellation). */
function groupMoments(d: Float32Array, at: (t: number) => number, count: number): { mean: number; variance: number } {
  let sum = 0;
  for (let t = 0; t < count; t++) sum += d[at(t)]!;
  const mean = sum / count;
  let sq = 0;
  for (let t = 0; t < count; t++) {
    const v = d[at(t)]! - mean;
    sq += v * v;
  }
  return { mean, variance: sq / count };
}

/** One image's [C, H*W] for the channel products below (Backend.gram, Backend.mixChannels). */
export function channelMatrix(f: Tensor, op: string): [number, number] {
  const [n, c, h, w] = expectRank(f, 4, op) as [number, number, number, number];
  if (n !== 1) throw new PasticheError(`${op}: one image's features, got ${shapeToString(f.shape)}`);
  return [c, h * w];
}

/** Backend.gram and Backend.mixChannels as matmul's products: every backend's, where native has no faster path. */
export const matmulChannelOps: Pick<Backend, 'gram' | 'mixChannels'> = {
  gram(this: Backend, f: Tensor): Tensor {
    const [c, hw] = channelMatrix(f, 'gram');
    const m = f.reshape([c, hw]);
    return this.matmul(m, m, false, true);
  },

  mixChannels(this: Backend, d: Tensor, f: Tensor): Tensor {
    const [c, hw] = channelMatrix(f, 'mixChannels');
    checkGradShape(d, [c, c], 'mixChannels');
    return this.matmul(d, f.reshape([c, hw]), true, false).reshape(f.shape);
  },
};

export const commonOps: CommonOps = {
  ...matmulChannelOps,
  ...hostVectorOps,
  avgPool2d(x: Tensor, p: Pool2dParams): Tensor {
    const g = poolGeometry(x.shape, p);
    const y = new Float32Array(g.n * g.c * g.ho * g.wo);
    const shape = forEachWindowCell(x.shape, p, (xi, yi, inv) => (y[yi] += x.data[xi]! * inv));
    return new Tensor(shape, y);
  },

  avgPool2dBackward(dy: Tensor, xShape: Shape, p: Pool2dParams): Tensor {
    const g = poolGeometry(xShape, p);
    checkGradShape(dy, [g.n, g.c, g.ho, g.wo], 'avgPool2dBackward');
    const dx = new Float32Array(g.n * g.c * g.h * g.w);
    forEachWindowCell(xShape, p, (xi, yi, inv) => (dx[xi] += dy.data[yi]! * inv));
    return new Tensor(xShape, dx);
  },

  relu(x: Tensor): Tensor {
    const y = new Float32Array(x.size);
    const xd = x.data;
    for (let i = 0; i < y.length; i++) y[i] = xd[i]! > 0 ? xd[i]! : 0;
    return new Tensor(x.shape, y);
  },

  reluBackward(dy: Tensor, x: Tensor, inPlace = false): Tensor {
    checkGradShape(dy, x.shape, 'reluBackward');
    const dx = inPlace ? dy.data : new Float32Array(x.size);
    for (let i = 0; i < dx.length; i++) dx[i] = x.data[i]! > 0 ? dy.data[i]! : 0;
    return new Tensor(x.shape, dx);
  },

  flattenNhwc(x: Tensor): Tensor {
    const [n, c, h, w] = expectRank(x, 4, 'flatten') as [number, number, number, number];
    const y = new Float32Array(x.size);
    const xd = x.data;
    let o = 0;
    for (let in_ = 0; in_ < n; in_++) {
      for (let ih = 0; ih < h; ih++) {
        for (let iw = 0; iw < w; iw++) {
          for (let ic = 0; ic < c; ic++) y[o++] = xd[((in_ * c + ic) * h + ih) * w + iw]!;
        }
      }
    }
    return new Tensor([n, h * w * c], y);
  },

  flattenNhwcBackward(dy: Tensor, xShape: Shape): Tensor {
    const [n, c, h, w] = xShape as [number, number, number, number];
    if (xShape.length !== 4 || dy.rank !== 2 || dy.shape[0] !== n || dy.shape[1] !== c * h * w) {
      throw new PasticheError(`flattenBackward: gradient ${shapeToString(dy.shape)} does not match input ${shapeToString(xShape)}`);
    }
    const dx = new Float32Array(dy.size);
    const g = dy.data;
    let o = 0;
    for (let in_ = 0; in_ < n; in_++) {
      for (let ih = 0; ih < h; ih++) {
        for (let iw = 0; iw < w; iw++) {
          for (let ic = 0; ic < c; ic++) dx[((in_ * c + ic) * h + ih) * w + iw] = g[o++]!;
        }
      }
    }
    return new Tensor(xShape, dx);
  },

  softmax(logits: Tensor): Tensor {
    const [n, k] = expectRank(logits, 2, 'softmax') as [number, number];
    const p = new Float32Array(logits.size);
    const x = logits.data;
    for (let r = 0; r < n; r++) {
      let max = -Infinity;
      for (let j = r * k; j < (r + 1) * k; j++) if (x[j]! > max) max = x[j]!;
      // The exponentials once, kept in p, summed in float64 (1000 terms).
      let sum = 0;
      for (let j = r * k; j < (r + 1) * k; j++) sum += p[j] = Math.exp(x[j]! - max);
      for (let j = r * k; j < (r + 1) * k; j++) p[j] = p[j]! / sum;
    }
    return new Tensor(logits.shape, p);
  },

  crossEntropy(prob: Tensor, labels: Int32Array): Tensor {
    const [n, k] = checkLabels(prob, labels);
    let loss = 0;
    // Clamp so that a probability that underflowed to 0 gives a large finite loss, not Infinity.
    for (let r = 0; r < n; r++) loss -= Math.log(Math.max(prob.data[r * k + labels[r]!]!, 1e-30));
    return Tensor.from([1], [loss / n]);
  },

  addScaled(a: Tensor, b: Tensor, alpha: number): Tensor {
    checkGradShape(b, a.shape, 'addScaled');
    const out = new Float32Array(a.size);
    const ad = a.data;
    const bd = b.data;
    for (let i = 0; i < out.length; i++) out[i] = ad[i]! + alpha * bd[i]!;
    return new Tensor(a.shape, out);
  },

  scale(x: Tensor, alpha: number): Tensor {
    const out = new Float32Array(x.size);
    const xd = x.data;
    for (let i = 0; i < out.length; i++) out[i] = alpha * xd[i]!;
    return new Tensor(x.shape, out);
  },

  sumOfSquares(x: Tensor): Tensor {
    let sum = 0; // float64 accumulation
    for (const v of x.data) sum += v * v;
    return Tensor.from([1], [sum]);
  },

  reflectionPad2d(x: Tensor, pad: number): Tensor {
    const [n, c, h, w] = expectRank(x, 4, 'reflectionPad2d') as [number, number, number, number];
    checkReflectionPad(h, w, pad);
    const [hp, wp] = [h + 2 * pad, w + 2 * pad];
    const y = new Float32Array(n * c * hp * wp);
    for (let plane = 0; plane < n * c; plane++) {
      for (let oh = 0; oh < hp; oh++) {
        const row = x.data.subarray((plane * h + reflect(oh - pad, h)) * w, (plane * h + reflect(oh - pad, h) + 1) * w);
        const o = (plane * hp + oh) * wp;
        y.set(row, o + pad);
        for (let i = 1; i <= pad; i++) {
          y[o + pad - i] = row[i]!; // x[-i] = x[i]
          y[o + pad + w - 1 + i] = row[w - 1 - i]!; // x[w-1+i] = x[w-1-i]
        }
      }
    }
    return new Tensor([n, c, hp, wp], y);
  },

  instanceNorm2d(x: Tensor, weight: Tensor, bias: Tensor, eps: number, relu = false): Tensor {
    const [n, c, h, w] = expectRank(x, 4, 'instanceNorm2d') as [number, number, number, number];
    checkChannelParams(weight, bias, c, 'instanceNorm2d');
    const m = h * w;
    const y = new Float32Array(x.size);
    for (let plane = 0; plane < n * c; plane++) {
      const xs = x.data.subarray(plane * m, (plane + 1) * m);
      // Two passes in float64: the mean, then the squared deviations (no cancellation).
      let sum = 0;
      for (let i = 0; i < m; i++) sum += xs[i]!;
      const mean = sum / m;
      let sq = 0;
      for (let i = 0; i < m; i++) {
        const d = xs[i]! - mean;
        sq += d * d;
      }
      const ch = plane % c;
      const scale = weight.data[ch]! / Math.sqrt(sq / m + eps);
      const shift = bias.data[ch]! - mean * scale;
      const ys = y.subarray(plane * m, (plane + 1) * m);
      // Math.max, not a comparison: a branch that half the values take one way costs 4x (measured
      // 160 ms against 41 over 8M random values). A NaN stays NaN, as in PyTorch's ReLU.
      if (relu) {
        for (let i = 0; i < m; i++) ys[i] = Math.max(0, xs[i]! * scale + shift);
      } else {
        for (let i = 0; i < m; i++) ys[i] = xs[i]! * scale + shift;
      }
    }
    return new Tensor(x.shape, y);
  },

  channelAffine2d(x: Tensor, scale: Tensor, shift: Tensor, relu = false): Tensor {
    const [n, c, h, w] = expectRank(x, 4, 'channelAffine2d') as [number, number, number, number];
    checkChannelParams(scale, shift, c, 'channelAffine2d');
    const m = h * w;
    const y = new Float32Array(x.size);
    for (let plane = 0; plane < n * c; plane++) {
      const [a, b] = [scale.data[plane % c]!, shift.data[plane % c]!];
      const xd = x.data;
      // Math.max for the ReLU: see instanceNorm2d.
      if (relu) for (let i = plane * m; i < (plane + 1) * m; i++) y[i] = Math.max(0, xd[i]! * a + b);
      else for (let i = plane * m; i < (plane + 1) * m; i++) y[i] = xd[i]! * a + b;
    }
    return new Tensor(x.shape, y);
  },

  instanceNorm2dBackward(dy: Tensor, x: Tensor, weight: Tensor, eps: number, reluOutput?: Tensor): NormGradients {
    const [n, c, h, w] = expectRank(x, 4, 'instanceNorm2dBackward') as [number, number, number, number];
    checkGradShape(dy, x.shape, 'instanceNorm2dBackward');
    if (reluOutput) checkGradShape(reluOutput, x.shape, 'instanceNorm2dBackward (the ReLU output)');
    if (weight.size !== c) throw new PasticheError(`instanceNorm2dBackward: ${c} channels but ${weight.size} weights`);
    const m = h * w;
    const dx = new Float32Array(x.size);
    const dw = new Float64Array(c);
    const db = new Float64Array(c);
    const g = new Float64Array(m);
    const xh = new Float64Array(m);
    for (let plane = 0; plane < n * c; plane++) {
      const ch = plane % c;
      const o = plane * m;
      let sum = 0;
      for (let i = 0; i < m; i++) sum += x.data[o + i]!;
      const mean = sum / m;
      let sq = 0;
      for (let i = 0; i < m; i++) {
        const d = x.data[o + i]! - mean;
        sq += d * d;
      }
      const r = 1 / Math.sqrt(sq / m + eps);
      let sg = 0;
      let sgx = 0;
      for (let i = 0; i < m; i++) {
        // The fused ReLU's backward first (seed eq. 18), then the normalisation's.
        g[i] = reluOutput && !(reluOutput.data[o + i]! > 0) ? 0 : dy.data[o + i]!;
        xh[i] = (x.data[o + i]! - mean) * r;
        sg += g[i]!;
        sgx += g[i]! * xh[i]!;
      }
      db[ch] += sg;
      dw[ch] += sgx;
      const k = weight.data[ch]! * r;
      for (let i = 0; i < m; i++) dx[o + i] = k * (g[i]! - sg / m - (xh[i]! * sgx) / m);
    }
    return { dx: new Tensor(x.shape, dx), dw: new Tensor([c], Float32Array.from(dw)), db: new Tensor([c], Float32Array.from(db)) };
  },

  batchNorm2d(x: Tensor, weight: Tensor, bias: Tensor, eps: number, relu = false): { y: Tensor; mean: Tensor; variance: Tensor } {
    const [n, c, h, w] = expectRank(x, 4, 'batchNorm2d') as [number, number, number, number];
    checkChannelParams(weight, bias, c, 'batchNorm2d');
    const y = new Float32Array(x.size);
    const [mean, variance] = [new Tensor([c]), new Tensor([c])];
    for (let ch = 0; ch < c; ch++) {
      const at = groupCells(ch, c, n, h * w);
      const s = groupMoments(x.data, at, n * h * w);
      [mean.data[ch], variance.data[ch]] = [s.mean, s.variance];
      const scale = weight.data[ch]! / Math.sqrt(s.variance + eps);
      const shift = bias.data[ch]! - s.mean * scale;
      for (let t = 0; t < n * h * w; t++) {
        const v = x.data[at(t)]! * scale + shift;
        y[at(t)] = relu ? Math.max(0, v) : v;
      }
    }
    return { y: new Tensor(x.shape, y), mean, variance };
  },

  batchNorm2dBackward(dy: Tensor, x: Tensor, weight: Tensor, eps: number, reluOutput?: Tensor): NormGradients {
    const [n, c, h, w] = expectRank(x, 4, 'batchNorm2dBackward') as [number, number, number, number];
    checkGradShape(dy, x.shape, 'batchNorm2dBackward');
    if (reluOutput) checkGradShape(reluOutput, x.shape, 'batchNorm2dBackward (the ReLU output)');
    if (weight.size !== c) throw new PasticheError(`batchNorm2dBackward: ${c} channels but ${weight.size} weights`);
    const count = n * h * w;
    const dx = new Float32Array(x.size);
    const [dw, db] = [new Tensor([c]), new Tensor([c])];
    for (let ch = 0; ch < c; ch++) {
      const at = groupCells(ch, c, n, h * w);
      const { mean, variance } = groupMoments(x.data, at, count);
      const r = 1 / Math.sqrt(variance + eps);
      // The fused ReLU's backward first (seed eq. 18), then the normalisation's.
      const g = (t: number) => (reluOutput && !(reluOutput.data[at(t)]! > 0) ? 0 : dy.data[at(t)]!);
      let [sg, sgx] = [0, 0];
      for (let t = 0; t < count; t++) {
        sg += g(t);
        sgx += g(t) * (x.data[at(t)]! - mean) * r;
      }
      [db.data[ch], dw.data[ch]] = [sg, sgx];
      const k = weight.data[ch]! * r;
      for (let t = 0; t < count; t++) dx[at(t)] = k * (g(t) - sg / count - ((x.data[at(t)]! - mean) * r * sgx) / count);
    }
    return { dx: new Tensor(x.shape, dx), dw, db };
  },

  reflectionPad2dBackward(dy: Tensor, xShape: Shape, pad: number): Tensor {
    const [n, c, h, w] = xShape as [number, number, number, number];
    checkReflectionPad(h, w, pad);
    const [hp, wp] = [h + 2 * pad, w + 2 * pad];
    checkGradShape(dy, [n, c, hp, wp], 'reflectionPad2dBackward');
    const dx = new Float32Array(n * c * h * w);
    const g = dy.data;
    for (let plane = 0; plane < n * c; plane++) {
      for (let oh = 0; oh < hp; oh++) {
        // Each padded row adds to the row it mirrors: its middle straight, its ends mirrored.
        const o = (plane * h + reflect(oh - pad, h)) * w;
        const src = (plane * hp + oh) * wp;
        for (let iw = 0; iw < w; iw++) dx[o + iw] += g[src + pad + iw]!;
        for (let i = 1; i <= pad; i++) {
          dx[o + i] += g[src + pad - i]!;
          dx[o + w - 1 - i] += g[src + pad + w - 1 + i]!;
        }
      }
    }
    return new Tensor(xShape, dx);
  },

  upsampleNearest2dBackward(dy: Tensor, factor: number): Tensor {
    const [n, c, ho, wo] = expectRank(dy, 4, 'upsampleNearest2dBackward') as [number, number, number, number];
    if (!Number.isInteger(factor) || factor < 1 || ho % factor !== 0 || wo % factor !== 0) {
      throw new PasticheError(`upsampleNearest2dBackward: a ${ho}x${wo} gradient is not a whole factor ${factor} of an input`);
    }
    const [h, w] = [ho / factor, wo / factor];
    const dx = new Float32Array(n * c * h * w);
    const g = dy.data;
    for (let plane = 0; plane < n * c; plane++) {
      for (let oh = 0; oh < ho; oh++) {
        // Output row oh sums into input row oh / factor, `factor` neighbours at a time.
        const o = (plane * h + ((oh / factor) | 0)) * w;
        let src = (plane * ho + oh) * wo;
        for (let iw = 0; iw < w; iw++) {
          let sum = 0;
          for (let f = 0; f < factor; f++) sum += g[src++]!;
          dx[o + iw] += sum;
        }
      }
    }
    return new Tensor([n, c, h, w], dx);
  },

  upsampleNearest2d(x: Tensor, factor: number): Tensor {
    const [n, c, h, w] = expectRank(x, 4, 'upsampleNearest2d') as [number, number, number, number];
    if (!Number.isInteger(factor) || factor < 1) throw new PasticheError(`upsampleNearest2d: the factor must be a whole number of at least 1 (got ${factor})`);
    const [ho, wo] = [h * factor, w * factor];
    const y = new Float32Array(n * c * ho * wo);
    const xd = x.data;
    // Row by row: an input row widened once, then copied to its `factor` output rows.
    for (let plane = 0; plane < n * c; plane++) {
      for (let ih = 0; ih < h; ih++) {
        const first = (plane * ho + ih * factor) * wo;
        const row = (plane * h + ih) * w;
        if (factor === 2) {
          for (let iw = 0, o = first; iw < w; iw++, o += 2) y[o] = y[o + 1] = xd[row + iw]!;
        } else {
          for (let iw = 0, o = first; iw < w; iw++) for (let f = 0; f < factor; f++) y[o++] = xd[row + iw]!;
        }
        for (let f = 1; f < factor; f++) y.copyWithin(first + f * wo, first, first + wo);
      }
    }
    return new Tensor([n, c, ho, wo], y);
  },

  softmaxCrossEntropyBackward(prob: Tensor, labels: Int32Array): Tensor {
    const [n, k] = checkLabels(prob, labels);
    const d = new Float32Array(prob.size);
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < k; j++) {
        d[r * k + j] = (prob.data[r * k + j]! - (j === labels[r] ? 1 : 0)) / n;
      }
    }
    return new Tensor(prob.shape, d);
  },
};
