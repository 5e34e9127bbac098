/**
 * The peer in `pastiche bench --peers`: the same VGG19, with the same weights, as an ONNX model run
 * by onnxruntime-node on the CPU. The model is written here with onnx-proto (no Python involved).
 * onnxruntime-node is a development dependency: the engine itself never needs it.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { windowOutput } from '../backends/shapes.js';
import { PasticheError } from '../errors.js';
import { VGG19_LAYERS } from '../model/vgg19-table.js';
import type { Tensor } from '../tensor/tensor.js';
import { median } from '../util/stats.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { toOihw as oihw, transformerLayout, type TransformerWeights } from '../model/transformer/transformer-net.js';
import { randomImage, type Runner } from './bench.js';

const { onnx } = onnxProto;

function initializer(name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function ints(name: string, values: number[]): onnxProto.onnx.IAttributeProto {
  return { name, ints: values, type: onnx.AttributeProto.AttributeType.INTS };
}

/** [Cin, K, K, Cout] (ours) -> [Cout, Cin, K, K] (ONNX's, as PyTorch's). */
const toOihw = (w: Tensor): Float32Array => oihw(w).data;

/** An opset-13 model of float tensors: the graph's nodes and weights, its input ('input') and its output. */
function encodeModel(name: string, nodes: onnxProto.onnx.INodeProto[], inits: onnxProto.onnx.ITensorProto[], inputDims: number[], output: string, outputDims: number[]): Uint8Array {
  const valueInfo = (n: string, dims: number[]): onnxProto.onnx.IValueInfoProto => ({
    name: n,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'pastiche',
    opsetImport: [{ domain: '', version: 13 }],
    graph: { name, node: nodes, initializer: inits, input: [valueInfo('input', inputDims)], output: [valueInfo(output, outputDims)] },
  });
  return onnx.ModelProto.encode(model).finish();
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
      nodes.push({ name: out, opType: 'Conv', input: [prev, `${out}_W`, `${out}_b`], output: [out], attribute: [ints('kernel_shape', [k, k]), ints('pads', [p.pad, p.pad, p.pad, p.pad]), ints('strides', [p.stride, p.stride])] });
      shapeOut = [1, cout, windowOutput(shapeOut[2]!, k, p.pad, p.stride), windowOutput(shapeOut[3]!, k, p.pad, p.stride)];
    } else if (spec.kind === 'relu') {
      nodes.push({ name: out, opType: 'Relu', input: [prev], output: [out] });
    } else if (spec.kind === 'pool' && p?.kind === 'pool') {
      nodes.push({ name: out, opType: 'MaxPool', input: [prev], output: [out], attribute: [ints('kernel_shape', [p.kernel, p.kernel]), ints('strides', [p.stride, p.stride]), ints('pads', [p.pad, p.pad, p.pad, p.pad])] });
      shapeOut = [1, shapeOut[1]!, windowOutput(shapeOut[2]!, p.kernel, p.pad, p.stride), windowOutput(shapeOut[3]!, p.kernel, p.pad, p.stride)];
    } else if (spec.kind === 'flatten') {
      // NCHW -> NHWC, then flatten: the order MatConvNet's fc6 weights expect.
      nodes.push({ name: `${out}_nhwc`, opType: 'Transpose', input: [prev], output: [`${out}_nhwc`], attribute: [ints('perm', [0, 2, 3, 1])] });
      nodes.push({ name: out, opType: 'Flatten', input: [`${out}_nhwc`], output: [out], attribute: [{ name: 'axis', i: 1, type: onnx.AttributeProto.AttributeType.INT }] });
    } else if (spec.kind === 'fc' && p?.kind === 'fc') {
      inits.push(initializer(`${out}_W`, [...p.w.shape], p.w.data), initializer(`${out}_b`, [p.b.size], p.b.data));
      nodes.push({ name: out, opType: 'Gemm', input: [prev, `${out}_W`, `${out}_b`], output: [out] });
      shapeOut = [1, p.b.size];
    } else if (spec.kind === 'softmax') {
      nodes.push({ name: out, opType: 'Softmax', input: [prev], output: [out], attribute: [{ name: 'axis', i: 1, type: onnx.AttributeProto.AttributeType.INT }] });
    } else {
      throw new PasticheError(`cannot export layer ${spec.name} to ONNX`);
    }
    prev = out;
    if (spec.name === until) break;
  }
  return encodeModel('vgg19', nodes, inits, [1, 3, size, size], prev, shapeOut);
}

/**
 * onnxruntime-node, its telemetry off. Since 1.29 onnxruntime on Linux and macOS sends usage events
 * to Microsoft by default, keeps a device id and an event cache under ~/.cache/Microsoft and leaves
 * a /tmp/mat-debug-PID.log for each process (seen with 1.30 here); a benchmark peer has no business
 * doing either. ORT_DISABLE_TELEMETRY is its own switch, read when its environment starts with the
 * first session (microsoft/onnxruntime#27379); a non-empty value the user set is kept.
 */
export async function loadOrt(): Promise<typeof import('onnxruntime-node')> {
  if (!process.env['ORT_DISABLE_TELEMETRY']) process.env['ORT_DISABLE_TELEMETRY'] = '1'; // an empty value counts as unset
  try {
    return await import('onnxruntime-node');
  } catch {
    throw new PasticheError("bench --peers needs the onnxruntime-node package (npm install onnxruntime-node; it is a development dependency)");
  }
}

/** onnxruntime on the CPU with `threads` threads, the whole graph optimised. */
function sessionOptions(threads: number) {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all' as const,
    executionProviders: ['cpu'],
    // Its idle workers would otherwise spin between runs, taking the cores from the contender
    // timed next (our pool stops spinning within a millisecond too).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

async function createSession(weights: Vgg19Weights, size: number, until: string, threads: number, profilePrefix?: string) {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(vgg19Onnx(weights, size, until), {
    ...sessionOptions(threads),
    ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
  });
  const x = randomImage(size);
  const feeds = { input: new ort.Tensor('float32', x.data, [1, 3, size, size]) };
  return { session, run: () => session.run(feeds) };
}

/** A runner that times onnxruntime's forward pass of VGG19 up to `until` at size x size. */
export async function onnxRunner(weights: Vgg19Weights, size: number, until: string, threads: number): Promise<Runner> {
  const { run } = await createSession(weights, size, until, threads);
  return { name: 'onnxruntime', run };
}

/**
 * The row a node of onnxruntime's optimised graph belongs to: its nodes keep our layer names with
 * a suffix (relu1_1_nchwc: the convolution fused with its ReLU; 'fused fc6'), or are its own
 * layout conversions (ReorderOutput, before the flatten). Unknown nodes get a row of their own.
 */
export function onnxNodeRow(node: string, rowOf: ReadonlyMap<string, string>): string {
  const name = node.replace(/^fused /, '').replace(/_nchwc$/, '');
  if (name === 'ReorderOutput') return rowOf.get('flatten') ?? name;
  return rowOf.get(name) ?? name;
}

/**
 * onnxruntime's forward pass to prob, node by node, from its own profiler: median milliseconds per
 * row of `rowOf` over `repeat` runs after `warmup`.
 */
export async function onnxLayerTimes(
  weights: Vgg19Weights,
  size: number,
  threads: number,
  repeat: number,
  warmup: number,
  rowOf: ReadonlyMap<string, string>,
): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'pastiche-ort-'));
  try {
    const { session, run } = await createSession(weights, size, 'prob', threads, join(dir, 'profile'));
    for (let r = 0; r < warmup + repeat; r++) await run();
    session.endProfiling();
    await session.release(); // its copy of the weights: half a gigabyte
    const files = await readdir(dir);
    if (files.length !== 1) throw new PasticheError(`onnxruntime wrote ${files.length} profile files, expected 1`);
    const events = JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as { cat?: string; name?: string; dur?: number }[];
    // One event per node and run; a row adds up the medians of its nodes.
    const perNode = new Map<string, number[]>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || typeof e.dur !== 'number') continue;
      const node = e.name.slice(0, -'_kernel_time'.length);
      const list = perNode.get(node) ?? [];
      list.push(e.dur / 1000);
      perNode.set(node, list);
    }
    const out: Record<string, number> = {};
    for (const [node, list] of perNode) {
      const row = onnxNodeRow(node, rowOf);
      out[row] = (out[row] ?? 0) + median(list.slice(warmup));
    }
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The real-time style network (TransformerNet) as ONNX (opset 13) for an input of height x width:
 * reflect Pad, Conv, InstanceNormalization, Relu, Add, and Resize (nearest, asymmetric, floor: each
 * output cell reads floor(position / 2), as upsampleNearest2d).
 */
export function transformerOnnx(weights: TransformerWeights, height: number, width: number): Uint8Array {
  if (weights.upsample !== 'nearest' || weights.norm !== 'instance') throw new PasticheError(`${weights.source}: only networks with nearest upsampling and instance norm are exported to ONNX`);
  const nodes: onnxProto.onnx.INodeProto[] = [];
  const inits: onnxProto.onnx.ITensorProto[] = [];
  const int64s = (name: string, values: number[]): onnxProto.onnx.ITensorProto => ({
    name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer),
  });
  const { convs } = transformerLayout(weights.width);
  const spec = new Map(convs.map((c) => [c.name, c]));
  let n = 0;
  const conv = (input: string, name: string): string => {
    const c = spec.get(name)!;
    const p = weights.params.get(name)!;
    let v = input;
    if (c.upsample) {
      inits.push(initializer(`${name}_scales`, [4], Float32Array.from([1, 1, 2, 2])));
      nodes.push({
        name: `${name}_up`, opType: 'Resize', input: [v, '', `${name}_scales`], output: [`${name}_up`],
        attribute: [
          { name: 'mode', s: new TextEncoder().encode('nearest'), type: onnx.AttributeProto.AttributeType.STRING },
          { name: 'coordinate_transformation_mode', s: new TextEncoder().encode('asymmetric'), type: onnx.AttributeProto.AttributeType.STRING },
          { name: 'nearest_mode', s: new TextEncoder().encode('floor'), type: onnx.AttributeProto.AttributeType.STRING },
        ],
      });
      v = `${name}_up`;
    }
    const pad = c.k >> 1;
    inits.push(int64s(`${name}_pads`, [0, 0, pad, pad, 0, 0, pad, pad]));
    nodes.push({ name: `${name}_pad`, opType: 'Pad', input: [v, `${name}_pads`], output: [`${name}_pad`], attribute: [{ name: 'mode', s: new TextEncoder().encode('reflect'), type: onnx.AttributeProto.AttributeType.STRING }] });
    inits.push(initializer(`${name}_W`, [c.cout, c.cin, c.k, c.k], toOihw(p.w)), initializer(`${name}_b`, [c.cout], p.b.data));
    nodes.push({ name, opType: 'Conv', input: [`${name}_pad`, `${name}_W`, `${name}_b`], output: [name], attribute: [ints('kernel_shape', [c.k, c.k]), ints('strides', [c.stride, c.stride])] });
    return name;
  };
  const norm = (input: string, name: string, relu: boolean): string => {
    const p = weights.params.get(name)!;
    inits.push(initializer(`${name}_scale`, [p.w.size], p.w.data), initializer(`${name}_B`, [p.b.size], p.b.data));
    nodes.push({ name, opType: 'InstanceNormalization', input: [input, `${name}_scale`, `${name}_B`], output: [name], attribute: [{ name: 'epsilon', f: 1e-5, type: onnx.AttributeProto.AttributeType.FLOAT }] });
    if (!relu) return name;
    nodes.push({ name: `${name}_relu`, opType: 'Relu', input: [name], output: [`${name}_relu`] });
    return `${name}_relu`;
  };
  let y = 'input';
  for (const [c, nm] of [['conv1', 'in1'], ['conv2', 'in2'], ['conv3', 'in3']] as const) y = norm(conv(y, c), nm, true);
  for (let i = 1; i <= 5; i++) {
    const a = norm(conv(y, `res${i}.conv1`), `res${i}.in1`, true);
    const b = norm(conv(a, `res${i}.conv2`), `res${i}.in2`, false);
    const sum = `res${i}_sum${n++}`;
    nodes.push({ name: sum, opType: 'Add', input: [b, y], output: [sum] });
    y = sum;
  }
  for (const [c, nm] of [['deconv1', 'in4'], ['deconv2', 'in5']] as const) y = norm(conv(y, c), nm, true);
  y = conv(y, 'deconv3');
  return encodeModel('transformer_net', nodes, inits, [1, 3, height, width], y, [1, 3, 4 * Math.ceil(height / 4), 4 * Math.ceil(width / 4)]);
}

/** onnxruntime running the style network on `x` ([1, 3, H, W]): a runner, and one output to compare. */
export async function transformerOnnxSession(weights: TransformerWeights, x: Tensor, threads: number): Promise<{ runner: Runner; run(): Promise<Float32Array> }> {
  const ort = await loadOrt();
  const [, , h, w] = x.shape as [number, number, number, number];
  const session = await ort.InferenceSession.create(transformerOnnx(weights, h, w), sessionOptions(threads));
  const feeds = { input: new ort.Tensor('float32', x.data, [1, 3, h, w]) };
  const run = async () => {
    const r = await session.run(feeds);
    return Object.values(r)[0]!.data as Float32Array;
  };
  return { runner: { name: 'onnxruntime', run }, run };
}
