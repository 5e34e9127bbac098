/**
 * Caffe's VGG19 (`VGG_ILSVRC_19_layers.caffemodel`, the file jcjohnson/neural-style uses): a
 * protobuf NetParameter. The 2014 release has V1 `layers` (field 2) whose blobs give their shape as
 * num/channels/height/width; newer files have V2 `layer` (field 100) with a BlobShape. Weights are
 * [Cout,Cin,kH,kW], inner products [out,in] with fc6's input flattened C,H,W, and the input is BGR
 * 0..255 minus the mean. Decoded by protobufjs with only the fields needed (caffe.proto's numbers):
 * the packed float `data` is declared as bytes, the same bytes on the wire, so the 548 MB of values
 * are viewed, not turned into 140 million JavaScript numbers.
 */
import { promises as fs } from 'node:fs';
import protobuf from 'protobufjs/light.js';
import { PasticheError } from '../errors.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { assembleVgg19, CAFFE_INPUT, CONV_NAMES, FC_NAMES, type SourceTensor } from './vgg19-sources.js';

const SCHEMA = {
  nested: {
    caffe: {
      nested: {
        BlobShape: { fields: { dim: { rule: 'repeated', type: 'int64', id: 1 } } },
        BlobProto: {
          fields: {
            num: { type: 'int32', id: 1 },
            channels: { type: 'int32', id: 2 },
            height: { type: 'int32', id: 3 },
            width: { type: 'int32', id: 4 },
            data: { type: 'bytes', id: 5 },
            shape: { type: 'BlobShape', id: 7 },
          },
        },
        V1LayerParameter: { fields: { name: { type: 'string', id: 4 }, type: { type: 'int32', id: 5 }, blobs: { rule: 'repeated', type: 'BlobProto', id: 6 } } },
        LayerParameter: { fields: { name: { type: 'string', id: 1 }, type: { type: 'string', id: 2 }, blobs: { rule: 'repeated', type: 'BlobProto', id: 7 } } },
        NetParameter: {
          fields: {
            name: { type: 'string', id: 1 },
            layers: { rule: 'repeated', type: 'V1LayerParameter', id: 2 },
            layer: { rule: 'repeated', type: 'LayerParameter', id: 100 },
          },
        },
      },
    },
  },
};

interface Blob {
  num?: number;
  channels?: number;
  height?: number;
  width?: number;
  data?: Uint8Array;
  shape?: { dim?: (number | { toNumber(): number })[] };
}
interface Layer {
  name?: string;
  blobs?: Blob[];
}
interface Net {
  layers?: Layer[];
  layer?: Layer[];
}

const NetParameter = protobuf.Root.fromJSON(SCHEMA).lookupType('caffe.NetParameter');

/** A blob's shape (BlobShape, else the legacy 4-d dims without their leading 1s) and its float32 values. */
function blobTensor(b: Blob, where: string, file: string): SourceTensor {
  let shape: number[];
  if (b.shape?.dim?.length) {
    shape = b.shape.dim.map((d) => (typeof d === 'number' ? d : d.toNumber()));
  } else {
    // Legacy dims pad with leading 1s: (1,1,1,n) for a bias, (1,1,out,in) for an inner product.
    shape = [b.num ?? 1, b.channels ?? 1, b.height ?? 1, b.width ?? 1];
    const keep = where.endsWith('bias') ? 1 : 2;
    while (shape.length > keep && shape[0] === 1) shape = shape.slice(1);
  }
  const count = shape.reduce((a, x) => a * x, 1);
  const bytes = b.data ?? new Uint8Array(0);
  if (bytes.length !== 4 * count) throw new PasticheError(`${file}: ${where} holds ${bytes.length / 4} values for shape [${shape.join(', ')}] (${count})`);
  const data = new Float32Array(count);
  new Uint8Array(data.buffer).set(bytes);
  return { shape, data };
}

export async function loadCaffeVgg19(file: string): Promise<Vgg19Weights> {
  const bytes = await fs.readFile(file);
  let net: Net;
  try {
    net = NetParameter.decode(bytes) as unknown as Net;
  } catch (e) {
    throw new PasticheError(`${file}: not a Caffe model (protobuf NetParameter): ${(e as Error).message}`);
  }
  const v1 = (net.layers?.length ?? 0) > 0;
  const layers = v1 ? net.layers! : (net.layer ?? []);
  if (layers.length === 0) throw new PasticheError(`${file}: a Caffe model without layers`);
  const byName = new Map(layers.map((l) => [l.name ?? '', l]));
  const params = (name: string) => {
    const l = byName.get(name);
    if (!l || l.blobs?.length !== 2) throw new PasticheError(`${file}: layer ${name} is missing or has no weight and bias: not VGG19`);
    return { name, w: blobTensor(l.blobs[0]!, `${name}'s weight`, file), b: blobTensor(l.blobs[1]!, `${name}'s bias`, file) };
  };
  return assembleVgg19({
    format: 'caffe',
    layout: v1 ? 'V1 layers' : 'V2 layer',
    file,
    input: CAFFE_INPUT,
    convs: CONV_NAMES.map(params),
    convLayout: 'OIHW',
    fcs: byName.has('fc6') ? FC_NAMES.map(params) : [],
    fcLayout: 'out-in/CHW',
  });
}
