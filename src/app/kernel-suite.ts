/**
 * Every op of the backend interface on random inputs of many shapes (batch > 1, odd sizes, kernels
 * 1/3/5, strides 1-3, padding 0-2, pooling ties), against a reference backend: what the tests do
 * in Node, packaged so that the browser page check.html can grade a GPU where it runs.
 */
import type { Backend } from '../backends/backend.js';
import { Tensor, type Shape } from '../tensor/tensor.js';
import { fillUniform, uniformRng } from '../util/random.js';
import { compare } from '../tensor/compare.js';

export interface SuiteRow {
  readonly op: string;
  /** max |got - ref| / max |ref| */
  readonly relErr: number;
  readonly pass: boolean;
}

/** [N, Cin, H, W], kernel, Cout, pad, stride */
export const SUITE_CONV_SHAPES: readonly (readonly [Shape, number, number, number, number])[] = [
  [[1, 3, 8, 8], 3, 4, 1, 1],
  [[2, 3, 7, 9], 3, 5, 1, 1],
  [[3, 5, 11, 6], 3, 7, 0, 1],
  [[2, 4, 9, 9], 3, 6, 2, 1],
  [[2, 3, 10, 7], 3, 4, 1, 2],
  [[1, 6, 13, 11], 5, 3, 2, 2],
  [[2, 7, 5, 5], 1, 9, 0, 1],
  [[1, 2, 6, 6], 1, 3, 1, 2],
  [[4, 2, 3, 3], 3, 2, 0, 1],
  [[1, 33, 9, 10], 3, 17, 1, 1],
  [[2, 3, 4, 4], 5, 2, 2, 3],
  [[1, 70, 12, 12], 3, 66, 1, 1],
  [[2, 4, 5, 37], 3, 6, 1, 1],
  // Larger kernels, stride 1, few channels on one side: native's direct kernel (the style network's 9x9 layers).
  [[2, 3, 21, 37], 9, 5, 0, 1],
  [[1, 10, 19, 40], 9, 3, 0, 1],
  [[2, 4, 9, 11], 5, 6, 2, 1],
  [[1, 3, 12, 70], 7, 2, 3, 1],
];

/** [N, C, H, W], kernel, stride, pad */
export const SUITE_POOL_SHAPES: readonly (readonly [Shape, number, number, number])[] = [
  [[2, 3, 8, 6], 2, 2, 0], [[1, 4, 7, 9], 2, 2, 0], [[3, 2, 9, 9], 3, 2, 1], [[2, 2, 6, 5], 3, 1, 1], [[1, 1, 5, 5], 2, 1, 0],
  [[2, 3, 6, 70], 2, 2, 0], [[1, 2, 5, 67], 2, 2, 0],
];

/** [M, N, K] for matmul (every transpose) and linear (with its gradients). */
export const SUITE_GEMM_SHAPES: readonly (readonly [number, number, number])[] = [[1, 1, 1], [5, 7, 3], [17, 9, 300], [70, 33, 12], [65, 129, 17], [2, 40, 5000]];

/** Grades `be` against `ref` (the four loops) on every op; `tol` is the relative bound. */
export async function runKernelSuite(be: Backend, ref: Backend, tol = 1e-4, onRow?: (r: SuiteRow) => void): Promise<SuiteRow[]> {
  let seed = 1; // the same inputs on every run
  const random = (shape: Shape, lo = -1, hi = 1): Tensor => {
    const t = new Tensor(shape);
    fillUniform(t.data, uniformRng(seed++), lo, hi);
    return t;
  };
  const rows: SuiteRow[] = [];
  const check = async (op: string, got: Tensor, want: Tensor) => {
    await got.toHost();
    // A result of the wrong size is a failed row, not an exception that ends the page's run.
    const e = got.size === want.size ? compare(got, want).maxRelErr : Infinity;
    const row = { op, relErr: e, pass: e < tol };
    got.dispose();
    rows.push(row);
    onRow?.(row);
  };
  for (const [xs, k, cout, pad, stride] of SUITE_CONV_SHAPES) {
    const x = random(xs);
    const w = random([xs[1]!, k, k, cout]);
    const b = random([cout]);
    const p = { pad, stride };
    const what = `conv [${xs.join(',')}] k${k} c${cout} p${pad} s${stride}`;
    const y = ref.conv2d(x, w, b, p);
    await check(`${what} forward`, be.conv2d(x, w, b, p), y);
    await check(`${what} forward+relu`, be.conv2d(x, w, b, p, true), ref.conv2d(x, w, b, p, true));
    const dy = random(y.shape);
    const e = { add: random(x.shape), reluMask: random(x.shape) };
    await check(`${what} dx`, be.conv2dBackwardData(dy, w, x.shape, p), ref.conv2dBackwardData(dy, w, x.shape, p));
    await check(`${what} dx+epilogue`, be.conv2dBackwardData(dy, w, x.shape, p, e), ref.conv2dBackwardData(dy, w, x.shape, p, e));
    const g = be.conv2dBackwardParams(dy, x, k, p);
    const gr = ref.conv2dBackwardParams(dy, x, k, p);
    await check(`${what} dw`, g.dw, gr.dw);
    await check(`${what} db`, g.db, gr.db);
  }
  for (const [xs, kernel, stride, pad] of SUITE_POOL_SHAPES) {
    const x = random(xs);
    for (let j = 0; j < x.size; j += 3) x.data[j] = 0.5; // ties: the first cell wins everywhere
    const p = { kernel, stride, pad };
    const what = `pool [${xs.join(',')}] k${kernel} s${stride} p${pad}`;
    const y = ref.maxPool2d(x, p);
    await check(`${what} max`, be.maxPool2d(x, p), y);
    const dy = random(y.shape);
    await check(`${what} max backward`, be.maxPool2dBackward(dy, x, p), ref.maxPool2dBackward(dy, x, p));
    await check(`${what} max backward+relu`, be.maxPool2dBackward(dy, x, p, true), ref.reluBackward(ref.maxPool2dBackward(dy, x, p), x));
    await check(`${what} avg`, be.avgPool2d(x, p), ref.avgPool2d(x, p));
    await check(`${what} avg backward`, be.avgPool2dBackward(dy, x.shape, p), ref.avgPool2dBackward(dy, x.shape, p));
  }
  for (const [m, n, k] of SUITE_GEMM_SHAPES) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = random(ta ? [k, m] : [m, k]);
        const b = random(tb ? [n, k] : [k, n]);
        await check(`matmul ${m}x${n}x${k}${ta ? ' A^T' : ''}${tb ? ' B^T' : ''}`, be.matmul(a, b, ta, tb), ref.matmul(a, b, ta, tb));
      }
    }
    const x = random([m, k]);
    const w = random([k, n]);
    const b = random([n]);
    await check(`linear ${m}x${n}x${k}`, be.linear(x, w, b), ref.linear(x, w, b));
    const dy = random([m, n]);
    const g = be.linearBackward(dy, x, w);
    const gr = ref.linearBackward(dy, x, w);
    await check(`linear ${m}x${n}x${k} dx`, g.dx, gr.dx);
    await check(`linear ${m}x${n}x${k} dw`, g.dw, gr.dw);
    await check(`linear ${m}x${n}x${k} db`, g.db, gr.db);
  }
  const x = random([2, 5, 3, 7]);
  const dy = random(x.shape);
  await check('relu', be.relu(x), ref.relu(x));
  await check('relu backward', be.reluBackward(dy, x), ref.reluBackward(dy, x));
  await check('flatten NHWC', be.flattenNhwc(x), ref.flattenNhwc(x));
  const fd = random([2, 105]);
  await check('flatten NHWC backward', be.flattenNhwcBackward(fd, x.shape), ref.flattenNhwcBackward(fd, x.shape));
  await check('addScaled', be.addScaled(x, dy, -0.37), ref.addScaled(x, dy, -0.37));
  await check('scale', be.scale(x, 3.5), ref.scale(x, 3.5));
  const big = random([300007]);
  await check('sum of squares', be.sumOfSquares(big), ref.sumOfSquares(big));
  const logits = random([3, 1000], -20, 20);
  const labels = Int32Array.from([0, 999, 421]);
  const prob = ref.softmax(logits);
  await check('softmax', be.softmax(logits), prob);
  await check('cross-entropy', be.crossEntropy(prob, labels), ref.crossEntropy(prob, labels));
  await check('softmax cross-entropy backward', be.softmaxCrossEntropyBackward(prob, labels), ref.softmaxCrossEntropyBackward(prob, labels));
  return rows;
}
