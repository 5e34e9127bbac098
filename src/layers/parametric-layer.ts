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
  dWeight?: Tensor;
  dBias?: Tensor;
  private w?: Tensor;
  private b?: Tensor;

  constructor(
    readonly name: string,
    protected readonly backend: Backend,
    readonly weightShape: Shape,
    readonly outputs: number,
  ) {}

  // Zeros until initParam or loadParam, made on first read. Made in the constructor, 575 MB of zeros
  // (fc6's 411) were allocated for every VGG19 that then loaded its weights over them: building the
  // full-size model took 255 ms instead of 1-5, 80 MB more resident (`node` on new Vgg19).
  get weight(): Tensor {
    return (this.w ??= new Tensor(this.weightShape));
  }
  set weight(t: Tensor) {
    this.w = t;
  }
  get bias(): Tensor {
    return (this.b ??= new Tensor([this.outputs]));
  }
  set bias(t: Tensor) {
    this.b = t;
  }

  /** Gaussian weights with standard deviation `std`, zero bias (the course's init_param). */
  initParam(std = 0.01, seed = 0): void {
    const g = normalRng(uniformRng(seed));
    const w = new Tensor(this.weightShape);
    for (let i = 0; i < w.size; i++) w.data[i] = std * g();
    this.weight = w;
    this.bias = new Tensor([this.outputs]);
  }

  loadParam(weight: Tensor, bias: Tensor): void {
    expectShape(weight, this.weightShape, `${this.name} weights`);
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
