/**
 * A whole weights file in memory: mapped by the native addon where it can be (the page cache's own
 * pages, copy-on-write: a 575 MB converted file in 20-50 ms instead of a 0.4-0.7 s read on these
 * VMs), read otherwise.
 */
import { promises as fs } from 'node:fs';
import { nativeAddon } from '../backends/native/native-addon.js';

/**
 * `lazy`: map the file without touching its pages; the reader then calls populate on the parts it
 * keeps, and the rest (VGG19's fc6-fc8 for a style transfer) never becomes the process's memory.
 */
export async function readWholeFile(file: string, lazy = false): Promise<Uint8Array> {
  const mapped = nativeAddon?.mapFile(file, !lazy);
  return mapped ? new Uint8Array(mapped) : fs.readFile(file);
}

/** Maps the pages under `view` now, where it is a lazily mapped file's (else nothing to do). */
export function populate(view: ArrayBufferView): void {
  nativeAddon?.populatePages(view);
}
