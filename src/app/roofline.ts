/**
 * The roofline model (Williams, Waterman & Patterson, CACM 2009) of VGG19's layers on this machine:
 * a layer that does F operations on B bytes (intensity I = F / B) can run at most at
 * min(peak, I x bandwidth). Each row's achieved rate is set against that bound, with the peak and
 * the bandwidth `bench` measured first (the machine section) and the work as the backend executes
 * it (layer-profile.ts rowWork). Rows without arithmetic (pools, the flatten) are held against the
 * bandwidth alone. The bandwidth roof is the better of the read and triad streams (roofBandwidth).
 */
import * as path from 'node:path';
import { PasticheError } from '../errors.js';
import { pixelTextPath, pixelTextWidth } from '../image/pixel-font.js';
import { svgToPng } from '../image/tensor-image.js';
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
  'winograd F(6x6) 16c': '#f43f5e',
  'matrix-vector': '#15803d',
};

/** An algorithm without its detail ('matrix-vector, 63% rows' is a matrix-vector): its colour and legend entry. */
const family = (algorithm: string) => algorithm.split(',')[0]!;

interface TextStyle {
  size?: number;
  anchor?: 'start' | 'middle' | 'end';
  bold?: boolean;
  fill?: string;
  /** Degrees about (x, y). */
  rotate?: number;
}

/** One picture of a stacked roofline plot: a pass and its title. */
export interface RooflinePanel {
  readonly roofline: Roofline;
  readonly title: string;
}

const W = 900;
const H = 560;
/** Where a point's label may go, a line at a time above and below it (the style iteration's 34 rows crowd). */
const OFFSETS = [0, ...Array.from({ length: 12 }, (_, i) => [11 * (i + 1), -11 * (i + 1)]).flat()];

/**
 * Rooflines as an SVG picture, one panel under the other (the forward pass, the style iteration):
 * log-log axes, the roof, one labelled point per layer; `subtitle` (the machine) under the first
 * title. `outlined`: the text drawn as paths in a built-in pixel font (image/pixel-font.ts) instead
 * of `<text>`, for a PNG that looks the same on a machine without fonts (rooflinePicture).
 */
export function rooflineSvg(panels: readonly RooflinePanel[], subtitle = '', outlined = false): string {
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * panels.length}" viewBox="0 0 ${W} ${H * panels.length}" font-family="system-ui, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H * panels.length}" fill="#ffffff"/>`);
  panels.forEach((p, i) => {
    out.push(`<g transform="translate(0 ${i * H})">`, ...rooflinePanel(p.roofline, p.title, i === 0 ? subtitle : '', outlined), '</g>');
  });
  out.push('</svg>');
  return out.join('\n');
}

/** The elements of one panel, in a W x H frame. */
function rooflinePanel(r: Roofline, title: string, subtitle: string, outlined: boolean): string[] {
  const pts = r.points.filter((p) => p.gflop > 0);
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
  const text = (x: number, y: number, s: string, t: TextStyle = {}): string => {
    const size = t.size ?? 12;
    const fill = t.fill ? ` fill="${t.fill}"` : '';
    const rotate = t.rotate ? ` transform="rotate(${t.rotate} ${x.toFixed(1)} ${y.toFixed(1)})"` : '';
    if (outlined) return `<path d="${pixelTextPath(s, x, y, { size, anchor: t.anchor, bold: t.bold })}"${fill}${rotate}/>`;
    const anchor = t.anchor && t.anchor !== 'start' ? ` text-anchor="${t.anchor}"` : '';
    const attrs = `${t.size ? ` font-size="${t.size}"` : ''}${t.bold ? ' font-weight="600"' : ''}`;
    return `<text x="${+x.toFixed(1)}" y="${+y.toFixed(1)}"${rotate}${anchor}${attrs}${fill}>${esc(s)}</text>`;
  };
  const out: string[] = [];
  out.push(text(m.left, 24, title, { size: 15, bold: true }));
  if (subtitle) out.push(text(m.left, 40, subtitle, { size: 11, fill: '#555' }));
  // Decade grid and axis labels.
  for (let v = x0; v <= x1 * 1.001; v *= 10) {
    out.push(`<line x1="${X(v)}" y1="${m.top}" x2="${X(v)}" y2="${H - m.bottom}" stroke="#e5e5e5"/>`);
    out.push(text(X(v), H - m.bottom + 18, `${+v.toPrecision(3)}`, { anchor: 'middle' }));
  }
  for (let v = y0; v <= y1 * 1.001; v *= 10) {
    out.push(`<line x1="${m.left}" y1="${Y(v)}" x2="${W - m.right}" y2="${Y(v)}" stroke="#e5e5e5"/>`);
    out.push(text(m.left - 8, Y(v) + 4, `${+v.toPrecision(3)}`, { anchor: 'end' }));
  }
  out.push(text((m.left + W - m.right) / 2, H - 14, 'operational intensity, FLOP per byte (executed operations / estimated bytes)', { anchor: 'middle' }));
  out.push(text(18, (m.top + H - m.bottom) / 2, 'GFLOP/s executed', { anchor: 'middle', rotate: -90 }));
  // The roof: bandwidth up to the ridge point, then the peak.
  out.push(`<polyline fill="none" stroke="#111" stroke-width="2.5" points="${X(x0)},${Y(Math.max(y0, x0 * r.bandwidth))} ${X(ridge)},${Y(r.peak)} ${X(x1)},${Y(r.peak)}"/>`);
  out.push(text(X(x1) - 4, Y(r.peak) - 6, `peak ${r.peak.toFixed(0)} GFLOP/s`, { anchor: 'end' }));
  // Along the bandwidth roof, at its angle on screen (the axes' decades differ in length).
  const slope = Math.sqrt(x0 * ridge);
  const angle = (Math.atan2(Y(r.peak) - Y(x0 * r.bandwidth), X(ridge) - X(x0)) * 180) / Math.PI;
  out.push(text(X(slope), Y(slope * r.bandwidth) - 10, `${r.bandwidth.toFixed(0)} GB/s`, { anchor: 'middle', rotate: +angle.toFixed(1) }));
  // Labels are moved up or down until they clear the ones placed before (layers of a block share a spot).
  const placed: { x: number; y: number; w: number }[] = [{ x: X(x1) - 140, y: Y(r.peak) - 6, w: 140 }];
  const clear = (x: number, y: number, w: number) => placed.every((b) => Math.abs(b.y - y) >= 11 || x + w < b.x || b.x + b.w < x);
  for (const p of [...pts].sort((a, b) => b.achieved - a.achieved)) {
    const colour = ALGORITHM_COLOURS[family(p.algorithm)] ?? '#555';
    const cx = X(p.intensity);
    const cy = Y(p.achieved);
    out.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="5" fill="${colour}" fill-opacity="0.85"><title>${esc(`${p.label}: ${p.algorithm}, ${p.achieved.toFixed(0)} GFLOP/s, ${(100 * p.fraction).toFixed(0)}% of its bound`)}</title></circle>`);
    const w = pixelTextWidth(p.row, 10);
    const ly = OFFSETS.map((d) => cy + 4 + d).find((y) => clear(cx + 8, y, w)) ?? cy + 4;
    placed.push({ x: cx + 8, y: ly, w });
    if (Math.abs(ly - cy - 4) > 1) out.push(`<line x1="${cx + 5}" y1="${cy}" x2="${cx + 8}" y2="${ly - 4}" stroke="#999" stroke-width="0.7"/>`);
    out.push(text(cx + 8, ly, p.row, { size: 10, fill: '#333' }));
  }
  // Legend: the algorithms present.
  [...new Set(pts.map((p) => family(p.algorithm)))].forEach((a, i) => {
    const y = m.top + 14 + i * 20;
    out.push(`<circle cx="${W - m.right + 20}" cy="${y}" r="5" fill="${ALGORITHM_COLOURS[a] ?? '#555'}"/>${text(W - m.right + 32, y + 4, a)}`);
  });
  return out;
}

export type PlotFormat = 'svg' | 'png';

/** The picture's format from its file name; anything else is a one-line error. */
export function plotFormat(file: string): PlotFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg' || ext === '.png') return ext.slice(1) as PlotFormat;
  throw new PasticheError(`${file}: the plot is an SVG or PNG file (.svg, .png)`);
}

/**
 * The roofline picture's bytes: SVG with `<text>`, or a PNG at twice the SVG's size whose text is
 * the built-in pixel font, so that it reads the same on a machine without fonts.
 */
export async function rooflinePicture(panels: readonly RooflinePanel[], subtitle: string, format: PlotFormat): Promise<string | Buffer> {
  return format === 'svg' ? rooflineSvg(panels, subtitle) : svgToPng(rooflineSvg(panels, subtitle, true));
}
