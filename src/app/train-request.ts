/**
 * A training request (train-style's flags, or a JSON body) parsed once into typed settings, with the
 * presets: the recipes of the course's lab 4-3 and of pytorch/examples, translated into this
 * project's loss normalisation (seed eqs. 24, 27: content 1/(2NCHW) sum (F - P)^2, style per layer
 * 1/(4 N C^2 (HW)^2) sum (G - A)^2, TV the plain sum of squared differences, each averaged over the
 * batch). The translations, derived from the two projects' code:
 *
 * - Content. The course (lengstrom/fast-style-transfer's optimize.py) takes
 *   cw * 2 * l2_loss(F - P) / (N H W C) = cw * sum (F - P)^2 / (NCHW) = 2 cw L_c; pytorch/examples
 *   takes cw * mse(F, P), the same 2 cw L_c. So alpha = 2 cw.
 * - Style. Both divide the Gram matrix by its layer's size C H W and take the mean of the squared
 *   difference over the C^2 entries (the course: 2 l2_loss / C^2, over the batch), i.e.
 *   sum (G - A)^2 / (N C^2 (CHW)^2) = (4 / C^2) L_s per layer, summed over the layers. So each
 *   style layer l weighs 4 / C_l^2 (C_l: its channels in the weights file) and beta = sw.
 *   Their target A is the style image's Gram divided by the style image's own size; ours is scaled
 *   to the crop's pixel count (train-style.ts), the same normalisation.
 * - TV (the course only): tw * 2 (l2(dx) / (H (W-1) 3) + l2(dy) / ((H-1) W 3)) / N; for square
 *   size x size crops both sizes are 3 size (size - 1), so gamma = tw / (3 size (size - 1)): exact.
 * - pytorch/examples feeds its VGG16 (torchvision) images scaled to 0..1 and divided by ImageNet's
 *   std (0.229, 0.224, 0.225), the MatConvNet VGG19 takes 0..255 minus the mean: the same picture is
 *   k = 255 x 0.226 = 57.6 times larger here. A ReLU network's features grow about linearly with
 *   its input, so content (quadratic) is divided by k^2 and style (quartic: Gram squared) by k^4.
 *   This factor is approximate (two different networks); the others are exact. Its layers are
 *   VGG16's (content relu2_2; style relu1_2, relu2_2, relu3_3, relu4_3), which VGG19 has too.
 *
 * With VGG19's real widths the two presets then weigh style against content alike: the course
 * 400 / C_l^2 against 15, pytorch/examples 3626 / C_l^2 against 60 (a ratio of 27 and 60).
 */
import { PasticheError } from '../errors.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { VGG19_WIDTHS } from '../model/vgg19-table.js';
import { parseLayers } from './stylize.js';
import type { TrainSettings } from './train-style.js';
import { RequestFields } from './stylize-request.js';

/** pytorch/examples' input scale relative to ours (see above). */
const TORCHVISION_SCALE = 255 * 0.226;

interface TrainPreset {
  readonly size: number;
  readonly batch: number;
  readonly epochs: number;
  readonly iterations?: number;
  readonly lr: number;
  readonly width: number;
  readonly contentLayers: string;
  readonly styleLayers: string;
  /** alpha, beta, gamma of this normalisation; gamma may depend on the crop size. */
  readonly contentWeight: number;
  readonly styleWeight: number;
  readonly tvWeight: (size: number) => number;
  /** The per-layer style weight for a layer of C channels. */
  readonly styleLayerWeight: (channels: number) => number;
}

const COURSE = {
  size: 256, batch: 4, epochs: 2, lr: 1e-3, width: 32,
  contentLayers: 'relu4_2', styleLayers: 'relu1_1,relu2_1,relu3_1,relu4_1,relu5_1',
  contentWeight: 2 * 7.5, styleWeight: 100, tvWeight: (size: number) => 200 / (3 * size * (size - 1)),
  styleLayerWeight: (c: number) => 4 / (c * c),
} satisfies TrainPreset;

export const TRAIN_PRESETS = {
  // The course's lab 4-3 (lengstrom/fast-style-transfer's defaults): content 7.5, style 100, TV 200.
  course: COURSE,
  // pytorch/examples fast_neural_style's defaults: content 1e5, style 1e10, no TV.
  'pytorch-examples': {
    size: 256, batch: 4, epochs: 2, lr: 1e-3, width: 32,
    contentLayers: 'relu2_2', styleLayers: 'relu1_2,relu2_2,relu3_3,relu4_3',
    contentWeight: (2 * 1e5) / TORCHVISION_SCALE ** 2, styleWeight: 1e10, tvWeight: () => 0,
    styleLayerWeight: (c: number) => 4 / (c * c * TORCHVISION_SCALE ** 4),
  },
  // The course's losses on a half-width network, 128-px crops, 600 steps of 2: a first model of
  // one's own style in minutes rather than hours (see the README for what it costs here).
  quick: { ...COURSE, size: 128, batch: 2, width: 16, iterations: 600 },
} as const satisfies Record<string, TrainPreset>;

export type TrainPresetName = keyof typeof TRAIN_PRESETS;
export const TRAIN_PRESET_NAMES = Object.keys(TRAIN_PRESETS) as TrainPresetName[];

/** The raw fields of a training request: a flag's text, or a JSON value. Absent: the preset's. */
export interface TrainFields {
  readonly preset?: unknown;
  readonly size?: unknown;
  readonly batch?: unknown;
  readonly epochs?: unknown;
  readonly iterations?: unknown;
  readonly lr?: unknown;
  readonly contentWeight?: unknown;
  readonly styleWeight?: unknown;
  readonly tvWeight?: unknown;
  readonly contentLayers?: unknown;
  readonly styleLayers?: unknown;
  readonly seed?: unknown;
  readonly shuffle?: unknown;
  readonly styleSize?: unknown;
  readonly width?: unknown;
  readonly upsample?: unknown;
  readonly norm?: unknown;
}

/** Channels of each block of VGG19 in `weights` (the real file: 64, 128, 256, 512, 512). */
export function vggBlockWidths(weights: Vgg19Weights): number[] {
  return [1, 2, 3, 4, 5].map((b) => {
    const p = weights.layers.get(`conv${b}_1`);
    if (!p || p.kind !== 'conv') throw new PasticheError(`weights from ${weights.source} have no conv${b}_1`);
    return p.w.shape[3]!;
  });
}

/** A layer's block: relu3_4 -> 3, pool2 -> 2. */
function blockOf(layer: string): number {
  return Number(/(\d)(_\d)?$/.exec(layer)![1]);
}

/**
 * Parses and checks every field against the preset. `contentCount` images in the folder turn
 * epochs into steps; `widths` (vggBlockWidths) are the loss network's channels, which the presets'
 * style layer weights depend on (before the weights are read: the real network's).
 */
export function parseTrainSettings(fields: TrainFields, contentCount: number, name: (f: keyof TrainFields & string) => string = (f) => f, widths: readonly number[] = VGG19_WIDTHS): TrainSettings & { readonly epochs?: number } {
  const f = new RequestFields(fields, name);
  const preset: TrainPreset = TRAIN_PRESETS[f.choice('preset', TRAIN_PRESET_NAMES) ?? 'course'];
  const size = f.number('size', { min: 1, max: 4096, integer: true }) ?? preset.size;
  if (size % 4 !== 0 || size < 16) f.bad('size', `must be a multiple of 4 of at least 16 (the network's strides; got ${size})`);
  const batch = f.number('batch', { min: 1, max: 256, integer: true }) ?? preset.batch;
  const epochsGiven = f.number('epochs', { positive: true });
  const iterationsGiven = f.number('iterations', { min: 1, integer: true });
  if (epochsGiven !== undefined && iterationsGiven !== undefined) throw new PasticheError(`give ${name('epochs')} or ${name('iterations')}, not both`);
  const epochs = epochsGiven ?? (iterationsGiven === undefined && preset.iterations === undefined ? preset.epochs : undefined);
  const iterations = iterationsGiven ?? (epochs !== undefined ? Math.max(1, Math.ceil((epochs * contentCount) / batch)) : preset.iterations!);
  const contentLayers = parseLayers(f.text('contentLayers') ?? preset.contentLayers, name('contentLayers'));
  const styleText = f.text('styleLayers');
  // A preset's own layers carry its per-layer factor 4 / C^2; layers the user lists weigh what they say (default equal).
  const styleLayers = styleText ? parseLayers(styleText, name('styleLayers')) : parseLayers(preset.styleLayers, name('styleLayers')).map((l) => ({ ...l, weight: preset.styleLayerWeight(widths[blockOf(l.name) - 1]!) }));
  const width = f.number('width', { min: 1, max: 256, integer: true }) ?? preset.width;
  return {
    size, batch, iterations, epochs, width,
    lr: f.number('lr', { positive: true }) ?? preset.lr,
    contentWeight: f.number('contentWeight', { min: 0 }) ?? preset.contentWeight,
    styleWeight: f.number('styleWeight', { min: 0 }) ?? preset.styleWeight,
    tvWeight: f.number('tvWeight', { min: 0 }) ?? preset.tvWeight(size),
    contentLayers, styleLayers,
    seed: f.number('seed', { min: 0, integer: true }) ?? 1,
    shuffle: fields.shuffle === undefined ? true : f.flag('shuffle'),
    styleSize: f.number('styleSize', { min: 1, max: 4096, integer: true }),
    upsample: f.choice('upsample', ['nearest', 'deconv'] as const) ?? 'nearest',
    norm: f.choice('norm', ['instance', 'batch'] as const) ?? 'instance',
  };
}
