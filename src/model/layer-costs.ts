/** Each VGG19 layer's output shape and arithmetic for an input of size x size (batch 1). */
import { windowOutput } from '../backends/shapes.js';
import type { Vgg19Weights } from './vgg19-params.js';
import { VGG19_LAYERS, type LayerKind } from './vgg19-table.js';

export interface LayerCost {
  readonly name: string;
  readonly kind: LayerKind;
  /** [C, H, W] for image layers, [D] after the flatten: what the layer reads and writes. */
  readonly input: readonly number[];
  readonly output: readonly number[];
  /** 2 x multiply-adds (a convolution counted as a direct one). */
  readonly flops: number;
}

/** The layers in order, up to and including `until` when given (all of them for a name not in the net). */
export function vgg19LayerCosts(weights: Vgg19Weights, size: number, until?: string): LayerCost[] {
  const out: LayerCost[] = [];
  let shape = [3, size, size];
  for (const spec of VGG19_LAYERS) {
    const p = weights.layers.get(spec.name);
    const input = shape;
    let flops = 0;
    if (p?.kind === 'conv') {
      const [cin, k, , cout] = p.w.shape as [number, number, number, number];
      shape = [cout, windowOutput(shape[1]!, k, p.pad, p.stride), windowOutput(shape[2]!, k, p.pad, p.stride)];
      flops = 2 * cin * k * k * cout * shape[1]! * shape[2]!;
    } else if (p?.kind === 'pool') {
      shape = [shape[0]!, windowOutput(shape[1]!, p.kernel, p.pad, p.stride), windowOutput(shape[2]!, p.kernel, p.pad, p.stride)];
    } else if (p?.kind === 'fc') {
      shape = [p.w.shape[1]!];
      flops = 2 * p.w.size;
    } else if (spec.kind === 'flatten') {
      shape = [shape.reduce((a, b) => a * b, 1)];
    }
    out.push({ name: spec.name, kind: spec.kind, input, output: shape, flops });
    if (spec.name === until) break;
  }
  return out;
}
