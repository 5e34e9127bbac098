import type { Backend, GradientEpilogue, Pool2dParams } from '../backends/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { remembered, type BackwardOptions } from './layer.js';
import { ParametricLayer } from './parametric-layer.js';

/** Convolution with zero padding and stride (seed eq. 22); weights [Cin, K, K, Cout]. */
export class ConvolutionalLayer extends ParametricLayer {
  private input?: Tensor;

  constructor(
    name: string,
    backend: Backend,
    readonly kernelSize: number,
    readonly channelIn: number,
    readonly channelOut: number,
    readonly padding: number,
    readonly stride: number,
    /** Conv2dParams.leanWeights on every call. */
    readonly leanWeights = false,
  ) {
    super(name, backend, [channelIn, kernelSize, kernelSize, channelOut], channelOut);
  }

  private get params() {
    return { pad: this.padding, stride: this.stride, leanWeights: this.leanWeights };
  }

  forward(x: Tensor): Tensor {
    this.input = x;
    return this.backend.conv2d(x, this.weight, this.bias, this.params);
  }

  /**
   * ReLU(conv(x)) in one pass, for a convolution followed by a ReLULayer (see ReLULayer.acceptFused).
   * `ownLayout`: the result only goes to ops that read the backend's own layout (the next
   * convolution; with a backward to come, a max-pool): see Conv2dForwardParams.
   */
  forwardWithRelu(x: Tensor, ownLayout = false): Tensor {
    this.input = x;
    return this.backend.conv2d(x, this.weight, this.bias, { ...this.params, ownLayout }, true);
  }

  /**
   * maxPool(ReLU(conv(x))) as one op for a forward that no backward follows: the input is not kept,
   * and backward refuses to run until the next forward.
   */
  forwardReluMaxPool(x: Tensor, pool: Pool2dParams, ownLayout = false): Tensor {
    this.input = undefined;
    return this.backend.conv2dMaxPool(x, this.weight, this.bias, { ...this.params, ownLayout }, true, pool);
  }

  backward(dy: Tensor, options: BackwardOptions = {}, epilogue?: GradientEpilogue): Tensor {
    const x = remembered(this.input, this.name);
    const p = this.params;
    if (options.paramGrads ?? true) {
      const { dw, db } = this.backend.conv2dBackwardParams(dy, x, this.kernelSize, p);
      this.dWeight = dw;
      this.dBias = db;
    }
    return this.backend.conv2dBackwardData(dy, this.weight, x.shape, p, epilogue, options.ownLayout);
  }
}
