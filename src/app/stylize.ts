/**
 * Optimisation-based neural style transfer (Gatys, Ecker & Bethge), the course's lab 3-3: the image
 * itself is optimised so that its VGG19 features match the content image's (seed eq. 24) and its
 * Gram matrices match the style images' (eqs. 26-28), L = alpha L_c + beta L_s + tv TV (eq. 29).
 *
 * The engine on decoded images and an opened backend, with no Node import: the CLI and the workers
 * run it through stylize-job.ts (files), Studio's "Run in this browser" runs it in the page.
 */
import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { resizeBilinearPil } from '../image/pil-resize.js';
import { keepOriginalColors, resizeTensorBilinear, rgbToTensor, tensorToRgb, type RgbImage } from '../image/rgb.js';
import { Vgg19 } from '../model/vgg19.js';
import { VGG19_LAYERS, resolveLayerName } from '../model/vgg19-table.js';
import { contentLoss, gram, styleLoss, tvLoss } from '../style/losses.js';
import { Adam, Lbfgs, type Optimizer } from '../style/optimizers.js';
import { clearHostPool } from '../tensor/host-pool.js';
import { Tensor } from '../tensor/tensor.js';
import { uniformRng } from '../util/random.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { describePlan, planMemory, type MemoryPlan } from './memory-plan.js';
import type { IterationProgress, OnProgress } from './progress.js';
import { deepestLayer, type Evaluation, type ObjectiveWeights, type StyleTargets, type WeightedLayer } from './style-objective.js';
import { buildTargetsTiled, evaluateTiled, type TilePass } from './tiled-evaluate.js';

export type { Evaluation, ObjectiveWeights, StyleTargets, WeightedLayer };
export { estimateMemoryBytes, paramShapes, type ParamShapes } from './memory-plan.js';

/** How the optimisation starts: from the content image, from noise, from a blend, or from a file. */
export type Init =
  | { readonly kind: 'content' }
  | { readonly kind: 'noise' }
  /** The course's start: (1 - ratio) * content + ratio * uniform(-amplitude, amplitude). */
  | { readonly kind: 'blend'; readonly ratio: number; readonly amplitude: number }
  | { readonly kind: 'file'; readonly file: string };

/** How an image is stylized: every setting of a run, typed and checked (app/stylize-request.ts parses them). */
export interface StylizeSettings extends ObjectiveWeights {
  /** Output size: the longest side (the content's aspect ratio is kept), or exact height and width. */
  readonly size: number | { readonly height: number; readonly width: number };
  readonly iterations: number;
  readonly optimizer: 'adam' | 'lbfgs';
  readonly lr: number;
  /** Absent: 100, shortened where the memory budget needs it (memory-plan.ts). */
  readonly lbfgsHistory?: number;
  readonly init: Init;
  readonly seed?: number;
  /** One weight per style image (normalised to sum 1); default equal. */
  readonly styleBlend?: readonly number[];
  /** Style images are resized to this fraction of the output's longest side. */
  readonly styleScale?: number;
  /** Keep the content's colours: only the luminance is stylized (YIQ). */
  readonly originalColors?: boolean;
  readonly pooling?: 'max' | 'avg';
  /**
   * Multi-scale: the longest sides to optimise at, smallest first, each starting from the previous
   * result upsampled; the last is the output size. Empty: one scale.
   */
  readonly scales?: readonly number[];
  /** Compute the loss tile by tile, tiles of this many pixels a side (tiled-evaluate.ts): the same result in less memory. */
  readonly tile?: number;
  /** Bytes the run may use (memory-plan.ts fits it in: tiles, a shorter L-BFGS history); default: what the machine gives. */
  readonly maxMemory?: number;
}

/** A run on decoded images (what both the CLI's files and a browser's canvas give). */
export interface StylizeImagesOptions extends StylizeSettings {
  readonly content: RgbImage;
  readonly styles: readonly RgbImage[];
  /** The start image when `init` is a file: its pixels. */
  readonly initImage?: RgbImage;
  readonly weights: Vgg19Weights;
  readonly backend: Backend;
  /** What this machine can give the run, bytes: the budget when maxMemory is absent, its cap when given; absent: no limit. */
  readonly memoryLimitBytes?: number;
  /** Called with an 'iteration' event after every step. */
  readonly onProgress?: OnProgress;
  /** Stops after the current iteration; the best image so far is returned. */
  readonly signal?: AbortSignal;
}

/** One step's report (the library's older name for the 'iteration' progress event). */
export type IterationReport = IterationProgress;

export interface StylizeResult {
  /** The lowest-loss image seen (mean-subtracted NCHW). */
  readonly image: Tensor;
  /** Its pixels, with the content's colours if `originalColors`. */
  readonly rgb: RgbImage;
  readonly bestLoss: number;
  readonly iterations: number;
  readonly interrupted: boolean;
}

export const DEFAULT_CONTENT_LAYERS = ['relu4_2'];
export const DEFAULT_STYLE_LAYERS = ['relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1'];

/**
 * Parses 'relu4_2' or 'relu1_1:0.5,relu2_1:0.5' into weighted layers; unweighted lists get equal
 * weights 1/n (the course averages over layers).
 */
export function parseLayers(spec: string | readonly string[], what: string): WeightedLayer[] {
  const parts = (typeof spec === 'string' ? spec.split(',') : [...spec]).map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new PasticheError(`${what}: no layers given`);
  const out = parts.map((p) => {
    const [name, w] = p.split(':');
    const resolved = resolveLayerName(name!);
    const spec = VGG19_LAYERS.findIndex((l) => l.name === resolved);
    if (resolved === undefined || spec < 0 || spec > VGG19_LAYERS.findIndex((l) => l.name === 'pool5')) {
      throw new PasticheError(`${what}: unknown layer '${name}' (use convolution, ReLU or pool layers, e.g. relu4_2)`);
    }
    const weight = w === undefined ? NaN : Number(w);
    if (w !== undefined && !(weight >= 0)) throw new PasticheError(`${what}: weight '${w}' of ${name} is not a non-negative number`);
    return { name: resolved, weight };
  });
  const given = out.filter((l) => !Number.isNaN(l.weight)).length;
  if (given !== 0 && given !== out.length) throw new PasticheError(`${what}: give a weight for every layer or for none`);
  return given ? out : out.map((l) => ({ ...l, weight: 1 / out.length }));
}

/** Output height and width: the longest side is `size`, the content's aspect ratio is kept. */
export function outputSize(content: { width: number; height: number }, size: StylizeSettings['size']): { height: number; width: number } {
  if (typeof size !== 'number') return size;
  const scale = size / Math.max(content.width, content.height);
  return { height: Math.max(1, Math.round(content.height * scale)), width: Math.max(1, Math.round(content.width * scale)) };
}

/** P from the content image; A = sum_k blend_k gram(style_k) over the style images. */
export function buildTargets(model: Vgg19, content: Tensor, styles: readonly Tensor[], blend: readonly number[], w: ObjectiveWeights): StyleTargets {
  const be = model.backend;
  const until = deepestLayer(model, w);
  const contentNames = w.contentLayers.map((l) => l.name);
  const styleNames = w.styleLayers.map((l) => l.name);
  const targets: StyleTargets = { content: new Map(), style: new Map() };
  // Captured activations belong to the caller: nothing changes or frees them but us. In the
  // backend's own layout, as evaluate() captures the image's (the losses read both so).
  const acts = model.forward(content, { until, capture: contentNames, inference: true, captureOwnLayout: true }).activations;
  for (const n of contentNames) targets.content.set(n, acts.get(n)!);
  const sum = blend.reduce((a, b) => a + b, 0);
  styles.forEach((style, k) => {
    const sa = model.forward(style, { until, capture: styleNames, inference: true, captureOwnLayout: true }).activations;
    for (const n of styleNames) {
      const g = gram(be, sa.get(n)!);
      const acc = targets.style.get(n);
      targets.style.set(n, acc ? be.addScaled(acc, g, blend[k]! / sum) : be.scale(g, blend[k]! / sum));
      for (const t of [acc, g]) t?.dispose();
    }
    for (const t of sa.values()) t.dispose();
  });
  return targets;
}

/**
 * The loss at x and its exact gradient: one forward pass and one backward pass. On a GPU backend
 * everything up to the gradient stays on the device; the gradient and the loss values are read
 * back once, at the end.
 */
export async function evaluate(model: Vgg19, x: Tensor, targets: StyleTargets, w: ObjectiveWeights): Promise<Evaluation> {
  const be = model.backend;
  const capture = [...new Set([...w.contentLayers, ...w.styleLayers].map((l) => l.name))];
  // The captured features stay in the backend's own layout (native: nChw16c): the losses' products
  // and element-wise ops read them as they are, their gradients come out so and go back into the
  // backward pass's channel-blocked path, and the convolutions after a captured layer read it
  // without a conversion. At 512 px, this evaluation 467 / 538 -> 404 / 436 ms (`node` on it, the
  // previous build and this one alternating).
  const { activations } = model.forward(x, { until: deepestLayer(model, w), capture, captureOwnLayout: true });
  const grads = new Map<string, Tensor>();
  // The losses' gradients come already weighted; a layer that is both content and style adds them.
  const addGrad = (name: string, g: Tensor) => {
    const acc = grads.get(name);
    grads.set(name, acc ? be.addScaled(acc, g, 1) : g);
    if (acc) for (const t of [acc, g]) t.recycle();
  };
  const contentLosses: [number, Tensor][] = [];
  const styleLosses: [number, Tensor][] = [];
  for (const l of w.contentLayers) {
    const r = contentLoss(be, activations.get(l.name)!, targets.content.get(l.name)!, w.contentWeight * l.weight);
    contentLosses.push([l.weight, r.loss]);
    addGrad(l.name, r.grad);
  }
  for (const l of w.styleLayers) {
    const r = styleLoss(be, activations.get(l.name)!, targets.style.get(l.name)!, w.styleWeight * l.weight);
    styleLosses.push([l.weight, r.loss]);
    addGrad(l.name, r.grad);
  }
  const grad = model.backward(grads, { paramGrads: false });
  await Promise.all([grad, ...contentLosses.map(([, t]) => t), ...styleLosses.map(([, t]) => t)].map((t) => t.toHost()));
  // The backward pass is queued after everything that reads these: their memory can go to the next
  // iteration's tensors (on the CPU too: fresh arrays cost page faults every iteration).
  for (const t of [...grads.values(), ...activations.values()]) if (t !== x) t.recycle();
  const weighted = (ls: [number, Tensor][]) => ls.reduce((s, [wt, t]) => s + wt * t.data[0]!, 0);
  const content = weighted(contentLosses);
  const style = weighted(styleLosses);
  // Their host copies stay readable.
  for (const t of [grad, ...contentLosses.map(([, t]) => t), ...styleLosses.map(([, t]) => t)]) t.dispose();
  let tv = 0;
  if (w.tvWeight > 0) {
    const r = tvLoss(x);
    tv = r.loss.data[0]!;
    for (let i = 0; i < grad.size; i++) grad.data[i] += w.tvWeight * r.grad.data[i]!;
  }
  return { content, style, tv, total: w.contentWeight * content + w.styleWeight * style + w.tvWeight * tv, grad };
}

/** An image resized (as the classifier's input is) to height x width, mean-subtracted. */
function imageTensor(rgb: RgbImage, height: number, width: number, mean: readonly [number, number, number]): Tensor {
  return rgbToTensor(resizeBilinearPil(rgb, width, height), mean);
}

/** Lets the event loop run (signal handlers, progress bars, a page's repaint) between iterations. */
const yieldToEvents = (): Promise<void> => new Promise((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));

export async function stylizeImages(o: StylizeImagesOptions): Promise<StylizeResult> {
  if (o.styles.length === 0) throw new PasticheError('give at least one style image');
  const blend = o.styleBlend ?? o.styles.map(() => 1);
  if (blend.length !== o.styles.length) throw new PasticheError(`${o.styles.length} style image(s) but ${blend.length} blend weight(s)`);
  if (blend.some((b) => !(b >= 0)) || blend.every((b) => b === 0)) throw new PasticheError('style blend weights must be non-negative and not all zero');
  if (!(o.iterations >= 1) || !Number.isInteger(o.iterations)) throw new PasticheError(`iterations must be a positive whole number, got ${o.iterations}`);
  if (typeof o.size === 'number' ? !(o.size >= 1 && Number.isInteger(o.size)) : !(o.size.height >= 1 && o.size.width >= 1)) {
    throw new PasticheError('the size must be a positive whole number');
  }
  const mean = o.weights.meanPixel;
  const contentRgb = o.content;
  const styleRgbs = o.styles;
  if (o.init.kind === 'file' && !o.initImage) throw new PasticheError(`the start image ${o.init.file} was not read`);
  const final = outputSize(contentRgb, o.size);
  const longest = Math.max(final.height, final.width);
  const scales = [...(o.scales ?? []).filter((s) => s < longest), longest];

  const budget = Math.min(o.maxMemory ?? Infinity, o.memoryLimitBytes ?? Infinity);
  const styleSize = (srgb: RgbImage, scaleLongest: number) => outputSize(srgb, Math.max(1, Math.round(scaleLongest * (o.styleScale ?? 1))));
  const planFor = (height: number, width: number, scaleLongest: number, leanWeights?: boolean): MemoryPlan =>
    planMemory(
      {
        layers: o.weights.layers, contentLayers: o.contentLayers, styleLayers: o.styleLayers, leanWeights,
        optimizer: o.optimizer, lbfgsHistory: o.lbfgsHistory, tile: o.tile, budget, maxTensorBytes: o.backend.maxTensorBytes,
        budgetName: o.maxMemory !== undefined && o.maxMemory <= (o.memoryLimitBytes ?? Infinity) ? '--max-memory' : "this machine's free memory",
      },
      height,
      width,
      styleRgbs.map((srgb) => styleSize(srgb, scaleLongest)),
    );
  // The largest scale is planned before any work: a size that cannot fit is refused at once. Its
  // plan says whether the convolutions keep lean weight transforms (every scale, then).
  const { leanWeights } = planFor(final.height, final.width, longest);
  const model = new Vgg19(o.weights, o.backend, { pooling: o.pooling ?? 'max', leanWeights });

  const optimizerFor = (p: MemoryPlan): Optimizer => (p.optimizer === 'adam' ? new Adam(o.lr) : new Lbfgs(o.lr, p.lbfgsHistory, o.backend));
  const rng = uniformRng(o.seed ?? 0);
  const total = o.iterations * scales.length;
  let iteration = 0;
  let x: Tensor | undefined;
  let best: { loss: number; image: Tensor } = { loss: Infinity, image: new Tensor([1, 3, 1, 1]) };
  const t0 = performance.now();
  let interrupted = false;

  for (const scaleLongest of scales) {
    // The recycled arrays of the last scale have the wrong sizes for this one: let them go.
    clearHostPool();
    const { height, width } = outputSize(final, scaleLongest);
    const content = imageTensor(contentRgb, height, width, mean);
    const styleTensors = styleRgbs.map((srgb) => {
      const sz = styleSize(srgb, scaleLongest);
      return imageTensor(srgb, sz.height, sz.width, mean);
    });
    const poolsBefore = VGG19_LAYERS.slice(0, model.layerIndex(deepestLayer(model, o))).filter((l) => l.kind === 'pool').length;
    const minSide = 2 ** poolsBefore;
    for (const [what, t] of [['the output', content], ...styleTensors.map((t, k) => [`style image ${k + 1}`, t] as const)] as const) {
      if (Math.min(t.shape[2]!, t.shape[3]!) < minSide) {
        throw new PasticheError(`${what} would be ${t.shape[3]}x${t.shape[2]} at this scale; ${deepestLayer(model, o)} needs at least ${minSide} pixels a side (raise --size, --scales or --style-scale)`);
      }
    }
    const plan = planFor(height, width, scaleLongest, leanWeights);
    o.onProgress?.({ kind: 'plan', scale: scaleLongest, plan, text: describePlan(plan) });
    const onTile = (pass: TilePass, done: number, tiles: number) => o.onProgress?.({ kind: 'tile', iteration: iteration + 1, of: total, pass, done, tiles });
    const tiled = plan.tile !== undefined ? { tile: plan.tile, onTile } : undefined;
    const targets = tiled ? await buildTargetsTiled(model, content, styleTensors, blend, o, tiled) : buildTargets(model, content, styleTensors, blend, o);
    x = x ? resizeTensorBilinear(x, height, width) : initialImage(o.init, o.initImage, content, height, width, mean, rng);
    // Replaced, not cloned, as it improves: one more image-sized array, not one per iteration.
    best = { loss: Infinity, image: x.clone() };
    const optimizer = optimizerFor(plan);
    for (let it = 0; it < o.iterations; it++) {
      await yieldToEvents();
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      const e = tiled ? await evaluateTiled(model, x, targets, o, tiled) : await evaluate(model, x, targets, o);
      if (!Number.isFinite(e.total)) throw new PasticheError('the loss is no longer finite: lower --lr or the loss weights');
      if (e.total < best.loss) {
        best.loss = e.total;
        best.image.data.set(x.data);
      }
      iteration++;
      o.onProgress?.({
        kind: 'iteration', iteration, of: total, scale: scaleLongest, content: e.content, style: e.style, tv: e.tv, total: e.total,
        seconds: (performance.now() - t0) / 1000, image: x,
      });
      optimizer.step(x.data, e.grad.data, e.total);
    }
    if (interrupted) break;
  }
  let rgb = tensorToRgb(best.image, mean);
  if (o.originalColors) rgb = keepOriginalColors(rgb, resizeBilinearPil(contentRgb, rgb.width, rgb.height));
  return { image: best.image, rgb, bestLoss: best.loss, iterations: iteration, interrupted };
}

function initialImage(init: Init, file: RgbImage | undefined, content: Tensor, height: number, width: number, mean: readonly [number, number, number], rng: () => number): Tensor {
  switch (init.kind) {
    case 'content':
      return content.clone();
    case 'noise': {
      const t = new Tensor(content.shape);
      for (let i = 0; i < t.size; i++) t.data[i] = (rng() * 2 - 1) * 20;
      return t;
    }
    case 'blend': {
      const t = new Tensor(content.shape);
      for (let i = 0; i < t.size; i++) t.data[i] = (1 - init.ratio) * content.data[i]! + init.ratio * (rng() * 2 - 1) * init.amplitude;
      return t;
    }
    case 'file':
      return imageTensor(file!, height, width, mean);
  }
}
