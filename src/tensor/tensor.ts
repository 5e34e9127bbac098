import { PasticheError } from '../errors.js';

export type Shape = readonly number[];

/** Number of elements in a shape. */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeToString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * A dense float32 tensor in row-major order. Image tensors are NCHW throughout the engine.
 * The shape is fixed at construction; `reshape` returns a view over the same data.
 */
export class Tensor {
  readonly shape: Shape;
  readonly data: Float32Array;

  constructor(shape: Shape, data?: Float32Array) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new PasticheError(`invalid tensor shape ${shapeToString(shape)}`);
      }
    }
    const n = sizeOf(shape);
    if (data && data.length !== n) {
      throw new PasticheError(
        `tensor data has ${data.length} elements but shape ${shapeToString(shape)} needs ${n}`,
      );
    }
    this.shape = Object.freeze([...shape]);
    this.data = data ?? new Float32Array(n);
  }

  static zeros(shape: Shape): Tensor {
    return new Tensor(shape);
  }

  static from(shape: Shape, values: ArrayLike<number>): Tensor {
    return new Tensor(shape, Float32Array.from(values));
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** A view with another shape over the same elements. */
  reshape(shape: Shape): Tensor {
    return new Tensor(shape, this.data);
  }

  clone(): Tensor {
    return new Tensor(this.shape, this.data.slice());
  }

  toString(): string {
    return `Tensor${shapeToString(this.shape)}`;
  }
}

/** Throws a readable error unless `t` has rank `rank`. Returns the shape for destructuring. */
export function expectRank(t: Tensor, rank: number, what: string): number[] {
  if (t.rank !== rank) {
    throw new PasticheError(
      `${what}: expected a rank-${rank} tensor, got ${shapeToString(t.shape)}`,
    );
  }
  return [...t.shape];
}

/** Throws a readable error unless `t` has exactly `shape`. */
export function expectShape(t: Tensor, shape: Shape, what: string): void {
  if (!sameShape(t.shape, shape)) {
    throw new PasticheError(
      `${what}: expected shape ${shapeToString(shape)}, got ${shapeToString(t.shape)}`,
    );
  }
}
