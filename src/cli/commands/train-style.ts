/** `pastiche train-style`: the course's labs 4-2/4-3, training a real-time style network. Flags in, app/ does the rest. */
import { type Command } from 'commander';
import { fanOut, jsonLinesLog, type OnProgress } from '../../app/progress.js';
import { abortOnSignals } from '../../app/signals.js';
import { loadWeightsFile } from '../../app/load-model.js';
import { parseTrainSettings, TRAIN_PRESET_NAMES, vggBlockWidths, type TrainFields } from '../../app/train-request.js';
import { checkpointName, checkResumable, checkTrainFiles, listContentImages, loadTrainStart, runTrainStyle, settingsRecord } from '../../app/train-style-job.js';
import type { Precision } from '../../backends/index.js';
import { progressBar, withStatus } from '../../util/progress.js';
import { resolveWeightsFile } from '../../weights/weights-source.js';
import { backendOption, openChosenBackend, positiveInt, precisionOption, weightsOption } from '../options.js';

const flagName = (field: string) => (field === 'shuffle' ? '--no-shuffle' : `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);

export function registerTrainStyle(program: Command): void {
  const cmd = program
    .command('train-style')
    .description('train a real-time style network (Johnson et al.; pytorch/examples fast_neural_style) on STYLE with VGG19 as the loss network; then: pastiche stylize IMAGE --model MODEL')
    .argument('<style>', 'the style image')
    .requiredOption('--content-dir <folder>', 'content images to train on (.png/.jpg, subfolders too; e.g. COCO train2014)')
    .requiredOption('-o, --output <file>', 'the model to write (.safetensors; pytorch/examples names and layouts)')
    .option('--preset <name>', `starting settings: ${TRAIN_PRESET_NAMES.join(', ')} (default course: the course's lab 4-3)`)
    .addOption(weightsOption())
    .addOption(backendOption())
    .addOption(precisionOption())
    .option('--size <n>', 'training crops: shorter side resized to N, centre N x N (a multiple of 4; preset: 256)')
    .option('--batch <n>', 'images per step (preset: 4)')
    .option('--epochs <x>', 'passes over the content images (preset: 2)')
    .option('--iterations <n>', 'steps, instead of --epochs')
    .option('--lr <x>', "Adam's learning rate (preset: 1e-3)")
    .option('--content-weight <x>', "alpha (course preset: 15, the course's 7.5 in this normalisation)")
    .option('--style-weight <x>', 'beta (course preset: 100)')
    .option('--tv-weight <x>', "total-variation weight (course preset: 200 / (3 size (size - 1)), the course's 200)")
    .option('--content-layers <list>', 'e.g. relu4_2 (course preset), or relu2_2:1')
    .option('--style-layers <list>', "e.g. relu1_1,relu2_1 (equal weights unless given as name:w; a preset's own layers weigh 4/C^2 each, as its Gram normalisation does)")
    .option('--style-size <n>', 'resize the style image to this longest side first (default: as it is)')
    .option('--width <n>', "channels of the network's first layer: 32 (pytorch/examples' models), 16 for half width")
    .option('--upsample <how>', "nearest (pytorch/examples' nearest x2 + convolution: its .pth loads our models) or deconv (the course's transposed convolutions)")
    .option('--norm <kind>', "instance (pytorch/examples', the default) or batch (the course's --type batch: running statistics at inference)")
    .option('--seed <n>', 'seed of the initial weights and the shuffling: same seed and data, same model bit for bit (default 1)')
    .option('--no-shuffle', 'visit the content images in sorted order')
    .option('--init <model>', 'start from these weights (a .pth of pytorch/examples, a .safetensors) with a fresh optimiser')
    .option('--resume <checkpoint>', 'continue a checkpoint: the same run as if never stopped')
    .option('--checkpoint <file>', 'where checkpoints go (default: OUTPUT with .ckpt.safetensors)')
    .option('--checkpoint-every <n>', 'save a checkpoint every N steps', positiveInt('--checkpoint-every'))
    .option('--preview <image>', 'stylize this picture every --preview-every steps and at the end: MODEL-preview-0100.png, ...')
    .option('--preview-every <n>', 'steps between previews (default 100)', positiveInt('--preview-every'))
    .option('--log-json <file>', 'one JSON line per step: iteration, epoch, content, style, tv, total, seconds')
    .option('-q, --quiet', 'no progress bar');
  cmd.addHelpText('after', '\nCtrl-C or SIGTERM saves a checkpoint (continue with --resume) and stops (exit code 130).\nPresets: course (the lab 4-3 recipe: hours to days on a CPU), pytorch-examples, quick (half width, 128 px, 600 steps).');

  cmd.action(async (style: string, o: TrainFields & { contentDir: string; output: string; weights?: string; backend?: string; precision: Precision; init?: string; resume?: string; checkpoint?: string; checkpointEvery?: number; preview?: string; previewEvery?: number; logJson?: string; quiet?: boolean }) => {
    // Everything that can be checked is, before the weights are read.
    const contentFiles = listContentImages(o.contentDir);
    parseTrainSettings(o, contentFiles.length, flagName);
    const checkpoint = o.checkpoint ?? checkpointName(o.output);
    checkTrainFiles({ style, output: o.output, checkpoint, logJson: o.logJson, preview: o.preview });
    const start = await loadTrainStart(o);
    const backend = await openChosenBackend(o.backend, o.precision);
    const weightsFile = resolveWeightsFile(o.weights);
    const vgg = await withStatus(`loading ${weightsFile}`, o.quiet, () => loadWeightsFile(weightsFile, { classifier: false, onWarning: (m) => process.stderr.write(`pastiche: warning: ${m}\n`) }));
    // The presets' style layer weights depend on the loss network's widths.
    const from = start.resume?.weights ?? start.init;
    const settings = parseTrainSettings({ ...o, width: o.width ?? from?.width, upsample: o.upsample ?? from?.upsample, norm: o.norm ?? from?.norm }, contentFiles.length, flagName, vggBlockWidths(vgg));
    if (start.resume) checkResumable(start.resume, o.resume!, settingsRecord(settings, style, contentFiles.length));
    const bar = progressBar(settings.iterations, 'train {bar} {value}/{total} | epoch {epoch} | content {c} style {s} tv {tv} | {sps} s/step | ETA {eta_formatted}', o.quiet);
    bar.update(start.resume?.iteration ?? 0, { epoch: '-', c: '-', s: '-', tv: '-', sps: '-' });
    const f = (v: number) => v.toExponential(3);
    const warn = (message: string) => {
      bar.stop();
      process.stderr.write(`pastiche: ${message}\n`);
    };
    const render: OnProgress = (p) => {
      if (p.kind === 'warning') warn(p.message);
      if (p.kind !== 'train') return;
      bar.update(p.iteration, { epoch: p.epoch.toFixed(2), c: f(p.content), s: f(p.style), tv: f(p.tv), sps: (1 / p.stepsPerSecond).toFixed(2) });
    };
    const log = o.logJson ? jsonLinesLog(o.logJson, warn) : undefined;
    const stop = abortOnSignals();
    let result;
    try {
      result = await runTrainStyle({ ...settings, ...start, style, contentFiles, output: o.output, vgg, backend, checkpoint, checkpointEvery: o.checkpointEvery, preview: o.preview, previewEvery: o.previewEvery, signal: stop.signal, onProgress: fanOut(render, log) });
    } finally {
      stop.dispose();
      bar.stop();
      log?.close();
    }
    const last = result.losses ? `, last loss ${result.losses.total.toExponential(4)}` : '';
    if (result.interrupted) {
      process.stderr.write(`stopped after step ${result.iteration} of ${settings.iterations}: wrote ${result.file} (continue with --resume ${result.file})\n`);
      process.exitCode = 130;
    } else {
      process.stderr.write(`wrote ${result.file}: ${result.iteration} steps in ${result.seconds.toFixed(1)} s${last}\n`);
    }
  });
}
