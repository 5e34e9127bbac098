/**
 * The style-transfer objective as data: which layers count and how much, what the image is pulled
 * towards, and what one evaluation of the loss returns. Shared by the untiled evaluation
 * (stylize.ts) and the tiled one (tiled-evaluate.ts).
 */
import type { Vgg19 } from '../model/vgg19.js';
import type { Tensor } from '../tensor/tensor.js';

export interface WeightedLayer {
  readonly name: string;
  /** Its weight in the sum; by default 1 / (number of layers), so the losses are averages. */
  readonly weight: number;
}

/** What the image is pulled towards: content features P per content layer, Gram matrices A per style layer. */
export interface StyleTargets {
  readonly content: Map<string, Tensor>;
  readonly style: Map<string, Tensor>;
}

export interface ObjectiveWeights {
  readonly contentWeight: number;
  readonly styleWeight: number;
  readonly tvWeight: number;
  readonly contentLayers: readonly WeightedLayer[];
  readonly styleLayers: readonly WeightedLayer[];
}

export interface Evaluation {
  /** Sum over content layers of w_l L_c^l (eq. 24, averaged by default). */
  readonly content: number;
  /** L_s = sum_l w_l L_s^l (eqs. 27-28). */
  readonly style: number;
  readonly tv: number;
  /** alpha content + beta style + tv TV (eq. 29). */
  readonly total: number;
  /** dL/dx, exact, through the network's own backward passes. */
  readonly grad: Tensor;
}

/** The deepest layer the objective reads: forward passes stop there. */
export function deepestLayer(model: Vgg19, w: ObjectiveWeights): string {
  return [...w.contentLayers, ...w.styleLayers].map((l) => l.name).reduce((a, b) => (model.layerIndex(a) >= model.layerIndex(b) ? a : b));
}
