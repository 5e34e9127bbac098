import type { Backend } from '../backends/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { remembered, type BackwardOptions } from './layer.js';
import { ParametricLayer } from './parametric-layer.js';

/** v = x W + b (seed eq. 5); x [N, Din], W [Din, Dout]. */
export class FullyConnectedLayer extends ParametricLayer {
  private input?: Tensor;

  constructor(
    name: string,
    backend: Backend,
    readonly numInput: number,
    readonly numOutput: number,
  ) {
    super(name, backend, [numInput, numOutput], numOutput);
  }

  forward(x: Tensor): Tensor {
    this.input = x;
    return this.backend.linear(x, this.weight, this.bias);
  }

  backward(dy: Tensor, options: BackwardOptions = {}): Tensor {
    const g = this.backend.linearBackward(dy, remembered(this.input, this.name), this.weight);
    if (options.paramGrads ?? true) {
      this.dWeight = g.dw;
      this.dBias = g.db;
    }
    return g.dx;
  }
}
