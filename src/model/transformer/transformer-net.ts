/**
 * The real-time style network (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time
 * Style Transfer"), as pytorch/examples' fast_neural_style builds it (TransformerNet), so that its
 * checkpoints load here and ours there:
 * - conv 9x9 3->w, conv 3x3 w->2w stride 2, conv 3x3 2w->4w stride 2: each convolution after a
 *   reflection padding of k // 2, then instance norm (affine) and ReLU;
 * - five residual blocks at 4w: conv, IN, ReLU, conv, IN, plus the block's input (no ReLU after);
 * - nearest x2 upsampling then a 3x3 conv (4w->2w, 2w->w), IN, ReLU; a last 9x9 conv w->3.
 * w = 32 for the published models (16: a half-width variant). Input RGB 0..255 NCHW, no mean taken;
 * output in the same units (clamped to 0..255 when written).
 */
import type { Backend, ParamGradients } from '../../backends/backend.js';
import { PasticheError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { normalRng, uniformRng } from '../../util/random.js';

/**
 * How the network doubles its size twice: pytorch/examples' nearest x2 upsampling then a 3x3
 * convolution, or the course's (lengstrom/fast-style-transfer's) transposed 3x3 convolution of
 * stride 2 (PyTorch's ConvTranspose2d with padding 1 and output padding 1: exactly twice the size).
 */
export type Upsample = 'nearest' | 'deconv';

/**
 * The normalisation after each convolution: instance norm (pytorch/examples', the published models)
 * or batch norm (the course's `--type batch`), which trains with each batch's statistics and runs
 * with the running ones it kept (PyTorch's BatchNorm2d: momentum 0.1, unbiased running variance).
 */
export type Norm = 'instance' | 'batch';

/** Batch norm's running statistics of one layer. */
export interface RunningStats {
  readonly mean: Float32Array;
  readonly variance: Float32Array;
}

/**
 * A convolution of the net: its state_dict prefix, kernel, stride, and whether nearest x2
 * upsampling precedes it, or whether it is a transposed convolution (stride 2: twice the size).
 */
interface ConvSpec {
  readonly name: string;
  readonly cin: number;
  readonly cout: number;
  readonly k: number;
  readonly stride: number;
  readonly upsample?: boolean;
  readonly transposed?: boolean;
}

/** The convolutions and instance norms of a net of width w, by their state_dict names. */
export function transformerLayout(w: number, upsample: Upsample = 'nearest'): { convs: ConvSpec[]; norms: { name: string; channels: number }[] } {
  const convs: ConvSpec[] = [
    { name: 'conv1', cin: 3, cout: w, k: 9, stride: 1 },
    { name: 'conv2', cin: w, cout: 2 * w, k: 3, stride: 2 },
    { name: 'conv3', cin: 2 * w, cout: 4 * w, k: 3, stride: 2 },
  ];
  const norms = [{ name: 'in1', channels: w }, { name: 'in2', channels: 2 * w }, { name: 'in3', channels: 4 * w }];
  for (let i = 1; i <= 5; i++) {
    for (const j of [1, 2]) {
      convs.push({ name: `res${i}.conv${j}`, cin: 4 * w, cout: 4 * w, k: 3, stride: 1 });
      norms.push({ name: `res${i}.in${j}`, channels: 4 * w });
    }
  }
  const up = upsample === 'nearest' ? { stride: 1, upsample: true } : { stride: 2, transposed: true };
  convs.push(
    { name: 'deconv1', cin: 4 * w, cout: 2 * w, k: 3, ...up },
    { name: 'deconv2', cin: 2 * w, cout: w, k: 3, ...up },
    { name: 'deconv3', cin: w, cout: 3, k: 9, stride: 1 },
  );
  norms.push({ name: 'in4', channels: 2 * w }, { name: 'in5', channels: w });
  return { convs, norms };
}

/**
 * Multiply-adds x 2 of a forward pass on a size x size image (size a multiple of 4), counted as
 * direct convolutions (2 Cin Cout K^2 per output cell; a transposed convolution per input cell):
 * the figure `bench --sections fast` divides by its time, as VGG19's GFLOP/s are.
 */
export function transformerForwardFlops(width: number, size: number, upsample: Upsample = 'nearest'): number {
  return convSides(transformerLayout(width, upsample).convs, size).reduce(
    (sum, { c, input, output }) => sum + 2 * c.cin * c.cout * c.k * c.k * (c.transposed ? input * input : output * output),
    0,
  );
}

/**
 * Each convolution of a pass on a size x size image with the side it reads (after its upsampling;
 * a transposed convolution's input) and the side it writes.
 */
function convSides(convs: readonly ConvSpec[], size: number): { c: ConvSpec; input: number; output: number }[] {
  let side = size;
  return convs.map((c) => {
    const input = c.upsample ? 2 * side : side;
    side = c.transposed ? 2 * side : Math.floor((input + 2 * (c.k >> 1) - c.k) / c.stride) + 1;
    return { c, input, output: side };
  });
}

/**
 * A TransformerNet's parameters: convolution weights in the course's layout [Cin, K, K, Cout]
 * (PyTorch stores [Cout, Cin, K, K]) and the instance norms' affine weight and bias.
 */
export interface TransformerWeights {
  readonly source: string;
  /** Channels of the first convolution: 32 for pytorch/examples' models, 16 half width. */
  readonly width: number;
  readonly upsample: Upsample;
  readonly norm: Norm;
  /** Batch norm's running statistics per norm layer, and how many batches they have seen. */
  readonly running?: ReadonlyMap<string, RunningStats>;
  readonly batchesTracked?: number;
  /**
   * `conv1` -> { w, b }, `in1` -> { w, b }, `res1.conv1` ... as in the state_dict without `.conv2d`.
   * A transposed convolution's w is [Cout, K, K, Cin]: the weights of the convolution whose
   * gradient to the data it is (PyTorch's ConvTranspose2d [Cin, Cout, K, K] read as [O, I, K, K]).
   */
  readonly params: ReadonlyMap<string, { readonly w: Tensor; readonly b: Tensor }>;
}

/** A tensor of a state_dict as any reader gives it (pth.ts, safetensors.ts). */
export interface StateTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** PyTorch's [Cout, Cin, K, K] -> the course's [Cin, K, K, Cout]. */
function fromOihw(t: StateTensor): Tensor {
  const [cout, cin, kh, kw] = t.shape as [number, number, number, number];
  const out = new Float32Array(t.data.length);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < cin; i++)
      for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) out[((i * kh + y) * kw + x) * cout + o] = t.data[((o * cin + i) * kh + y) * kw + x]!;
  return new Tensor([cin, kh, kw, cout], out);
}

/** The course's [Cin, K, K, Cout] -> PyTorch's [Cout, Cin, K, K] (for writing a state_dict). */
export function toOihw(t: Tensor): StateTensor {
  const [cin, kh, kw, cout] = t.shape as [number, number, number, number];
  const out = new Float32Array(t.size);
  for (let o = 0; o < cout; o++)
    for (let i = 0; i < cin; i++)
      for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) out[((o * cin + i) * kh + y) * kw + x] = t.data[((i * kh + y) * kw + x) * cout + o]!;
  return { shape: [cout, cin, kh, kw], data: out };
}

/**
 * Checks a state_dict against TransformerNet's names and shapes (its width read from conv1) and
 * converts it. Old checkpoints' InstanceNorm running_mean / running_var (deprecated, unused by
 * instance norm) are dropped as pytorch/examples does; any other unknown name is an error.
 */
export function transformerFromStateDict(tensors: ReadonlyMap<string, StateTensor>, source: string): TransformerWeights {
  const all = new Map([...tensors].map(([k, v]) => [k.replace(/^module\./, ''), v] as const));
  // BatchNorm2d saves num_batches_tracked (since PyTorch 0.4.1); old InstanceNorm2d checkpoints
  // carry running_mean / running_var only, which instance norm never uses.
  const norm: Norm = all.has('in1.num_batches_tracked') ? 'batch' : 'instance';
  const t = norm === 'batch' ? all : new Map([...all].filter(([k]) => !/(^|\.)in\d+\.(running_mean|running_var|num_batches_tracked)$/.test(k)));
  const first = t.get('conv1.conv2d.weight');
  if (!first) {
    const some = [...t.keys()].slice(0, 3).join(', ');
    throw new PasticheError(`${source}: no conv1.conv2d.weight: not a fast_neural_style TransformerNet (it holds ${some || 'no tensors'}${t.size > 3 ? ', ...' : ''})`);
  }
  const width = first.shape[0]!;
  const upsample: Upsample = t.has('deconv1.conv_transpose.weight') ? 'deconv' : 'nearest';
  const { convs, norms } = transformerLayout(width, upsample);
  const params = new Map<string, { w: Tensor; b: Tensor }>();
  const take = (name: string, shape: readonly number[]): StateTensor => {
    const v = t.get(name);
    if (!v) throw new PasticheError(`${source}: ${name} is missing (a TransformerNet of width ${width} has it)`);
    if (v.shape.length !== shape.length || v.shape.some((d, i) => d !== shape[i])) {
      throw new PasticheError(`${source}: ${name} is [${v.shape.join(', ')}], a TransformerNet of width ${width} has [${shape.join(', ')}]`);
    }
    t.delete(name);
    return v;
  };
  for (const c of convs) {
    const key = c.transposed ? `${c.name}.conv_transpose` : `${c.name}.conv2d`;
    const w = fromOihw(take(`${key}.weight`, c.transposed ? [c.cin, c.cout, c.k, c.k] : [c.cout, c.cin, c.k, c.k]));
    params.set(c.name, { w, b: new Tensor([c.cout], Float32Array.from(take(`${key}.bias`, [c.cout]).data)) });
  }
  const running = new Map<string, RunningStats>();
  let batchesTracked = 0;
  for (const n of norms) {
    const w = take(`${n.name}.weight`, [n.channels]);
    const b = take(`${n.name}.bias`, [n.channels]);
    params.set(n.name, { w: new Tensor([n.channels], Float32Array.from(w.data)), b: new Tensor([n.channels], Float32Array.from(b.data)) });
    if (norm === 'batch') {
      running.set(n.name, { mean: Float32Array.from(take(`${n.name}.running_mean`, [n.channels]).data), variance: Float32Array.from(take(`${n.name}.running_var`, [n.channels]).data) });
      batchesTracked = take(`${n.name}.num_batches_tracked`, []).data[0] ?? 0;
    }
  }
  if (t.size > 0) throw new PasticheError(`${source}: ${[...t.keys()].slice(0, 3).join(', ')}${t.size > 3 ? ', ...' : ''}: not part of a TransformerNet (batch-norm models are not read yet)`);
  return { source, width, upsample, norm, params, ...(norm === 'batch' ? { running, batchesTracked } : {}) };
}

/** Fresh running statistics (mean 0, variance 1, as BatchNorm2d starts) for a network's norms, or none for instance norm. */
function freshRunning(width: number, norm: Norm): Pick<TransformerWeights, 'running' | 'batchesTracked'> {
  if (norm === 'instance') return {};
  const running = new Map(transformerLayout(width).norms.map((n) => [n.name, { mean: new Float32Array(n.channels), variance: new Float32Array(n.channels).fill(1) }]));
  return { running, batchesTracked: 0 };
}

/** A convolution's weight tensor in our layout: [Cin, K, K, Cout], a transposed one's [Cout, K, K, Cin]. */
function weightShape(c: ConvSpec): number[] {
  return c.transposed ? [c.cout, c.k, c.k, c.cin] : [c.cin, c.k, c.k, c.cout];
}

/** The inputs each output of a convolution sums over (PyTorch's fan_in: a transposed one's Cout K K). */
function fanIn(c: ConvSpec): number {
  return (c.transposed ? c.cout : c.cin) * c.k * c.k;
}

/**
 * A TransformerNet of width `width` with He-normal convolutions, instance-norm weights near 1 and
 * biases near 0: the start of training, and benchmarks that need no file.
 */
export function randomTransformerWeights(width = 32, seed = 1, upsample: Upsample = 'nearest', norm: Norm = 'instance'): TransformerWeights {
  const gauss = normalRng(uniformRng(seed));
  const { convs, norms } = transformerLayout(width, upsample);
  const params = new Map<string, { w: Tensor; b: Tensor }>();
  for (const c of convs) {
    const w = new Tensor(weightShape(c));
    const std = Math.sqrt(2 / fanIn(c));
    for (let i = 0; i < w.size; i++) w.data[i] = std * gauss();
    params.set(c.name, { w, b: new Tensor([c.cout]) });
  }
  for (const n of norms) {
    const w = new Tensor([n.channels]);
    const b = new Tensor([n.channels]);
    for (let i = 0; i < n.channels; i++) [w.data[i], b.data[i]] = [1 + 0.1 * gauss(), 0.1 * gauss()];
    params.set(n.name, { w, b });
  }
  return { source: `random (width ${width}, seed ${seed})`, width, upsample, norm, params, ...freshRunning(width, norm) };
}

/**
 * A TransformerNet initialised as PyTorch initialises a new one (what pytorch/examples trains from):
 * convolution weights and biases uniform in +-1/sqrt(fan_in) (Conv2d's kaiming_uniform with
 * a = sqrt(5)), instance-norm weights 1 and biases 0.
 */
export function initialTransformerWeights(width = 32, seed = 1, upsample: Upsample = 'nearest', norm: Norm = 'instance'): TransformerWeights {
  const rng = uniformRng(seed);
  const uniform = (t: Tensor, bound: number) => {
    for (let i = 0; i < t.size; i++) t.data[i] = (2 * rng() - 1) * bound;
  };
  const { convs, norms } = transformerLayout(width, upsample);
  const params = new Map<string, { w: Tensor; b: Tensor }>();
  for (const c of convs) {
    const [w, b] = [new Tensor(weightShape(c)), new Tensor([c.cout])];
    const bound = 1 / Math.sqrt(fanIn(c));
    uniform(w, bound);
    uniform(b, bound);
    params.set(c.name, { w, b });
  }
  for (const n of norms) params.set(n.name, { w: new Tensor([n.channels], new Float32Array(n.channels).fill(1)), b: new Tensor([n.channels]) });
  return { source: `initial (width ${width}, seed ${seed})`, width, upsample, norm, params, ...freshRunning(width, norm) };
}

/** All parameters in one vector (each layer's weight then bias, in the params' order): what an optimiser steps. */
export function flattenTransformerWeights(weights: TransformerWeights): Float32Array {
  let n = 0;
  for (const p of weights.params.values()) n += p.w.size + p.b.size;
  const out = new Float32Array(n);
  let at = 0;
  for (const p of weights.params.values()) {
    for (const t of [p.w, p.b]) {
      out.set(t.data, at);
      at += t.size;
    }
  }
  return out;
}

/**
 * The inverse of flattenTransformerWeights, into fresh arrays: a backend may cache a weight by its
 * array (uploaded, or transformed), so parameters are replaced after a step, never changed in place.
 */
export function unflattenTransformerWeights(like: TransformerWeights, flat: Float32Array, source = like.source): TransformerWeights {
  const params = new Map<string, { w: Tensor; b: Tensor }>();
  let at = 0;
  const take = (shape: readonly number[], size: number) => {
    const t = new Tensor(shape, flat.slice(at, at + size));
    at += size;
    return t;
  };
  for (const [name, p] of like.params) {
    const w = take(p.w.shape, p.w.size);
    params.set(name, { w, b: take(p.b.shape, p.b.size) });
  }
  if (at !== flat.length) throw new PasticheError(`${flat.length} parameter values for a network of ${at}`);
  return { ...like, source, params };
}

/** The state_dict of `weights`, PyTorch's names and layouts (what a .pth or our .safetensors holds). */
export function transformerStateDict(weights: TransformerWeights): Map<string, StateTensor> {
  const out = new Map<string, StateTensor>();
  const { convs, norms } = transformerLayout(weights.width, weights.upsample);
  for (const c of convs) {
    const p = weights.params.get(c.name)!;
    const key = c.transposed ? `${c.name}.conv_transpose` : `${c.name}.conv2d`;
    out.set(`${key}.weight`, toOihw(p.w));
    out.set(`${key}.bias`, { shape: [c.cout], data: p.b.data });
  }
  for (const n of norms) {
    const p = weights.params.get(n.name)!;
    out.set(`${n.name}.weight`, { shape: [n.channels], data: p.w.data });
    out.set(`${n.name}.bias`, { shape: [n.channels], data: p.b.data });
    const r = weights.running?.get(n.name);
    if (r) {
      out.set(`${n.name}.running_mean`, { shape: [n.channels], data: r.mean });
      out.set(`${n.name}.running_var`, { shape: [n.channels], data: r.variance });
      out.set(`${n.name}.num_batches_tracked`, { shape: [], data: Float32Array.of(weights.batchesTracked ?? 0) });
    }
  }
  return out;
}

/** Each instance norm's input statistics per channel (one image): what a tiled pass normalises with. */
export type NormStats = ReadonlyMap<string, { readonly mean: Float64Array; readonly variance: Float64Array }>;

export interface TransformerForwardOptions {
  /** Normalise with these statistics instead of each input's own (tiles of a larger image). */
  readonly stats?: NormStats;
  /** Stop at this instance norm and return its input (what a tiled pass gathers statistics from). */
  readonly until?: string;
}

/** Carries the input of the instance norm `until` out of the forward pass. */
class ReachedNorm {
  constructor(readonly input: Tensor) {}
}

/** ConvTranspose2d(k 3, stride 2, padding 1, output padding 1) is the adjoint of this convolution. */
const TRANSPOSED = { pad: 1, stride: 2 } as const;

/** Instance norm's epsilon in PyTorch's InstanceNorm2d (the value the published models were trained with). */
const IN_EPS = 1e-5;

export class TransformerNet {
  private readonly convs: Map<string, ConvSpec>;

  constructor(
    readonly weights: TransformerWeights,
    readonly backend: Backend,
  ) {
    this.convs = new Map(transformerLayout(weights.width, weights.upsample).convs.map((c) => [c.name, c]));
  }

  /** The smallest side an input may have: conv1's reflection padding of 4 needs more than 4 px; 9 keeps every later map above its padding too. */
  static readonly MIN_SIDE = 9;

  /** [N, 3, H, W] RGB 0..255 -> [N, 3, 4 ceil(H/4), 4 ceil(W/4)] (two stride-2 convolutions, two x2 upsamplings), as PyTorch's. */
  forward(x: Tensor, o: TransformerForwardOptions = {}): Tensor {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new PasticheError(`the style network takes [N, 3, H, W] images (got [${x.shape.join(', ')}])`);
    const h = x.shape[2]!;
    const w = x.shape[3]!;
    if (Math.min(h, w) < TransformerNet.MIN_SIDE) throw new PasticheError(`a ${w}x${h} image is too small for the style network (at least ${TransformerNet.MIN_SIDE} px a side)`);
    const be = this.backend;
    const owned = new Set<Tensor>();
    /** Tensors made here are given back as soon as the next op has read them. */
    const done = (t: Tensor) => {
      if (owned.delete(t)) t.recycle();
    };
    const make = (t: Tensor) => {
      owned.add(t);
      return t;
    };
    const conv = (input: Tensor, name: string): Tensor => {
      const c = this.convs.get(name)!;
      const p = this.weights.params.get(name)!;
      if (c.transposed) {
        const raw = make(this.transposedConv(input, c));
        const y = make(be.channelAffine2d(raw, this.constant(1, [c.cout]), p.b));
        done(raw);
        return y;
      }
      // Upsample(2), ReflectionPad2d(k // 2) and the convolution as one op: a backend may upsample
      // and fill the border while it copies the input anyway.
      return make(be.conv2d(input, p.w, p.b, { pad: c.k >> 1, stride: c.stride, padding: 'reflect', ...(c.upsample ? { upsample: 2 } : {}) }));
    };
    const norm = (input: Tensor, name: string, relu: boolean): Tensor => {
      const p = this.weights.params.get(name)!;
      if (name === o.until) {
        owned.delete(input);
        throw new ReachedNorm(input);
      }
      // A tile's whole-image statistics, or batch norm's running ones.
      const s = o.stats?.get(name) ?? this.weights.running?.get(name);
      let y: Tensor;
      if (s) {
        // (x - mean) / sqrt(var + eps) * w + b as one scale and shift per channel.
        const c = p.w.size;
        const [scale, shift] = [new Tensor([c]), new Tensor([c])];
        for (let k = 0; k < c; k++) {
          scale.data[k] = p.w.data[k]! / Math.sqrt(s.variance[k]! + IN_EPS);
          shift.data[k] = p.b.data[k]! - s.mean[k]! * scale.data[k]!;
        }
        y = make(be.channelAffine2d(input, scale, shift, relu));
      } else {
        y = make(be.instanceNorm2d(input, p.w, p.b, IN_EPS, relu));
      }
      done(input);
      return y;
    };
    try {
      return this.layers(x, conv, norm, done, make);
    } catch (e) {
      if (!(e instanceof ReachedNorm)) throw e;
      for (const t of owned) t.recycle();
      return e.input;
    }
  }

  private readonly constants = new Map<string, Tensor>();

  /** A tensor of one value, made once per shape (a transposed convolution's unit scale, zero bias, ones). */
  private constant(value: number, shape: readonly number[]): Tensor {
    const key = `${value}:${shape.join('x')}`;
    let t = this.constants.get(key);
    if (!t) this.constants.set(key, (t = new Tensor(shape, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value))));
    return t;
  }

  /** A transposed convolution without its bias: the gradient to the data of a stride-2 convolution with its weights. */
  private transposedConv(x: Tensor, c: ConvSpec): Tensor {
    const [n, , h, w] = x.shape as [number, number, number, number];
    return this.backend.conv2dBackwardData(x, this.weights.params.get(c.name)!.w, [n, c.cout, 2 * h, 2 * w], TRANSPOSED);
  }

  /**
   * Operations a forward pass on [1, 3, size, size] executes on this backend (its conv2dWork: a
   * Winograd layer counts its GEMM products), against transformerForwardFlops' direct count.
   */
  forwardWork(size: number): number {
    let flops = 0;
    for (const { c, input, output } of convSides([...this.convs.values()], size)) {
      const w = this.weights.params.get(c.name)!.w;
      flops += c.transposed
        ? this.backend.conv2dWork([1, c.cout, output, output], w.shape, TRANSPOSED, 'backward-data').flops
        : this.backend.conv2dWork([1, c.cin, input, input], w.shape, { pad: c.k >> 1, stride: c.stride }).flops;
    }
    return flops;
  }

  /** The instance norms in the order a forward pass meets them. */
  get normNames(): string[] {
    return transformerLayout(this.weights.width, this.weights.upsample).norms.map((n) => n.name);
  }

  private layers(x: Tensor, conv: (t: Tensor, name: string) => Tensor, norm: (t: Tensor, name: string, relu: boolean) => Tensor, done: (t: Tensor) => void, make: (t: Tensor) => Tensor): Tensor {
    const be = this.backend;
    let y = norm(conv(x, 'conv1'), 'in1', true);
    for (const [c, n] of [['conv2', 'in2'], ['conv3', 'in3']] as const) {
      const next = norm(conv(y, c), n, true);
      done(y);
      y = next;
    }
    for (let i = 1; i <= 5; i++) {
      const a = norm(conv(y, `res${i}.conv1`), `res${i}.in1`, true);
      const b = norm(conv(a, `res${i}.conv2`), `res${i}.in2`, false);
      done(a);
      const sum = make(be.addScaled(b, y, 1));
      done(b);
      done(y);
      y = sum;
    }
    for (const [c, n] of [['deconv1', 'in4'], ['deconv2', 'in5']] as const) {
      const next = norm(conv(y, c), n, true);
      done(y);
      y = next;
    }
    const out = conv(y, 'deconv3');
    done(y);
    return out;
  }

  /**
   * A forward pass that keeps what the backward pass needs (each convolution's padded input, each
   * instance norm's input and, where a ReLU is fused, its output), and the backward pass itself:
   * dL/dy -> dL/dx and every parameter's gradient, by the chain rule through the same layers in
   * reverse (the residual blocks' sums send their gradient down both paths).
   */
  forwardForTraining(x: Tensor): {
    output: Tensor;
    backward(dy: Tensor): { dx: Tensor; grads: Map<string, ParamGradients> };
    release(): void;
    /** Batch norm's statistics of this batch per layer (the caller keeps the running ones); empty for instance norm. */
    batchStats: Map<string, { mean: Tensor; variance: Tensor; count: number }>;
  } {
    const be = this.backend;
    type Step = (dy: Tensor) => Tensor;
    const grads = new Map<string, ParamGradients>();
    const batchStats = new Map<string, { mean: Tensor; variance: Tensor; count: number }>();
    /** Everything made on the way but dx and the parameters' gradients: release() gives it back (GPU memory, pooled arrays). */
    const made: Tensor[] = [];
    const mk = (t: Tensor) => {
      made.push(t);
      return t;
    };
    const conv = (input: Tensor, name: string): [Tensor, Step] => {
      const c = this.convs.get(name)!;
      const p = this.weights.params.get(name)!;
      if (c.transposed) {
        const y = mk(be.channelAffine2d(mk(this.transposedConv(input, c)), this.constant(1, [c.cout]), p.b));
        return [
          y,
          (dy) => {
            // Its weights' gradient is the convolution's, with the roles of input and gradient
            // swapped; its bias's, dy summed per channel (a 1x1 convolution's over a constant 1);
            // its gradient to the input, the convolution itself.
            const [n, , h, w] = dy.shape as [number, number, number, number];
            const weightsGrad = be.conv2dBackwardParams(input, dy, c.k, TRANSPOSED);
            const biasGrad = be.conv2dBackwardParams(dy, this.constant(1, [n, 1, h, w]), 1, { pad: 0, stride: 1 });
            grads.set(name, { dw: weightsGrad.dw, db: biasGrad.db });
            weightsGrad.db.recycle();
            biasGrad.dw.recycle();
            return mk(be.conv2d(dy, p.w, this.constant(0, [c.cin]), TRANSPOSED));
          },
        ];
      }
      const v = c.upsample ? mk(be.upsampleNearest2d(input, 2)) : input;
      const padded = mk(be.reflectionPad2d(v, c.k >> 1));
      const y = mk(be.conv2d(padded, p.w, p.b, { pad: 0, stride: c.stride }));
      return [
        y,
        (dy) => {
          grads.set(name, be.conv2dBackwardParams(dy, padded, c.k, { pad: 0, stride: c.stride }));
          const dv = mk(be.reflectionPad2dBackward(mk(be.conv2dBackwardData(dy, p.w, padded.shape, { pad: 0, stride: c.stride })), v.shape, c.k >> 1));
          return c.upsample ? mk(be.upsampleNearest2dBackward(dv, 2)) : dv;
        },
      ];
    };
    const batch = this.weights.norm === 'batch';
    const norm = (input: Tensor, name: string, relu: boolean): [Tensor, Step] => {
      const p = this.weights.params.get(name)!;
      let y: Tensor;
      if (batch) {
        const r = be.batchNorm2d(input, p.w, p.b, IN_EPS, relu);
        y = mk(r.y);
        const [n, , h, w] = input.shape as [number, number, number, number];
        batchStats.set(name, { mean: r.mean, variance: r.variance, count: n * h * w });
      } else {
        y = mk(be.instanceNorm2d(input, p.w, p.b, IN_EPS, relu));
      }
      return [
        y,
        (dy) => {
          const g = (batch ? be.batchNorm2dBackward : be.instanceNorm2dBackward).call(be, dy, input, p.w, IN_EPS, relu ? y : undefined);
          grads.set(name, { dw: g.dw, db: g.db });
          return mk(g.dx);
        },
      ];
    };
    /** conv then norm: one step forward, its two backward steps chained. */
    const block = (input: Tensor, c: string, n: string, relu: boolean): [Tensor, Step] => {
      const [a, convBack] = conv(input, c);
      const [y, normBack] = norm(a, n, relu);
      return [y, (dy) => convBack(normBack(dy))];
    };
    const steps: Step[] = [];
    let y = x;
    for (const [c, n] of [['conv1', 'in1'], ['conv2', 'in2'], ['conv3', 'in3']] as const) {
      const [next, back] = block(y, c, n, true);
      steps.push(back);
      y = next;
    }
    for (let i = 1; i <= 5; i++) {
      const [a, back1] = block(y, `res${i}.conv1`, `res${i}.in1`, true);
      const [b, back2] = block(a, `res${i}.conv2`, `res${i}.in2`, false);
      const sum = mk(be.addScaled(b, y, 1));
      // d(b + y) reaches y directly and through the block.
      steps.push((dy) => mk(be.addScaled(back1(back2(dy)), dy, 1)));
      y = sum;
    }
    for (const [c, n] of [['deconv1', 'in4'], ['deconv2', 'in5']] as const) {
      const [next, back] = block(y, c, n, true);
      steps.push(back);
      y = next;
    }
    const [output, lastBack] = conv(y, 'deconv3');
    steps.push(lastBack);
    return {
      output,
      batchStats,
      backward: (dy) => {
        let g = dy;
        for (const step of [...steps].reverse()) g = step(g);
        const at = made.indexOf(g);
        if (at >= 0) made.splice(at, 1);
        return { dx: g, grads };
      },
      release: () => {
        for (const t of made.splice(0)) t.recycle();
      },
    };
  }
}
