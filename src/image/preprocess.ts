/**
 * Image input as the course prepares it: decode (JPEG, PNG, WebP, ... via sharp/libvips), apply the
 * EXIF orientation, convert to 8-bit RGB, resize bilinearly as Pillow does, subtract the mean pixel,
 * NCHW float32.
 */
import { fileError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkReadableFile } from '../util/file-checks.js';
import { resizeBilinearPil } from './pil-resize.js';
import { rgbToTensor, type RgbImage } from './rgb.js';
import { loadSharp } from './sharp.js';

/** Images larger than this many pixels are refused before decoding (about 16k x 16k). */
export const MAX_INPUT_PIXELS = 268_402_689;

export type { RgbImage } from './rgb.js';
export { rgbToTensor };

/**
 * Decodes `file` to RGB, optionally resized by libvips to exactly width x height with its bilinear
 * kernel (fast; within about 0.2 grey levels of Pillow's, see pil-resize.ts for the exact one).
 */
export async function readRgb(file: string, size?: { width: number; height: number }): Promise<RgbImage> {
  checkReadableFile(file);
  const sharp = await loadSharp();
  try {
    let img = sharp(file, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' }).rotate().toColourspace('srgb').removeAlpha();
    if (size) img = img.resize(size.width, size.height, { fit: 'fill', kernel: 'linear' });
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw fileError(file, `decoded to ${info.channels} channels, expected RGB`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    if (e instanceof Error && e.name === 'PasticheError') throw e;
    throw fileError(file, `cannot decode image: ${decoderReason((e as Error).message ?? String(e))}`);
  }
}

/**
 * libvips' message in words a person can act on: its first line, without the "Input file"
 * prefix, the loader's name, a trailing colon where libvips had no detail, or "Unknown error".
 */
export function decoderReason(message: string): string {
  const first = message.split('\n').find((l) => l.trim() !== '') ?? '';
  const msg = first
    .replace(/^Input (file|buffer) /, '')
    .replace(/\b([Vv]ips\w+|\w+load(_\w+)?): /g, '')
    .replace(/[\s:]+$/, '')
    .trim();
  if (msg === '' || /^unknown error$/i.test(msg)) return 'not a readable image (corrupt, truncated or an unsupported format)';
  if (msg === 'has corrupt header') return 'corrupt or truncated header';
  if (msg === 'contains unsupported image format') return 'not a supported image format (JPEG, PNG, WebP, GIF, TIFF, ...)';
  return msg.replace(/^has corrupt header: (.*)$/, 'corrupt header ($1)');
}

/** The classifier's input: `size` x `size` (Pillow-exact bilinear), mean-subtracted, NCHW. */
export async function loadClassifierInput(file: string, mean: readonly [number, number, number], size = 224): Promise<Tensor> {
  return rgbToTensor(resizeBilinearPil(await readRgb(file), size, size), mean);
}
