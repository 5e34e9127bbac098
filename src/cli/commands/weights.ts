/** `pastiche weights fetch | info | path`: getting and inspecting the VGG19 weights. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { CONVERT_DTYPES, convertWeights, formatWeightsInfo, weightsInfo, type ConvertDtype } from '../../app/weights.js';
import { progressBar } from '../../util/progress.js';
import { chooseSources, fetchWeights } from '../../app/fetch-weights.js';
import { PasticheError } from '../../errors.js';
import { checkInputFile, checkOutputFile, positiveNumber } from '../options.js';
import { SOURCES, SOURCE_NAMES, cacheDir, resolveWeightsFile, type Layout, type SourceName } from '../../weights/weights-source.js';

export function registerWeights(program: Command): void {
  const weights = program.command('weights').description('download, locate and inspect the VGG19 weights');

  weights
    .command('fetch')
    .description('download VGG19 into the cache, resumable and checked: from --source, or from each source in turn until one answers')
    .addOption(new Option('--source <name>', `where from: ${SOURCE_NAMES.join(', ')} (default: each in that order)`).choices(SOURCE_NAMES))
    .addOption(new Option('--layout <layout>', "MatConvNet's release: 'old' (beta16, the course's) or 'new'").choices(['old', 'new']).default('old'))
    .option('--url <url>', 'download from this address instead (a mirror of --source, default matconvnet)')
    .option('--md5 <hex>', "expected MD5 (default: the source's published hash)")
    .option('-o, --output <file>', 'write here instead of the cache')
    .option('--timeout <seconds>', 'give up on a source after this long without receiving data, over all its retries', positiveNumber('--timeout'), 60)
    .option('-q, --quiet', 'no progress bar')
    .action(async (opts: { source?: SourceName; layout: Layout; url?: string; md5?: string; output?: string; timeout: number; quiet?: boolean }) => {
      if (opts.output) checkOutputFile(opts.output);
      const sources = chooseSources(opts);
      const mb = (n: number) => (n / 1e6).toFixed(0);
      const format = '{file} {bar} {percentage}% | {mb}/{totalmb} MB | {speed} MB/s | ETA {eta_formatted}{stall}';
      let bar = progressBar(1, format, opts.quiet);
      let current = sources[0]!;
      let t0 = performance.now();
      let first: number | undefined;
      let last = { at: performance.now(), received: 0, total: current.approxBytes };
      const show = (stall = '') => {
        const s = (performance.now() - t0) / 1000;
        bar.setTotal(last.total);
        bar.update(last.received, { file: current.fileName, mb: mb(last.received), totalmb: mb(last.total), speed: s > 0 ? ((last.received - (first ?? 0)) / 1e6 / s).toFixed(1) : '0', stall });
      };
      // The bar says when no data has come for a while, instead of sitting still.
      const ticker = setInterval(() => {
        const silent = (performance.now() - last.at) / 1000;
        if (silent >= 3) show(` | no data for ${silent.toFixed(0)} s (gives up after ${opts.timeout} s)`);
      }, 1000);
      const result = await fetchWeights({
        sources,
        output: opts.output,
        stallDeadlineMs: opts.timeout * 1000,
        connectTimeoutMs: 8000,
        onStart: (source) => {
          current = source;
          t0 = performance.now();
          first = undefined;
          last = { at: performance.now(), received: 0, total: source.approxBytes };
          bar = progressBar(source.approxBytes, format, opts.quiet);
        },
        // Said even with --quiet: a stalled download must not look like a hung command.
        onRetry: ({ attempt, reason, received }) => {
          bar.stop();
          process.stderr.write(`pastiche: the download stopped at ${mb(received)} MB (${reason}); retrying (attempt ${attempt})\n`);
          bar = progressBar(last.total, format, opts.quiet);
        },
        onSourceFailed: (source, reason) => {
          bar.stop();
          process.stderr.write(`pastiche: ${source.name}: ${reason}; trying the next source\n`);
        },
        onProgress: ({ received, total }) => {
          first ??= received;
          last = { at: performance.now(), received, total: total ?? current.approxBytes };
          show();
        },
      }).catch((e: unknown) => {
        // The one-line error names a way out when nothing could be downloaded.
        if (e instanceof PasticheError) throw new PasticheError(`${e.message}. Download a VGG19 file by hand (${SOURCES.map((s) => s.fileName).join(', ')}) and pass it with --weights FILE or PASTICHE_WEIGHTS=FILE`);
        throw e;
      }).finally(() => {
        clearInterval(ticker);
        bar.stop();
      });
      process.stdout.write(`${result.outcome === 'already-present' ? 'already downloaded' : 'downloaded and verified'} (${result.source.name}): ${result.file}\n`);
    });

  weights
    .command('info')
    .description('what a weights file is: format, the input it expects, its layers (any supported format)')
    .argument('<file>', 'a .mat, .pth, .h5, .caffemodel or .safetensors file')
    .action(async (file: string) => {
      process.stdout.write(`${formatWeightsInfo(await weightsInfo(file)).join('\n')}\n`);
    });

  weights
    .command('convert')
    .description('convert any weights file to .safetensors in the layouts Pastiche computes in (what later runs read in a blink)')
    .argument('<file>', 'a .mat, .pth, .h5 or .caffemodel file')
    .requiredOption('-o, --output <file>', 'the .safetensors file to write')
    .addOption(new Option('--dtype <type>', 'stored precision; float16 and bfloat16 halve the file').choices(Object.keys(CONVERT_DTYPES)).default('float32'))
    .action(async (file: string, opts: { output: string; dtype: ConvertDtype }) => {
      const r = await convertWeights(file, opts.output, opts.dtype);
      process.stdout.write(`wrote ${opts.output}: ${(r.bytes / 1e6).toFixed(1)} MB (${opts.dtype}) in ${r.seconds.toFixed(2)} s\n`);
    });

  weights
    .command('path')
    .description('print the weights file a run would use, and the cache folder')
    .action(() => {
      process.stdout.write(`cache: ${cacheDir()}\n`);
      let file: string;
      try {
        file = resolveWeightsFile();
      } catch (e) {
        process.stdout.write('weights: none\n');
        throw e;
      }
      const from = process.env['PASTICHE_WEIGHTS'] === file ? ' (from PASTICHE_WEIGHTS)' : '';
      process.stdout.write(`weights: ${file}${from}\n`);
      checkInputFile(file); // a path that a run could not read is an error here too
    });
}
