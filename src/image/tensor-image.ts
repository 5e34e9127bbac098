/** Encoding and writing images (sharp): the Node side of image output. */
import * as path from 'node:path';
import { PasticheError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import type { RgbImage } from './rgb.js';
import { loadSharp } from './sharp.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'];

/** Encodes PNG or JPEG by the file's extension and writes it atomically. */
export async function writeRgb(file: string, img: RgbImage): Promise<void> {
  const ext = path.extname(file).toLowerCase();
  if (!IMAGE_EXTENSIONS.includes(ext)) throw new PasticheError(`${file}: the output must end in .png, .jpg or .jpeg`);
  await writeFileAtomic(file, await encodeRgb(img, ext === '.png' ? 'png' : 'jpeg'));
}

/** PNG or JPEG (quality 95) bytes of an RGB image. */
export async function encodeRgb(img: RgbImage, format: 'png' | 'jpeg'): Promise<Buffer> {
  const sharp = await loadSharp();
  const s = sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), { raw: { width: img.width, height: img.height, channels: 3 } });
  return (format === 'png' ? s.png() : s.jpeg({ quality: 95 })).toBuffer();
}

/**
 * PNG bytes of an SVG picture, drawn at `scale` times its size (librsvg, through sharp). Its text
 * should be paths (image/pixel-font.ts): librsvg draws `<text>` with the machine's fonts.
 */
export async function svgToPng(svg: string, scale = 2): Promise<Buffer> {
  const sharp = await loadSharp();
  return sharp(Buffer.from(svg), { density: 72 * scale }).png().toBuffer();
}
