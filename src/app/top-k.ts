/** Reading a probability vector: the k most probable classes. */

export interface Prediction {
  readonly index: number;
  readonly label: string;
  readonly prob: number;
}

/** The `k` most probable classes of one row of probabilities, most probable first. */
export function topK(prob: Float32Array, classes: readonly string[], k: number): Prediction[] {
  const order = Array.from(prob.keys()).sort((a, b) => prob[b]! - prob[a]! || a - b);
  return order.slice(0, k).map((index) => ({ index, label: classes[index] ?? `class ${index}`, prob: prob[index]! }));
}
