/**
 * Turns MatConvNet's imagenet-vgg-verydeep-19.mat into Vgg19Weights. Both published layouts:
 * - old (models/beta16, the course's): variables `layers`, `classes`, `normalization`;
 * - new (models/): variables `layers`, `meta` (meta.classes, meta.normalization), saved by MATLAB.
 * Conv weights W are [H, W, Cin, Cout] in MATLAB's column-major order; they are transposed to the
 * course's [Cin, K, K, Cout]. fc6..fc8 are stored as convolutions and become [Din, Dout] matrices
 * with Din in NHWC order (the course's FlattenLayer).
 */
import { fileError, PasticheError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import type { MatValue } from './mat/mat-types.js';
import type { LayerWeights, Vgg19Weights } from '../model/vgg19-params.js';

/** Thrown while interpreting; the caller adds the file name. */
class LayoutError extends Error {}

function bad(problem: string): never {
  throw new LayoutError(problem);
}

function field(v: MatValue | undefined, name: string, where: string): MatValue {
  if (!v || v.kind !== 'struct' || v.elements.length < 1) bad(`${where} is not a struct`);
  const f = v.elements[0]![name];
  if (!f) bad(`${where} has no field '${name}'`);
  return f;
}

function optionalField(v: MatValue, name: string): MatValue | undefined {
  return v.kind === 'struct' ? v.elements[0]?.[name] : undefined;
}

function text(v: MatValue, where: string): string {
  if (v.kind !== 'char') bad(`${where} is not text`);
  return v.text;
}

function numbers(v: MatValue, where: string): number[] {
  if (v.kind !== 'numeric') bad(`${where} is not numeric`);
  return Array.from(v.data as ArrayLike<number | bigint>, (x) => Number(x));
}

/** A MatConvNet size parameter given as a scalar or per side; Pastiche needs it symmetric. */
function symmetric(v: MatValue | undefined, fallback: number, where: string): number {
  if (!v) return fallback;
  const xs = numbers(v, where);
  if (xs.length === 0) return fallback;
  if (xs.some((x) => x !== xs[0] || !Number.isInteger(x) || x < 0)) bad(`${where} is [${xs.join(' ')}]; only equal whole values on every side are supported`);
  return xs[0]!;
}

interface FloatArray {
  dims: number[];
  data: ArrayLike<number>;
}

function floatArray(v: MatValue | undefined, where: string): FloatArray {
  if (!v || v.kind !== 'numeric' || (v.class !== 'single' && v.class !== 'double')) bad(`${where} is not a single or double array`);
  return { dims: v.dims, data: v.data as ArrayLike<number> };
}

/** The layer's W and b: `weights` = {W, b} (MatConvNet beta), or `filters`/`biases` (older files). */
function convParams(layer: MatValue, name: string): { W: FloatArray; b: FloatArray } {
  const weights = optionalField(layer, 'weights');
  if (weights && weights.kind === 'cell' && weights.items.length >= 2) {
    return { W: floatArray(weights.items[0], `${name}.weights{1}`), b: floatArray(weights.items[1], `${name}.weights{2}`) };
  }
  const filters = optionalField(layer, 'filters');
  const biases = optionalField(layer, 'biases');
  if (filters && biases) return { W: floatArray(filters, `${name}.filters`), b: floatArray(biases, `${name}.biases`) };
  bad(`layer ${name} has no weights`);
}

/**
 * NaN or infinite parameters would flow through every layer into a NaN or meaningless result:
 * refused by name. The copies below already touch every value, so they sum v * 0 as they go (0 for
 * finite v, NaN otherwise): one multiply-add per value instead of a branch.
 */
function requireFinite(nonFinite: number, where: string, values: ArrayLike<number>): void {
  if (nonFinite === 0) return;
  let i = 0;
  while (i < values.length && Number.isFinite(Math.fround(values[i]!))) i++;
  bad(`${where} holds a non-finite value (${values[i]} at index ${i}): the file is damaged or was not trained`);
}

/** [K,K,Cin,Cout] column-major -> [Cin,K,K,Cout] row-major (the course's layout). */
function convWeightsToCourse(W: FloatArray, k: number, cin: number, cout: number, where: string): Tensor {
  const out = new Float32Array(k * k * cin * cout);
  let i = 0;
  let nonFinite = 0;
  for (let co = 0; co < cout; co++)
    for (let ci = 0; ci < cin; ci++)
      for (let kw = 0; kw < k; kw++)
        for (let kh = 0; kh < k; kh++) {
          const j = ((ci * k + kh) * k + kw) * cout + co;
          out[j] = W.data[i++]!;
          nonFinite += out[j]! * 0; // read back: a double may overflow float32
        }
  requireFinite(nonFinite, where, W.data);
  return new Tensor([cin, k, k, cout], out);
}

/** [K,K,Cin,Cout] column-major -> [K*K*Cin, Cout] with rows in NHWC order (the course's fc layout). */
function fcWeightsToCourse(W: FloatArray, k: number, cin: number, cout: number, where: string): Tensor {
  const out = new Float32Array(k * k * cin * cout);
  let i = 0;
  let nonFinite = 0;
  for (let co = 0; co < cout; co++)
    for (let ci = 0; ci < cin; ci++)
      for (let kw = 0; kw < k; kw++)
        for (let kh = 0; kh < k; kh++) {
          const j = ((kh * k + kw) * cin + ci) * cout + co;
          out[j] = W.data[i++]!;
          nonFinite += out[j]! * 0; // read back: a double may overflow float32
        }
  requireFinite(nonFinite, where, W.data);
  return new Tensor([k * k * cin, cout], out);
}

function interpretLayers(layersVar: MatValue | undefined): Map<string, LayerWeights> {
  if (!layersVar || layersVar.kind !== 'cell') bad("has no 'layers' cell array: not a MatConvNet model");
  const expected = VGG19_LAYERS.filter((l) => l.kind !== 'flatten');
  if (layersVar.items.length !== expected.length) {
    bad(`has ${layersVar.items.length} layers where VGG19 has ${expected.length}: not the VGG19 network`);
  }
  const out = new Map<string, LayerWeights>();
  let channels = 3;
  let spatial = 224;
  let features = 0; // fc input size once flattened
  expected.forEach((spec, i) => {
    const layer = layersVar.items[i]!;
    const where = `layer ${i + 1}`;
    const name = text(field(layer, 'name', where), `${where}.name`);
    const type = text(field(layer, 'type', where), `${where}.type`);
    if (name !== spec.name) bad(`${where} is named '${name}' where VGG19 has '${spec.name}': not the VGG19 network`);
    const wantType = spec.kind === 'fc' ? 'conv' : spec.kind;
    if (type !== wantType) bad(`layer ${name} has type '${type}' where VGG19 has '${wantType}'`);
    if (spec.kind === 'conv' || spec.kind === 'fc') {
      const { W, b } = convParams(layer, name);
      const [kh, kw, cin, cout] = [...W.dims, 1, 1, 1, 1] as [number, number, number, number];
      if (W.dims.length > 4 || kh !== kw) bad(`layer ${name}: weights of size [${W.dims.join(' ')}] are not square filters`);
      if (b.data.length !== cout) bad(`layer ${name}: ${b.data.length} biases for ${cout} filters`);
      const pad = symmetric(optionalField(layer, 'pad'), 0, `${name}.pad`);
      const stride = symmetric(optionalField(layer, 'stride'), 1, `${name}.stride`);
      const bias = new Tensor([cout], Float32Array.from(b.data));
      requireFinite(bias.data.reduce((a, v) => a + v * 0, 0), `layer ${name}: the biases`, bias.data);
      if (spec.kind === 'conv') {
        if (cin !== channels) bad(`layer ${name} expects ${cin} input channels but receives ${channels}`);
        if (kh !== 3 || pad !== 1 || stride !== 1) bad(`layer ${name} is ${kh}x${kh} pad ${pad} stride ${stride}, VGG19's are 3x3 pad 1 stride 1`);
        out.set(name, { kind: 'conv', w: convWeightsToCourse(W, kh, cin, cout, `layer ${name}: the weights`), b: bias, pad, stride });
        channels = cout;
      } else {
        // fc6 covers the whole 7x7 map; fc7, fc8 are 1x1.
        const inSize = features === 0 ? spatial : 1;
        const inChannels = features === 0 ? channels : features;
        if (kh !== inSize || cin !== inChannels || pad !== 0) {
          bad(`layer ${name} has filters [${W.dims.join(' ')}] pad ${pad}; expected ${inSize}x${inSize}x${inChannels} filters, pad 0`);
        }
        out.set(name, { kind: 'fc', w: fcWeightsToCourse(W, kh, cin, cout, `layer ${name}: the weights`), b: bias });
        features = cout;
      }
    } else if (spec.kind === 'pool') {
      const method = text(field(layer, 'method', name), `${name}.method`);
      if (method !== 'max') bad(`layer ${name} uses '${method}' pooling; VGG19 uses max`);
      const kernel = symmetric(field(layer, 'pool', name), 2, `${name}.pool`);
      const stride = symmetric(optionalField(layer, 'stride'), 1, `${name}.stride`);
      const pad = symmetric(optionalField(layer, 'pad'), 0, `${name}.pad`);
      out.set(name, { kind: 'pool', method: 'max', kernel, stride, pad });
      spatial = Math.floor((spatial + 2 * pad - kernel) / stride) + 1;
    }
  });
  return out;
}

/** Per-channel mean of averageImage: [H,W,3] (old) or [1,1,3] (new), column-major. */
function meanPixel(avg: MatValue): [number, number, number] {
  const a = floatArray(avg, 'averageImage');
  if (a.data.length === 0 || a.data.length % 3 !== 0) bad(`averageImage has ${a.data.length} values, not a multiple of 3`);
  const n = a.data.length / 3;
  const mean = [0, 0, 0] as [number, number, number];
  for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += a.data[c * n + i]!;
    mean[c] = s / n;
  }
  if (!mean.every(Number.isFinite)) bad('normalization.averageImage holds a non-finite value');
  return mean;
}

function descriptions(classes: MatValue): string[] {
  const d = field(classes, 'description', 'classes');
  if (d.kind === 'cell') return d.items.map((it, i) => text(it, `classes.description{${i + 1}}`));
  if (d.kind === 'char') return d.text.split('\n').map((s) => s.trimEnd());
  bad('classes.description is neither a cell array nor a char matrix');
}

/** The top-level variables of either layout that the model needs (the others are not read). */
export const VGG19_MAT_VARIABLES: ReadonlySet<string> = new Set(['layers', 'meta', 'classes', 'normalization']);

/**
 * The most each of those variables can need: `layers` holds VGG19's 143,667,240 parameters (as
 * doubles at most) plus the layers' small fields; the others hold 1000 class names and a mean
 * image (224x224x3 doubles in the old layout). A file claiming more is refused before inflating it.
 */
export const VGG19_MAT_LIMITS: ReadonlyMap<string, number> = new Map([
  ['layers', 8 * 143_667_240 + 2 ** 26],
  ['meta', 2 ** 26],
  ['classes', 2 ** 26],
  ['normalization', 2 ** 26],
]);

/**
 * Interprets the variables of a MatConvNet VGG19 file (either layout), read by readMatFile in Node
 * or readMatBlob in a browser. Errors are one-line PasticheErrors naming the file.
 */
export function vgg19FromMat(variables: ReadonlyMap<string, MatValue>, file: string): Vgg19Weights {
  try {
    const layers = interpretLayers(variables.get('layers'));
    const meta = variables.get('meta');
    let classesVar: MatValue;
    let normVar: MatValue;
    let layout: 'old' | 'new';
    if (meta) {
      layout = 'new';
      classesVar = field(meta, 'classes', 'meta');
      normVar = field(meta, 'normalization', 'meta');
    } else {
      layout = 'old';
      const c = variables.get('classes');
      const n = variables.get('normalization');
      if (!c || !n) bad("has neither 'meta' nor 'classes' and 'normalization': not a MatConvNet model");
      classesVar = c;
      normVar = n;
    }
    const classes = descriptions(classesVar);
    const fc8 = layers.get('fc8');
    const outputs = fc8?.kind === 'fc' ? fc8.w.shape[1]! : 0;
    if (classes.length !== outputs) bad(`lists ${classes.length} classes but fc8 has ${outputs} outputs`);
    const mean = meanPixel(field(normVar, 'averageImage', 'normalization'));
    const input = { order: 'RGB', divisor: 1, mean, std: [1, 1, 1] } as const;
    return { layers, meanPixel: mean, classes, source: file, format: 'matconvnet', layout, input, hasClassifier: true };
  } catch (e) {
    if (e instanceof LayoutError) throw fileError(file, e.message);
    if (e instanceof PasticheError) throw fileError(file, e.message);
    throw e;
  }
}

