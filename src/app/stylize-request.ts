/**
 * A style-transfer request as a person gives it (command-line flags, a JSON body), parsed once into
 * typed settings: presets, ranges, layer lists, blends and scales are checked here and nowhere else.
 * Errors name the field the way the caller's user knows it (`--style-weight` or `styleWeight`).
 */
import { PasticheError } from '../errors.js';
import { DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, parseLayers, type Init, type StylizeSettings } from './stylize.js';
import { parseByteSize } from './memory-plan.js';
import { TILE_GRID } from './tiled-evaluate.js';

/** Settings that a preset starts from; every field given overrides its own. */
export const STYLE_PRESETS = {
  // Gatys et al. optimised with L-BFGS, which reaches a good image in a few hundred steps; starting
  // from the content image converges faster than from noise; the content/style balance is the one
  // the course validated (beta/alpha = 500 in this normalisation).
  default: { size: 512, iterations: 300, optimizer: 'lbfgs', lr: 1, contentWeight: 1, styleWeight: 500, tvWeight: 0, init: 'content', pooling: 'max' },
  // The course's lab 3-3: 100 Adam steps, lr 1, 192x320, alpha 1, beta 500, 0.5 content + 0.5 noise.
  lab: { size: { height: 192, width: 320 }, iterations: 100, optimizer: 'adam', lr: 1, contentWeight: 1, styleWeight: 500, tvWeight: 0, init: 'blend', pooling: 'max' },
} as const satisfies Record<string, { size: StylizeSettings['size']; optimizer: StylizeSettings['optimizer']; pooling: StylizeSettings['pooling']; init: string } & Record<string, unknown>>;

export type PresetName = keyof typeof STYLE_PRESETS;
export const PRESET_NAMES = Object.keys(STYLE_PRESETS) as PresetName[];

/** The raw fields of a request: a flag's text, or a JSON value. Absent: the preset's value. */
export interface StylizeFields {
  readonly preset?: unknown;
  readonly size?: unknown;
  readonly iterations?: unknown;
  readonly optimizer?: unknown;
  readonly lr?: unknown;
  readonly lbfgsHistory?: unknown;
  readonly contentWeight?: unknown;
  readonly styleWeight?: unknown;
  readonly tvWeight?: unknown;
  readonly contentLayers?: unknown;
  readonly styleLayers?: unknown;
  readonly init?: unknown;
  readonly seed?: unknown;
  readonly styleBlend?: unknown;
  readonly styleScale?: unknown;
  readonly originalColors?: unknown;
  readonly pooling?: unknown;
  readonly scales?: unknown;
  readonly tile?: unknown;
  readonly maxMemory?: unknown;
}

export type FieldName = (field: keyof StylizeFields) => string;

/** The most pixels on the longest side (the memory estimate refuses what the machine cannot hold). */
const MAX_SIDE = 16384;

/** Reads a request's fields, each checked and converted once; errors name the field as the caller's user knows it. */
export class RequestFields<F extends object> {
  constructor(
    private readonly f: F,
    private readonly name: (field: keyof F & string) => string,
  ) {}

  bad(field: keyof F & string, problem: string): never {
    throw new PasticheError(`${this.name(field)} ${problem}`);
  }

  number(field: keyof F & string, o: { min?: 0 | 1; positive?: boolean; max?: number; integer?: boolean }): number | undefined {
    const v = (this.f[field] as unknown);
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    const kind = o.integer ? 'whole number' : 'number';
    const what = o.positive || o.min === 1 ? `a positive ${kind}` : o.integer ? 'a whole number of at least 0' : 'a non-negative number';
    if (!Number.isFinite(n) || (o.integer && !Number.isSafeInteger(n)) || (o.min !== undefined && n < o.min) || (o.positive && !(n > 0))) {
      throw new PasticheError(`${this.name(field)} must be ${what} (got '${String(v)}')`);
    }
    if (o.max !== undefined && n > o.max) throw new PasticheError(`${this.name(field)} must be at most ${o.max} (got '${String(v)}')`);
    return n;
  }

  choice<T extends string>(field: keyof F & string, choices: readonly T[]): T | undefined {
    const v = (this.f[field] as unknown);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) this.bad(field, `must be one of ${choices.join(', ')} (got '${String(v)}')`);
    return v as T;
  }

  text(field: keyof F & string): string | undefined {
    const v = (this.f[field] as unknown);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') this.bad(field, 'must be text');
    return v;
  }

  flag(field: keyof F & string): boolean {
    const v = (this.f[field] as unknown);
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') this.bad(field, 'must be true or false');
    return v;
  }

  /** '3G', '512M' or a number of bytes. */
  bytes(field: keyof F & string): number | undefined {
    const v = (this.f[field] as unknown);
    if (v === undefined || v === null || v === '') return undefined;
    const bytes = typeof v === 'number' ? (v > 0 && Number.isFinite(v) ? v : undefined) : typeof v === 'string' ? parseByteSize(v) : undefined;
    if (bytes === undefined) this.bad(field, `must be a size such as 3G or 500M (got '${String(v)}')`);
    if (bytes < 2 ** 20) this.bad(field, `must be at least 1M (got '${String(v)}'; a number without a unit is bytes)`);
    return bytes;
  }

  /** '0.7,0.3' or [0.7, 0.3]. */
  numbers(field: keyof F & string): number[] | undefined {
    const v = (this.f[field] as unknown);
    if (v === undefined || v === null || v === '') return undefined;
    const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',').map((s) => s.trim()) : [v];
    const xs = parts.map((p) => (typeof p === 'number' ? p : typeof p === 'string' && p !== '' ? Number(p) : NaN));
    if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) this.bad(field, `must be a comma-separated list of numbers (got '${String(v)}')`);
    return xs;
  }
}

/** Where optimisation starts, from 'content', 'noise', 'blend' or an image file's path. */
export function parseInit(v: string): Init {
  if (v === 'content' || v === 'noise') return { kind: v };
  if (v === 'blend') return { kind: 'blend', ratio: 0.5, amplitude: 20 };
  return { kind: 'file', file: v };
}

/** Parses and checks every field against the preset; `styleCount` style images come with it. */
export function parseStylizeSettings(fields: StylizeFields, styleCount: number, name: FieldName = (f) => f): StylizeSettings {
  const f = new RequestFields(fields, name);
  const presetName = f.choice('preset', PRESET_NAMES) ?? 'default';
  const preset = STYLE_PRESETS[presetName];
  const styleBlend = f.numbers('styleBlend');
  if (styleBlend) {
    if (styleBlend.length !== styleCount) f.bad('styleBlend', `has ${styleBlend.length} weight(s) for ${styleCount} style image(s)`);
    if (styleBlend.some((b) => b < 0) || styleBlend.every((b) => b === 0)) f.bad('styleBlend', 'weights must be non-negative and not all zero');
  }
  const scales = f.numbers('scales') ?? [];
  if (scales.some((v) => !Number.isInteger(v) || v < 16 || v > MAX_SIDE)) f.bad('scales', `must be whole numbers from 16 to ${MAX_SIDE}`);
  const size = f.number('size', { min: 1, max: MAX_SIDE, integer: true });
  const tile = f.number('tile', { min: 1, max: MAX_SIDE, integer: true });
  if (tile !== undefined && tile % TILE_GRID !== 0) f.bad('tile', `must be a multiple of ${TILE_GRID} (the pools' grid; got ${tile})`);
  const layers = (field: 'contentLayers' | 'styleLayers', fallback: readonly string[]) => parseLayers(f.text(field) ?? fallback, name(field));
  return {
    size: size ?? preset.size,
    iterations: f.number('iterations', { min: 1, integer: true }) ?? preset.iterations,
    optimizer: f.choice('optimizer', ['adam', 'lbfgs'] as const) ?? preset.optimizer,
    lr: f.number('lr', { positive: true }) ?? preset.lr,
    // Absent: 100, shortened where memory is short (memory-plan.ts).
    lbfgsHistory: f.number('lbfgsHistory', { min: 1, max: 10_000, integer: true }),
    contentWeight: f.number('contentWeight', { min: 0 }) ?? preset.contentWeight,
    styleWeight: f.number('styleWeight', { min: 0 }) ?? preset.styleWeight,
    tvWeight: f.number('tvWeight', { min: 0 }) ?? preset.tvWeight,
    contentLayers: layers('contentLayers', DEFAULT_CONTENT_LAYERS),
    styleLayers: layers('styleLayers', DEFAULT_STYLE_LAYERS),
    init: parseInit(f.text('init') ?? preset.init),
    seed: f.number('seed', { min: 0, integer: true }) ?? 0,
    styleBlend,
    styleScale: f.number('styleScale', { positive: true, max: 16 }),
    originalColors: f.flag('originalColors'),
    pooling: f.choice('pooling', ['max', 'avg'] as const) ?? preset.pooling,
    scales,
    tile,
    maxMemory: f.bytes('maxMemory'),
  };
}
