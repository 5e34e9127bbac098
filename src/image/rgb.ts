/**
 * 8-bit RGB images and the course's input tensor, both ways, and the pixel arithmetic of style
 * transfer: shared by Node (sharp decodes and encodes) and the browser (a canvas does).
 */
import { PasticheError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';

export interface RgbImage {
  readonly width: number;
  readonly height: number;
  /** Interleaved RGB, row-major (HWC). */
  readonly data: Uint8Array;
}

/** RGB uint8 HWC -> [1, 3, H, W] float32 minus the mean pixel (no scaling to [0, 1], as the course). */
export function rgbToTensor(img: RgbImage, mean: readonly [number, number, number]): Tensor {
  const { width: w, height: h, data } = img;
  const t = new Tensor([1, 3, h, w]);
  const plane = w * h;
  for (let i = 0; i < plane; i++) {
    t.data[i] = data[3 * i]! - mean[0];
    t.data[plane + i] = data[3 * i + 1]! - mean[1];
    t.data[2 * plane + i] = data[3 * i + 2]! - mean[2];
  }
  return t;
}

/** Adds the mean pixel back and clips to 0..255 (the course's de-meaning). */
export function tensorToRgb(x: Tensor, mean: readonly [number, number, number]): RgbImage {
  const [, c, h, w] = x.shape as [number, number, number, number];
  if (x.rank !== 4 || c !== 3) throw new PasticheError(`expected an image tensor [1, 3, H, W], got [${x.shape.join(', ')}]`);
  const plane = h * w;
  const out = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) out[3 * i + ch] = Math.max(0, Math.min(255, Math.round(x.data[ch * plane + i]! + mean[ch]!)));
  }
  return { width: w, height: h, data: out };
}

/** Bilinear resize of an NCHW float tensor (half-pixel centres, as align_corners=False). */
export function resizeTensorBilinear(x: Tensor, height: number, width: number): Tensor {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const out = new Tensor([n, c, height, width]);
  const sy = h / height;
  const sx = w / width;
  for (let p = 0; p < n * c; p++) {
    const src = x.data.subarray(p * h * w, (p + 1) * h * w);
    const dst = out.data.subarray(p * height * width, (p + 1) * height * width);
    for (let i = 0; i < height; i++) {
      const fy = Math.min(Math.max((i + 0.5) * sy - 0.5, 0), h - 1);
      const y0 = Math.floor(fy);
      const y1 = Math.min(y0 + 1, h - 1);
      const ay = fy - y0;
      for (let j = 0; j < width; j++) {
        const fx = Math.min(Math.max((j + 0.5) * sx - 0.5, 0), w - 1);
        const x0 = Math.floor(fx);
        const x1 = Math.min(x0 + 1, w - 1);
        const ax = fx - x0;
        const top = src[y0 * w + x0]! * (1 - ax) + src[y0 * w + x1]! * ax;
        const bottom = src[y1 * w + x0]! * (1 - ax) + src[y1 * w + x1]! * ax;
        dst[i * width + j] = top * (1 - ay) + bottom * ay;
      }
    }
  }
  return out;
}

/**
 * Keeps the luminance of `styled` and the colour (chroma) of `content`, both RGB in 0..255 of the
 * same size, through YIQ (Gatys et al., "Preserving Color in Neural Artistic Style Transfer").
 */
export function keepOriginalColors(styled: RgbImage, content: RgbImage): RgbImage {
  const out = new Uint8Array(styled.data.length);
  for (let i = 0; i < out.length; i += 3) {
    const [r, g, b] = [styled.data[i]!, styled.data[i + 1]!, styled.data[i + 2]!];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    const [cr, cg, cb] = [content.data[i]!, content.data[i + 1]!, content.data[i + 2]!];
    const iq = 0.596 * cr - 0.274 * cg - 0.322 * cb;
    const q = 0.211 * cr - 0.523 * cg + 0.312 * cb;
    const clip = (v: number) => Math.max(0, Math.min(255, Math.round(v)));
    out[i] = clip(y + 0.956 * iq + 0.621 * q);
    out[i + 1] = clip(y - 0.272 * iq - 0.647 * q);
    out[i + 2] = clip(y - 1.106 * iq + 1.703 * q);
  }
  return { width: styled.width, height: styled.height, data: out };
}
