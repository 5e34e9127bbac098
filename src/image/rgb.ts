/** 8-bit RGB images and the course's input tensor: shared by Node (sharp) and the browser (canvas). */
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
