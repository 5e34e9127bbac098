/**
 * Keras' VGG19 (`vgg19_weights_tf_dim_ordering_tf_kernels.h5` and `..._notop.h5`, what
 * `keras.applications.VGG19` downloads): HDF5 written by save_weights. The root's `layer_names`
 * lists the layers; each layer's group has `weight_names` (kernel, then bias) naming its datasets
 * (Keras 1: `block1_conv1_W_1:0`, Keras 2: `block1_conv1/kernel:0`). Kernels are [kH,kW,Cin,Cout],
 * dense kernels [in,out] with fc1's input flattened channels-last (H,W,C); the input is Caffe's
 * (BGR 0..255 minus the mean). Read with h5wasm, the HDF5 library itself compiled to WebAssembly.
 */
import { statSync } from 'node:fs';
import h5wasm, { type Dataset, type File as H5File, type Group } from 'h5wasm/node';
import { PasticheError } from '../errors.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { assembleVgg19, CAFFE_INPUT, type SourceTensor } from './vgg19-sources.js';

let ready: Promise<void> | undefined;

/** Loads the library once; its errors become exceptions instead of a diagnostic stack on stderr. */
function openLibrary(): Promise<void> {
  ready ??= h5wasm.ready.then((m) => void m.activate_throwing_error_handler());
  return ready;
}

/** The innermost HDF5 message ("truncated file: eof = 50000, ..."), not the whole stack. */
function hdf5Reason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const lines = [...text.matchAll(/#\d+: .*? in [\w.]+\(\): (.*)/g)].map((m) => m[1]!);
  return (lines[lines.length - 1] ?? text.split('\n')[0] ?? 'unreadable').trim();
}

const stringList = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : typeof v === 'string' ? [v] : []);

export async function loadKerasVgg19(file: string): Promise<Vgg19Weights> {
  await openLibrary();
  const fileBytes = statSync(file).size;
  let f: H5File;
  try {
    f = new h5wasm.File(file, 'r');
  } catch (e) {
    throw new PasticheError(`${file}: not a readable HDF5 file: ${hdf5Reason(e)}`);
  }
  try {
    // save_weights puts the layers at the root; model.save under model_weights/.
    const root = (f.get('model_weights') as Group | null) ?? f;
    const names = stringList(root.attrs['layer_names']?.value);
    if (names.length === 0) throw new PasticheError(`${file}: an HDF5 file without Keras' layer_names: not Keras weights`);
    const layer = (name: string): { w: SourceTensor; b: SourceTensor } => {
      const g = root.get(name) as Group | null;
      const weightNames = stringList(g?.attrs['weight_names']?.value);
      if (!g || weightNames.length !== 2) throw new PasticheError(`${file}: layer ${name} does not hold a kernel and a bias`);
      const [w, b] = weightNames.map((wn) => {
        const d = g.get(wn) as Dataset | null;
        if (!d || !d.shape) throw new PasticheError(`${file}: ${name}/${wn} is missing`);
        const count = d.shape.reduce((a, x) => a * x, 1);
        // Keras writes plain (uncompressed) datasets: one larger than the file is a lie.
        if (count * 4 > fileBytes) throw new PasticheError(`${file}: ${name}/${wn} claims [${d.shape.join(', ')}], more than the file holds`);
        try {
          return { shape: d.shape, data: d.value as ArrayLike<number> };
        } catch (e) {
          throw new PasticheError(`${file}: ${name}/${wn} cannot be read: ${hdf5Reason(e)}`);
        }
      });
      return { w: w!, b: b! };
    };
    const convNames = names.filter((n) => /^block\d_conv\d$/.test(n));
    const convs = convNames.map((name) => ({ name, ...layer(name) }));
    const top = ['fc1', 'fc2', 'predictions'];
    const fcs = top.every((n) => names.includes(n)) ? top.map((name) => ({ name, ...layer(name) })) : [];
    return assembleVgg19({ format: 'keras', layout: fcs.length ? 'with top' : 'notop', file, input: CAFFE_INPUT, convs, convLayout: 'HWIO', fcs, fcLayout: 'in-out/HWC' });
  } catch (e) {
    if (e instanceof PasticheError) throw e;
    throw new PasticheError(`${file}: a damaged HDF5 file (${hdf5Reason(e)})`);
  } finally {
    f.close();
  }
}
