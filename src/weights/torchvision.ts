/**
 * torchvision's VGG19 (`vgg19-dcbb9e9d.pth`, what `torchvision.models.vgg19(pretrained=True)` caches):
 * a state_dict with `features.N.weight` [Cout,Cin,3,3] for the 16 convolutions and
 * `classifier.0/3/6` for fc6-fc8 ([out, in], fc6's input flattened C,H,W), fed RGB / 255 normalised
 * by ImageNet's mean and std. vgg19_bn (batch norm after each convolution) is another network.
 */
import { PasticheError } from '../errors.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import type { StateDict } from './torch/pth.js';
import { assembleVgg19, TORCHVISION_INPUT, type SourceTensor } from './vgg19-sources.js';

export function vgg19FromStateDict(sd: StateDict, file: string): Vgg19Weights {
  // nn.DataParallel saves every name with a 'module.' prefix.
  const t = new Map([...sd.tensors].map(([k, v]) => [k.replace(/^module\./, ''), v]));
  const get = (name: string): SourceTensor => {
    const v = t.get(name);
    if (!v) throw new PasticheError(`${file}: ${name} is missing`);
    return v;
  };
  if ([...t.keys()].some((k) => /^features\.\d+\.running_mean$/.test(k))) throw new PasticheError(`${file}: a VGG19 with batch norm (vgg19_bn) is another network; Pastiche reads vgg19`);
  const convs = [...t.keys()]
    .map((k) => /^features\.(\d+)\.weight$/.exec(k))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b)
    .map((n) => ({ name: `features.${n}`, w: get(`features.${n}.weight`), b: get(`features.${n}.bias`) }));
  if (convs.length === 0) {
    const some = [...t.keys()].slice(0, 3).join(', ');
    throw new PasticheError(`${file}: no features.N.weight: not torchvision's VGG19 state_dict (it holds ${some || 'no tensors'}${t.size > 3 ? ', ...' : ''})`);
  }
  const fcs = t.has('classifier.0.weight') ? [0, 3, 6].map((n) => ({ name: `classifier.${n}`, w: get(`classifier.${n}.weight`), b: get(`classifier.${n}.bias`) })) : [];
  return assembleVgg19({ format: 'torchvision', layout: sd.serialisation, file, input: TORCHVISION_INPUT, convs, convLayout: 'OIHW', fcs, fcLayout: 'out-in/CHW' });
}
