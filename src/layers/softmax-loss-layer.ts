import type { Backend } from '../backends/backend.js';
import { PasticheError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { remembered, type Layer } from './layer.js';

/**
 * Softmax (seed eq. 19) with cross-entropy loss (eq. 20). As in the course, `loss(labels)` after
 * forward gives the loss and `backward()` then gives dL/dlogits = (p - y) / N (eq. 21).
 */
export class SoftmaxLossLayer implements Layer {
  private prob?: Tensor;
  private labels?: Int32Array;

  constructor(
    readonly name: string,
    private readonly backend: Backend,
  ) {}

  /** Probabilities; logits [N, K] (a [N, K, 1, 1] map is accepted too). */
  forward(x: Tensor): Tensor {
    const logits = x.rank === 4 && x.shape[2] === 1 && x.shape[3] === 1 ? x.reshape([x.shape[0]!, x.shape[1]!]) : x;
    this.prob = this.backend.softmax(logits);
    return this.prob;
  }

  /** Mean cross-entropy of the last forward's probabilities against `labels`, as a [1] tensor. */
  loss(labels: Int32Array): Tensor {
    this.labels = labels;
    return this.backend.crossEntropy(remembered(this.prob, this.name), labels);
  }

  /** dL/dlogits of the loss; `dy` must be omitted: the loss is the end of the chain. */
  backward(dy?: Tensor): Tensor {
    if (dy) throw new PasticheError(`${this.name}: the loss layer takes no output gradient`);
    if (!this.labels) throw new PasticheError(`${this.name}: call loss(labels) before backward()`);
    return this.backend.softmaxCrossEntropyBackward(remembered(this.prob, this.name), this.labels);
  }

  update(): void {}
}
