/** Shape arithmetic and validation shared by every backend, so all report mistakes the same way. */
import { PasticheError } from '../errors.js';
import { Tensor, expectRank, sameShape, shapeToString, type Shape } from '../tensor/tensor.js';
import type { Conv2dForwardParams, GradientEpilogue, Pool2dParams } from './backend.js';

/** Output length of a sliding window: floor((n + 2 pad - k) / stride) + 1. */
export function windowOutput(n: number, k: number, pad: number, stride: number): number {
  return Math.floor((n + 2 * pad - k) / stride) + 1;
}

function checkParams(what: string, k: number, pad: number, stride: number): void {
  if (!Number.isInteger(stride) || stride < 1) throw new PasticheError(`${what}: stride must be a positive integer, got ${stride}`);
  if (!Number.isInteger(pad) || pad < 0) throw new PasticheError(`${what}: padding must be a non-negative integer, got ${pad}`);
  if (!Number.isInteger(k) || k < 1) throw new PasticheError(`${what}: kernel size must be a positive integer, got ${k}`);
}

export interface ConvGeometry {
  n: number; cin: number; h: number; w: number;
  cout: number; k: number; ho: number; wo: number;
}

/** Validates x [N,Cin,H,W] against w [Cin,K,K,Cout] and returns every size involved. */
export function convGeometry(xShape: Shape, wShape: Shape, p: Conv2dForwardParams): ConvGeometry {
  if (xShape.length !== 4) throw new PasticheError(`conv2d: input must be [N,C,H,W], got ${shapeToString(xShape)}`);
  if (wShape.length !== 4 || wShape[1] !== wShape[2]) {
    throw new PasticheError(`conv2d: weights must be [Cin,K,K,Cout], got ${shapeToString(wShape)}`);
  }
  const up = p.upsample ?? 1;
  if (!Number.isInteger(up) || up < 1) throw new PasticheError(`conv2d: the upsampling factor must be a whole number of at least 1 (got ${up})`);
  // The input as the convolution sees it: upsampled first.
  const [n, cin, h, w] = [xShape[0]!, xShape[1]!, xShape[2]! * up, xShape[3]! * up];
  const [wcin, k, , cout] = wShape as [number, number, number, number];
  checkParams('conv2d', k, p.pad, p.stride);
  if (wcin !== cin) {
    throw new PasticheError(`conv2d: input has ${cin} channels but weights ${shapeToString(wShape)} expect ${wcin}`);
  }
  if (p.padding === 'reflect') checkReflectionPad(h, w, p.pad, 'conv2d');
  const ho = windowOutput(h, k, p.pad, p.stride);
  const wo = windowOutput(w, k, p.pad, p.stride);
  if (ho < 1 || wo < 1) {
    throw new PasticheError(`conv2d: a ${k}x${k} kernel does not fit input ${shapeToString(xShape)} with padding ${p.pad}`);
  }
  return { n, cin, h, w, cout, k, ho, wo };
}

export function checkBias(b: Tensor, cout: number, what: string): void {
  if (b.size !== cout) throw new PasticheError(`${what}: bias has ${b.size} elements, expected ${cout}`);
}

/** Checks that dy has the forward output's shape. */
export function checkGradShape(dy: Tensor, expected: Shape, what: string): void {
  if (!sameShape(dy.shape, expected)) {
    throw new PasticheError(`${what}: output gradient must be ${shapeToString(expected)}, got ${shapeToString(dy.shape)}`);
  }
}

export interface PoolGeometry {
  n: number; c: number; h: number; w: number; ho: number; wo: number;
}

export function poolGeometry(xShape: Shape, p: Pool2dParams): PoolGeometry {
  if (xShape.length !== 4) throw new PasticheError(`maxPool2d: input must be [N,C,H,W], got ${shapeToString(xShape)}`);
  checkParams('maxPool2d', p.kernel, p.pad, p.stride);
  if (p.pad >= p.kernel) throw new PasticheError(`maxPool2d: padding ${p.pad} must be smaller than the window ${p.kernel}`);
  const [n, c, h, w] = xShape as [number, number, number, number];
  const ho = windowOutput(h, p.kernel, p.pad, p.stride);
  const wo = windowOutput(w, p.kernel, p.pad, p.stride);
  if (ho < 1 || wo < 1) {
    throw new PasticheError(`maxPool2d: a ${p.kernel}x${p.kernel} window does not fit input ${shapeToString(xShape)}`);
  }
  return { n, c, h, w, ho, wo };
}

export interface MatmulGeometry { m: number; n: number; k: number }

export function matmulGeometry(a: Tensor, b: Tensor, transA: boolean, transB: boolean): MatmulGeometry {
  const [ar, ac] = expectRank(a, 2, 'matmul A') as [number, number];
  const [br, bc] = expectRank(b, 2, 'matmul B') as [number, number];
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const kb = transB ? bc : br;
  const n = transB ? br : bc;
  if (k !== kb) {
    throw new PasticheError(
      `matmul: inner sizes differ: op(A) is ${m}x${k}, op(B) is ${kb}x${n}`,
    );
  }
  return { m, n, k };
}

export function linearGeometry(x: Tensor, w: Tensor, b: Tensor): MatmulGeometry {
  const [n, din] = expectRank(x, 2, 'linear input') as [number, number];
  const [wdin, dout] = expectRank(w, 2, 'linear weights') as [number, number];
  if (din !== wdin) throw new PasticheError(`linear: input has ${din} features but weights ${shapeToString(w.shape)} expect ${wdin}`);
  checkBias(b, dout, 'linear');
  return { m: n, k: din, n: dout };
}

/** Applies a GradientEpilogue in place (the CPU reference backends' way); returns dx. */
export function applyEpilogue(dx: Tensor, e: GradientEpilogue | undefined): Tensor {
  if (!e) return dx;
  checkEpilogue(dx.shape, e);
  const d = dx.data;
  if (e.add) for (let i = 0; i < d.length; i++) d[i] += e.add.data[i]!;
  if (e.reluMask) for (let i = 0; i < d.length; i++) if (!(e.reluMask.data[i]! > 0)) d[i] = 0;
  return dx;
}

export function checkEpilogue(shape: Shape, e: GradientEpilogue | undefined): void {
  for (const t of [e?.add, e?.reluMask]) {
    if (t && !sameShape(t.shape, shape)) {
      throw new PasticheError(`gradient epilogue: ${shapeToString(t.shape)} does not match ${shapeToString(shape)}`);
    }
  }
}

export function checkLabels(prob: Tensor, labels: Int32Array): [number, number] {
  const [n, k] = expectRank(prob, 2, 'softmax cross-entropy') as [number, number];
  if (labels.length !== n) throw new PasticheError(`cross-entropy: ${labels.length} labels for a batch of ${n}`);
  for (const l of labels) {
    if (l < 0 || l >= k) throw new PasticheError(`cross-entropy: label ${l} is outside 0..${k - 1}`);
  }
  return [n, k];
}

/** Reflection padding mirrors inside the input: each side must be longer than the padding. */
export function checkReflectionPad(h: number, w: number, pad: number, op = 'reflectionPad2d'): void {
  if (!Number.isInteger(pad) || pad < 0 || pad >= h || pad >= w) {
    throw new PasticheError(`${op}: reflection padding ${pad} needs an input larger than it on both sides (got ${h}x${w})`);
  }
}

/** A per-channel weight and bias (normalisation layers) of `c` elements each. */
export function checkChannelParams(weight: Tensor, bias: Tensor, c: number, op: string): void {
  if (weight.size !== c || bias.size !== c) throw new PasticheError(`${op}: ${c} channels but ${weight.size} weights and ${bias.size} biases`);
}
