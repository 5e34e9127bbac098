/** What every layer does, as in the course: forward, backward, and an SGD parameter update. */
import { PasticheError } from '../errors.js';
import type { Backend } from '../backends/backend.js';
import type { Tensor } from '../tensor/tensor.js';

export interface BackwardOptions {
  /** Compute weight and bias gradients (default true). Style transfer needs only dL/dx. */
  readonly paramGrads?: boolean;
  /** The caller hands dy over: the layer may overwrite it instead of allocating (default false). */
  readonly reuseGradient?: boolean;
  /**
   * dL/dx goes on only to the backward of a layer whose backend op reads the backend's own layout
   * (see Conv2dForwardParams.ownLayout): the backend may keep it so.
   */
  readonly ownLayout?: boolean;
}

export interface Layer {
  readonly name: string;
  /** Computes the output and remembers what backward needs. */
  forward(x: Tensor): Tensor;
  /** dL/dx from dL/dy of the last forward call; stores parameter gradients where there are any. */
  backward(dy: Tensor, options?: BackwardOptions): Tensor;
  /** SGD step with the stored gradients (seed eqs. 10-11); nothing for layers without parameters. */
  update(lr: number): void;
}

/** The input remembered by forward, or a clear error if backward comes first. */
export function remembered<T>(value: T | undefined, layer: string): T {
  if (value === undefined) throw new PasticheError(`${layer}: backward called before forward`);
  return value;
}

/**
 * w - lr * dw as a new tensor: weight arrays are never changed in place, so that a backend may
 * cache what it derives from them (see Backend.conv2d).
 */
export function sgdStep(backend: Backend, param: Tensor, grad: Tensor | undefined, lr: number): Tensor {
  return grad ? backend.addScaled(param, grad, -lr) : param;
}
