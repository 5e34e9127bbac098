/**
 * Recycled host arrays for the CPU backends' outputs. A fresh `new Float32Array(n)` is zeroed by
 * the allocator, and its memory comes back only when the garbage collector gets to the old one;
 * in a plain Node process it is even mapped fresh and page-faulted in. Measured here, allocating
 * and writing VGG19's 65 MB of 224x224 activations: 23 ms in plain Node, 7 ms (4-30) with the
 * addon's malloc settings, 3 ms from this pool; a whole forward pass went from 89 to 77 ms. The
 * model gives its intermediate tensors back when the next pass replaces them (Tensor.recycle), and
 * the next pass takes the same sizes again from here.
 *
 * Arrays handed out are NOT cleared: only kernels that write every element of their output take
 * them (see Tensor.uninitialized).
 */

/** At most this many bytes wait here; beyond it, returned arrays are left to the garbage collector. */
const MAX_POOLED_BYTES = 2 * 1024 ** 3;

/** Arrays from this many floats up (4 MiB: two huge pages) go through the large-array hook, where one is set. */
export const LARGE_ARRAY_FLOATS = 1 << 20;

const free = new Map<number, Float32Array[]>();
let pooledBytes = 0;
let poison = false;
let largeArrayHook: ((length: number) => Float32Array) | undefined;

/**
 * Sets how each fresh large array (zeroed, `length` floats) is made: the native addon's are on huge
 * pages and 64-byte aligned (it sets this when it loads; its largeHostArray says why).
 */
export function setLargeArrayHook(hook: ((length: number) => Float32Array) | undefined): void {
  largeArrayHook = hook;
}

/** A fresh zeroed array, from the large-array hook from LARGE_ARRAY_FLOATS floats up. */
export function newHostArray(length: number): Float32Array {
  return length >= LARGE_ARRAY_FLOATS && largeArrayHook ? largeArrayHook(length) : new Float32Array(length);
}

/** An array of `length` floats with unspecified contents (NaN when poisoning is on). */
export function takeHostArray(length: number): Float32Array {
  const a = free.get(length)?.pop();
  if (!a) return poison ? newHostArray(length).fill(Number.NaN) : newHostArray(length);
  pooledBytes -= a.byteLength;
  if (poison) a.fill(Number.NaN);
  return a;
}

/** Gives an array back; the caller must hold no other reference to it that it will use. */
export function giveHostArray(a: Float32Array): void {
  if (pooledBytes + a.byteLength > MAX_POOLED_BYTES) return;
  let list = free.get(a.length);
  if (!list) free.set(a.length, (list = []));
  list.push(a);
  pooledBytes += a.byteLength;
}

/** Drops every pooled array (their memory goes back at the next garbage collection). */
export function clearHostPool(): void {
  free.clear();
  pooledBytes = 0;
}

/** Bytes waiting in the pool. */
export function hostPoolBytes(): number {
  return pooledBytes;
}

/**
 * Tests turn this on so that a kernel which reads its output before writing all of it (relying on
 * zeros) fails visibly: every array handed out is filled with NaN.
 */
export function setHostPoolPoison(on: boolean): void {
  poison = on;
}
