/**
 * VGG19 (configuration E of Simonyan & Zisserman) as data: the 44 named layers in order, as the
 * course builds them. Channel widths are not part of the table: they come from the weights, so the
 * same table serves the real network and the reduced-width test fixtures.
 */

export type LayerKind = 'conv' | 'relu' | 'pool' | 'flatten' | 'fc' | 'softmax';

export interface LayerSpec {
  readonly name: string;
  readonly kind: LayerKind;
}

/** Convolutions per block, blocks 1..5; real widths are 64, 128, 256, 512, 512. */
const BLOCKS = [2, 2, 4, 4, 4];
export const VGG19_WIDTHS = [64, 128, 256, 512, 512];
export const VGG19_FC_WIDTH = 4096;
export const VGG19_CLASSES = 1000;
/** Every convolution of VGG19 is 3x3, zero padding 1, stride 1; every pool 2x2, stride 2. */
export const VGG19_CONV = { kernel: 3, pad: 1, stride: 1 } as const;
export const VGG19_POOL = { kernel: 2, pad: 0, stride: 2 } as const;
/** The network's input size: fc6 sees a 7x7 map after five 2x2 pools. */
export const VGG19_INPUT_SIZE = 224;

function buildTable(): LayerSpec[] {
  const t: LayerSpec[] = [];
  BLOCKS.forEach((convs, i) => {
    const b = i + 1;
    for (let j = 1; j <= convs; j++) {
      t.push({ name: `conv${b}_${j}`, kind: 'conv' }, { name: `relu${b}_${j}`, kind: 'relu' });
    }
    t.push({ name: `pool${b}`, kind: 'pool' });
  });
  t.push(
    { name: 'flatten', kind: 'flatten' },
    { name: 'fc6', kind: 'fc' }, { name: 'relu6', kind: 'relu' },
    { name: 'fc7', kind: 'fc' }, { name: 'relu7', kind: 'relu' },
    { name: 'fc8', kind: 'fc' },
    { name: 'prob', kind: 'softmax' },
  );
  return t;
}

/** conv1_1 relu1_1 ... pool5 flatten fc6 relu6 fc7 relu7 fc8 prob. */
export const VGG19_LAYERS: readonly LayerSpec[] = Object.freeze(buildTable());

/** Other names people use for a layer. */
export const LAYER_ALIASES: Readonly<Record<string, string>> = { softmax: 'prob', input: 'input' };

/** The table's layer names, plus 'input' for the preprocessed image. */
export function layerNames(): string[] {
  return ['input', ...VGG19_LAYERS.map((l) => l.name)];
}

/** Resolves a user-given layer name (or alias); undefined when unknown. */
export function resolveLayerName(name: string): string | undefined {
  const n = LAYER_ALIASES[name] ?? name;
  return n === 'input' || VGG19_LAYERS.some((l) => l.name === n) ? n : undefined;
}
