/** The benchmark's machinery and its peer: the ONNX model Pastiche writes computes the same network. */
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { forwardRunner, styleIterationRunner, stylizeStepRunner, timeInterleaved, vgg19ForwardFlops } from '../src/app/bench.js';
import { floorLayers, layerRows, profileLayers } from '../src/app/layer-profile.js';
import { passFloor, plotFormat, rooflineSvg, type Roofline } from '../src/app/roofline.js';
import { pixelTextPath, pixelTextWidth } from '../src/image/pixel-font.js';
import type { WinogradStageProfile } from '../src/app/winograd-stages.js';
import { convWork } from '../src/backends/conv-work.js';
import { winogradTile } from '../src/backends/native/native-backend.js';
import { loadOrt, onnxLayerTimes, onnxNodeRow, vgg19Onnx } from '../src/app/onnx-peer.js';
import { getBackend, nativeBackend } from '../src/backends/index.js';
import { readNpy } from '../src/tensor/npy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadMatConvNetVgg19 } from '../src/weights/load-vgg19.js';
import { randomVgg19Weights } from '../src/model/vgg19-params.js';
import { formatBench, formatLayers } from '../src/cli/format.js';
import { bestLimits, probeShortfall, type MachineLimits } from '../src/app/machine.js';
import { TINY, assertClose, runCli } from './helpers.js';
import { tempDir } from './temp.js';

// The full-size network, made once (6 s of random numbers).
let fullSize: ReturnType<typeof randomVgg19Weights> | undefined;
const full = () => (fullSize ??= randomVgg19Weights(1, 1));

test('VGG19 at 224 is 39.3 GFLOP of convolutions and fully connected layers', () => {
  // 2 * sum over layers of Cin*9*Cout*H*W, plus fc: the published 19.6 G multiply-adds.
  assert.equal(Math.round(vgg19ForwardFlops(full(), 224) / 1e8) / 10, 39.3);
});

test('timeInterleaved runs every contender in turn and reports medians', async () => {
  const order: string[] = [];
  const rows = await timeInterleaved([{ name: 'a', run: () => order.push('a') }, { name: 'b', run: async () => order.push('b') }], 3, 1);
  assert.deepEqual(order, ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
  assert.deepEqual(rows.map((r) => [r.name, r.runs.length]), [['a', 3], ['b', 3]]);
});

test('the forward and style-iteration runners run on a small network', async () => {
  const w = randomVgg19Weights(2, 32);
  await timeInterleaved([forwardRunner(w, getBackend('ts')), styleIterationRunner(w, getBackend('ts'), 48)], 1, 0);
  // A stylize step: its L-BFGS steps go to a copy, so every run evaluates the same image.
  const step = stylizeStepRunner(w, getBackend('ts'), 48, 3);
  const losses = [await step.run(), await step.run()];
  assert.ok(typeof losses[0] === 'number' && losses[0] > 0 && losses[1] === losses[0], `${losses}`);
  assert.equal(step.optimizerMs.length, 2);
});

test('onnxruntime runs the exported VGG19 to the same probabilities as PyTorch (tiny fixture)', async () => {
  const ort = await loadOrt();
  const weights = await loadMatConvNetVgg19(`${TINY}vgg19-tiny-old.mat`);
  const session = await ort.InferenceSession.create(vgg19Onnx(weights, 224, 'prob'));
  const input = await readNpy(`${TINY}ref-old/input.npy`);
  const out = await session.run({ input: new ort.Tensor('float32', input.data, [1, 3, 224, 224]) });
  const prob = out['prob']!.data as Float32Array;
  assertClose(new Tensor([1, 1000], prob), await readNpy(`${TINY}ref-old/prob.npy`), 1e-4, 'onnxruntime prob');
  const partial = await ort.InferenceSession.create(vgg19Onnx(weights, 224, 'pool5'));
  const p5 = (await partial.run({ input: new ort.Tensor('float32', input.data, [1, 3, 224, 224]) }))['pool5']!.data as Float32Array;
  assertClose(new Tensor([1, 32, 7, 7], p5), await readNpy(`${TINY}ref-old/pool5.npy`), 1e-4, 'onnxruntime pool5');
});

test("bench's onnxruntime peer runs with onnxruntime's telemetry off: no /tmp/mat-debug-PID.log, no event cache", () => {
  // A process of its own (onnxruntime reads the switch once, when its environment starts), with none
  // of the CI variables that onnxruntime itself takes as a reason to stay quiet, and its own home.
  const home = tempDir('pastiche-ort-home-');
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: home, XDG_CACHE_HOME: join(home, '.cache') };
  const peer = new URL('../src/app/onnx-peer.js', import.meta.url).href;
  const params = new URL('../src/model/vgg19-params.js', import.meta.url).href;
  const script = `const { onnxRunner } = await import(${JSON.stringify(peer)}); const { randomVgg19Weights } = await import(${JSON.stringify(params)});
    await onnxRunner(randomVgg19Weights(1, 32), 32, 'pool1', 1); process.stdout.write(String(process.pid));`;
  const pid = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' }).trim();
  assert.match(pid, /^\d+$/);
  assert.equal(existsSync(`/tmp/mat-debug-${pid}.log`), false, 'onnxruntime wrote its telemetry debug log');
  assert.equal(existsSync(join(home, '.cache', 'Microsoft')), false, "onnxruntime wrote its telemetry cache into the child's home");
});

test('the layer table has a row per layer, ReLUs joined to the layer before them, and the network\'s arithmetic', () => {
  const w = full();
  const { rows, rowOf } = layerRows(w, 224);
  assert.equal(rows.length, 26); // 16 conv, 5 pool, flatten, 3 fc, prob
  assert.deepEqual(rows.slice(0, 3).map((r) => r.label), ['conv1_1+relu1_1', 'conv1_2+relu1_2', 'pool1']);
  assert.deepEqual([...rows[0]!.output], [64, 224, 224]);
  assert.deepEqual([...rows.find((r) => r.name === 'flatten')!.output], [25088]);
  assert.equal(rowOf.get('relu7'), 'fc7');
  assert.ok(Math.abs(rows.reduce((a, r) => a + r.gflop, 0) - vgg19ForwardFlops(w, 224) / 1e9) < 1e-9);
});

test("onnxruntime's node names map to our rows", () => {
  const { rowOf } = layerRows(randomVgg19Weights(1, 32), 224);
  const map = (n: string) => onnxNodeRow(n, rowOf);
  assert.deepEqual(['relu1_1_nchwc', 'pool1_nchwc', 'fused fc6', 'fc8', 'ReorderOutput', 'prob', 'SomethingNew'].map(map),
    ['conv1_1', 'pool1', 'fc6', 'fc8', 'flatten', 'prob', 'SomethingNew']);
});

test('layer timings cover every row, for a backend and for onnxruntime (small network)', async () => {
  const w = randomVgg19Weights(2, 32);
  const { rows, rowOf } = layerRows(w, 224);
  const profile = await profileLayers(w, [getBackend('native'), getBackend('ts')], 224, 2, 1);
  for (const name of ['native', 'ts']) {
    for (const r of rows) assert.ok(profile.ms[name]![r.name]! >= 0, `${name} ${r.name}`);
    assert.equal(Object.keys(profile.ms[name]!).length, rows.length);
  }
  const ort = await onnxLayerTimes(w, 224, 2, 2, 1, rowOf);
  for (const r of rows.filter((x) => x.name.startsWith('conv') || x.name.startsWith('fc'))) assert.ok(ort[r.name]! > 0, `onnxruntime ${r.name}`);
  await assert.rejects(profileLayers(w, [{ ...getBackend('ts'), name: 'webgpu' }], 224, 1, 0), /CPU backends/);
});

test('pastiche bench --sections layers --peers --json --plot: the table and the roofline for the full-size network; bad sections are one-line errors', async () => {
  const plot = join(tempDir('pastiche-roofline-'), 'roofline.svg');
  const r = await runCli(['bench', '--sections', 'layers', '-b', 'native', '--peers', '-r', '1', '--warmup', '0', '--json', '-q', '--plot', plot]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as {
    layers: { size: number; rows: { name: string; gflop: number }[]; ms: Record<string, Record<string, number>> };
    roofline: Roofline;
    styleLayers: { rows: { name: string }[] };
    styleRoofline: Roofline;
    winogradStages: WinogradStageProfile;
  };
  assert.equal(report.layers.size, 224);
  assert.equal(report.layers.rows.length, 26);
  for (const who of ['native', 'onnxruntime']) assert.ok(report.layers.ms[who]!['conv3_2']! > 0, who);
  // The roofline counts what native executes: Winograd's operations, fewer than the direct count.
  const point = (row: string) => report.roofline.points.find((p) => p.row === row)!;
  const direct = report.layers.rows.find((x) => x.name === 'conv3_2')!.gflop;
  assert.match(point('conv3_2').algorithm, /^winograd F\([46]x[46]\)( 16c)?$/);
  assert.ok(point('conv3_2').gflop < 0.5 * direct, `${point('conv3_2').gflop} of ${direct} direct GFLOP`);
  assert.equal(point('conv1_1').algorithm, 'direct');
  // fc6 reads the weight rows of its non-zero inputs only (pool5 after a ReLU: a share of them zero).
  assert.match(point('fc6').algorithm, /^matrix-vector, \d+% rows$/);
  assert.ok(point('fc6').gflop < (2 * 25088 * 4096) / 1e9, `${point('fc6').gflop} GFLOP`);
  for (const p of report.roofline.points) assert.ok(p.achieved > 0 && p.bound > 0 && p.fraction > 0, p.row);
  assert.equal(report.roofline.points.length, 26);
  const svg = readFileSync(plot, 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /peak \d+ GFLOP\/s/);
  for (const row of ['conv1_1', 'conv5_4', 'fc6']) assert.ok(svg.includes(`>${row}</text>`), row);
  // The style iteration: forward rows, then one row per backward step down to the image.
  const style = report.styleRoofline.points;
  const step = (row: string) => style.find((p) => p.row === row);
  assert.equal(step('conv1_1 backward')?.algorithm, 'direct', 'the gradient to the 3-channel image reads dy in place');
  // Channel-blocked where Vgg19 keeps a gradient or the mask it reads in nChw16c: conv3_2's dy
  // (relu3_2 is captured by nobody), and conv4_2's, whose dx takes the gradient injected at relu4_1
  // (the captures stay nChw16c as stylize's evaluate() takes them, and so do the losses' gradients).
  const blocked = nativeBackend?.addon.cpuHasAvx512 ? ' 16c' : '';
  for (const row of ['conv3_2 backward', 'conv4_2 backward'])
    assert.equal(step(row)?.algorithm.replace(/^winograd F\([46]x[46]\)/, ''), blocked, `${row}: ${step(row)?.algorithm}`);
  assert.equal(step('pool1 backward')?.algorithm, 'pool backward');
  assert.equal(step('relu1_1 backward'), undefined, 'fused into conv1_2 backward');
  assert.equal(report.styleLayers.rows.at(-1)?.name, 'conv1_1 backward');
  // native's Winograd layers stage by stage: the 15 3x3 layers after conv1_1, each stage timed, the
  // GEMMs' rate a plausible share of the peak (counted from the products, so it cannot pass it by much).
  const stages = report.winogradStages;
  assert.deepEqual(stages.rows.map((x) => x.layer), report.layers.rows.filter((x) => /^conv/.test(x.name) && x.name !== 'conv1_1').map((x) => x.name));
  // On AVX-512, conv1_2 to conv2_2 (64-128 channels) get nChw16c in and out as in a classify pass
  // and run fused; elsewhere the channel-blocked path and its fusion do not run.
  const fused = stages.rows.filter((x) => x.algorithm.endsWith(' fused')).map((x) => x.layer);
  assert.deepEqual(fused, nativeBackend?.addon.cpuHasAvx512 ? ['conv1_2', 'conv2_1', 'conv2_2'] : []);
  for (const x of stages.rows) {
    assert.match(x.algorithm, /^winograd F\([46]x[46]\)( 16c( fused)?)?$/);
    for (const st of [x.input, x.gemm, x.output]) assert.ok(st.ms > 0 && st.fraction > 0, `${x.layer}: ${JSON.stringify(st)}`);
    assert.ok(x.gemm.fraction < 1.5, `${x.layer}: the GEMMs at ${x.gemm.gflops} GFLOP/s against a peak of ${stages.peak}`);
  }
  const noLayers = await runCli(['bench', '--sections', 'vgg', '--plot', plot]);
  assert.match(noLayers.stderr, /^pastiche: --plot draws the layers: add layers to --sections\n$/);
  const bad = await runCli(['bench', '--sections', 'layer']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^pastiche: --sections: unknown section 'layer' \(machine, case, vgg, style, layers, fast, print\)\n$/);
});

test('the roofline picture: the forward pass and the style iteration in SVG, or a PNG whose text is the built-in pixel font, drawn the same on a machine without fonts', async () => {
  // Every printable ASCII character has a glyph of its own; anything else draws the open box.
  const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i));
  const glyphs = ascii.map((c) => pixelTextPath(c, 0, 0, { size: 10 }));
  assert.equal(glyphs[0], '', 'the space draws nothing');
  assert.equal(new Set(glyphs).size, 95, 'two characters share a glyph');
  const box = pixelTextPath('\u00e9', 0, 0, { size: 10 });
  assert.ok(box !== '' && !glyphs.includes(box));
  assert.equal(pixelTextWidth('conv1_2', 10), 41); // 7 characters of 6 cells, less the last one's gap
  // Anchors as SVG's: the same runs moved left by half the width or all of it (17 at size 10).
  const firstX = (anchor: 'start' | 'middle' | 'end') => Number(/^M([-\d.]+) /.exec(pixelTextPath('fc6', 100, 50, { size: 10, anchor }))![1]);
  assert.deepEqual([firstX('start') - firstX('middle'), firstX('start') - firstX('end')], [8.5, 17]);

  const point = (row: string, algorithm: string, gflop: number, megabytes: number, achieved: number) => ({ row, label: row, algorithm, gflop, megabytes, intensity: (gflop * 1e3) / megabytes, achieved, bound: 100, fraction: 0.5 });
  const r: Roofline = { contender: 'native', peak: 187, bandwidth: 22, points: [point('conv3_2', 'winograd F(4x4)', 0.92, 44.8, 77), point('fc6', 'matrix-vector, 63% rows', 0.13, 260, 10), point('fc7', 'matrix-vector, 50% rows', 0.02, 33, 8)] };
  const svg = rooflineSvg([{ roofline: r, title: 'title' }], 'machine');
  assert.ok(svg.includes('>fc6</text>') && svg.includes('>conv3_2</text>'));
  // fc6 and fc7 read different shares of their rows but are one algorithm: one colour, one legend entry.
  assert.equal((svg.match(/>matrix-vector<\/text>/g) ?? []).length, 1);
  assert.equal((svg.match(/fill="#15803d"/g) ?? []).length, 3, 'two points and the legend');
  assert.doesNotMatch(rooflineSvg([{ roofline: r, title: 'title' }], 'machine', true), /<text/);
  // Two passes: one panel under the other, the machine under the first title only.
  const two = rooflineSvg([{ roofline: r, title: 'the forward pass' }, { roofline: r, title: 'the style iteration' }], 'machine');
  assert.match(two, /^<svg [^>]*height="1120"/);
  assert.match(two, /<g transform="translate\(0 560\)">\n<text [^>]*>the style iteration<\/text>/);
  assert.equal((two.match(/>machine<\/text>/g) ?? []).length, 1);

  // The PNG in a process whose fontconfig finds no configuration (a machine without fonts): no
  // "Fontconfig error" line, and the title is there (its band differs when the title does).
  const draw = (title: string) => `import { rooflinePicture } from ${JSON.stringify(new URL('../src/app/roofline.js', import.meta.url).href)};
    import sharp from 'sharp';
    const png = await rooflinePicture([{ roofline: ${JSON.stringify(r)}, title: ${JSON.stringify(title)} }], 'machine', 'png');
    const { width, height } = await sharp(png).metadata();
    const band = await sharp(png).extract({ left: 140, top: 20, width: 900, height: 40 }).greyscale().raw().toBuffer();
    process.stdout.write(JSON.stringify({ width, height, dark: band.filter((v) => v < 128).length, band: band.toString('base64') }));`;
  const run = (title: string) => {
    const p = spawnSync(process.execPath, ['--input-type=module', '-e', draw(title)], { env: { ...process.env, FONTCONFIG_FILE: '/nonexistent/fonts.conf' }, cwd: fileURLToPath(new URL('../..', import.meta.url)), encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    assert.equal(p.stderr, '', 'nothing on stderr');
    return JSON.parse(p.stdout) as { width: number; height: number; dark: number; band: string };
  };
  const a = run('VGG19 forward 224x224');
  const b = run('VGG19 forward 512x512');
  assert.deepEqual([a.width, a.height], [1800, 1120], 'twice the SVG\'s 900 x 560');
  assert.ok(a.dark > 500, `${a.dark} dark pixels where the title is`);
  assert.notEqual(a.band, b.band, 'the title band does not depend on the title');
  // Through the CLI on the tiny network; another extension is refused before any timing.
  const png = join(tempDir('pastiche-roofline-'), 'roofline.png');
  const cli = await runCli(['bench', '--sections', 'layers', '-b', 'native', '-r', '1', '--warmup', '0', '-q', '-w', `${TINY}vgg19-tiny-old.mat`, '--plot', png]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, new RegExp(`\\nroofline: ${png.replace(/[.\\/]/g, '\\$&')}\\n$`));
  const bytes = readFileSync(png);
  assert.deepEqual(bytes.subarray(0, 8), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  // The forward pass and the style iteration, each 1800 x 1120 (the IHDR chunk's width and height).
  assert.deepEqual([bytes.readUInt32BE(16), bytes.readUInt32BE(20)], [1800, 2240]);
  const pdf = await runCli(['bench', '--sections', 'layers', '--plot', join(tempDir('pastiche-roofline-'), 'roofline.pdf')]);
  assert.equal(pdf.code, 1);
  assert.match(pdf.stderr, /^pastiche: \S+roofline\.pdf: the plot is an SVG or PNG file \(\.svg, \.png\)\n$/);
  assert.equal(plotFormat('roofline.PNG'), 'png');
  assert.throws(() => plotFormat('roofline.pdf'), /^PasticheError: roofline\.pdf: the plot is an SVG or PNG file \(\.svg, \.png\)$/);
});

test('the layer table prints each contender, GFLOP/s and the ratio, onnxruntime-only nodes and the sums', () => {
  const rows = [
    { name: 'conv1_1', label: 'conv1_1+relu1_1', output: [64, 224, 224], gflop: 2 },
    { name: 'pool1', label: 'pool1', output: [64, 112, 112], gflop: 0 },
  ];
  const text = formatLayers({ size: 224, rows, ms: { native: { conv1_1: 4, pool1: 1 }, onnxruntime: { conv1_1: 8, pool1: 0.5, Extra: 0.25 } }, work: {} });
  const lines = text.split('\n').map((l) => l.trim().split(/\s{2,}/));
  assert.deepEqual(lines[0], ['layer', 'output', 'GFLOP', 'native ms', 'onnxruntime ms', 'native GFLOP/s', 'native / onnxruntime']);
  assert.deepEqual(lines[2], ['conv1_1+relu1_1', '64x224x224', '2.00', '4.00', '8.00', '500', '0.50']);
  assert.deepEqual(lines[3], ['pool1', '64x112x112', '1.00', '0.50', '2.00']);
  assert.deepEqual(lines[4], ['Extra', '-', '0.25']);
  assert.deepEqual(lines[5], ['sum', '2.00', '5.00', '8.75', '400', '0.57']);
});

test('bench measures the machine first: FMA peaks per instruction set and thread count, and memory bandwidth', async () => {
  const r = await runCli(['bench', '--sections', 'machine', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { limits: { peaks: { isa: string; threads: number; gflops: number }[]; readGBs: number; triadGBs: number } };
  const { peaks, readGBs, triadGBs } = report.limits;
  assert.ok(peaks.some((p) => p.isa === 'portable' && p.threads === 1));
  for (const p of peaks) assert.ok(p.gflops > 1 && p.gflops < 1e5, JSON.stringify(p));
  // Vector units do several times the work of the baseline build's 4-wide vectors (both have FMA
  // chains; the baseline's are a multiply and an add): a probe that measured latency or spilled
  // its accumulators would not show it.
  const one = (isa: string) => peaks.find((p) => p.isa === isa && p.threads === 1)?.gflops;
  const wide = one('avx2') ?? one('avx512');
  if (wide !== undefined) assert.ok(wide > 1.5 * one('portable')!, JSON.stringify(peaks));
  assert.ok(readGBs > 1 && triadGBs > 1, `read ${readGBs}, triad ${triadGBs}`);
  const text = await runCli(['bench', '--sections', 'machine']);
  assert.match(text.stdout, /^machine: .*\nfp32 FMA peak, GFLOP\/s: .*portable \d+ \(1 thread\)/);
  assert.match(text.stdout, /memory bandwidth, GB\/s: read [\d.]+, triad [\d.]+/);
  assert.doesNotMatch(text.stdout, /timings:|weights:/, 'nothing was timed');
  // Probed twice (before and after the timings, here back to back): the report's limits are the better of each.
  const { before, after, shortfall } = (JSON.parse(r.stdout) as { probes: { before: MachineLimits; after: MachineLimits; shortfall: number } }).probes;
  assert.deepEqual(report.limits, bestLimits(before, after));
  assert.ok(shortfall >= 0 && shortfall < 1, `${shortfall}`);
});

test('the machine probes: each limit the better of two, and a line where the two disagree by more than quiet probes do', () => {
  const probe = (gflops: number, readGBs: number, triadGBs: number): MachineLimits => ({ peaks: (['avx512', 'avx2', 'portable'] as const).map((isa) => ({ isa, threads: 2, gflops })), readGBs, triadGBs });
  const [busy, quiet] = [probe(113, 30, 22), probe(181, 20, 25)];
  assert.deepEqual(bestLimits(busy, quiet), probe(181, 30, 25));
  // The peak in use fell 38% short; the bandwidth roof (the better stream: 30 vs 25) 17%.
  assert.ok(Math.abs(probeShortfall(busy, quiet, 2) - (1 - 113 / 181)) < 1e-12);
  assert.ok(Math.abs(probeShortfall(probe(181, 30, 22), quiet, 2) - (1 - 25 / 30)) < 1e-12);
  assert.equal(probeShortfall(quiet, quiet, 2), 0);
  const vgg19Forward = { size: 224, gflop: 39.3, rows: [{ name: 'native', runs: [62], medianMs: 62, gflops: 634 }] };
  const text = (shortfall: number) => formatBench({ machine: 'm', weights: 'w', repeat: 1, warmup: 0, limits: quiet, probes: { before: busy, after: quiet, shortfall }, vgg19Forward });
  assert.match(text(0.38), /\nmemory bandwidth, GB\/s: read 20\.0, triad 25\.0 \(STREAM's count\)\n\(the probes before and after the timings differ by 38%: this machine was busy for a while; /);
  assert.doesNotMatch(text(0.09), /probes/);
  // --sections machine alone: the two probes came one after the other, with no timings between.
  assert.match(formatBench({ machine: 'm', weights: 'w', repeat: 1, warmup: 0, limits: quiet, probes: { before: busy, after: quiet, shortfall: 0.38 } }), /\n\(two probes in a row differ by 38%: this machine is busy now; the limits are the better of each\)$/);
});

test('conv2dWork: each backend names the algorithm it runs and counts what it executes', () => {
  const x = [1, 64, 56, 56];
  const w = [64, 3, 3, 64];
  const p = { pad: 1, stride: 1 };
  const direct = 2 * 64 * 9 * 64 * 56 * 56;
  const loops = getBackend('loops').conv2dWork(x, w, p);
  assert.deepEqual([loops.algorithm, loops.flops, loops.bytes], ['direct', direct, 4 * (64 * 56 * 56 * 2 + 64 * 9 * 64 + 64)]);
  const im2col = getBackend('ts').conv2dWork(x, w, p);
  assert.equal(im2col.algorithm, 'im2col');
  assert.equal(im2col.bytes - loops.bytes, 4 * 2 * 64 * 9 * 56 * 56, 'the column matrix, written and read');
  // F(6x6): 10x10 tiles of 8x8 transformed values; 64 products per 36 outputs where direct needs 9 per output.
  const f6 = convWork(x, w, p, { kind: 'winograd', m: 6 });
  const products = 2 * 64 * 100 * 64 * 64;
  assert.equal(f6.flops, products);
  assert.ok(f6.flops < 0.25 * direct);
  assert.equal(f6.bytes, 4 * (64 * 56 * 56 + 2 * 64 * 100 * 64 + 64 * 64 * 64 + 2 * 64 * 100 * 64 + 64 * 56 * 56 + 64), 'x, V twice, U, M twice, y, b');
  if (nativeBackend) {
    const blocked = (m: 4 | 6) => nativeBackend!.addon.winogradC16(64, 64, m);
    const tile = winogradTile('auto', 3, 1, 1, 64, 64, 56, 56, blocked);
    const c16 = tile !== 0 && blocked(tile);
    assert.deepEqual(nativeBackend.conv2dWork(x, w, p), convWork(x, w, p, tile ? { kind: 'winograd', m: tile, c16 } : { kind: 'im2col' }));
    assert.equal(nativeBackend.conv2dWork([1, 3, 224, 224], [3, 3, 3, 64], p).algorithm, 'direct');
    // A 512-channel layer at 64 px takes F(6x6), both ways, unless asked for lean weights.
    const [x512, w512] = [[1, 512, 64, 64], [512, 3, 3, 512]];
    for (const pass of ['forward', 'backward-data'] as const) {
      assert.match(nativeBackend.conv2dWork(x512, w512, p, pass, true).algorithm, /F\(6x6\)/, pass);
      assert.match(nativeBackend.conv2dWork(x512, w512, { ...p, leanWeights: true }, pass, true).algorithm, /F\(4x4\)/, pass);
    }
  }
});

test('linearWork: native reads only the weight rows of non-zero inputs where it streams them, the other backends all of them', () => {
  const [x, w] = [[1, 512, 7, 7], [25088, 4096]];
  const all = { algorithm: 'matrix-vector', flops: 2 * 25088 * 4096, bytes: 4 * (25088 * 4096 + 4096 + 25088 + 4096) };
  for (const name of ['loops', 'ts'] as const) assert.deepEqual(getBackend(name).linearWork(x, w, 12544), all, name);
  if (!nativeBackend) return;
  assert.deepEqual(nativeBackend.linearWork(x, w, 12544), { algorithm: 'matrix-vector, 50% rows', flops: 2 * 12544 * 4096, bytes: 4 * (12544 * 4096 + 4096 + 25088 + 4096) });
  assert.deepEqual(nativeBackend.linearWork(x, w, 0), all);
  // Eight rows of x go to the GEMM, which reads every weight row.
  assert.equal(nativeBackend.linearWork([8, 25088], w, 12544).flops, 2 * 8 * 25088 * 4096);
});

test('pastiche bench --sections fast --peers: the real-time style network timed on a backend and in onnxruntime, which computes the same output; a training step, with PyTorch where it is installed', async () => {
  const r = await runCli(['bench', '--sections', 'fast', '--fast-sizes', '64', '--train-step', '2x32', '-b', 'native', '--peers', '-r', '1', '--warmup', '0', '--json', '-q']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { fast: { size: number; rows: { name: string; medianMs: number }[]; peerDifference: number }[]; fastPeakRssMB: number; fastTraining: { batch: number; size: number; rows: { name: string; medianMs: number }[]; peerMissing?: string } };
  assert.deepEqual(report.fast.map((f) => [f.size, f.rows.map((row) => row.name)]), [[64, ['native', 'onnxruntime']]]);
  assert.ok(report.fast[0]!.rows.every((row) => row.medianMs > 0));
  assert.ok(report.fast[0]!.peerDifference < 1e-4, `onnxruntime's output differs by ${report.fast[0]!.peerDifference} of the range`);
  assert.ok(report.fastPeakRssMB > 0);
  // PyTorch runs where Debian's python3-torch is installed (the developers' machines); elsewhere (CI) the report says why not.
  const t = report.fastTraining;
  assert.deepEqual([t.batch, t.size], [2, 32]);
  assert.ok(t.rows.every((row) => row.medianMs > 0));
  if (t.peerMissing === undefined) assert.deepEqual(t.rows.map((row) => row.name), ['native', 'pytorch']);
  else assert.match(t.peerMissing, /python3-torch is not installed|no \/usr\/bin\/python3/);
  const text = await runCli(['bench', '--sections', 'fast', '--fast-sizes', '64', '--train-step', '1x16', '-b', 'native', '-r', '1', '--warmup', '0', '-q']);
  // The pass counted as direct convolutions (1.26 GFLOP at 64), and what native executes against the peak.
  assert.match(text.stdout, /== Real-time style network \(TransformerNet, width 32\), 64x64, one forward pass \(1\.3 GFLOP as direct convolution; FMA peak \d+ GFLOP\/s\) ==\n {2}native +[\d.]+ ms +[\d.]+ GFLOP\/s/);
  assert.match(text.stdout, /\n {2}native executes 0\.\d GFLOP \(its algorithms' products\): \d+ GFLOP\/s, \d+% of the FMA peak\n/);
  assert.match(text.stdout, /== Real-time style network, one training step: batch 1 of 16x16, VGG19 loss to relu5_1, all weight gradients, Adam ==\n {2}native +\d+ ms/);
  const bad = await runCli(['bench', '--sections', 'fast', '--train-step', '4x30']);
  assert.match(bad.stderr, /^pastiche: --train-step takes BATCHxSIZE, the size a multiple of 4 of at least 16 \(got '4x30'\)\n$/);
});

test('the machine floor of a pass: each layer at max(operations / peak, bytes / bandwidth), summed', () => {
  const limits = { peaks: [], readGBs: 10, triadGBs: 8 };
  // 1 GFLOP on 1 MB at 100 GFLOP/s: 10 ms of arithmetic; 10 MFLOP on 100 MB at 10 GB/s (the better stream): 10 ms of traffic.
  const f = passFloor([{ name: 'a', flops: 1e9, bytes: 1e6 }, { name: 'b', flops: 1e7, bytes: 1e8 }], 100, limits);
  assert.ok(Math.abs(f.ms - 20) < 1e-9, `${f.ms}`);
  assert.deepEqual([f.gflop, f.megabytes, f.peak, f.bandwidth], [1.01, 101, 100, 10]);
  if (!nativeBackend) return;
  // VGG19 at 224: its 16 convolutions with native's products and the 3 fc layers, each array moved once.
  const layers = floorLayers(full(), 224, nativeBackend);
  assert.deepEqual(layers.map((l) => l.name), layerRows(full(), 224).rows.map((r) => r.name).filter((n) => /^(conv|fc)/.test(n)));
  const at = (name: string) => layers.find((l) => l.name === name)!;
  assert.equal(at('conv3_2').flops, nativeBackend.conv2dWork([1, 256, 56, 56], [256, 3, 3, 256], { pad: 1, stride: 1 }).flops);
  assert.ok(at('conv3_2').flops < 0.5 * 2 * 256 * 9 * 256 * 56 * 56, 'Winograd products, not the direct count');
  assert.equal(at('conv3_2').bytes, 4 * (2 * 256 * 56 * 56 + 256 * 9 * 256 + 256));
  assert.deepEqual(at('fc6'), { name: 'fc6', flops: 2 * 25088 * 4096, bytes: 4 * (25088 * 4096 + 4096 + 25088 + 4096) });
  // Half of fc6's inputs zero: native reads half its weight rows, and so could any engine.
  const sparse = floorLayers(full(), 224, nativeBackend, 'prob', false, new Map([['fc6', 12544]])).find((l) => l.name === 'fc6');
  assert.deepEqual(sparse, { name: 'fc6', flops: 2 * 12544 * 4096, bytes: 4 * (12544 * 4096 + 4096 + 25088 + 4096) });
  // A style iteration: the 13 convolutions to relu5_1 and each one's gradient to its input.
  const iteration = floorLayers(full(), 224, nativeBackend, 'relu5_1', true);
  assert.equal(iteration.length, 26);
  assert.equal(iteration.find((l) => l.name === 'conv3_2 backward')?.bytes, at('conv3_2').bytes - 4 * 256);
  const pass = passFloor(layers, 400, { peaks: [], readGBs: 50, triadGBs: 40 });
  const products = layers.reduce((a, l) => a + l.flops, 0) / 400e6;
  assert.ok(pass.ms > products + 5, `${pass.ms} ms: the fc layers' 0.5 GB add their traffic to ${products} ms of products`);
});

test('pastiche bench --sections vgg,style --peers: each pass beside its machine floor, as a share of the floor\'s speed', async () => {
  const r = await runCli(['bench', '--sections', 'vgg,style', '--style-sizes', '32', '-w', `${TINY}vgg19-tiny-old.mat`, '-b', 'native', '--peers', '-r', '1', '--warmup', '0', '--json', '-q']);
  assert.equal(r.code, 0, r.stderr);
  type Row = { name: string; medianMs: number; ofFloor?: number };
  type Floor = { ms: number; gflop: number; megabytes: number };
  const report = JSON.parse(r.stdout) as {
    vgg19Forward: { rows: Row[]; floor: Floor };
    styleIteration: { rows: Row[]; floor: { iteration: Floor; forward: Floor } }[];
    stylizeStep: { size: number; history: number; rows: (Row & { optimizerMs: number })[] }[];
  };
  const v = report.vgg19Forward;
  for (const row of v.rows) assert.ok(row.ofFloor! > 0 && row.ofFloor! < 1 && Math.abs(row.ofFloor! - v.floor.ms / row.medianMs) < 1e-12, JSON.stringify(row));
  const s = report.styleIteration[0]!;
  assert.ok(s.floor.iteration.gflop > 1.9 * s.floor.forward.gflop, 'the iteration computes each convolution twice');
  const of = (name: string) => s.rows.find((x) => x.name === name)!;
  assert.equal(of('native').ofFloor, s.floor.iteration.ms / of('native').medianMs);
  assert.equal(of('onnxruntime').ofFloor, s.floor.forward.ms / of('onnxruntime').medianMs, 'onnxruntime runs the forward pass only');
  // The whole step of stylize: the style backends only (onnxruntime has no losses or optimiser).
  const st = report.stylizeStep[0]!;
  assert.deepEqual([st.size, st.history, st.rows.map((x) => x.name)], [32, 100, ['native']]);
  assert.ok(st.rows[0]!.optimizerMs > 0 && st.rows[0]!.optimizerMs < st.rows[0]!.medianMs, JSON.stringify(st));
  // As printed.
  const floor = { ms: 27.94, gflop: 9.57, megabytes: 586, peak: 438, bandwidth: 49 };
  const text = formatBench({
    machine: 'm',
    weights: 'w',
    repeat: 1,
    warmup: 0,
    vgg19Forward: { size: 224, gflop: 39.3, floor, rows: [{ name: 'native', runs: [62], medianMs: 62, gflops: 634, ofFloor: 27.94 / 62 }, { name: 'webgpu', runs: [9], medianMs: 9, gflops: 4000 }] },
    styleIteration: [{ size: 512, floor: { iteration: { ...floor, ms: 208 }, forward: { ...floor, ms: 104 } }, rows: [{ name: 'native', runs: [480], medianMs: 480, ofFloor: 208 / 480 }] }],
    stylizeStep: [{ size: 512, history: 100, rows: [{ name: 'native', runs: [700], medianMs: 700, optimizerMs: 180.4 }] }],
  });
  assert.match(text, /\n== Stylize step, 512x512: .* an L-BFGS step with a full history \(100 pairs\) ==\n {2}native +700\.0 ms {2}\(L-BFGS step 180\.4 ms; runs: 700\)$/);
  // Without onnxruntime, no forward-only floor: nobody ran that pass.
  assert.match(text, /\n {2}machine floor of the iteration: 208 ms .*\n {2}of the floor's speed: native 43%\n/);
  assert.match(text, /\n {2}machine floor: 27\.9 ms \(each layer at 438 GFLOP\/s or 49 GB\/s, whichever binds: 9\.57 GFLOP of products as native computes them, 586 MB each moved once\)\n {2}of the floor's speed: native 45%\n/);
});
