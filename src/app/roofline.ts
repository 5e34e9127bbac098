/**
 * The roofline model (Williams, Waterman & Patterson, CACM 2009) of VGG19's layers on this machine:
 * a layer that does F operations on B bytes (intensity I = F / B) can run at most at
 * min(peak, I x bandwidth). Each row's achieved rate is set against that bound, with the peak and
 * the bandwidth `bench` measured first (the machine section) and the work as the backend executes
 * it (layer-profile.ts rowWork). Rows without arithmetic (pools, the flatten) are held against the
 * bandwidth alone. The bandwidth roof is the better of the read and triad streams (roofBandwidth).
 */
import type { FloorLayer, LayerProfile } from './layer-profile.js';
import { roofBandwidth, type MachineLimits } from './machine.js';

export interface RooflinePoint {
  readonly row: string;
  readonly label: string;
  readonly algorithm: string;
  /** Operations executed, GFLOP (0 for rows without arithmetic). */
  readonly gflop: number;
  readonly megabytes: number;
  /** FLOP per byte. */
  readonly intensity: number;
  /** GFLOP/s executed; GB/s for rows without arithmetic. */
  readonly achieved: number;
  /** The machine's bound for this row, in the same unit. */
  readonly bound: number;
  readonly fraction: number;
}

export interface Roofline {
  readonly contender: string;
  /** GFLOP/s on the threads and instruction set in use. */
  readonly peak: number;
  /** GB/s: the better of the read and triad streams. */
  readonly bandwidth: number;
  readonly points: readonly RooflinePoint[];
}

/** The roofline of `contender`'s rows (a backend that the profile has work for). */
export function roofline(profile: LayerProfile, contender: string, peak: number, limits: MachineLimits): Roofline {
  const work = profile.work[contender] ?? {};
  const ms = profile.ms[contender] ?? {};
  const bandwidth = roofBandwidth(limits);
  const points: RooflinePoint[] = [];
  for (const r of profile.rows) {
    const w = work[r.name];
    const t = ms[r.name];
    if (!w || !t) continue;
    const seconds = t / 1e3;
    const intensity = w.flops / w.bytes;
    const achieved = w.flops > 0 ? w.flops / seconds / 1e9 : w.bytes / seconds / 1e9;
    const bound = w.flops > 0 ? Math.min(peak, intensity * bandwidth) : bandwidth;
    points.push({ row: r.name, label: r.label, algorithm: w.algorithm, gflop: w.flops / 1e9, megabytes: w.bytes / 1e6, intensity, achieved, bound, fraction: achieved / bound });
  }
  return { contender, peak, bandwidth, points };
}

/**
 * A pass's machine floor: the least time this machine could take for it, each layer (floorLayers)
 * at its roofline bound, max(operations / peak, bytes / bandwidth), summed. Against the floor, a
 * time says how close an engine is to the machine itself, not only to another engine.
 */
export interface PassFloor {
  readonly ms: number;
  readonly gflop: number;
  readonly megabytes: number;
  /** The limits it was taken at: GFLOP/s on the threads and instruction set in use, GB/s. */
  readonly peak: number;
  readonly bandwidth: number;
}

export function passFloor(layers: readonly FloorLayer[], peak: number, limits: MachineLimits): PassFloor {
  const bandwidth = roofBandwidth(limits);
  let seconds = 0;
  for (const l of layers) seconds += Math.max(l.flops / (peak * 1e9), l.bytes / (bandwidth * 1e9));
  const sum = (key: 'flops' | 'bytes') => layers.reduce((a, l) => a + l[key], 0);
  return { ms: seconds * 1e3, gflop: sum('flops') / 1e9, megabytes: sum('bytes') / 1e6, peak, bandwidth };
}

const ALGORITHM_COLOURS: Record<string, string> = {
  direct: '#7c3aed',
  im2col: '#2563eb',
  'implicit GEMM': '#2563eb',
  'winograd F(4x4)': '#c2410c',
  'winograd F(4x4) 16c': '#ea580c',
  'winograd F(6x6)': '#dc2626',
  'matrix-vector': '#15803d',
};

/** The roofline as an SVG picture: log-log axes, the roof, one labelled point per layer. */
export function rooflineSvg(r: Roofline, title: string, subtitle = ''): string {
  const pts = r.points.filter((p) => p.gflop > 0);
  const W = 900;
  const H = 560;
  const m = { left: 70, right: 170, top: 50, bottom: 55 };
  const ridge = r.peak / r.bandwidth;
  const xs = [...pts.map((p) => p.intensity), ridge];
  const decade = (v: number, up: boolean) => 10 ** (up ? Math.ceil(Math.log10(v)) : Math.floor(Math.log10(v)));
  const x0 = decade(Math.min(...xs) / 1.5, false);
  const x1 = decade(Math.max(...xs) * 1.5, true);
  const y1 = decade(r.peak * 1.2, true);
  const y0 = decade(Math.max(0.1, Math.min(...pts.map((p) => p.achieved), x0 * r.bandwidth) / 1.5), false);
  const X = (v: number) => m.left + ((Math.log10(v) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * (W - m.left - m.right);
  const Y = (v: number) => H - m.bottom - ((Math.log10(v) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * (H - m.top - m.bottom);
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${m.left}" y="24" font-size="15" font-weight="600">${esc(title)}</text>`);
  if (subtitle) out.push(`<text x="${m.left}" y="40" font-size="11" fill="#555">${esc(subtitle)}</text>`);
  // Decade grid and axis labels.
  for (let v = x0; v <= x1 * 1.001; v *= 10) {
    out.push(`<line x1="${X(v)}" y1="${m.top}" x2="${X(v)}" y2="${H - m.bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${X(v)}" y="${H - m.bottom + 18}" text-anchor="middle">${+v.toPrecision(3)}</text>`);
  }
  for (let v = y0; v <= y1 * 1.001; v *= 10) {
    out.push(`<line x1="${m.left}" y1="${Y(v)}" x2="${W - m.right}" y2="${Y(v)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 8}" y="${Y(v) + 4}" text-anchor="end">${+v.toPrecision(3)}</text>`);
  }
  out.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 14}" text-anchor="middle">operational intensity, FLOP per byte (executed operations / estimated bytes)</text>`);
  out.push(`<text transform="translate(18 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">GFLOP/s executed</text>`);
  // The roof: bandwidth up to the ridge point, then the peak.
  out.push(`<polyline fill="none" stroke="#111" stroke-width="2.5" points="${X(x0)},${Y(Math.max(y0, x0 * r.bandwidth))} ${X(ridge)},${Y(r.peak)} ${X(x1)},${Y(r.peak)}"/>`);
  out.push(`<text x="${X(x1) - 4}" y="${Y(r.peak) - 6}" text-anchor="end">peak ${r.peak.toFixed(0)} GFLOP/s</text>`);
  out.push(`<text x="${X(Math.sqrt(x0 * ridge))}" y="${Y(Math.sqrt(x0 * ridge) * r.bandwidth) - 10}" transform="rotate(-33 ${X(Math.sqrt(x0 * ridge))} ${Y(Math.sqrt(x0 * ridge) * r.bandwidth) - 10})" text-anchor="middle">${r.bandwidth.toFixed(0)} GB/s</text>`);
  // Labels are moved up or down until they clear the ones placed before (layers of a block share a spot).
  const placed: { x: number; y: number; w: number }[] = [{ x: X(x1) - 140, y: Y(r.peak) - 6, w: 140 }];
  const clear = (x: number, y: number, w: number) => placed.every((b) => Math.abs(b.y - y) >= 11 || x + w < b.x || b.x + b.w < x);
  for (const p of [...pts].sort((a, b) => b.achieved - a.achieved)) {
    const colour = ALGORITHM_COLOURS[p.algorithm] ?? '#555';
    const cx = X(p.intensity);
    const cy = Y(p.achieved);
    out.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="5" fill="${colour}" fill-opacity="0.85"><title>${esc(`${p.label}: ${p.algorithm}, ${p.achieved.toFixed(0)} GFLOP/s, ${(100 * p.fraction).toFixed(0)}% of its bound`)}</title></circle>`);
    const w = 6 * p.row.length;
    const ly = [0, 11, -11, 22, -22, 33, -33, 44, -44].map((d) => cy + 4 + d).find((y) => clear(cx + 8, y, w)) ?? cy + 4;
    placed.push({ x: cx + 8, y: ly, w });
    if (Math.abs(ly - cy - 4) > 1) out.push(`<line x1="${cx + 5}" y1="${cy}" x2="${cx + 8}" y2="${ly - 4}" stroke="#999" stroke-width="0.7"/>`);
    out.push(`<text x="${(cx + 8).toFixed(1)}" y="${ly.toFixed(1)}" font-size="10" fill="#333">${esc(p.row)}</text>`);
  }
  // Legend: the algorithms present.
  [...new Set(pts.map((p) => p.algorithm))].forEach((a, i) => {
    const y = m.top + 14 + i * 20;
    out.push(`<circle cx="${W - m.right + 20}" cy="${y}" r="5" fill="${ALGORITHM_COLOURS[a] ?? '#555'}"/><text x="${W - m.right + 32}" y="${y + 4}">${esc(a)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
