/**
 * im2col / col2im for one image over a range of output positions: convolution becomes a matrix
 * product. Column matrix layout: row r = (ci*K + kh)*K + kw matches the [Cin,K,K,Cout] weight rows,
 * column j = output position p0 + j (row-major oh*Wo + ow).
 */
import type { ConvGeometry } from '../shapes.js';

export interface ColumnRange {
  /** First output position (oh*Wo + ow). */
  p0: number;
  /** Number of output positions. */
  len: number;
}

export function im2col(
  x: Float32Array,
  xOffset: number,
  g: ConvGeometry,
  pad: number,
  stride: number,
  range: ColumnRange,
  cols: Float32Array,
): void {
  const { cin, h, w, k, wo } = g;
  const { p0, len } = range;
  let r = 0;
  for (let ci = 0; ci < cin; ci++) {
    const plane = xOffset + ci * h * w;
    for (let kh = 0; kh < k; kh++) {
      for (let kw = 0; kw < k; kw++, r++) {
        const row = r * len;
        let oh = Math.floor(p0 / wo);
        let ow = p0 - oh * wo;
        for (let j = 0; j < len; j++) {
          const ih = oh * stride + kh - pad;
          const iw = ow * stride + kw - pad;
          cols[row + j] = ih >= 0 && ih < h && iw >= 0 && iw < w ? x[plane + ih * w + iw]! : 0;
          if (++ow === wo) {
            ow = 0;
            oh++;
          }
        }
      }
    }
  }
}

/** The adjoint of im2col: adds every column entry back to the input cell it was copied from. */
export function col2imAdd(
  cols: Float32Array,
  g: ConvGeometry,
  pad: number,
  stride: number,
  range: ColumnRange,
  dx: Float32Array,
  dxOffset: number,
): void {
  const { cin, h, w, k, wo } = g;
  const { p0, len } = range;
  let r = 0;
  for (let ci = 0; ci < cin; ci++) {
    const plane = dxOffset + ci * h * w;
    for (let kh = 0; kh < k; kh++) {
      for (let kw = 0; kw < k; kw++, r++) {
        const row = r * len;
        let oh = Math.floor(p0 / wo);
        let ow = p0 - oh * wo;
        for (let j = 0; j < len; j++) {
          const ih = oh * stride + kh - pad;
          const iw = ow * stride + kw - pad;
          if (ih >= 0 && ih < h && iw >= 0 && iw < w) dx[plane + ih * w + iw] += cols[row + j]!;
          if (++ow === wo) {
            ow = 0;
            oh++;
          }
        }
      }
    }
  }
}
