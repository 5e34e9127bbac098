/**
 * The peer in `pastiche bench --peers`: the same VGG19, with the same weights, as an ONNX model run
 * by onnxruntime-node on the CPU. The model is written here with onnx-proto (no Python involved).
 * onnxruntime-node is a development dependency: the engine itself never needs it.
 */
import onnxProto from 'onnx-proto';
import { windowOutput } from '../backends/shapes.js';
import { PasticheError } from '../errors.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Vgg19Weights } from '../weights/vgg19-weights.js';
import { randomImage, type Runner } from './bench.js';

const { onnx } = onnxProto;

function initializer(name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function ints(name: string, values: number[]): onnxProto.onnx.IAttributeProto {
  return { name, ints: values, type: onnx.AttributeProto.AttributeType.INTS };
}

/** [Cin, K, K, Cout] (ours) -> [Cout, Cin, K, K] (ONNX). */
function toOihw(w: Tensor): Float32Array {
  const [cin, k, , cout] = w.shape as [number, number, number, number];
  const out = new Float32Array(w.size);
  for (let ci = 0; ci < cin; ci++)
    for (let kh = 0; kh < k; kh++)
      for (let kw = 0; kw < k; kw++)
        for (let co = 0; co < cout; co++) out[((co * cin + ci) * k + kh) * k + kw] = w.data[((ci * k + kh) * k + kw) * cout + co]!;
  return out;
}

/** Serialises VGG19 from the input up to `until` (inclusive) as an ONNX model (opset 13). */
export function vgg19Onnx(weights: Vgg19Weights, size: number, until: string): Uint8Array {
  const nodes: onnxProto.onnx.INodeProto[] = [];
  const inits: onnxProto.onnx.ITensorProto[] = [];
  let prev = 'input';
  let shapeOut: number[] = [1, 3, size, size];
  for (const spec of VGG19_LAYERS) {
    const out = spec.name;
    const p = weights.layers.get(spec.name);
    if (spec.kind === 'conv' && p?.kind === 'conv') {
      const [cin, k, , cout] = p.w.shape as [number, number, number, number];
      inits.push(initializer(`${out}_W`, [cout, cin, k, k], toOihw(p.w)), initializer(`${out}_b`, [cout], p.b.data));
      nodes.push({ opType: 'Conv', input: [prev, `${out}_W`, `${out}_b`], output: [out], attribute: [ints('kernel_shape', [k, k]), ints('pads', [p.pad, p.pad, p.pad, p.pad]), ints('strides', [p.stride, p.stride])] });
      shapeOut = [1, cout, windowOutput(shapeOut[2]!, k, p.pad, p.stride), windowOutput(shapeOut[3]!, k, p.pad, p.stride)];
    } else if (spec.kind === 'relu') {
      nodes.push({ opType: 'Relu', input: [prev], output: [out] });
    } else if (spec.kind === 'pool' && p?.kind === 'pool') {
      nodes.push({ opType: 'MaxPool', input: [prev], output: [out], attribute: [ints('kernel_shape', [p.kernel, p.kernel]), ints('strides', [p.stride, p.stride]), ints('pads', [p.pad, p.pad, p.pad, p.pad])] });
      shapeOut = [1, shapeOut[1]!, windowOutput(shapeOut[2]!, p.kernel, p.pad, p.stride), windowOutput(shapeOut[3]!, p.kernel, p.pad, p.stride)];
    } else if (spec.kind === 'flatten') {
      // NCHW -> NHWC, then flatten: the order MatConvNet's fc6 weights expect.
      nodes.push({ opType: 'Transpose', input: [prev], output: [`${out}_nhwc`], attribute: [ints('perm', [0, 2, 3, 1])] });
      nodes.push({ opType: 'Flatten', input: [`${out}_nhwc`], output: [out], attribute: [{ name: 'axis', i: 1, type: onnx.AttributeProto.AttributeType.INT }] });
    } else if (spec.kind === 'fc' && p?.kind === 'fc') {
      inits.push(initializer(`${out}_W`, [...p.w.shape], p.w.data), initializer(`${out}_b`, [p.b.size], p.b.data));
      nodes.push({ opType: 'Gemm', input: [prev, `${out}_W`, `${out}_b`], output: [out] });
      shapeOut = [1, p.b.size];
    } else if (spec.kind === 'softmax') {
      nodes.push({ opType: 'Softmax', input: [prev], output: [out], attribute: [{ name: 'axis', i: 1, type: onnx.AttributeProto.AttributeType.INT }] });
    } else {
      throw new PasticheError(`cannot export layer ${spec.name} to ONNX`);
    }
    prev = out;
    if (spec.name === until) break;
  }
  const valueInfo = (name: string, dims: number[]): onnxProto.onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'pastiche',
    opsetImport: [{ domain: '', version: 13 }],
    graph: { name: 'vgg19', node: nodes, initializer: inits, input: [valueInfo('input', [1, 3, size, size])], output: [valueInfo(prev, shapeOut)] },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A runner that times onnxruntime's forward pass of VGG19 up to `until` at size x size. */
export async function onnxRunner(weights: Vgg19Weights, size: number, until: string, threads: number): Promise<Runner> {
  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch {
    throw new PasticheError("bench --peers needs the onnxruntime-node package (npm install onnxruntime-node; it is a development dependency)");
  }
  const session = await ort.InferenceSession.create(vgg19Onnx(weights, size, until), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionProviders: ['cpu'],
    // Its idle workers would otherwise spin between runs, taking the cores from the contender
    // timed next (our pool stops spinning within a millisecond too).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const x = randomImage(size);
  const feeds = { input: new ort.Tensor('float32', x.data, [1, 3, size, size]) };
  return { name: 'onnxruntime', run: () => session.run(feeds) };
}
