/** Text output of the CLI: what a person reads at the terminal. */
import { median } from '../util/stats.js';
import type { Timing } from '../app/bench.js';
import type { BenchReport } from '../app/bench-run.js';
import type { MachineLimits } from '../app/machine.js';
import type { Classification } from '../app/classify.js';
import type { LayerProfile } from '../app/layer-profile.js';
import type { PassFloor, Roofline } from '../app/roofline.js';
import type { WinogradStageProfile } from '../app/winograd-stages.js';
import { type PrecisionComparison, BF16_MAX_REL_ERR, FP16_MAX_REL_ERR, MAX_MSE, MAX_REL_ERR, type CheckRow } from '../app/check.js';

export function formatClassification(c: Classification): string {
  const best = c.top[0];
  const lines = [`${c.image}`];
  // The course's own line, so results can be held against the lab's.
  if (best) lines.push(`Classification result: id = ${best.index}, prob = ${best.prob.toFixed(6)}`);
  const w = Math.max(...c.top.map((p) => String(p.index).length), 2);
  lines.push(`  ${'#'.padStart(2)}  ${'id'.padStart(w)}  ${'prob'.padEnd(8)}  class`);
  c.top.forEach((p, i) => {
    lines.push(`  ${String(i + 1).padStart(2)}  ${String(p.index).padStart(w)}  ${p.prob.toFixed(6)}  ${p.label}`);
  });
  return lines.join('\n');
}

function fmtMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

export function formatCheck(rows: readonly CheckRow[], repeat: number): string {
  const header = ['op', 'backend', 'loops ms', 'ms', 'speed-up', 'MSE', 'max rel err', 'result'];
  const body = rows.map((r) => [
    r.op, r.backend, fmtMs(r.loopsMs), fmtMs(r.ms), r.speedup.toFixed(1),
    r.mse.toExponential(2), r.maxRelErr.toExponential(2), r.pass ? 'pass' : 'FAIL',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    'Conv 3x3 pad 1 stride 1, input and top gradient 1x256x24x40, weights 256x3x3x256 (numpy seed 1234);',
    `max-pool 2x2 stride 2 on the same input. Median of ${repeat} run(s); errors against loops.`,
    '',
    line(header),
    line(header.map((_, i) => '-'.repeat(widths[i]!))),
    ...body.map(line),
    '',
    `pass: MSE < ${MAX_MSE} (the course's criterion) and max |a - ref| / max |ref| < ${MAX_REL_ERR}` +
      (rows.some((r) => r.backend.endsWith('fp16')) ? ` (fp16 rows: < ${FP16_MAX_REL_ERR})` : '') +
      (rows.some((r) => r.backend.endsWith('bf16')) ? ` (bf16 rows: < ${BF16_MAX_REL_ERR})` : ''),
  ].join('\n');
}

export function formatPrecision(c: PrecisionComparison): string {
  const p = (v: number) => v.toFixed(4);
  const same = c.reduced.top.index === c.reference.top.index;
  const w = Math.max(c.reference.backend.length, c.reduced.backend.length) + 2;
  const losses = (xs: readonly number[]) => xs.map((x) => x.toExponential(3)).join(' ');
  return [
    `VGG19 on ${c.image} (weights ${c.weights}):`,
    `  ${c.reference.backend.padEnd(w)}top-1 ${c.reference.top.index} '${c.reference.top.label}' p = ${p(c.reference.top.prob)}, forward ${c.reference.forwardMs.toFixed(1)} ms`,
    `  ${c.reduced.backend.padEnd(w)}top-1 ${c.reduced.top.index} '${c.reduced.top.label}' p = ${p(c.reduced.top.prob)}` +
      (same ? '' : ` (p of ${c.reference.top.index}: ${p(c.reduced.probOfReferenceClass)})`) +
      `, forward ${c.reduced.forwardMs.toFixed(1)} ms (${(c.reduced.forwardMs / c.reference.forwardMs).toFixed(2)}x fp32's time)`,
    `  difference in that probability: ${(c.reduced.probOfReferenceClass - c.reference.top.prob).toExponential(2)}; ` +
      `largest over the 1000 classes: ${c.maxProbDiff.toExponential(2)} (the course: DLP 0.4790 vs CPU 0.4933)`,
    `Style transfer of that image at ${c.styleSize} px (style: stripes), total loss after each step from the same start:`,
    ...c.trajectories.flatMap((t) => [
      `  ${t.optimizer.padEnd(6)} ${c.reference.backend.padEnd(w)}${losses(t.reference)}`,
      `  ${''.padEnd(6)} ${c.reduced.backend.padEnd(w)}${losses(t.reduced)}  (largest difference ${(100 * t.maxRelDiff).toFixed(2)}%)`,
    ]),
    `  one step (adam): ${c.stepMs.reference.toFixed(1)} ms fp32, ${c.stepMs.reduced.toFixed(1)} ms ${c.reduced.backend} (${(c.stepMs.reduced / c.stepMs.reference).toFixed(2)}x)`,
  ].join('\n');
}

/** native's Winograd layers stage by stage, each against its roof. */
export function formatWinogradStages(w: WinogradStageProfile): string {
  const pct = (f: number) => `${(100 * f).toFixed(0)}%`;
  const header = ['layer', 'algorithm', 'input ms', 'GB/s', 'of bw', 'GEMM ms', 'GFLOP/s', 'of peak', 'output ms', 'GB/s', 'of bw'];
  const body = w.rows.map((r) => [
    r.layer, r.algorithm,
    r.input.ms.toFixed(2), r.input.gbs.toFixed(1), pct(r.input.fraction),
    r.gemm.ms.toFixed(2), r.gemm.gflops.toFixed(0), pct(r.gemm.fraction),
    r.output.ms.toFixed(2), r.output.gbs.toFixed(1), pct(r.output.fraction),
  ]);
  return [
    `== ${w.contender}'s Winograd layers at ${w.size}x${w.size} stage by stage: the GEMMs' products against the FMA peak (${w.peak.toFixed(0)} GFLOP/s), ` +
      `the transforms' bytes (estimated) against the bandwidth (${w.bandwidth.toFixed(1)} GB/s)` +
      (w.rows.some((r) => r.algorithm.endsWith(' fused')) ? "; fused: one tile row through all three stages on one thread, V and M in cache, each stage's thread time over the threads ==" : ' =='),
    table(header, body),
  ].join('\n');
}

function ratios(rows: readonly Timing[], label: string, peerName = 'onnxruntime'): string[] {
  const out: string[] = [];
  const peer = rows.find((r) => r.name === peerName);
  for (const r of rows) {
    if (r === peer) continue;
    if (peer) out.push(`  ${r.name} / ${peerName} ${label}: ${(r.medianMs / peer.medianMs).toFixed(3)}`);
  }
  return out;
}

/** A pass's machine floor and what it is made of. */
function floorLine(what: string, f: PassFloor): string {
  const num = (v: number) => (v >= 100 ? v.toFixed(0) : v.toPrecision(3));
  return `  ${what}: ${num(f.ms)} ms (each layer at ${f.peak.toFixed(0)} GFLOP/s or ${f.bandwidth.toFixed(0)} GB/s, whichever binds: ${num(f.gflop)} GFLOP of products as native computes them, ${num(f.megabytes)} MB each moved once)`;
}

/** Each row's share of its floor's speed (floor / time); none for rows the floor is not for (a GPU, bf16). */
function ofFloorLine(rows: readonly (Timing & { ofFloor?: number })[], note = ''): string[] {
  const percent = (v: number) => (v >= 1 ? v.toFixed(0) : v.toPrecision(1));
  const shares = rows.filter((r) => r.ofFloor !== undefined).map((r) => `${r.name} ${percent(100 * r.ofFloor!)}%`);
  return shares.length ? [`  of the floor's speed: ${shares.join(', ')}${note}`] : [];
}

/** One row per layer: each contender's median ms, the first one's GFLOP/s, and its ratio to onnxruntime. */
export function formatLayers(p: LayerProfile): string {
  const names = Object.keys(p.ms);
  const first = names.find((n) => n !== 'onnxruntime');
  const peer = names.includes('onnxruntime') && first ? 'onnxruntime' : undefined;
  const header = ['layer', 'output', 'GFLOP', ...names.map((n) => `${n} ms`), ...(first ? [`${first} GFLOP/s`] : []), ...(peer ? [`${first} / ${peer}`] : [])];
  const msOf = (n: string, row: string) => p.ms[n]![row];
  const cell = (v: number | undefined, f: (x: number) => string) => (v === undefined ? '-' : f(v));
  const body = p.rows.map((r) => {
    const mine = first ? msOf(first, r.name) : undefined;
    const theirs = peer ? msOf(peer, r.name) : undefined;
    return [
      r.label, r.output.join('x'), r.gflop > 0 ? r.gflop.toFixed(2) : '',
      ...names.map((n) => cell(msOf(n, r.name), fmtMs)),
      ...(first ? [r.gflop > 0 && mine ? (r.gflop / (mine / 1e3)).toFixed(0) : ''] : []),
      ...(peer ? [mine !== undefined && theirs ? (mine / theirs).toFixed(2) : '-'] : []),
    ];
  });
  // onnxruntime's own nodes that are none of our layers (if any) get rows of their own.
  const known = new Set(p.rows.map((r) => r.name));
  for (const n of names)
    for (const row of Object.keys(p.ms[n]!))
      if (!known.has(row)) {
        known.add(row);
        body.push([row, '', '', ...names.map((m) => cell(msOf(m, row), fmtMs)), ...(first ? [''] : []), ...(peer ? [''] : [])]);
      }
  const total = (n: string) => Object.values(p.ms[n]!).reduce((a, b) => a + b, 0);
  const gflop = p.rows.reduce((a, r) => a + r.gflop, 0);
  body.push(['sum', '', gflop.toFixed(2), ...names.map((n) => fmtMs(total(n))), ...(first ? [(gflop / (total(first) / 1e3)).toFixed(0)] : []), ...(peer ? [(total(first!) / total(peer)).toFixed(2)] : [])]);
  return table(header, body);
}

/** Columns as wide as their widest cell: the first two (names) to the left, numbers to the right. */
function table(header: readonly string[], body: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(header.map((_, i) => '-'.repeat(widths[i]!))), ...body.map(line)].map((l) => `  ${l}`).join('\n');
}

/** One row per layer: algorithm, executed GFLOP, MB moved, intensity, achieved rate, bound, fraction. */
export function formatRoofline(r: Roofline): string {
  const header = ['layer', 'algorithm', 'GFLOP', 'MB', 'FLOP/B', 'achieved', 'bound', 'of bound'];
  const body = r.points.map((p) => {
    const unit = p.gflop > 0 ? 'GFLOP/s' : 'GB/s';
    return [p.label, p.algorithm, p.gflop > 0 ? p.gflop.toFixed(2) : '', p.megabytes.toFixed(1), p.gflop > 0 ? p.intensity.toFixed(1) : '', `${p.achieved.toFixed(0)} ${unit}`, `${p.bound.toFixed(0)} ${unit}`, `${(100 * p.fraction).toFixed(0)}%`];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), line(header.map((_, i) => '-'.repeat(widths[i]!))), ...body.map(line)].map((l) => `  ${l}`).join('\n');
}

/** The machine's limits in two lines: FMA peaks per instruction set and threads, then bandwidth. */
export function formatLimits(m: MachineLimits): string[] {
  const sets = [...new Set(m.peaks.map((p) => p.isa))];
  const peaks = sets.map((isa) => `${isa} ${m.peaks.filter((p) => p.isa === isa).map((p) => `${p.gflops.toFixed(0)} (${p.threads} thread${p.threads > 1 ? 's' : ''})`).join(' / ')}`);
  return [`fp32 FMA peak, GFLOP/s: ${peaks.join('; ')}`, `memory bandwidth, GB/s: read ${m.readGBs.toFixed(1)}, triad ${m.triadGBs.toFixed(1)} (STREAM's count)`];
}

/**
 * A line where the probes before and after the timings disagree by more than two quiet probes do
 * (up to 9%, probeShortfall): the VM lent its cores elsewhere for a while, maybe during the timings too.
 */
function probesLine(p: BenchReport['probes'], timed: boolean): string[] {
  if (!p || p.shortfall <= 0.15) return [];
  const pct = `${(100 * p.shortfall).toFixed(0)}%`;
  if (!timed) return [`(two probes in a row differ by ${pct}: this machine is busy now; the limits are the better of each)`];
  return [`(the probes before and after the timings differ by ${pct}: this machine was busy for a while; the limits are the better of each, and a time below may be slow for the same reason)`];
}

/** The print-size runs: the plan each size got, its seconds per iteration and its process's peak memory against the estimate. */
function formatPrint(p: NonNullable<BenchReport['print']>): string[] {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const lines = [
    `== Style transfer at print sizes on ${p.backend}: each size in its own process, a synthetic picture and a 512-px style ==`,
    `  ${'size'.padEnd(11)} ${'plan'.padEnd(44)} ${'halo x'.padStart(6)} ${'targets s'.padStart(9)} ${'s/iter'.padStart(8)} ${'s/Mpx'.padStart(6)} ${'peak RSS'.padStart(10)} ${'estimate'.padStart(10)} ${'budget'.padStart(10)}`,
  ];
  for (const row of p.rows) {
    const pl = row.plan;
    const how = `${pl.tile === undefined ? 'untiled' : `${pl.tile}-px tiles x ${pl.tiles}`}, ${pl.optimizer === 'adam' ? 'Adam' : `L-BFGS history ${pl.lbfgsHistory}`}${pl.leanWeights ? ', lean' : ''}`;
    // Untiled, the first iteration also computes the targets.
    const its = pl.tile === undefined && row.iterationSeconds.length > 1 ? row.iterationSeconds.slice(1) : row.iterationSeconds;
    const perIteration = median([...its]);
    lines.push(
      `  ${`${row.width}x${row.height}`.padEnd(11)} ${how.padEnd(44)} ${row.haloOverhead.toFixed(2).padStart(6)} ${row.targetsSeconds.toFixed(1).padStart(9)} ${perIteration.toFixed(1).padStart(8)} ` +
        `${(perIteration / ((row.width * row.height) / 1e6)).toFixed(1).padStart(6)} ${mib(row.peakRssBytes).padStart(10)} ${mib(pl.bytes).padStart(10)} ${(Number.isFinite(pl.budget) ? mib(pl.budget) : '-').padStart(10)}`,
    );
  }
  lines.push('  halo x: pixels computed per output pixel in each pass (crops with their halos); s/Mpx: seconds per iteration per million output pixels');
  return lines;
}

export function formatBench(r: BenchReport): string {
  // --sections machine alone times nothing: no weights or timings line then.
  const timed = [r.courseCase, r.vgg19Forward, r.styleIteration, r.layers, r.fast, r.print].some((x) => x !== undefined);
  const lines = [`machine: ${r.machine}`, ...(r.limits ? formatLimits(r.limits) : ['machine limits: not measured (the native backend is not available)']), ...probesLine(r.probes, timed), ...(r.gpu ? [`webgpu: ${r.gpu}`] : [])];
  if (timed) lines.push(`weights: ${r.weights}${r.loadSeconds !== undefined ? ` (loaded in ${r.loadSeconds.toFixed(2)} s)` : ''}`, `timings: median of ${r.repeat} run(s) after ${r.warmup} warm-up run(s), contenders interleaved`);
  if (r.courseCase) lines.push('', "== The course's case ==", formatCheck(r.courseCase, r.repeat));
  if (r.vgg19Forward) {
    const v = r.vgg19Forward;
    lines.push('', `== VGG19 forward, ${v.size}x${v.size}, batch 1, to prob (${v.gflop.toFixed(1)} GFLOP as direct convolution) ==`);
    for (const row of v.rows) {
      lines.push(`  ${row.name.padEnd(12)} ${row.medianMs.toFixed(1).padStart(9)} ms  ${row.gflops.toFixed(1).padStart(6)} GFLOP/s  (runs: ${row.runs.map((t) => t.toFixed(0)).join(', ')})`);
    }
    lines.push(...ratios(v.rows, 'time ratio'));
    if (v.floor) lines.push(floorLine('machine floor', v.floor), ...ofFloorLine(v.rows));
  }
  for (const s of r.styleIteration ?? []) {
    lines.push('', `== Style iteration, ${s.size}x${s.size}: forward to relu5_1 + backward to the image (onnxruntime: forward only) ==`);
    for (const row of s.rows) lines.push(`  ${row.name.padEnd(12)} ${row.medianMs.toFixed(1).padStart(9)} ms  (runs: ${row.runs.map((t) => t.toFixed(0)).join(', ')})`);
    lines.push(...ratios(s.rows, 'time ratio (iteration vs forward)'));
    if (s.floor) {
      // The forward pass's floor is onnxruntime's: shown where it ran.
      const peer = s.rows.some((r) => r.name === 'onnxruntime');
      lines.push(floorLine('machine floor of the iteration', s.floor.iteration));
      if (peer) lines.push(floorLine('machine floor of the forward pass to relu5_1', s.floor.forward));
      lines.push(...ofFloorLine(s.rows, peer ? " (onnxruntime: of the forward pass's)" : ''));
    }
  }
  for (const s of r.stylizeStep ?? []) {
    lines.push('', `== Stylize step, ${s.size}x${s.size}: what \`pastiche stylize\` runs per step (default preset): the style iteration, the content and style losses with their gradients, an L-BFGS step with a full history (${s.history} pairs) ==`);
    for (const row of s.rows) lines.push(`  ${row.name.padEnd(12)} ${row.medianMs.toFixed(1).padStart(9)} ms  (L-BFGS step ${row.optimizerMs.toFixed(1)} ms; runs: ${row.runs.map((t) => t.toFixed(0)).join(', ')})`);
  }
  if (r.layers) {
    lines.push('', `== VGG19 forward layer by layer, ${r.layers.size}x${r.layers.size}, batch 1 (a ReLU counted with the layer before it; GFLOP as direct convolution; each pool on its own: the vgg section's pass takes it inside the convolution before it) ==`);
    lines.push(formatLayers(r.layers));
  }
  if (r.roofline) {
    const rf = r.roofline;
    lines.push(
      '',
      `== ${rf.contender} against this machine's roofline: peak ${rf.peak.toFixed(0)} GFLOP/s, ${rf.bandwidth.toFixed(1)} GB/s; ` +
        'work as executed (Winograd: its GEMM products), bytes estimated; bound = min(peak, intensity x bandwidth) ==',
    );
    lines.push(formatRoofline(rf));
  }
  if (r.winogradStages) lines.push('', formatWinogradStages(r.winogradStages));
  if (r.styleLayers) {
    const s = r.styleLayers.size;
    lines.push('', `== a style iteration ${s}x${s} layer by layer: forward to relu5_1, then backward to the image (gradients injected at the style and content layers) ==`);
    lines.push(formatLayers(r.styleLayers));
  }
  if (r.styleRoofline) {
    lines.push('', `== the style iteration against the roofline (backward rows: the gradient to each layer's input; a ReLU below a convolution is fused into it) ==`);
    lines.push(formatRoofline(r.styleRoofline));
  }
  if (r.peakRssMB !== undefined) lines.push('', `peak resident memory of this process: ${r.peakRssMB.toFixed(0)} MiB`);
  for (const f of r.fast ?? []) {
    const peer = f.peerDifference === undefined ? '' : `; onnxruntime's output within ${f.peerDifference.toExponential(1)} of the range of ours`;
    const peak = f.peak ? `; FMA peak ${f.peak.toFixed(0)} GFLOP/s` : '';
    lines.push('', `== Real-time style network (TransformerNet, width 32), ${f.size}x${f.size}, one forward pass (${f.gflop.toFixed(1)} GFLOP as direct convolution${peak})${peer} ==`);
    for (const row of f.rows) {
      lines.push(`  ${row.name.padEnd(12)} ${row.medianMs.toFixed(1).padStart(9)} ms  ${row.gflops.toFixed(1).padStart(6)} GFLOP/s  (runs: ${row.runs.map((t) => t.toFixed(0)).join(', ')})`);
    }
    // How close to the machine: the operations our backends actually execute (Winograd's products).
    for (const row of f.rows.filter((r) => r.executedGflop !== undefined && f.peak)) {
      const rate = row.executedGflop! / (row.medianMs / 1000);
      lines.push(`  ${row.name} executes ${row.executedGflop!.toFixed(1)} GFLOP (its algorithms' products): ${rate.toFixed(0)} GFLOP/s, ${((100 * rate) / f.peak!).toFixed(0)}% of the FMA peak`);
    }
    lines.push(...ratios(f.rows, 'time ratio'));
  }
  if (r.fastTraining) {
    const t = r.fastTraining;
    lines.push('', `== Real-time style network, one training step: batch ${t.batch} of ${t.size}x${t.size}, VGG19 loss to relu5_1, all weight gradients, Adam ==`);
    for (const row of t.rows) lines.push(`  ${row.name.padEnd(12)} ${row.medianMs.toFixed(0).padStart(9)} ms  (runs: ${row.runs.map((v) => v.toFixed(0)).join(', ')})`);
    if (t.peerMissing) lines.push(`  (no PyTorch peer: ${t.peerMissing})`);
    lines.push(...ratios(t.rows, 'time ratio', 'pytorch'));
  }
  if (r.fastPeakRssMB !== undefined) lines.push('', `peak resident memory after the style network's passes: ${r.fastPeakRssMB.toFixed(0)} MiB`);
  if (r.print) lines.push('', ...formatPrint(r.print));
  return lines.join('\n');
}
