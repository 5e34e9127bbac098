import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import { Tensor, expectShape } from '../tensor/tensor.js';
import { normalRng, uniformRng } from '../util/random.js';
import { remembered, sgdStep, type BackwardOptions, type Layer } from './layer.js';

/** v = x W + b (seed eq. 5); x [N, Din], W [Din, Dout]. */
export class FullyConnectedLayer implements Layer {
  weight: Tensor;
  bias: Tensor;
  dWeight?: Tensor;
  dBias?: Tensor;
  private input?: Tensor;

  constructor(
    readonly name: string,
    private readonly backend: Backend,
    readonly numInput: number,
    readonly numOutput: number,
  ) {
    this.weight = new Tensor([numInput, numOutput]);
    this.bias = new Tensor([numOutput]);
  }

  initParam(std = 0.01, seed = 0): void {
    const g = normalRng(uniformRng(seed));
    for (let i = 0; i < this.weight.size; i++) this.weight.data[i] = std * g();
    this.bias.data.fill(0);
  }

  loadParam(weight: Tensor, bias: Tensor): void {
    expectShape(weight, this.weight.shape, `${this.name} weights`);
    if (bias.size !== this.numOutput) throw new PasticheError(`${this.name}: ${bias.size} biases for ${this.numOutput} outputs`);
    this.weight = weight;
    this.bias = bias.reshape([this.numOutput]);
  }

  forward(x: Tensor): Tensor {
    this.input = x;
    return this.backend.linear(x, this.weight, this.bias);
  }

  backward(dy: Tensor, options: BackwardOptions = {}): Tensor {
    const x = remembered(this.input, this.name);
    const g = this.backend.linearBackward(dy, x, this.weight);
    if (options.paramGrads ?? true) {
      this.dWeight = g.dw;
      this.dBias = g.db;
    }
    return g.dx;
  }

  update(lr: number): void {
    this.weight = sgdStep(this.weight, this.dWeight, lr);
    this.bias = sgdStep(this.bias, this.dBias, lr);
  }
}
