/** The layers without parameters: max and average pooling, ReLU, flatten. */
import type { Backend, Pool2dParams } from '../backends/backend.js';
import type { Shape, Tensor } from '../tensor/tensor.js';
import { remembered, type BackwardOptions, type Layer } from './layer.js';

/** What the two pooling layers share: the window and the input they remember for backward. */
abstract class PoolingLayer implements Layer {
  protected input?: Tensor;
  readonly params: Pool2dParams;

  constructor(
    readonly name: string,
    protected readonly backend: Backend,
    readonly kernelSize: number,
    readonly stride: number,
    readonly padding = 0,
  ) {
    this.params = { kernel: kernelSize, stride, pad: padding };
  }

  abstract forward(x: Tensor): Tensor;
  abstract backward(dy: Tensor): Tensor;
  update(): void {}
}

/** Max pooling (seed eq. 23). */
export class MaxPoolingLayer extends PoolingLayer {
  /** `ownLayout`: the output only feeds the next convolution (Conv2dForwardParams.ownLayout). */
  forward(x: Tensor, ownLayout = false): Tensor {
    this.input = x;
    return this.backend.maxPool2d(x, this.params, ownLayout);
  }

  backward(dy: Tensor, options: BackwardOptions = {}): Tensor {
    return this.backend.maxPool2dBackward(dy, remembered(this.input, this.name), this.params, false, options.ownLayout);
  }

  /**
   * The backward of this pool and of the ReLU that produced its input, in one pass (the ReLU's
   * output is this layer's input, so its mask is at hand).
   */
  backwardThroughRelu(dy: Tensor, options: BackwardOptions = {}): Tensor {
    return this.backend.maxPool2dBackward(dy, remembered(this.input, this.name), this.params, true, options.ownLayout);
  }
}

/** Average pooling: the style-transfer option that gives smoother results than max pooling. */
export class AvgPoolingLayer extends PoolingLayer {
  forward(x: Tensor): Tensor {
    this.input = x;
    return this.backend.avgPool2d(x, this.params);
  }

  backward(dy: Tensor): Tensor {
    return this.backend.avgPool2dBackward(dy, remembered(this.input, this.name).shape, this.params);
  }
}

/**
 * ReLU (seed eqs. 16-18). Backward masks with the output (y > 0 exactly where x > 0), so the layer
 * also works when the convolution before it already applied the ReLU.
 */
export class ReLULayer implements Layer {
  private output?: Tensor;

  constructor(
    readonly name: string,
    private readonly backend: Backend,
  ) {}

  forward(x: Tensor): Tensor {
    this.output = this.backend.relu(x);
    return this.output;
  }

  /** Takes the output of a convolution that applied this ReLU itself (forwardWithRelu). */
  acceptFused(y: Tensor): Tensor {
    this.output = y;
    return y;
  }

  backward(dy: Tensor, options: BackwardOptions = {}): Tensor {
    return this.backend.reluBackward(dy, remembered(this.output, this.name), options.reuseGradient);
  }

  /** The output remembered for backward, which a fused convolution backward uses as its mask. */
  get mask(): Tensor {
    return remembered(this.output, this.name);
  }

  update(): void {}
}

/**
 * NCHW -> NHWC, then flatten: MatConvNet's feature maps are [H, W, C], and its fc6 weights expect
 * that order.
 */
export class FlattenLayer implements Layer {
  private inputShape?: Shape;

  constructor(
    readonly name: string,
    private readonly backend: Backend,
  ) {}

  forward(x: Tensor): Tensor {
    this.inputShape = x.shape;
    return this.backend.flattenNhwc(x);
  }

  backward(dy: Tensor): Tensor {
    return this.backend.flattenNhwcBackward(dy, remembered(this.inputShape, this.name));
  }

  update(): void {}
}
