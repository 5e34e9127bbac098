import { PasticheError } from '../errors.js';
import { giveHostArray, takeHostArray } from './host-pool.js';

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

function checkedSize(shape: Shape): number {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new PasticheError(`invalid tensor shape ${shapeToString(shape)}`);
  }
  return sizeOf(shape);
}

/**
 * Where a tensor's elements live when they are not in host memory: a GPU buffer, for the webgpu
 * backend. Reading is asynchronous, as it is in WebGPU.
 */
export interface DeviceStorage {
  /** The backend that owns the memory, for error messages ('webgpu'). */
  readonly owner: string;
  read(): Promise<Float32Array>;
  /** Gives the memory back to its backend's pool; the tensor must not be used afterwards. */
  release(): void;
}

/**
 * An order of a host tensor's elements other than row-major NCHW that a CPU backend keeps between
 * its own ops (native: nChw16c, see channel-blocked.ts). `toNchw` writes them in NCHW order.
 */
export interface HostLayout {
  /** 'nChw16c', for checks and messages. */
  readonly name: string;
  toNchw(from: Float32Array, shape: Shape, to: Float32Array): void;
}

/**
 * A dense float32 tensor in row-major order. Image tensors are NCHW throughout the engine.
 * The shape is fixed at construction; `reshape` returns a view over the same data.
 *
 * A tensor made by a device backend holds `storage` instead of host data: the engine passes it
 * from layer to layer without copying, and `await t.toHost()` reads it back once, when the
 * caller asks for it. `data` on such a tensor before `toHost()` is an error, not a hidden sync.
 *
 * A tensor made by a CPU backend for its own next op may hold its elements in that backend's
 * `layout` instead (Tensor.uninitializedIn); `data` converts them to NCHW on first use, so a reader
 * never sees the difference, and the backend's next op reads them as they are (arrayIn).
 */
export class Tensor {
  readonly shape: Shape;
  readonly size: number;
  readonly storage?: DeviceStorage;
  /** The order of `laidOut`'s elements, where the tensor was made in a backend's own layout. */
  readonly layout?: HostLayout;
  private host?: Float32Array;
  /** The elements in `layout`'s order. */
  private laidOut?: Float32Array;
  /** laidOut came from the pool (Tensor.uninitializedIn): recycle() gives it back. */
  private laidOutPooled = false;
  /** The host array came from the pool and no view shares it: recycle() may give it back. */
  private pooled = false;
  private recycled = false;

  constructor(shape: Shape, data?: Float32Array | DeviceStorage, layout?: HostLayout) {
    const n = checkedSize(shape);
    this.shape = Object.freeze([...shape]);
    this.size = n;
    if (layout) {
      if (!(data instanceof Float32Array) || data.length !== n) throw new PasticheError(`a tensor in ${layout.name} needs ${n} host elements`);
      this.layout = layout;
      this.laidOut = data;
    } else if (data === undefined || data instanceof Float32Array) {
      if (data && data.length !== n) {
        throw new PasticheError(
          `tensor data has ${data.length} elements but shape ${shapeToString(shape)} needs ${n}`,
        );
      }
      this.host = data ?? new Float32Array(n);
    } else {
      this.storage = data;
    }
  }

  static zeros(shape: Shape): Tensor {
    return new Tensor(shape);
  }

  /**
   * A host tensor whose elements are NOT initialised, from recycled memory (see host-pool.ts): for
   * kernels that write every element of their output.
   */
  static uninitialized(shape: Shape): Tensor {
    const n = checkedSize(shape);
    const t = new Tensor(shape, n === 0 ? new Float32Array(0) : takeHostArray(n));
    t.pooled = n > 0;
    return t;
  }

  /**
   * Tensor.uninitialized, its elements to be written in `layout`'s order by the backend that made
   * it (an empty tensor is plain NCHW).
   */
  static uninitializedIn(layout: HostLayout, shape: Shape): Tensor {
    const n = checkedSize(shape);
    if (n === 0) return new Tensor(shape);
    const t = new Tensor(shape, takeHostArray(n), layout);
    t.laidOutPooled = true;
    return t;
  }

  /** The elements in `layout`'s order, if this tensor holds them so (else undefined: use `data`). */
  arrayIn(layout: HostLayout): Float32Array | undefined {
    return this.layout === layout ? this.laidOut : undefined;
  }

  static from(shape: Shape, values: ArrayLike<number>): Tensor {
    return new Tensor(shape, Float32Array.from(values));
  }

  /** The elements in host memory (for a device tensor: after `await toHost()`). */
  get data(): Float32Array {
    if (this.host) return this.host;
    if (this.laidOut) {
      this.host = takeHostArray(this.size);
      this.pooled = true;
      this.layout!.toNchw(this.laidOut, this.shape, this.host);
      return this.host;
    }
    if (this.recycled) throw new PasticheError(`tensor ${shapeToString(this.shape)} was recycled: its memory belongs to a newer tensor`);
    throw new PasticheError(
      `tensor ${shapeToString(this.shape)} lives on ${this.storage!.owner}: await tensor.toHost() before reading its data`,
    );
  }

  /** True while the elements are only on a device. */
  get onDevice(): boolean {
    return this.storage !== undefined && this.host === undefined && !this.recycled;
  }

  /**
   * Reads a device tensor back into host memory (once) and returns this tensor, whose `data` then
   * works; host tensors return at once. Changing the host copy does not change the device copy.
   */
  async toHost(): Promise<this> {
    if (this.onDevice) this.host = await this.storage!.read();
    else void this.data; // a recycled tensor's error; a layout's conversion
    return this;
  }

  /** Gives a device tensor's memory back to its backend now instead of at garbage collection. */
  dispose(): void {
    this.storage?.release();
  }

  /**
   * Ends this tensor's life: its memory (device or pooled host memory) may go to the next tensor a
   * backend makes, and reading it afterwards is an error. For owners sure that nothing else holds
   * it (the model's intermediates); unlike dispose(), a host copy does not stay readable.
   */
  recycle(): void {
    if (this.recycled) return;
    this.recycled = true;
    this.storage?.release();
    if (this.host && this.pooled) giveHostArray(this.host);
    if (this.laidOut && this.laidOutPooled) giveHostArray(this.laidOut);
    this.host = undefined;
    this.laidOut = undefined;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** A view with another shape over the same elements (or the same device memory). */
  reshape(shape: Shape): Tensor {
    if (this.laidOut && !this.host) void this.data; // a view is NCHW
    if (this.host) {
      this.pooled = false; // the view shares the array: it must not be recycled under it
      return new Tensor(shape, this.host);
    }
    if (sizeOf(shape) !== this.size) {
      throw new PasticheError(`cannot reshape ${shapeToString(this.shape)} to ${shapeToString(shape)}`);
    }
    return new Tensor(shape, this.storage);
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
