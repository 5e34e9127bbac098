/** `pastiche weights fetch | info | path`: getting and inspecting the VGG19 weights. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { formatWeightsInfo, weightsInfo } from '../../app/weights-info.js';
import { progressBar } from '../../util/progress.js';
import { download } from '../../weights/download.js';
import { checkInputFile, checkOutputFile, positiveNumber } from '../options.js';
import { PUBLISHED, WEIGHTS_FILE_NAME, cacheDir, cachedWeightsPath, resolveWeightsFile, type Layout } from '../../weights/weights-source.js';

export function registerWeights(program: Command): void {
  const weights = program.command('weights').description('download, locate and inspect the VGG19 weights');

  weights
    .command('fetch')
    .description(`download ${WEIGHTS_FILE_NAME} (576 MB) from MatConvNet into the cache, resumable, MD5-checked`)
    .addOption(new Option('--layout <layout>', "which release: 'old' (beta16, the course's) or 'new'").choices(['old', 'new']).default('old'))
    .option('--url <url>', 'download from this address instead (a mirror)')
    .option('--md5 <hex>', 'expected MD5 (default: the published one for the layout)')
    .option('-o, --output <file>', 'write here instead of the cache')
    .option('--timeout <seconds>', 'give up after this long without receiving data, over all retries', positiveNumber('--timeout'), 60)
    .option('-q, --quiet', 'no progress bar')
    .action(async (opts: { layout: Layout; url?: string; md5?: string; output?: string; timeout: number; quiet?: boolean }) => {
      if (opts.output) checkOutputFile(opts.output);
      const pub = PUBLISHED[opts.layout];
      const dest = opts.output ?? cachedWeightsPath(opts.layout);
      const url = opts.url ?? pub.url;
      const mb = (n: number) => (n / 1e6).toFixed(0);
      const format = `${WEIGHTS_FILE_NAME} {bar} {percentage}% | {mb}/{totalmb} MB | {speed} MB/s | ETA {eta_formatted}{stall}`;
      let bar = progressBar(pub.approxBytes, format, opts.quiet);
      const t0 = performance.now();
      let first: number | undefined;
      let last = { at: performance.now(), received: 0, total: pub.approxBytes };
      const show = (stall = '') => {
        const s = (performance.now() - t0) / 1000;
        bar.setTotal(last.total);
        bar.update(last.received, { mb: mb(last.received), totalmb: mb(last.total), speed: s > 0 ? ((last.received - (first ?? 0)) / 1e6 / s).toFixed(1) : '0', stall });
      };
      // The bar says when no data has come for a while, instead of sitting still.
      const ticker = setInterval(() => {
        const silent = (performance.now() - last.at) / 1000;
        if (silent >= 3) show(` | no data for ${silent.toFixed(0)} s (gives up after ${opts.timeout} s)`);
      }, 1000);
      const outcome = await download({
        url,
        dest,
        md5: opts.md5 ?? pub.md5,
        manualHint: `Download ${WEIGHTS_FILE_NAME} by hand and pass it with --weights FILE or PASTICHE_WEIGHTS=FILE, or save it as ${dest}`,
        stallDeadlineMs: opts.timeout * 1000,
        // Said even with --quiet: a stalled download must not look like a hung command.
        onRetry: ({ attempt, reason, received }) => {
          bar.stop();
          process.stderr.write(`pastiche: the download stopped at ${mb(received)} MB (${reason}); retrying (attempt ${attempt})\n`);
          bar = progressBar(last.total, format, opts.quiet);
        },
        onProgress: ({ received, total }) => {
          first ??= received;
          last = { at: performance.now(), received, total: total ?? pub.approxBytes };
          show();
        },
      }).finally(() => {
        clearInterval(ticker);
        bar.stop();
      });
      process.stdout.write(`${outcome === 'already-present' ? 'already downloaded' : 'downloaded and verified'}: ${dest}\n`);
    });

  weights
    .command('info')
    .description('what a weights file is: format, the input it expects, its layers (any supported format)')
    .argument('<file>', 'a .mat, .pth, .h5 or .caffemodel file')
    .action(async (file: string) => {
      process.stdout.write(`${formatWeightsInfo(await weightsInfo(file)).join('\n')}\n`);
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
