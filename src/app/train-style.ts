/**
 * Training a real-time style network (Johnson, Alahi & Fei-Fei 2016; the course's labs 4-2/4-3):
 * a TransformerNet learns to map any content image to a stylized one in one pass. Each step runs
 * a batch of content crops through the network, the outputs (0..255 RGB, minus the VGG19 file's
 * mean pixel) and the crops themselves through VGG19, and takes stylize's losses per image of the
 * batch, averaged: content (eq. 24) against the crop's own features, style (eqs. 26-27) against the
 * style image's Gram matrices, total variation on the output. Their gradient goes back through
 * VGG19 to the output and through the network to every parameter, and Adam (eqs. 30-34) steps all
 * of them.
 *
 * The engine on decoded images and an opened backend, with no Node import (train-style-job.ts
 * reads folders and writes models and checkpoints).
 */
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { resizeBilinearPil } from '../image/pil-resize.js';
import { rgbToTensor, tensorToRgb, type RgbImage } from '../image/rgb.js';
import { flattenTransformerWeights, TransformerNet, unflattenTransformerWeights, type Norm, type RunningStats, type TransformerWeights, type Upsample } from '../model/transformer/transformer-net.js';
import { Vgg19 } from '../model/vgg19.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import { gram, tvLoss } from '../style/losses.js';
import { Adam } from '../style/optimizers.js';
import { Tensor } from '../tensor/tensor.js';
import { uniformRng } from '../util/random.js';
import type { OnProgress } from './progress.js';
import { deepestLayer, type ObjectiveWeights } from './style-objective.js';
import { evaluate } from './stylize.js';

/** Adam's moments and step count: with the weights and the iteration, all a resumed run needs. */
export interface AdamState {
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly t: number;
}

/** One step's losses: each averaged over the batch, the layers weighted as the objective says. */
export interface TrainLosses {
  readonly content: number;
  readonly style: number;
  readonly tv: number;
  /** contentWeight content + styleWeight style + tvWeight tv: what the step descends. */
  readonly total: number;
}

/** A batch's losses at the current weights and their gradient (flattenTransformerWeights' order). */
export interface TrainGradients {
  readonly losses: TrainLosses;
  readonly grad: Float32Array;
  /** Batch norm's statistics of this batch, per layer: what the running statistics move towards. */
  readonly batchStats: Map<string, { mean: Float32Array; variance: Float32Array; count: number }>;
}

export interface StyleTrainerOptions {
  /** The loss network. */
  readonly vgg: Vgg19Weights;
  readonly backend: Backend;
  /** The network to train, as it starts (initialTransformerWeights, a model file, a checkpoint). */
  readonly net: TransformerWeights;
  /** The style image, at the size its Gram matrices are taken. */
  readonly style: RgbImage;
  readonly objective: ObjectiveWeights;
  readonly lr: number;
  /** Continue a checkpoint's optimiser. */
  readonly adam?: AdamState;
}

/** Smallest side VGG19 can take to `layer`: each pool before it halves the map. */
export function minimumSide(vgg: Vgg19, layer: string): number {
  return 2 ** VGG19_LAYERS.slice(0, vgg.layerIndex(layer)).filter((l) => l.kind === 'pool').length;
}

/** The network, its optimiser and the style's targets; `step` trains on one batch. */
export class StyleTrainer {
  private readonly vgg: Vgg19;
  private readonly adam: Adam;
  private flat: Float32Array;
  private current: TransformerWeights;
  /** Per style layer: gram(style features) [1, C, C] and the feature map's pixel count. */
  private readonly styleGrams = new Map<string, { gram: Tensor; pixels: number }>();
  /** The Gram targets for one crop size, made once (the crop size rarely changes). */
  private targets?: { key: string; style: Map<string, Tensor> };
  private readonly minus: { one: Tensor; mean: Tensor };

  constructor(private readonly o: StyleTrainerOptions) {
    if (!(o.lr > 0)) throw new PasticheError(`the learning rate must be positive, got ${o.lr}`);
    this.vgg = new Vgg19(o.vgg, o.backend);
    this.current = o.net;
    this.flat = flattenTransformerWeights(o.net);
    this.adam = new Adam(o.lr);
    if (o.adam) {
      if (o.adam.m.length !== this.flat.length) throw new PasticheError(`the checkpoint's optimiser holds ${o.adam.m.length} values, the network ${this.flat.length}`);
      this.adam.restore(o.adam);
    }
    this.minus = { one: new Tensor([3], new Float32Array(3).fill(1)), mean: new Tensor([3], Float32Array.from(o.vgg.meanPixel, (m) => -m)) };
    const names = o.objective.styleLayers.map((l) => l.name);
    const side = Math.min(o.style.width, o.style.height);
    const need = minimumSide(this.vgg, deepestLayer(this.vgg, o.objective));
    if (side < need) throw new PasticheError(`the style image is ${o.style.width}x${o.style.height}; ${deepestLayer(this.vgg, o.objective)} needs at least ${need} pixels a side`);
    const s = this.toVggInput(rgbBatch([o.style]));
    const acts = this.vgg.forward(s, { until: names.reduce((a, b) => (this.vgg.layerIndex(a) >= this.vgg.layerIndex(b) ? a : b)), capture: names, inference: true }).activations;
    for (const n of names) {
      const f = acts.get(n)!;
      this.styleGrams.set(n, { gram: gram(o.backend, f), pixels: f.shape[2]! * f.shape[3]! });
      f.dispose();
    }
    s.dispose();
  }

  /** The network as it is now. */
  get weights(): TransformerWeights {
    return this.current;
  }

  /** The optimiser's state (undefined before the first step). */
  get adamState(): AdamState | undefined {
    return this.adam.state;
  }

  /** x - mean pixel: the loss network's input. */
  private toVggInput(x: Tensor): Tensor {
    return this.o.backend.channelAffine2d(x, this.minus.one, this.minus.mean);
  }

  /**
   * The style targets for crops of h x w: each layer's Gram matrix of the style image, scaled from
   * its pixel count to the crop's (G sums over the positions, so a style image of another size would
   * otherwise weigh more or less: the course's code divides both Grams by their own sizes for the
   * same reason).
   */
  private styleTargets(h: number, w: number): Map<string, Tensor> {
    const key = `${h}x${w}`;
    if (this.targets?.key === key) return this.targets.style;
    for (const t of this.targets?.style.values() ?? []) t.dispose();
    // The layers' map sizes at this crop size, from one pass over a blank crop (once per shape).
    const blank = this.toVggInput(new Tensor([1, 3, h, w]));
    const probe = this.vgg.forward(blank, { until: deepestLayer(this.vgg, this.o.objective), capture: [...this.styleGrams.keys()], inference: true }).activations;
    blank.dispose();
    const style = new Map<string, Tensor>();
    for (const [name, { gram: g, pixels }] of this.styleGrams) {
      const f = probe.get(name)!;
      const scale = (f.shape[2]! * f.shape[3]!) / pixels;
      f.dispose();
      style.set(name, new Tensor(g.shape, g.data.map((v) => v * scale)));
    }
    this.targets = { key, style };
    return style;
  }

  /**
   * The losses at the current weights for a batch `x` ([N, 3, H, W], RGB 0..255, H and W multiples
   * of 4), and their gradient with respect to every parameter, flattened as flattenTransformerWeights
   * orders them. The network runs on the whole batch; VGG19 takes one image at a time (each image
   * has its own content target, and a Gram matrix is per image), and the losses are their mean.
   */
  async gradients(x: Tensor): Promise<TrainGradients> {
    const { backend: be, objective: w } = this.o;
    const [n, , h, wd] = x.shape as [number, number, number, number];
    if (h % 4 !== 0 || wd % 4 !== 0) throw new PasticheError(`training crops must be multiples of 4 pixels a side (the network's two strides of 2), got ${wd}x${h}`);
    await ensureHost(this.styleGrams);
    const net = new TransformerNet(this.current, be);
    const pass = net.forwardForTraining(x);
    const y = await pass.output.toHost();
    const contentNames = w.contentLayers.map((l) => l.name);
    const deepestContent = contentNames.reduce((a, b) => (this.vgg.layerIndex(a) >= this.vgg.layerIndex(b) ? a : b));
    const style = this.styleTargets(h, wd);
    // dL/d(output), image by image: VGG19's input gradient (the mean pixel is a constant shift).
    const dy = new Tensor(y.shape);
    const plane = 3 * h * wd;
    let [content, styleLoss] = [0, 0];
    for (let b = 0; b < n; b++) {
      const image = (t: Tensor) => this.toVggInput(new Tensor([1, 3, h, wd], t.data.subarray(b * plane, (b + 1) * plane)));
      const xv = image(x);
      // In the backend's own layout, as evaluate() captures the output's features.
      const targets = this.vgg.forward(xv, { until: deepestContent, capture: contentNames, inference: true, captureOwnLayout: true }).activations;
      xv.dispose();
      const yv = image(y);
      const e = await evaluate(this.vgg, yv, { content: targets, style }, { ...w, tvWeight: 0 });
      for (const t of targets.values()) t.dispose();
      yv.dispose();
      for (let i = 0; i < plane; i++) dy.data[b * plane + i] = e.grad.data[i]! / n;
      [content, styleLoss] = [content + e.content / n, styleLoss + e.style / n];
    }
    // Total variation over the batch, per image.
    let tv = 0;
    if (w.tvWeight > 0) {
      const r = tvLoss(y);
      tv = r.loss.data[0]! / n;
      for (let i = 0; i < dy.size; i++) dy.data[i] += (w.tvWeight / n) * r.grad.data[i]!;
    }
    const { grads } = pass.backward(dy);
    const grad = new Float32Array(this.flat.length);
    let at = 0;
    for (const name of this.current.params.keys()) {
      const pg = grads.get(name)!;
      for (const t of [pg.dw, pg.db]) {
        await t.toHost();
        grad.set(t.data, at);
        at += t.size;
        t.dispose();
      }
    }
    const batchStats = new Map<string, { mean: Float32Array; variance: Float32Array; count: number }>();
    for (const [name, st] of pass.batchStats) {
      batchStats.set(name, { mean: Float32Array.from((await st.mean.toHost()).data), variance: Float32Array.from((await st.variance.toHost()).data), count: st.count });
      st.mean.dispose();
      st.variance.dispose();
    }
    pass.release();
    const total = w.contentWeight * content + w.styleWeight * styleLoss + w.tvWeight * tv;
    return { losses: { content, style: styleLoss, tv, total }, grad, batchStats };
  }

  /** One training step: the losses at the current weights (returned), then an Adam step on every parameter. */
  async step(x: Tensor): Promise<TrainLosses> {
    const g = await this.gradients(x);
    this.apply(g);
    return g.losses;
  }

  /**
   * The Adam step (and batch norm's running statistics) from gradients() at the current weights:
   * the second half of step(), for a caller that has looked at the gradients first.
   */
  apply({ losses, grad, batchStats }: TrainGradients): void {
    if (!Number.isFinite(losses.total)) throw new PasticheError('the loss is no longer finite: lower --lr or the loss weights');
    this.adam.step(this.flat, grad);
    const next = unflattenTransformerWeights(this.current, this.flat);
    this.current = batchStats.size ? { ...next, ...updatedRunning(next, batchStats) } : next;
  }
}

/** BatchNorm2d's momentum: running = 0.9 running + 0.1 batch (the variance unbiased: m / (m - 1) of the batch's). */
const BN_MOMENTUM = 0.1;

/** Batch norm's running statistics after a batch with these statistics, as PyTorch keeps them. */
function updatedRunning(w: TransformerWeights, batch: Map<string, { mean: Float32Array; variance: Float32Array; count: number }>): Pick<TransformerWeights, 'running' | 'batchesTracked'> {
  const running = new Map<string, RunningStats>();
  for (const [name, r] of w.running ?? []) {
    const b = batch.get(name)!;
    const unbiased = b.count / Math.max(1, b.count - 1);
    running.set(name, {
      mean: r.mean.map((v, i) => (1 - BN_MOMENTUM) * v + BN_MOMENTUM * b.mean[i]!),
      variance: r.variance.map((v, i) => (1 - BN_MOMENTUM) * v + BN_MOMENTUM * b.variance[i]! * unbiased),
    });
  }
  return { running, batchesTracked: (w.batchesTracked ?? 0) + 1 };
}

/** The Gram matrices live where the backend made them; the batch targets are built on the host. */
async function ensureHost(grams: Map<string, { gram: Tensor }>): Promise<void> {
  for (const { gram: g } of grams.values()) if (g.storage) await g.toHost();
}

/** RGB images of one size -> [N, 3, H, W] 0..255. */
export function rgbBatch(images: readonly RgbImage[]): Tensor {
  const { width: w, height: h } = images[0]!;
  const t = new Tensor([images.length, 3, h, w]);
  const plane = w * h;
  images.forEach((img, b) => {
    if (img.width !== w || img.height !== h) throw new PasticheError(`a batch needs images of one size: ${img.width}x${img.height} vs ${w}x${h}`);
    const o = b * 3 * plane;
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) t.data[o + c * plane + i] = img.data[3 * i + c]!;
  });
  return t;
}

/** Python's round(): halves to even, as torchvision's CenterCrop rounds its offsets. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * A training crop as pytorch/examples makes it (torchvision Resize(size) then CenterCrop(size)):
 * the shorter side resized to `size` (Pillow's bilinear; the longer side size * long / short,
 * truncated), then the centre size x size.
 */
export function trainingCrop(img: RgbImage, size: number): RgbImage {
  const short = Math.min(img.width, img.height);
  const long = Math.max(img.width, img.height);
  const other = Math.trunc((size * long) / short);
  const [rw, rh] = img.width <= img.height ? [size, other] : [other, size];
  const r = rw === img.width && rh === img.height ? img : resizeBilinearPil(img, rw, rh);
  const top = roundHalfEven((rh - size) / 2);
  const left = roundHalfEven((rw - size) / 2);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) out.set(r.data.subarray(((top + y) * rw + left) * 3, ((top + y) * rw + left + size) * 3), y * size * 3);
  return { width: size, height: size, data: out };
}

/**
 * The order an epoch visits the content images: sorted, or shuffled by Fisher-Yates from a
 * generator seeded with (seed, epoch), so that any step's batch follows from the step's number
 * alone (what makes a resumed run the same as an uninterrupted one).
 */
export function epochOrder(count: number, epoch: number, seed: number, shuffle: boolean): Int32Array {
  const order = Int32Array.from({ length: count }, (_, i) => i);
  if (!shuffle) return order;
  const rng = uniformRng((Math.imul(seed >>> 0, 0x9e3779b1) + epoch) >>> 0);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Where the content images come from: a folder (train-style-job.ts), or pictures in memory. */
export interface ContentSource {
  readonly count: number;
  /** The image's name for messages. */
  name(index: number): string;
  /** Decoded; rejects (PasticheError) when the image cannot be read. */
  load(index: number): Promise<RgbImage>;
}

/** How a network is trained: every setting of a run, typed and checked (train-presets.ts parses them). */
export interface TrainSettings extends ObjectiveWeights {
  /** Training crops are size x size (a multiple of 4). */
  readonly size: number;
  readonly batch: number;
  readonly iterations: number;
  readonly lr: number;
  readonly seed: number;
  readonly shuffle: boolean;
  /** The style image's longest side; absent: as it is. */
  readonly styleSize?: number;
  /** Channels of the network's first layer (32: pytorch/examples' models; 16 half width). */
  readonly width: number;
  /** pytorch/examples' nearest upsampling + convolution, or the course's transposed convolutions. */
  readonly upsample: Upsample;
  /** Instance norm (pytorch/examples'), or batch norm (the course's --type batch). */
  readonly norm: Norm;
}

/** What a checkpoint holds: the network, the optimiser, how far it got. */
export interface TrainSnapshot {
  readonly weights: TransformerWeights;
  readonly adam?: AdamState;
  /** Steps done. */
  readonly iteration: number;
}

export interface TrainStyleOptions extends TrainSettings {
  readonly content: ContentSource;
  readonly style: RgbImage;
  readonly vgg: Vgg19Weights;
  readonly backend: Backend;
  /** The network to start from. */
  readonly net: TransformerWeights;
  /** Continue from this checkpoint's optimiser and step. */
  readonly resume?: { readonly adam?: AdamState; readonly iteration: number };
  /** Call onCheckpoint every this many steps. */
  readonly checkpointEvery?: number;
  readonly onCheckpoint?: (s: TrainSnapshot) => Promise<void>;
  /** Stylize this picture with the network as it is every `every` steps and at the end: training shown, not only its losses. */
  readonly preview?: { readonly image: RgbImage; readonly every: number; readonly onPreview: (rgb: RgbImage, iteration: number) => Promise<void> };
  readonly onProgress?: OnProgress;
  /** Stops after the current step; the result says it was interrupted. */
  readonly signal?: AbortSignal;
}

export interface TrainStyleResult extends TrainSnapshot {
  readonly interrupted: boolean;
  readonly losses?: TrainLosses;
  readonly seconds: number;
}

const yieldToEvents = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Step k's batch: samples k * batch ... (k + 1) * batch - 1 of the endless stream epoch 0's order,
 * epoch 1's order, ... (a batch may span two epochs). An image that cannot be read is said once
 * (a 'warning') and replaced by the next readable one of its epoch's order.
 */
async function loadBatch(o: TrainStyleOptions, k: number, bad: Set<number>, orders: Map<number, Int32Array>): Promise<Tensor> {
  const { count } = o.content;
  const images: RgbImage[] = [];
  for (let j = k * o.batch; j < (k + 1) * o.batch; j++) {
    const epoch = Math.floor(j / count);
    let order = orders.get(epoch);
    if (!order) {
      orders.clear();
      orders.set(epoch, (order = epochOrder(count, epoch, o.seed, o.shuffle)));
    }
    for (let tries = 0; ; tries++) {
      if (tries === count || bad.size === count) throw new PasticheError(`none of the ${count} content images can be read`);
      const index = order[(j + tries) % count]!;
      if (bad.has(index)) continue;
      try {
        images.push(trainingCrop(await o.content.load(index), o.size));
        break;
      } catch (e) {
        if (!(e instanceof PasticheError)) throw e;
        bad.add(index);
        o.onProgress?.({ kind: 'warning', message: `skipping ${e.message}` });
      }
    }
  }
  return rgbBatch(images);
}

/** The training loop: batches, steps, progress, checkpoints, a clean stop. */
export async function trainStyle(o: TrainStyleOptions): Promise<TrainStyleResult> {
  if (o.content.count === 0) throw new PasticheError('no content images to train on');
  const style = o.styleSize ? resizeLongest(o.style, o.styleSize) : o.style;
  const trainer = new StyleTrainer({ vgg: o.vgg, backend: o.backend, net: o.net, style, objective: o, lr: o.lr, adam: o.resume?.adam });
  const bad = new Set<number>();
  const orders = new Map<number, Int32Array>();
  const t0 = performance.now();
  const start = o.resume?.iteration ?? 0;
  let k = start;
  let losses: TrainLosses | undefined;
  let interrupted = false;
  const snapshot = (): TrainSnapshot => ({ weights: trainer.weights, adam: trainer.adamState, iteration: k });
  while (k < o.iterations) {
    await yieldToEvents();
    if (o.signal?.aborted) {
      interrupted = true;
      break;
    }
    const x = await loadBatch(o, k, bad, orders);
    losses = await trainer.step(x);
    k++;
    const seconds = (performance.now() - t0) / 1000;
    o.onProgress?.({ kind: 'train', iteration: k, of: o.iterations, epoch: (k * o.batch) / o.content.count, ...losses, seconds, stepsPerSecond: (k - start) / seconds });
    if (o.checkpointEvery && k % o.checkpointEvery === 0 && k < o.iterations) await o.onCheckpoint?.(snapshot());
    if (o.preview && (k % o.preview.every === 0 || k === o.iterations)) await o.preview.onPreview(await previewImage(trainer.weights, o.backend, o.preview.image), k);
  }
  return { ...snapshot(), interrupted, losses, seconds: (performance.now() - t0) / 1000 };
}

/** The preview picture through the network as it is now (the picture's size, rounded to the network's grid of 4). */
async function previewImage(weights: TransformerWeights, backend: Backend, rgb: RgbImage): Promise<RgbImage> {
  const [w, h] = [Math.max(12, rgb.width - (rgb.width % 4)), Math.max(12, rgb.height - (rgb.height % 4))];
  const input = w === rgb.width && h === rgb.height ? rgb : resizeBilinearPil(rgb, w, h);
  const y = await new TransformerNet(weights, backend).forward(rgbToTensor(input, [0, 0, 0])).toHost();
  const out = tensorToRgb(y, [0, 0, 0]);
  y.dispose();
  return out;
}

/** The longest side to `longest`, the aspect ratio kept (Pillow's bilinear). */
export function resizeLongest(img: RgbImage, longest: number): RgbImage {
  const s = longest / Math.max(img.width, img.height);
  return resizeBilinearPil(img, Math.max(1, Math.round(img.width * s)), Math.max(1, Math.round(img.height * s)));
}
