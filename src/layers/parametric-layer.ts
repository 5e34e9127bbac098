import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { Tensor, expectShape, type Shape } from '../tensor/tensor.js';
import { normalRng, uniformRng } from '../util/random.js';
import { sgdStep, type BackwardOptions, type Layer } from './layer.js';

/**
 * A layer with a weight and a bias, as the course's ConvolutionalLayer and FullyConnectedLayer:
 * init_param, load_param, and update_param (an SGD step). Weight tensors are replaced, never
 * modified in place, so that backends may cache what they derive from them.
 */
export abstract class ParametricLayer implements Layer {
  weight: Tensor;
  bias: Tensor;
  dWeight?: Tensor;
  dBias?: Tensor;

  constructor(
    readonly name: string,
    protected readonly backend: Backend,
    weightShape: Shape,
    readonly outputs: number,
  ) {
    this.weight = new Tensor(weightShape);
    this.bias = new Tensor([outputs]);
  }

  /** Gaussian weights with standard deviation `std`, zero bias (the course's init_param). */
  initParam(std = 0.01, seed = 0): void {
    const g = normalRng(uniformRng(seed));
    const w = new Tensor(this.weight.shape);
    for (let i = 0; i < w.size; i++) w.data[i] = std * g();
    this.weight = w;
    this.bias = new Tensor([this.outputs]);
  }

  loadParam(weight: Tensor, bias: Tensor): void {
    expectShape(weight, this.weight.shape, `${this.name} weights`);
    if (bias.size !== this.outputs) throw new PasticheError(`${this.name}: ${bias.size} biases for ${this.outputs} outputs`);
    this.weight = weight;
    this.bias = bias.reshape([this.outputs]);
  }

  /** SGD with the gradients of the last backward (seed eqs. 10-11). */
  update(lr: number): void {
    this.weight = sgdStep(this.backend, this.weight, this.dWeight, lr);
    this.bias = sgdStep(this.backend, this.bias, this.dBias, lr);
  }

  abstract forward(x: Tensor): Tensor;
  abstract backward(dy: Tensor, options?: BackwardOptions): Tensor;
}
