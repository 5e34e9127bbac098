import type { Backend, GradientEpilogue } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { Tensor, expectShape } from '../tensor/tensor.js';
import { normalRng, uniformRng } from '../util/random.js';
import { remembered, sgdStep, type BackwardOptions, type Layer } from './layer.js';

/** Convolution with zero padding and stride (seed eq. 22); weights [Cin, K, K, Cout]. */
export class ConvolutionalLayer implements Layer {
  weight: Tensor;
  bias: Tensor;
  dWeight?: Tensor;
  dBias?: Tensor;
  private input?: Tensor;

  constructor(
    readonly name: string,
    private readonly backend: Backend,
    readonly kernelSize: number,
    readonly channelIn: number,
    readonly channelOut: number,
    readonly padding: number,
    readonly stride: number,
  ) {
    this.weight = new Tensor([channelIn, kernelSize, kernelSize, channelOut]);
    this.bias = new Tensor([channelOut]);
  }

  /** Gaussian weights with standard deviation `std`, zero bias (the course's init_param). */
  initParam(std = 0.01, seed = 0): void {
    const g = normalRng(uniformRng(seed));
    for (let i = 0; i < this.weight.size; i++) this.weight.data[i] = std * g();
    this.bias.data.fill(0);
  }

  loadParam(weight: Tensor, bias: Tensor): void {
    expectShape(weight, this.weight.shape, `${this.name} weights`);
    if (bias.size !== this.channelOut) throw new PasticheError(`${this.name}: ${bias.size} biases for ${this.channelOut} channels`);
    this.weight = weight;
    this.bias = bias.reshape([this.channelOut]);
  }

  forward(x: Tensor): Tensor {
    this.input = x;
    return this.backend.conv2d(x, this.weight, this.bias, { pad: this.padding, stride: this.stride });
  }

  /** ReLU(conv(x)) in one pass, for a convolution followed by a ReLULayer (see ReLULayer.acceptFused). */
  forwardWithRelu(x: Tensor): Tensor {
    this.input = x;
    return this.backend.conv2d(x, this.weight, this.bias, { pad: this.padding, stride: this.stride }, true);
  }

  backward(dy: Tensor, options: BackwardOptions = {}, epilogue?: GradientEpilogue): Tensor {
    const x = remembered(this.input, this.name);
    const p = { pad: this.padding, stride: this.stride };
    if (options.paramGrads ?? true) {
      const { dw, db } = this.backend.conv2dBackwardParams(dy, x, this.kernelSize, p);
      this.dWeight = dw;
      this.dBias = db;
    }
    return this.backend.conv2dBackwardData(dy, this.weight, x.shape, p, epilogue);
  }

  update(lr: number): void {
    this.weight = sgdStep(this.weight, this.dWeight, lr);
    this.bias = sgdStep(this.bias, this.dBias, lr);
  }
}
