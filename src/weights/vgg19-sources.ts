/**
 * VGG19 from the forms other tools save it in (torchvision, Caffe, Keras): their tensors in their
 * layouts are copied into the course's ([Cin,K,K,Cout] convolutions, [Din,Dout] fully connected with
 * Din in NHWC order), and their input conventions are folded into conv1_1, so that every Pastiche
 * model takes the same input: RGB 0..255 minus a mean pixel.
 *
 * The fold is exact algebra. A source feeds s_k = (p_k / d - m_k) / sigma_k to its first layer, k in
 * its channel order. With x_c = p_c - M_c (Pastiche's input, RGB) and M_c = d m_k(c):
 *   sum_k W_k s_k = sum_c (W_k(c) / (d sigma_k(c))) x_c,
 * so W'_c = W_k(c) / (d sigma_k(c)), k(c) = c for RGB sources and 2 - c for BGR ones. Zero padding
 * stays zero (x = 0 exactly where s = 0), so the borders agree too.
 */
import { PasticheError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { VGG19_CONV, VGG19_LAYERS, VGG19_POOL } from '../model/vgg19-table.js';
import type { InputConvention, LayerWeights, Vgg19Weights, WeightsFormat } from '../model/vgg19-params.js';
import { imagenetClasses } from './imagenet-classes.js';

/** Caffe's VGG (and Keras' 'caffe' preprocessing): BGR 0..255 minus the ImageNet mean in BGR. */
export const CAFFE_INPUT: InputConvention = { order: 'BGR', divisor: 1, mean: [103.939, 116.779, 123.68], std: [1, 1, 1] };
/** torchvision's models: RGB / 255, minus mean, divided by std. */
export const TORCHVISION_INPUT: InputConvention = { order: 'RGB', divisor: 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** A tensor in the source's layout, before copying. */
export interface SourceTensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** Layouts the sources store weights in. */
export type ConvLayout = 'OIHW' | 'HWIO';
/** fc: [out, in] with `in` flattened C,H,W (torch, Caffe), or [in, out] with `in` H,W,C (Keras). */
export type FcLayout = 'out-in/CHW' | 'in-out/HWC';

export const CONV_NAMES = VGG19_LAYERS.filter((l) => l.kind === 'conv').map((l) => l.name);
export const FC_NAMES = ['fc6', 'fc7', 'fc8'];

export interface SourceParams {
  readonly format: WeightsFormat;
  readonly layout: string;
  readonly file: string;
  readonly input: InputConvention;
  /** The 16 convolutions in order: weight and bias. */
  readonly convs: readonly { readonly name: string; readonly w: SourceTensor; readonly b: SourceTensor }[];
  readonly convLayout: ConvLayout;
  /** fc6, fc7, fc8, or none (a "notop" file: features only). */
  readonly fcs: readonly { readonly name: string; readonly w: SourceTensor; readonly b: SourceTensor }[];
  readonly fcLayout: FcLayout;
}

const bad = (file: string, problem: string): never => {
  throw new PasticheError(`${file}: ${problem}`);
};

/** Copies, checking each value is finite (a damaged or untrained file is refused by layer). */
function finiteCopy(out: Float32Array, file: string, where: string): Float32Array {
  let probe = 0;
  for (let i = 0; i < out.length; i++) probe += out[i]! * 0;
  if (probe !== 0) bad(file, `${where} holds a non-finite value: the file is damaged or was not trained`);
  return out;
}

function convToCourse(t: SourceTensor, layout: ConvLayout, file: string, name: string): Tensor {
  const s = t.shape;
  if (s.length !== 4) bad(file, `${name}'s weight has shape [${s.join(', ')}], not a 4-d convolution`);
  const [cout, cin, kh, kw] = layout === 'OIHW' ? s : [s[3]!, s[2]!, s[0]!, s[1]!];
  if (kh !== VGG19_CONV.kernel || kw !== VGG19_CONV.kernel) bad(file, `${name} is ${kh}x${kw}; VGG19's convolutions are 3x3`);
  const k = kh!;
  const out = new Float32Array(cin! * k * k * cout!);
  for (let co = 0; co < cout!; co++)
    for (let ci = 0; ci < cin!; ci++)
      for (let y = 0; y < k; y++)
        for (let x = 0; x < k; x++) {
          const src = layout === 'OIHW' ? ((co * cin! + ci) * k + y) * k + x : ((y * k + x) * cin! + ci) * cout! + co;
          out[((ci * k + y) * k + x) * cout! + co] = t.data[src]!;
        }
  return new Tensor([cin!, k, k, cout!], finiteCopy(out, file, `${name}'s weight`));
}

/** To [Din, Dout] with Din in NHWC order; `map` is fc6's input (C, H, W), undefined for fc7 and fc8. */
function fcToCourse(t: SourceTensor, layout: FcLayout, map: readonly [number, number, number] | undefined, file: string, name: string): Tensor {
  if (t.shape.length !== 2) bad(file, `${name}'s weight has shape [${t.shape.join(', ')}], not a matrix`);
  const [dout, din] = layout === 'out-in/CHW' ? t.shape : [t.shape[1]!, t.shape[0]!];
  const out = new Float32Array(din! * dout!);
  if (layout === 'in-out/HWC') {
    out.set(t.data as ArrayLike<number>);
  } else {
    const [c, h, w] = map ?? [din!, 1, 1];
    if (c * h * w !== din) bad(file, `${name} takes ${din} inputs where the features give ${c}x${h}x${w}`);
    for (let o = 0; o < dout!; o++)
      for (let ci = 0; ci < c; ci++)
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) out[((y * w + x) * c + ci) * dout! + o] = t.data[o * din! + (ci * h + y) * w + x]!;
  }
  return new Tensor([din!, dout!], finiteCopy(out, file, `${name}'s weight`));
}

function bias(t: SourceTensor, n: number, file: string, name: string): Tensor {
  if (t.data.length !== n) bad(file, `${name} has ${t.data.length} biases for ${n} outputs`);
  return new Tensor([n], finiteCopy(Float32Array.from(t.data), file, `${name}'s bias`));
}

/** conv1_1 rewritten to take RGB 0..255 minus the mean pixel (see the top of this file). */
export function foldInput(w: Tensor, input: InputConvention): { w: Tensor; meanPixel: [number, number, number] } {
  const [cin, k, , cout] = w.shape as [number, number, number, number];
  if (cin !== 3) throw new PasticheError(`conv1_1 takes ${cin} channels, not 3`);
  const plane = k * k * cout;
  const out = new Float32Array(w.size);
  const meanPixel = [0, 0, 0] as [number, number, number];
  for (let c = 0; c < 3; c++) {
    const src = input.order === 'RGB' ? c : 2 - c;
    const scale = 1 / (input.divisor * input.std[src]!);
    for (let i = 0; i < plane; i++) out[c * plane + i] = w.data[src * plane + i]! * scale;
    meanPixel[c] = input.divisor * input.mean[src]!;
  }
  return { w: new Tensor(w.shape, out), meanPixel };
}

/** The model's parameters from a source's tensors; every shape checked against VGG19's chain. */
export function assembleVgg19(p: SourceParams): Vgg19Weights {
  if (p.convs.length !== CONV_NAMES.length) bad(p.file, `has ${p.convs.length} convolutions where VGG19 has ${CONV_NAMES.length}: not the VGG19 network`);
  if (p.fcs.length !== 0 && p.fcs.length !== 3) bad(p.file, `has ${p.fcs.length} fully connected layers; VGG19 has 3 (or none in a features-only file)`);
  const layers = new Map<string, LayerWeights>();
  let channels = 3;
  let meanPixel: [number, number, number] = [0, 0, 0];
  p.convs.forEach((c, i) => {
    const name = CONV_NAMES[i]!;
    let w = convToCourse(c.w, p.convLayout, p.file, c.name);
    if (w.shape[0] !== channels) bad(p.file, `${c.name} takes ${w.shape[0]} channels but receives ${channels}`);
    if (i === 0) ({ w, meanPixel } = foldInput(w, p.input));
    channels = w.shape[3]!;
    layers.set(name, { kind: 'conv', w, b: bias(c.b, channels, p.file, c.name), pad: VGG19_CONV.pad, stride: VGG19_CONV.stride });
  });
  for (const spec of VGG19_LAYERS) if (spec.kind === 'pool') layers.set(spec.name, { kind: 'pool', method: 'max', ...VGG19_POOL });
  let map: readonly [number, number, number] | undefined = [channels, 7, 7];
  p.fcs.forEach((f, i) => {
    const w = fcToCourse(f.w, p.fcLayout, map, p.file, f.name);
    if (i === 0 && w.shape[0] !== channels * 49) bad(p.file, `${f.name} takes ${w.shape[0]} inputs where pool5 gives ${channels}x7x7`);
    map = undefined;
    layers.set(FC_NAMES[i]!, { kind: 'fc', w, b: bias(f.b, w.shape[1]!, p.file, f.name) });
  });
  if (p.fcs.length === 3 && layers.get('fc8')!.kind === 'fc' && (layers.get('fc8') as { w: Tensor }).w.shape[1] !== 1000) {
    bad(p.file, 'fc8 does not have the 1000 ImageNet classes');
  }
  return { layers, meanPixel, classes: imagenetClasses(), source: p.file, format: p.format, layout: p.layout, input: p.input, hasClassifier: p.fcs.length === 3 };
}
