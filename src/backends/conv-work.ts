/**
 * What a convolution costs as an algorithm executes it, for rooflines (`bench --sections layers`):
 * the floating-point operations it really performs and an estimate of the bytes it moves to and
 * from memory (each array read or written once; intermediate matrices that do not fit in cache
 * counted as a write and a read). Direct counts 2 x multiply-adds; im2col adds its column matrix;
 * Winograd F(m x m, 3 x 3) (Lavin & Gray 2016) multiplies (m+2)^2 transformed values per tile, input
 * and output channel: those products (its GEMM stage) are what is counted. Its input and output
 * transforms are a few additions per value, memory-bound; they are not counted as operations but
 * their traffic is: the transformed tiles V and the products M go through memory (the kernel's
 * transform is computed once per weight array).
 */
import type { Conv2dParams, ConvPass, ConvWork } from './backend.js';
import { convGeometry } from './shapes.js';
import type { Shape } from '../tensor/tensor.js';


/** direct: loops over the input in place; implicit GEMM: a GEMM that gathers its columns as it goes. */
/** winograd `c16`: the channel-blocked form (16 channels a vector), the same work, named apart in the tables. */
export type ConvAlgorithmKind = { readonly kind: 'direct' | 'implicit GEMM' | 'im2col' } | { readonly kind: 'winograd'; readonly m: 4 | 6; readonly c16?: boolean };

export function convWork(xShape: Shape, wShape: Shape, p: Conv2dParams, a: ConvAlgorithmKind, pass: ConvPass = 'forward'): ConvWork {
  const g = convGeometry(xShape, wShape, p);
  const f = 4; // bytes per float32
  // What the pass reads and writes: backward-data reads dy (the forward's output shape) and writes dx.
  const [inC, outC, outH, outW] = pass === 'forward' ? [g.cin, g.cout, g.ho, g.wo] : [g.cout, g.cin, g.h, g.w];
  const x = g.n * g.cin * g.h * g.w;
  const y = g.n * g.cout * g.ho * g.wo;
  const weights = g.cin * g.k * g.k * g.cout + (pass === 'forward' ? g.cout : 0);
  const direct = 2 * g.n * g.cin * g.k * g.k * g.cout * g.ho * g.wo;
  if (a.kind !== 'winograd') {
    const columns = a.kind === 'im2col' ? g.n * g.cin * g.k * g.k * g.ho * g.wo : 0;
    return { algorithm: a.kind, flops: direct, bytes: f * (x + 2 * columns + weights + y) };
  }
  const t = a.m + 2; // transformed tile side
  const tiles = g.n * Math.ceil(outH / a.m) * Math.ceil(outW / a.m);
  const products = 2 * t * t * tiles * inC * outC;
  const v = t * t * tiles * inC;
  const m = t * t * tiles * outC;
  const u = t * t * inC * outC;
  return { algorithm: `winograd F(${a.m}x${a.m})${a.c16 ? ' 16c' : ''}`, flops: products, bytes: f * (x + 2 * v + u + 2 * m + y + (pass === 'forward' ? g.cout : 0)) };
}

/**
 * What y = x w + b costs, x [M, K...] (flattened to K features), w [K, N]: the `rowsRead` weight
 * rows a backend reads (all K, or fewer where it skips the rows of inputs that are zero in every
 * row of x), `weightBytes` each value, read once; x, b and y once.
 */
export function fcWork(xShape: Shape, wShape: Shape, rowsRead: number, weightBytes = 4): ConvWork {
  const m = xShape[0]!;
  const k = xShape.slice(1).reduce((a, b) => a * b, 1);
  const n = wShape[1]!;
  // The share of the rows read, where that is not all of them: 'matrix-vector, 51% rows'.
  const share = rowsRead < k ? `, ${Math.round((100 * rowsRead) / k)}% rows` : '';
  return { algorithm: `matrix-vector${share}`, flops: 2 * m * rowsRead * n, bytes: weightBytes * rowsRead * n + 4 * (n + m * k + m * n) };
}
