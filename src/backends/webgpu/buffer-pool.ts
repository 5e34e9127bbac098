/**
 * GPU memory for tensors: storage buffers recycled by size, so that repeated passes of the same
 * network allocate nothing after the first. A tensor gives its buffer back on `dispose()` (the
 * model does this for its intermediates), or at the latest when it is garbage-collected.
 */
import { PasticheError } from '../../errors.js';
import type { DeviceStorage } from '../../tensor/tensor.js';
import type { GpuContext } from './gpu-device.js';

/** GPUBufferUsage STORAGE | COPY_SRC | COPY_DST (numbers: Node has the globals only once Dawn is loaded). */
export const STORAGE_USAGE = 0x80 | 0x04 | 0x08;

/** Sizes are rounded up so that nearby shapes share buffers; 256 bytes is WebGPU's offset alignment. */
function sizeClass(bytes: number): number {
  if (bytes <= 1 << 20) return Math.max(256, Math.ceil(bytes / 256) * 256);
  // Above 1 MiB: steps of 1/8 of the power of two below (at most 12.5% slack).
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  /** Bytes in buffers made so far (live or pooled): what 100 passes must not grow. */
  allocatedBytes = 0;
  private readonly collected = new FinalizationRegistry<GpuStorage['slot']>((slot) => {
    if (!slot.released) this.put(slot.buffer);
  });

  constructor(private readonly ctx: GpuContext) {}

  take(bytes: number): GPUBuffer {
    const size = sizeClass(Math.max(bytes, 4));
    const limit = this.ctx.device.limits.maxStorageBufferBindingSize;
    if (size > limit) {
      throw new PasticheError(`a ${(bytes / 2 ** 20).toFixed(0)} MiB tensor exceeds this GPU's ${(limit / 2 ** 20).toFixed(0)} MiB buffer limit`);
    }
    const hit = this.free.get(size)?.pop();
    if (hit) return hit;
    this.allocatedBytes += size;
    return this.ctx.device.createBuffer({ size, usage: STORAGE_USAGE });
  }

  /** Work already queued that uses `buffer` still runs first: the queue executes in order. */
  put(buffer: GPUBuffer): void {
    const list = this.free.get(buffer.size);
    if (list) list.push(buffer);
    else this.free.set(buffer.size, [buffer]);
  }

  /** Storage for a new tensor of `elements` floats. */
  storage(elements: number, read: (buffer: GPUBuffer, bytes: number) => Promise<Float32Array>): GpuStorage {
    const s = new GpuStorage(this, this.take(elements * 4), elements * 4, read);
    this.collected.register(s, s.slot, s);
    return s;
  }

  forget(s: GpuStorage): void {
    this.collected.unregister(s);
  }
}

export class GpuStorage implements DeviceStorage {
  readonly owner = 'webgpu';
  readonly slot: { buffer: GPUBuffer; released: boolean };

  constructor(
    private readonly pool: BufferPool,
    buffer: GPUBuffer,
    readonly bytes: number,
    private readonly reader: (buffer: GPUBuffer, bytes: number) => Promise<Float32Array>,
  ) {
    this.slot = { buffer, released: false };
  }

  get buffer(): GPUBuffer {
    if (this.slot.released) throw new PasticheError('a webgpu tensor was used after dispose()');
    return this.slot.buffer;
  }

  read(): Promise<Float32Array> {
    return this.reader(this.buffer, this.bytes);
  }

  release(): void {
    if (this.slot.released) return;
    this.slot.released = true;
    this.pool.forget(this);
    this.pool.put(this.slot.buffer);
  }
}
