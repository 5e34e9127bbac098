/**
 * The style-transfer loss and its gradient computed tile by tile, equal to the untiled ones (up to
 * float summation order), so that an image's activations never have to be in memory at once.
 *
 * Why it is exact: a feature of VGG19 at a position depends on a window of the input (its receptive
 * field: 156 px for relu5_1, rf = 1 + sum of (k - 1) x jump over the layers). A tile whose interior
 * is surrounded by at least half of that (the halo) computes, at its interior positions, the same
 * function of the input as the whole image does: crop borders at distance >= the halo cannot reach
 * it, and image borders are where they are in both. Crops start on the 16-px grid of the four pools,
 * so the pooling windows are the image's own. Then:
 * - Gram matrices are sums over positions: G = sum over tiles of F_int F_int^T (seed eq. 26), and the
 *   content loss is a sum over positions too;
 * - with G global, dL/dF at a position is (G - A) F(p) / (C^2 M^2) (eq. 27's gradient, M all the
 *   layer's positions) or (F(p) - P(p)) / (C M): injected at each tile's interior positions only,
 *   back-propagated through the tile, and the tiles' input gradients added where the crops overlap.
 * Two forward passes per tile and one backward pass: about 1.5x the untiled work plus the halos.
 */
import { PasticheError } from '../errors.js';
import { Vgg19 } from '../model/vgg19.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import { tvLoss } from '../style/losses.js';
import { clearHostPool } from '../tensor/host-pool.js';
import { Tensor } from '../tensor/tensor.js';
import { deepestLayer, type Evaluation, type ObjectiveWeights, type StyleTargets } from './style-objective.js';

/** The pools' common grid: crops start on multiples of it. */
export const TILE_GRID = 16;

/** Half the receptive field of `layer` (how far a crop border must stay from a position), rounded up to the grid. */
export function haloFor(layer: string): number {
  let rf = 1;
  let jump = 1;
  for (const spec of VGG19_LAYERS) {
    if (spec.kind === 'conv') rf += 2 * jump;
    else if (spec.kind === 'pool') {
      rf += jump;
      jump *= 2;
    }
    if (spec.name === layer) break;
  }
  return Math.ceil(rf / 2 / TILE_GRID) * TILE_GRID;
}

export interface Tile {
  /** The interior, in image pixels: [y0, y1) x [x0, x1). */
  readonly y0: number;
  readonly y1: number;
  readonly x0: number;
  readonly x1: number;
  /** The crop that is run: the interior and its halo, within the image. */
  readonly cy0: number;
  readonly cy1: number;
  readonly cx0: number;
  readonly cx1: number;
}

/**
 * Along one side of `length` pixels: each tile's interior [a0, a1) (`tile` pixels, the last one what
 * is left) and its crop [c0, c1), the interior with `halo` pixels either side, within the side.
 */
export function tileSpans(length: number, tile: number, halo: number): { a0: number; a1: number; c0: number; c1: number }[] {
  const spans = [];
  for (let a0 = 0; a0 < length; a0 += tile) {
    const a1 = Math.min(length, a0 + tile);
    spans.push({ a0, a1, c0: Math.max(0, a0 - halo), c1: Math.min(length, a1 + halo) });
  }
  return spans;
}

/**
 * Tiles of `tile` x `tile` interior pixels (the last row and column take what is left), each with
 * its halo; `grid` is what the network's strides need crops to start on (VGG19's pools: 16).
 */
export function tileGrid(height: number, width: number, tile: number, halo: number, grid = TILE_GRID): Tile[] {
  if (!(tile >= grid) || tile % grid !== 0 || halo % grid !== 0) throw new PasticheError(`the tile size must be a multiple of ${grid} (got ${tile})`);
  const columns = tileSpans(width, tile, halo);
  return tileSpans(height, tile, halo).flatMap((r) => columns.map((c) => ({ y0: r.a0, y1: r.a1, x0: c.a0, x1: c.a1, cy0: r.c0, cy1: r.c1, cx0: c.c0, cx1: c.c1 })));
}

/** [1, C, H, W] host tensor -> the rows [r0, r1) and columns [c0, c1) of every channel. */
export function crop(t: Tensor, r0: number, r1: number, c0: number, c1: number): Tensor {
  const [, c, h, w] = t.shape as [number, number, number, number];
  const out = new Tensor([1, c, r1 - r0, c1 - c0]);
  const ow = c1 - c0;
  for (let ch = 0; ch < c; ch++)
    for (let r = r0; r < r1; r++) out.data.set(t.data.subarray(ch * h * w + r * w + c0, ch * h * w + r * w + c1), (ch * (r1 - r0) + r - r0) * ow);
  return out;
}

/** Adds `part` ([1, C, h, w]) into `into` ([1, C, H, W]) at rows r0.., columns c0... */
function addAt(into: Float32Array, shape: readonly number[], part: Tensor, r0: number, c0: number): void {
  const [, c, h, w] = shape as [number, number, number, number];
  const [, , ph, pw] = part.shape as [number, number, number, number];
  for (let ch = 0; ch < c; ch++)
    for (let r = 0; r < ph; r++) {
      const src = (ch * ph + r) * pw;
      const dst = ch * h * w + (r0 + r) * w + c0;
      for (let k = 0; k < pw; k++) into[dst + k] += part.data[src + k]!;
    }
}

/** A layer's stride in image pixels (2 per pool before it). */
export function strideOf(layer: string): number {
  let s = 1;
  for (const spec of VGG19_LAYERS) {
    if (spec.name === layer) return s;
    if (spec.kind === 'pool') s *= 2;
  }
  return s;
}

interface Interior {
  /** In the crop's feature map: rows [r0, r1), columns [c0, c1). */
  readonly r0: number;
  readonly r1: number;
  readonly c0: number;
  readonly c1: number;
  /** Where r0, c0 are in the whole image's feature map. */
  readonly gr0: number;
  readonly gc0: number;
}

/**
 * The interior of `tile` at `layer` (whose whole map is mh x mw): rows y0/s .. y1/s, or to the map's
 * edge for the last tile (the pools floor odd sizes there, in the crop as in the image); undefined
 * when no position of the map falls inside.
 */
function interiorAt(tile: Tile, layer: string, height: number, width: number): Interior | undefined {
  const s = strideOf(layer);
  const [mh, mw] = mapSize(layer, height, width);
  const gr0 = tile.y0 / s;
  const gc0 = tile.x0 / s;
  const gr1 = tile.y1 === height ? mh : tile.y1 / s;
  const gc1 = tile.x1 === width ? mw : tile.x1 / s;
  if (gr1 <= gr0 || gc1 <= gc0) return undefined;
  const [or, oc] = [tile.cy0 / s, tile.cx0 / s];
  return { r0: gr0 - or, r1: gr1 - or, c0: gc0 - oc, c1: gc1 - oc, gr0, gc0 };
}

/** The feature map's height and width at `layer` for an image of height x width (pools floor). */
function mapSize(layer: string, height: number, width: number): [number, number] {
  let h = height;
  let w = width;
  for (const spec of VGG19_LAYERS) {
    if (spec.name === layer) break;
    if (spec.kind === 'pool') [h, w] = [Math.floor(h / 2), Math.floor(w / 2)];
  }
  return [h, w];
}

/** The crop shape whose recycled arrays the host pool holds. */
let pooledCrop = '';

/** A tile's features at the captured layers, on the host, with each one's interior. */
async function tileFeatures(model: Vgg19, x: Tensor, tile: Tile, names: readonly string[], deepest: string) {
  const [, , height, width] = x.shape as [number, number, number, number];
  // Border tiles are smaller: the pool would keep every shape's arrays (up to its 2 GiB), which a
  // memory budget does not allow. Kept for a run of same-shaped tiles, dropped when the shape changes.
  const shape = `${tile.cy1 - tile.cy0}x${tile.cx1 - tile.cx0}`;
  if (shape !== pooledCrop) clearHostPool();
  pooledCrop = shape;
  const xc = crop(x, tile.cy0, tile.cy1, tile.cx0, tile.cx1);
  const { activations } = model.forward(xc, { until: deepest, capture: names });
  const features = new Map<string, { f: Tensor; int: Interior | undefined }>();
  for (const name of names) features.set(name, { f: await activations.get(name)!.toHost(), int: interiorAt(tile, name, height, width) });
  return { xc, activations, features };
}

/** [C, n] of the interior positions. */
function interior(f: Tensor, i: Interior): Tensor {
  const c = crop(f, i.r0, i.r1, i.c0, i.c1);
  return c.reshape([c.shape[1]!, (i.r1 - i.r0) * (i.c1 - i.c0)]);
}

/** Adds F_int F_int^T of a tile's interior (seed eq. 26, over those positions only), times `scale`, into `acc`. */
async function addInteriorGram(model: Vgg19, f: Tensor, int: Interior, acc: Float32Array, scale = 1): Promise<void> {
  const fi = interior(f, int);
  const g = await model.backend.matmul(fi, fi, false, true).toHost();
  for (let i = 0; i < g.size; i++) acc[i] += scale * g.data[i]!;
  g.dispose();
}

/**
 * buildTargets of stylize.ts, tile by tile: the content features P assembled from the tiles'
 * interiors (whole maps, but at the content layers only), each style image's Gram matrices summed
 * over its tiles and blended.
 */
export async function buildTargetsTiled(model: Vgg19, content: Tensor, styles: readonly Tensor[], blend: readonly number[], w: ObjectiveWeights, o: TiledOptions): Promise<StyleTargets> {
  const deepest = deepestLayer(model, w);
  const halo = o.halo ?? haloFor(deepest);
  const targets: StyleTargets = { content: new Map(), style: new Map() };
  const [, , ch, cw] = content.shape as [number, number, number, number];
  const grids = [content, ...styles].map((im) => tileGrid(im.shape[2]!, im.shape[3]!, o.tile, halo));
  const count = grids.reduce((n, g) => n + g.length, 0);
  let done = 0;
  const tileDone = () => o.onTile?.('targets', ++done, count);
  for (const t of grids[0]!) {
    const { features, activations } = await tileFeatures(model, content, t, w.contentLayers.map((l) => l.name), deepest);
    for (const l of w.contentLayers) {
      const { f, int } = features.get(l.name)!;
      if (!int) continue;
      const [mh, mw] = mapSize(l.name, ch, cw);
      const c = f.shape[1]!;
      const p = targets.content.get(l.name) ?? new Tensor([1, c, mh, mw]);
      addAt(p.data, p.shape, crop(f, int.r0, int.r1, int.c0, int.c1), int.gr0, int.gc0);
      targets.content.set(l.name, p);
    }
    for (const a of activations.values()) a.recycle();
    tileDone();
  }
  const sum = blend.reduce((a, b) => a + b, 0);
  for (const [k, style] of styles.entries()) {
    for (const t of grids[k + 1]!) {
      const { features, activations } = await tileFeatures(model, style, t, w.styleLayers.map((l) => l.name), deepest);
      for (const l of w.styleLayers) {
        const { f, int } = features.get(l.name)!;
        if (!int) continue;
        const c = f.shape[1]!;
        const acc = targets.style.get(l.name) ?? new Tensor([1, c, c]);
        await addInteriorGram(model, f, int, acc.data, blend[k]! / sum);
        targets.style.set(l.name, acc);
      }
      for (const a of activations.values()) a.recycle();
      tileDone();
    }
  }
  return targets;
}

export interface TiledOptions {
  /** Interior size of a tile, pixels (a multiple of 16). */
  readonly tile: number;
  /** Overrides the halo (default haloFor the deepest layer): only to show what a short one breaks. */
  readonly halo?: number;
  /** Called after each tile of each pass. */
  readonly onTile?: (pass: TilePass, done: number, tiles: number) => void;
}

/**
 * 'targets': the content and style images' features; 'loss': the Gram matrices; 'gradient': the
 * backward passes; a style network's (fast-stylize.ts) 'statistics' passes and its 'network' pass.
 */
export type TilePass = 'targets' | 'loss' | 'gradient' | 'statistics' | 'network';

/**
 * evaluate() of stylize.ts, tile by tile: the same losses and gradient. `targets` hold the whole
 * content features and the style Gram matrices, on the host or the backend.
 */
export async function evaluateTiled(model: Vgg19, x: Tensor, targets: StyleTargets, w: ObjectiveWeights, o: TiledOptions): Promise<Evaluation> {
  const be = model.backend;
  const [, , height, width] = x.shape as [number, number, number, number];
  const names = [...new Set([...w.contentLayers, ...w.styleLayers].map((l) => l.name))];
  const deepest = deepestLayer(model, w);
  const halo = o.halo ?? haloFor(deepest);
  const tiles = tileGrid(height, width, o.tile, halo);
  for (const t of [...targets.content.values(), ...targets.style.values()]) await t.toHost();
  const runTile = (tile: Tile) => tileFeatures(model, x, tile, names, deepest);

  /** The content target at an interior's positions. */
  const targetAt = (name: string, i: Interior) => crop(targets.content.get(name)!, i.gr0, i.gr0 + i.r1 - i.r0, i.gc0, i.gc0 + i.c1 - i.c0);

  // Pass 1: the Gram matrices and the content loss, summed over the tiles' interiors.
  const grams = new Map<string, Float32Array>();
  const contentSums = new Map<string, number>();
  for (const [k, tile] of tiles.entries()) {
    const { features, activations } = await runTile(tile);
    for (const l of w.styleLayers) {
      const { f, int } = features.get(l.name)!;
      if (!int) continue;
      const c = f.shape[1]!;
      const acc = grams.get(l.name) ?? new Float32Array(c * c);
      await addInteriorGram(model, f, int, acc);
      grams.set(l.name, acc);
    }
    for (const l of w.contentLayers) {
      const { f, int } = features.get(l.name)!;
      if (!int) continue;
      const fi = crop(f, int.r0, int.r1, int.c0, int.c1);
      const pi = targetAt(l.name, int);
      let sum = contentSums.get(l.name) ?? 0;
      for (let i = 0; i < fi.size; i++) sum += (fi.data[i]! - pi.data[i]!) ** 2;
      contentSums.set(l.name, sum);
    }
    for (const t of activations.values()) t.recycle();
    o.onTile?.('loss', k + 1, tiles.length);
  }
  const layerDims = (name: string) => {
    const c = targets.style.get(name)?.shape[1] ?? targets.content.get(name)!.shape[1]!;
    const [mh, mw] = mapSize(name, height, width);
    return { c, m: mh * mw };
  };
  let style = 0;
  const diffs = new Map<string, Tensor>();
  for (const l of w.styleLayers) {
    const { c, m } = layerDims(l.name);
    const a = targets.style.get(l.name)!.data;
    const g = grams.get(l.name)!;
    const d = new Tensor([c, c]);
    let sum = 0;
    for (let i = 0; i < d.size; i++) {
      d.data[i] = g[i]! - a[i]!;
      sum += d.data[i]! ** 2;
    }
    style += (l.weight * sum) / (4 * c * c * m * m);
    // The gradient's factor, weight and normalisation folded into the difference once.
    diffs.set(l.name, be.scale(d, (w.styleWeight * l.weight) / (c * c * m * m)));
  }
  let content = 0;
  for (const l of w.contentLayers) {
    const { c, m } = layerDims(l.name);
    content += (l.weight * contentSums.get(l.name)!) / (2 * c * m);
  }

  // Pass 2: each tile's gradient, injected at its interior positions only, back to its crop.
  const grad = new Float32Array(x.size);
  for (const [k, tile] of tiles.entries()) {
    const { xc, features, activations } = await runTile(tile);
    const injected = new Map<string, Tensor>();
    const add = (name: string, values: Float32Array, r0: number, c0: number, ih: number, iw: number) => {
      const f = features.get(name)!.f;
      const g = injected.get(name) ?? new Tensor(f.shape);
      const [, ch, fh, fw] = f.shape as [number, number, number, number];
      for (let k = 0; k < ch; k++)
        for (let r = 0; r < ih; r++)
          for (let q = 0; q < iw; q++) g.data[k * fh * fw + (r0 + r) * fw + c0 + q] += values[(k * ih + r) * iw + q]!;
      injected.set(name, g);
    };
    for (const l of w.styleLayers) {
      const { f, int } = features.get(l.name)!;
      if (!int) continue;
      const gi = await be.matmul(diffs.get(l.name)!, interior(f, int)).toHost();
      add(l.name, gi.data, int.r0, int.c0, int.r1 - int.r0, int.c1 - int.c0);
    }
    for (const l of w.contentLayers) {
      const { f, int } = features.get(l.name)!;
      if (!int) continue;
      const { c, m } = layerDims(l.name);
      const fi = crop(f, int.r0, int.r1, int.c0, int.c1);
      const pi = targetAt(l.name, int);
      const scale = (w.contentWeight * l.weight) / (c * m);
      const v = new Float32Array(fi.size);
      for (let i = 0; i < v.length; i++) v[i] = scale * (fi.data[i]! - pi.data[i]!);
      add(l.name, v, int.r0, int.c0, int.r1 - int.r0, int.c1 - int.c0);
    }
    if (injected.size > 0) {
      const dxc = await model.backward(injected, { paramGrads: false }).toHost();
      addAt(grad, x.shape, dxc, tile.cy0, tile.cx0);
      dxc.dispose();
    }
    for (const t of activations.values()) if (t !== xc) t.recycle();
    o.onTile?.('gradient', k + 1, tiles.length);
  }
  for (const d of diffs.values()) d.dispose();
  const g = new Tensor(x.shape, grad);
  let tv = 0;
  if (w.tvWeight > 0) {
    const r = tvLoss(x);
    tv = r.loss.data[0]!;
    for (let i = 0; i < g.size; i++) g.data[i] += w.tvWeight * r.grad.data[i]!;
  }
  return { content, style, tv, total: w.contentWeight * content + w.styleWeight * style + w.tvWeight * tv, grad: g };
}
