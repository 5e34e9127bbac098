/**
 * How much memory a style-transfer run needs, and how a run is fitted into a budget: the whole image
 * at once when it fits, else the loss in tiles (tiled-evaluate.ts: the same result) of the largest
 * size that fits, and an L-BFGS history short enough, or Adam where even a short one cannot fit.
 *
 * What a run holds (bytes; n = height x width pixels):
 * - fixed: Node, sharp and the addon (150 MiB), the weights and the Winograd transforms of the
 *   convolutions (each tile the native backend takes at the sizes the run passes, both directions);
 * - the working set of one pass: every activation of the crop kept for the backward pass twice
 *   over, and a few gradients of its largest layer (the whole image when untiled);
 * - per pixel, whatever the tile: the image, the best image, the content image, the gradient and
 *   the TV term's (5 x 3 floats), three 8-bit pictures (the content as read and resized, the result),
 *   the content targets (C / stride^2 floats per content layer), and
 *   the optimiser's state: Adam 2 x 3 floats, L-BFGS 2 (history + 1) x 3 floats (the s and y pairs,
 *   and the next pair's), 3 x 3 floats (the last image and gradient, the gradient) and 3 doubles
 *   (the direction being computed).
 * The estimate is checked against peak RSS by `pastiche bench --sections print` (the README's table).
 */
import { windowOutput } from '../backends/shapes.js';
import { PasticheError } from '../errors.js';
import { backwardDataWinogradTile, winogradTile } from '../backends/native/winograd-tile.js';
import { VGG19_CONV, VGG19_LAYERS } from '../model/vgg19-table.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { haloFor, strideOf, tileGrid, tileSpans } from './tiled-evaluate.js';

/**
 * What the memory estimate needs of the weights: their shapes, not their values (a server can
 * hold these while a worker holds the weights). Vgg19Weights.layers is one.
 */
export type ParamShapes = ReadonlyMap<
  string,
  | { readonly kind: 'conv' | 'fc'; readonly w: { readonly shape: readonly number[]; readonly size: number }; readonly b: { readonly size: number } }
  | { readonly kind: 'pool'; readonly kernel: number; readonly stride: number; readonly pad: number }
>;

/** The shapes of `weights` as plain data (for postMessage). */
export function paramShapes(weights: Vgg19Weights): ParamShapes {
  const out = new Map<string, ParamShapes extends ReadonlyMap<string, infer V> ? V : never>();
  for (const [name, p] of weights.layers) {
    out.set(name, p.kind === 'pool' ? { kind: 'pool', kernel: p.kernel, stride: p.stride, pad: p.pad } : { kind: p.kind, w: { shape: [...p.w.shape], size: p.w.size }, b: { size: p.b.size } });
  }
  return out;
}

const RUNTIME_BYTES = 150 * 2 ** 20; // Node, sharp and the addon themselves

/** A pass's input size: [height, width]. */
export type Side = readonly [number, number];

/**
 * Floats of the Winograd transforms the native backend keeps, forward and for the gradient to the
 * data, for passes at the sizes `sides`: (m + 2)^2 / 9 of a layer's weights for the largest tile m
 * its policy (winogradTile) takes there, 4x for F(4x4) and 7.1x for F(6x6) (the 512-channel layers
 * take F(6x6) from 36x36 outputs up: at 512 px conv4 does, conv5 does not). Every convolution,
 * wherever a pass stops. Crops on both sides of a tile's threshold keep both transforms of a layer;
 * the slack of the activations' count has covered that (`bench --sections print`, README).
 */
function winogradFloats(layers: ParamShapes, sides: readonly Side[], lean: boolean): number {
  const { pad, stride } = VGG19_CONV;
  let at = sides.map(([h, w]) => [h, w] as const);
  let floats = 0;
  for (const spec of VGG19_LAYERS) {
    const p = layers.get(spec.name);
    if (p?.kind === 'pool') at = at.map(([h, w]) => [windowOutput(h, p.kernel, p.pad, p.stride), windowOutput(w, p.kernel, p.pad, p.stride)] as const);
    if (p?.kind !== 'conv') continue;
    const [cin, k, , cout] = p.w.shape as [number, number, number, number];
    // Forward on either path's policy (channel-blocked or not), and the gradient to the data.
    const forward = at.flatMap(([h, w]) => [true, false].map((c) => winogradTile('auto', k, stride, pad, cin, cout, windowOutput(h, k, pad, stride), windowOutput(w, k, pad, stride), () => c, lean)));
    const backward = at.map(([h, w]) => backwardDataWinogradTile('auto', k, stride, pad, cin, cout, h, w, lean));
    for (const m of [Math.max(...forward), Math.max(...backward)]) if (m) floats += ((m + 2) ** 2 / (k * k)) * p.w.size;
  }
  return floats;
}

/** The weights, and their Winograd transforms after passes at `sides` (`lean`: Conv2dParams.leanWeights). */
function weightBytes(layers: ParamShapes, sides: readonly Side[], lean = false): number {
  let params = 0;
  for (const p of layers.values()) if (p.kind !== 'pool') params += p.w.size + p.b.size;
  return 4 * (params + winogradFloats(layers, sides, lean));
}

/** The floats of every activation up to `until` for a height x width input, and of the largest one. */
function activationFloats(layers: ParamShapes, height: number, width: number, until: string): { all: number; largest: number } {
  let [h, w, channels] = [height, width, 3];
  let all = channels * h * w;
  let largest = all;
  for (const spec of VGG19_LAYERS) {
    const p = layers.get(spec.name);
    if (p?.kind === 'conv') channels = p.w.shape[3]!;
    else if (p?.kind === 'pool') [h, w] = [windowOutput(h, p.kernel, p.pad, p.stride), windowOutput(w, p.kernel, p.pad, p.stride)];
    if (p?.kind === 'conv' || p?.kind === 'pool') {
      all += channels * h * w;
      largest = Math.max(largest, channels * h * w);
    }
    if (spec.name === until) break;
  }
  return { all, largest };
}

/** One pass's working set on a height x width input (or crop), to `until`. */
function passBytes(layers: ParamShapes, height: number, width: number, until: string): number {
  const a = activationFloats(layers, height, width, until);
  return 4 * (2 * a.all + 4 * a.largest);
}

/**
 * Bytes an untiled style-transfer pass at height x width needs (the weights, one pass's working
 * set, the runtime); what a server checks a size against before it knows a run's settings. Measured
 * at 512x512 with the native backend (`bench --sections style --style-sizes 512`, F(6x6) for conv4,
 * VGG19's features only as stylize loads them): 1610 MiB peak RSS; this estimate says 1.94 GiB
 * (with fc6-fc8, as a server's worker holds them: 2085 MiB, 2.4 GiB).
 */
export function estimateMemoryBytes(weights: { readonly layers: ParamShapes }, height: number, width: number): number {
  return RUNTIME_BYTES + weightBytes(weights.layers, [[height, width]]) + passBytes(weights.layers, height, width, 'relu5_1');
}

/** The settings a plan depends on. */
export interface PlanRequest {
  readonly layers: ParamShapes;
  /** The content layers (their targets are kept whole) and the style layers, by name. */
  readonly contentLayers: readonly { readonly name: string }[];
  readonly styleLayers: readonly { readonly name: string }[];
  readonly optimizer: 'adam' | 'lbfgs';
  /** Given by the user: kept as it is; absent: 100, shortened to fit. */
  readonly lbfgsHistory?: number;
  /** A forced tile size (--tile); absent: untiled if it fits, else the largest tile that fits. */
  readonly tile?: number;
  /** Bytes the run may use. */
  readonly budget: number;
  /** Plans with these transforms (MemoryPlan.leanWeights) only: a run's other scales follow its last one's choice. */
  readonly leanWeights?: boolean;
  /** The largest single tensor the backend can hold (a GPU's buffer limit); default: no limit. */
  readonly maxTensorBytes?: number;
  /** What the budget is, for messages: '--max-memory' or 'this machine's free memory'. */
  readonly budgetName?: string;
  /** How the caller's user names a field (default the flags: --size, --tile, --max-memory). */
  readonly fieldName?: (field: 'size' | 'tile' | 'maxMemory') => string;
}

/** How one scale of a run is done. */
export interface MemoryPlan {
  readonly height: number;
  readonly width: number;
  /** The tiles' interior size; undefined: the whole image at once. */
  readonly tile?: number;
  readonly tiles: number;
  readonly halo: number;
  readonly optimizer: 'adam' | 'lbfgs';
  /** L-BFGS's history at this scale (0 with Adam). */
  readonly lbfgsHistory: number;
  /** The estimated peak, and its parts. */
  readonly bytes: number;
  readonly parts: { readonly fixed: number; readonly pass: number; readonly image: number; readonly optimizer: number };
  readonly budget: number;
  /** The sizes of its passes: the content's and the styles' crops. */
  readonly sides: readonly Side[];
  /**
   * The weights' transforms kept small (Conv2dParams.leanWeights): chosen where the faster, larger
   * ones would leave the run a smaller tile, a shorter history or Adam (at 1024x1024 in 4 GiB they
   * took it from 384- to 320-px tiles, 7.5 -> 9.2 s an iteration).
   */
  readonly leanWeights: boolean;
}

export const DEFAULT_LBFGS_HISTORY = 100;
/** A shorter history than this is hardly L-BFGS: below it, Adam takes the scale. */
const MIN_AUTO_LBFGS_HISTORY = 5;
/** Tile sizes tried, largest first (fewer tiles: less halo to recompute). */
const TILE_CHOICES = [2048, 1536, 1024, 768, 640, 512, 384, 320, 256, 192, 128, 96, 64, 48, 32, 16];

/** Bytes per pixel (3 values) of the optimiser's state. */
export function optimizerBytesPerPixel(optimizer: 'adam' | 'lbfgs', history: number): number {
  return optimizer === 'adam' ? 2 * 3 * 4 : (2 * (history + 1) * 4 + 3 * 4 + 8) * 3;
}

/** The channels of `layer`'s output (the last convolution's at or before it). */
function channelsAt(layers: ParamShapes, layer: string): number {
  let channels = 3;
  for (const spec of VGG19_LAYERS) {
    const p = layers.get(spec.name);
    if (p?.kind === 'conv') channels = p.w.shape[3]!;
    if (spec.name === layer) break;
  }
  return channels;
}

/** 2.3 GiB, 512 MiB. */
const gib = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(1)} GiB` : `${Math.round(b / 2 ** 20)} MiB`);

/**
 * The plan for one scale at height x width: untiled if it fits the budget (and a forced --tile is
 * not given), else the largest tile that fits; L-BFGS's history shortened (not below 5) when the
 * user did not set it, Adam when even that cannot fit. A budget too small for the smallest tile is
 * one clear error that says what the size needs.
 */
export function planMemory(r: PlanRequest, height: number, width: number, styles: readonly { height: number; width: number }[] = []): MemoryPlan {
  const n = height * width;
  const order = (name: string) => VGG19_LAYERS.findIndex((l) => l.name === name);
  // The deepest layer the loss reads: passes stop there, and its receptive field sets the halo.
  const deepest = [...r.contentLayers, ...r.styleLayers].map((l) => l.name).reduce((a, b) => (order(a) >= order(b) ? a : b));
  let contentFloats = 0;
  for (const { name } of r.contentLayers) {
    const s = strideOf(name);
    contentFloats += channelsAt(r.layers, name) * Math.ceil(height / s) * Math.ceil(width / s);
  }
  const stylePixels = styles.reduce((sum, st) => sum + st.height * st.width, 0);
  // Float arrays, and the 8-bit pictures: the content as read and resized, the result as written.
  const image = 4 * (5 * 3 * n + 3 * stylePixels + contentFloats) + 3 * 3 * n;
  const halo = haloFor(deepest);
  const maxTensor = r.maxTensorBytes ?? Infinity;
  /** The pass's bytes with tiles of `tile` (undefined: untiled), or Infinity where a tensor would exceed the backend's limit. */
  const pass = (tile?: number) =>
    Math.max(
      ...[{ height, width }, ...styles].map((im) => {
        const [ch, cw] = tile === undefined ? [im.height, im.width] : [Math.min(im.height, tile + 2 * halo), Math.min(im.width, tile + 2 * halo)];
        const a = activationFloats(r.layers, ch, cw, deepest);
        return 4 * a.largest > maxTensor ? Infinity : passBytes(r.layers, ch, cw, deepest);
      }),
    );
  /** The sizes of the passes with tiles of `tile`: each image whole, or the crops' distinct sizes (edges and corners are shorter). */
  const sides = (tile?: number): Side[] =>
    [{ height, width }, ...styles].flatMap((im) => {
      if (tile === undefined) return [[im.height, im.width] as const];
      const lengths = (n: number) => [...new Set(tileSpans(n, tile, halo).map((s) => s.c1 - s.c0))];
      return lengths(im.height).flatMap((h) => lengths(im.width).map((w) => [h, w] as const));
    });
  const plan = (tile: number | undefined, optimizer: 'adam' | 'lbfgs', history: number, lean: boolean): MemoryPlan => {
    const opt = n * optimizerBytesPerPixel(optimizer, history);
    const p = pass(tile);
    const passSides = sides(tile);
    const fixed = RUNTIME_BYTES + weightBytes(r.layers, passSides, lean);
    return {
      height, width, tile, halo, optimizer,
      tiles: tile === undefined ? 1 : tileGrid(height, width, tile, halo).length,
      lbfgsHistory: optimizer === 'lbfgs' ? history : 0,
      // 5% for what the allocator and a lagging garbage collector hold beyond the arrays themselves.
      bytes: 1.05 * (fixed + p + image + opt),
      parts: { fixed, pass: p, image, optimizer: opt },
      budget: r.budget,
      sides: passSides,
      leanWeights: lean,
    };
  };
  const fits = (p: MemoryPlan) => Number.isFinite(p.bytes) && p.bytes <= r.budget;
  const tiles = r.tile !== undefined ? [r.tile] : [undefined, ...TILE_CHOICES.filter((t) => t < Math.max(height, width))];
  // A tile no smaller than this keeps the halo's recomputation below ~3x (a 256 tile with an 80-px
  // halo computes 416^2 / 256^2 = 2.6x the pixels): the history gives way before the tile does.
  const comfortable = tiles.filter((t) => t === undefined || t >= 256);
  const histories =
    r.optimizer === 'adam' ? [] : r.lbfgsHistory !== undefined ? [r.lbfgsHistory] : [DEFAULT_LBFGS_HISTORY, 50, 20, 10, MIN_AUTO_LBFGS_HISTORY];
  const candidates: [number | undefined, 'adam' | 'lbfgs', number][] = [
    ...histories.flatMap((h) => comfortable.map((t) => [t, 'lbfgs', h] as [number | undefined, 'lbfgs', number])),
    ...(r.optimizer === 'lbfgs' && r.lbfgsHistory !== undefined ? [] : comfortable.map((t) => [t, 'adam', 0] as [number | undefined, 'adam', number])),
  ];
  // Then the small tiles, with the shortest history allowed (or Adam).
  const lastHistory = histories.at(-1);
  for (const t of tiles.filter((t) => !comfortable.includes(t))) {
    if (lastHistory !== undefined) candidates.push([t, 'lbfgs', lastHistory]);
    if (!(r.optimizer === 'lbfgs' && r.lbfgsHistory !== undefined)) candidates.push([t, 'adam', 0]);
  }
  // The first candidate that fits, with the faster transforms where they fit it as well as lean ones.
  const first = (lean: boolean) => {
    for (const [t, opt, h] of candidates) {
      const p = plan(t, opt, h, lean);
      if (fits(p)) return p;
    }
    return undefined;
  };
  const fast = r.leanWeights === true ? undefined : first(false);
  const lean = r.leanWeights === false ? undefined : first(true);
  if (fast && (!lean || (fast.tile === lean.tile && fast.optimizer === lean.optimizer && fast.lbfgsHistory === lean.lbfgsHistory))) return fast;
  if (lean) return lean;
  const smallest = candidates.map(([t, opt, h]) => plan(t, opt, h, r.leanWeights ?? true)).reduce((a, b) => (b.bytes < a.bytes ? b : a));
  const budgetName = r.budgetName ?? 'the memory budget';
  const field = r.fieldName ?? ((f) => ({ size: '--size', tile: '--tile', maxMemory: '--max-memory' })[f]);
  const how = smallest.tile === undefined ? 'untiled' : `in ${smallest.tile}-px tiles`;
  if (!Number.isFinite(smallest.bytes)) {
    throw new PasticheError(`a ${width}x${height} output ${r.tile ? `in ${r.tile}-px tiles ` : ''}has tensors larger than this backend's ${gib(maxTensor)} buffer limit: choose a smaller ${field('tile')}`);
  }
  throw new PasticheError(
    `a ${width}x${height} output needs at least ${gib(smallest.bytes)} (${how}${smallest.optimizer === 'lbfgs' ? `, L-BFGS history ${smallest.lbfgsHistory}` : ', Adam'}), more than ${budgetName} (${gib(r.budget)}): ` +
      `choose a smaller ${field('size')}${r.tile ? ` or ${field('tile')}` : ''}${r.budgetName === field('maxMemory') ? ` or a larger ${field('maxMemory')}` : ''}`,
  );
}

/** One line for people: '2048x1536 in 256-px tiles (48 tiles, 80-px halo), L-BFGS history 20, lean weight transforms: about 2.8 of 3.0 GiB'. */
export function describePlan(p: MemoryPlan): string {
  const how = p.tile === undefined ? 'untiled' : `in ${p.tile}-px tiles (${p.tiles} tiles, ${p.halo}-px halo)`;
  const opt = (p.optimizer === 'adam' ? 'Adam' : `L-BFGS history ${p.lbfgsHistory}`) + (p.leanWeights ? ', lean weight transforms' : '');
  return `${p.width}x${p.height} ${how}, ${opt}: about ${gib(p.bytes)}${Number.isFinite(p.budget) ? ` of ${gib(p.budget)}` : ''}`;
}

/** '3G', '512M', '2.5GiB', '1e9' -> bytes; undefined for anything else. */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Number(m[1]) * unit;
  return Number.isFinite(bytes) && bytes > 0 ? bytes : undefined;
}
