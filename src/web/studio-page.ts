/**
 * Pastiche Studio, the page `pastiche serve` serves: pick or drop a photo and paintings, start, watch
 * the picture form (previews and the loss, streamed as Server-Sent Events), cancel, download; a
 * gallery of this session's results; classification as a second tab. It only talks to the JSON API
 * (/openapi.json): everything it can do, a script can do too. Where the browser has WebGPU, "Run in
 * this browser" runs the same engine here instead (browser-stylize.ts).
 */
import type { JobView } from '../server/jobs.js';
import { encodePng } from './browser-image.js';
import { stylizeInBrowser } from './browser-stylize.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** A token given as ?token= in the page's address goes with every request. */
const token = new URLSearchParams(location.search).get('token');
const withToken = (url: string) => (token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url);

/** A run in this browser, as the page shows it. */
interface LocalRun {
  state: 'running' | 'done' | 'cancelled' | 'failed';
  iteration: number;
  of: number;
  /** The total loss per iteration. */
  losses: number[];
  previews: number;
  adapter?: string;
  width?: number;
  height?: number;
  bestLoss?: number;
  error?: string;
}

/** What the page is doing, for scripts and tests: the current job and its last view, or the run here. */
interface StudioState {
  job?: JobView;
  local?: LocalRun;
  error?: string;
  results: string[];
}
const state: StudioState = { results: [] };
(window as unknown as { pasticheStudio: StudioState }).pasticheStudio = state;

async function call(method: string, url: string, body?: FormData): Promise<JobView> {
  const res = await fetch(withToken(url), { method, body });
  const data = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as JobView & { error?: string };
  if (!res.ok) throw new Error(data.error ?? `HTTP ${res.status}`);
  return data;
}

function say(text: string, error = false, where = 'status'): void {
  const el = $(where);
  el.textContent = text;
  el.classList.toggle('error', error);
  if (error) state.error = text;
}

/** A drop zone over a file input: drag and drop, click, or the keyboard (the input is focusable). */
function dropZone(zone: string, input: string, onFiles: (files: File[]) => void): void {
  const z = $(zone);
  const i = $<HTMLInputElement>(input);
  i.addEventListener('change', () => i.files && onFiles(Array.from(i.files)));
  z.addEventListener('dragover', (e) => {
    e.preventDefault();
    z.classList.add('over');
  });
  z.addEventListener('dragleave', () => z.classList.remove('over'));
  z.addEventListener('drop', (e) => {
    e.preventDefault();
    z.classList.remove('over');
    const files = Array.from(e.dataTransfer?.files ?? []).filter((f) => f.type.startsWith('image/'));
    if (files.length) onFiles(files);
  });
}

function showThumb(img: string, hint: string, file: File): void {
  const el = $<HTMLImageElement>(img);
  el.src = URL.createObjectURL(file);
  el.alt = file.name;
  el.hidden = false;
  $(hint).hidden = true;
}

// ---- Stylize ----

let content: File | undefined;
let styles: { file: File; weight: number }[] = [];
let events: EventSource | undefined;
const losses: number[] = [];

function renderStyles(): void {
  const list = $('styles');
  list.replaceChildren();
  styles.forEach((s, k) => {
    const row = document.createElement('div');
    row.className = 'style-row';
    const img = document.createElement('img');
    img.src = URL.createObjectURL(s.file);
    img.alt = s.file.name;
    const weight = document.createElement('input');
    weight.type = 'range';
    weight.min = '0';
    weight.max = '1';
    weight.step = '0.05';
    weight.value = String(s.weight);
    weight.setAttribute('aria-label', `blend weight of ${s.file.name}`);
    weight.disabled = styles.length < 2;
    weight.addEventListener('input', () => (s.weight = Number(weight.value)));
    const remove = document.createElement('button');
    remove.textContent = '✕';
    remove.setAttribute('aria-label', `remove ${s.file.name}`);
    remove.addEventListener('click', () => {
      styles.splice(k, 1);
      renderStyles();
    });
    row.append(img, weight, remove);
    list.append(row);
  });
}

/** The options the form sets, as the API (and the CLI) names them; empty fields keep the preset's. */
function options(): Record<string, unknown> {
  const o: Record<string, unknown> = { preset: $<HTMLSelectElement>('preset').value };
  for (const id of ['size', 'iterations', 'styleWeight', 'contentWeight', 'tvWeight', 'seed']) {
    const v = $<HTMLInputElement>(id).value;
    if (v !== '') o[id] = Number(v);
  }
  for (const id of ['optimizer', 'init']) {
    const v = $<HTMLSelectElement>(id).value;
    if (v) o[id] = v;
  }
  if ($<HTMLInputElement>('originalColors').checked) o['originalColors'] = true;
  if (styles.length > 1) o['styleBlend'] = styles.map((s) => s.weight);
  return o;
}

function drawChart(): void {
  const chart = $('chart');
  // An <svg> has no `hidden` property: the attribute is set directly.
  chart.toggleAttribute('hidden', losses.length < 2);
  if (losses.length < 2) return;
  const logs = losses.map((l) => Math.log10(Math.max(l, 1e-30)));
  const lo = Math.min(...logs);
  const hi = Math.max(...logs);
  const d = logs.map((v, i) => `${i === 0 ? 'M' : 'L'}${((i / (logs.length - 1)) * 300).toFixed(1)},${(65 - ((v - lo) / (hi - lo || 1)) * 60).toFixed(1)}`).join(' ');
  $('chart-line').setAttribute('d', d);
}

/** 42 s, 7 min, 3.5 h. */
function duration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function setRunning(running: boolean): void {
  $<HTMLButtonElement>('start').disabled = running;
  $<HTMLButtonElement>('cancel').disabled = !running;
}

function showJob(view: JobView): void {
  state.job = view;
  const p = view.progress;
  if (p) {
    const bar = $<HTMLProgressElement>('progress');
    bar.hidden = false;
    bar.max = p.of;
    bar.value = p.iteration;
    if (losses.length < p.iteration) losses.push(p.total);
    drawChart();
  }
  const eta = p && p.etaSeconds > 0.5 ? ` · about ${duration(p.etaSeconds)} left` : '';
  if (view.state === 'queued') say('waiting for the worker…');
  else if (view.state === 'running') say(p ? `iteration ${p.iteration} of ${p.of} · loss ${p.total.toExponential(3)}${eta}` : 'starting…');
}

function addToGallery(url: string, name: string, title: string): void {
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.title = title;
  const img = document.createElement('img');
  img.src = url;
  img.alt = `result ${state.results.length}`;
  link.append(img);
  $('gallery').prepend(link);
}

function finish(view: JobView): void {
  events?.close();
  events = undefined;
  setRunning(false);
  showJob(view);
  const download = $<HTMLAnchorElement>('download');
  if (view.result?.kind === 'stylize') {
    const url = withToken(`/api/jobs/${view.id}/result`);
    const preview = $<HTMLImageElement>('preview');
    preview.src = url;
    preview.hidden = false;
    download.href = url;
    download.setAttribute('aria-disabled', 'false');
    state.results.push(view.id);
    addToGallery(url, `pastiche-${view.id.slice(0, 8)}.png`, `${view.result.width}x${view.result.height}, loss ${view.result.bestLoss.toExponential(3)}`);
  }
  if (view.state === 'done') say(`done: ${view.result?.kind === 'stylize' ? `${view.result.width}x${view.result.height}, ` : ''}${view.progress?.iteration ?? 0} iterations`);
  else if (view.state === 'cancelled') say(view.result ? 'cancelled: the best image so far is kept' : 'cancelled');
  else if (view.state === 'failed') say(`failed: ${view.error}`, true);
}

function follow(id: string, onView: (v: JobView, what: string) => void, onEnd: (v: JobView) => void): EventSource {
  const es = new EventSource(withToken(`/api/jobs/${id}/events`));
  for (const what of ['state', 'progress', 'preview']) {
    es.addEventListener(what, (e) => {
      const view = JSON.parse((e as MessageEvent<string>).data) as JobView;
      onView(view, what);
      if (['done', 'failed', 'cancelled'].includes(view.state)) {
        es.close();
        onEnd(view);
      }
    });
  }
  return es;
}

/** Clears the last run's chart, progress and download. */
function resetResult(): void {
  losses.length = 0;
  drawChart();
  state.job = undefined;
  state.local = undefined;
  $<HTMLProgressElement>('progress').value = 0;
  $<HTMLAnchorElement>('download').setAttribute('aria-disabled', 'true');
}

async function start(): Promise<void> {
  state.error = undefined;
  if (!content) return say('drop a content photo first', true);
  if (styles.length === 0) return say('drop at least one style image', true);
  if ($<HTMLSelectElement>('where').value === 'browser') return startHere(content);
  const form = new FormData();
  form.append('kind', 'stylize');
  form.append('options', JSON.stringify(options()));
  form.append('content', content, content.name);
  for (const s of styles) form.append('style', s.file, s.file.name);
  resetResult();
  setRunning(true);
  say('uploading…');
  let job: JobView;
  try {
    job = await call('POST', '/api/jobs', form);
  } catch (e) {
    setRunning(false);
    return say((e as Error).message, true);
  }
  showJob(job);
  events = follow(
    job.id,
    (view, what) => {
      showJob(view);
      if (what === 'preview') {
        const preview = $<HTMLImageElement>('preview');
        preview.src = withToken(`/api/jobs/${view.id}/preview?v=${view.previews}`);
        preview.hidden = false;
        $('preview-hint').hidden = true;
      }
    },
    finish,
  );
}

// ---- Run in this browser ----

let localAbort: AbortController | undefined;

async function startHere(photo: File): Promise<void> {
  resetResult();
  setRunning(true);
  const run: LocalRun = { state: 'running', iteration: 0, of: 0, losses: [], previews: 0 };
  state.local = run;
  localAbort = new AbortController();
  // Previews are encoded one at a time, at most a few a second, so that they never slow the run.
  let encoding = false;
  let lastPreview = 0;
  let finished = false;
  const showPreview = (png: Blob, final = false): void => {
    // A preview still encoding when the run ends must not replace the final image.
    if (finished && !final) return;
    const preview = $<HTMLImageElement>('preview');
    URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(png);
    preview.hidden = false;
    $('preview-hint').hidden = true;
    run.previews++;
  };
  const weightsFile = $<HTMLInputElement>('browser-weights').files?.[0];
  try {
    const result = await stylizeInBrowser({
      content: photo,
      styles: styles.map((s) => s.file),
      fields: options(),
      weightsFile,
      weightsUrl: withToken('/api/weights'),
      signal: localAbort.signal,
      onStatus: (text) => say(text),
      onIteration: (p, pixels) => {
        Object.assign(run, { iteration: p.iteration, of: p.of });
        run.losses.push(p.total);
        losses.push(p.total);
        drawChart();
        const bar = $<HTMLProgressElement>('progress');
        Object.assign(bar, { hidden: false, max: p.of, value: p.iteration });
        const perIteration = p.seconds / p.iteration;
        const left = perIteration * (p.of - p.iteration);
        say(`iteration ${p.iteration} of ${p.of} on this GPU · loss ${p.total.toExponential(3)}${left > 0.5 ? ` · about ${duration(left)} left` : ''}`);
        if (!encoding && performance.now() - lastPreview > 300) {
          encoding = true;
          lastPreview = performance.now();
          // The image is valid during this call only: its pixels are taken now, encoded after.
          void encodePng(pixels())
            .then((png) => showPreview(png))
            .finally(() => (encoding = false));
        }
      },
    });
    finished = true;
    const png = await encodePng(result.rgb);
    const url = URL.createObjectURL(png);
    showPreview(png, true);
    Object.assign(run, { state: result.interrupted ? 'cancelled' : 'done', adapter: result.adapter, width: result.rgb.width, height: result.rgb.height, bestLoss: result.bestLoss });
    const download = $<HTMLAnchorElement>('download');
    download.href = url;
    download.setAttribute('aria-disabled', 'false');
    state.results.push(url);
    addToGallery(url, `pastiche-browser-${state.results.length}.png`, `${result.rgb.width}x${result.rgb.height}, loss ${result.bestLoss.toExponential(3)}, on ${result.adapter}`);
    say(result.interrupted ? 'cancelled: the best image so far is kept' : `done in this browser: ${result.rgb.width}x${result.rgb.height}, ${result.iterations} iterations on ${result.adapter}`);
  } catch (e) {
    run.state = 'failed';
    run.error = (e as Error).message;
    say(`failed: ${run.error}`, true);
  } finally {
    localAbort = undefined;
    setRunning(false);
  }
}

async function cancel(): Promise<void> {
  if (localAbort) {
    say('cancelling after this iteration…');
    return localAbort.abort();
  }
  if (!state.job) return;
  // Said before the request: the stream may report the end before the answer comes back.
  say('cancelling after this iteration…');
  try {
    await call('DELETE', `/api/jobs/${state.job.id}`);
  } catch (e) {
    // A job that ended meanwhile has said so through its stream.
    if (!/already ended/.test((e as Error).message)) say((e as Error).message, true);
  }
}

// ---- Classify ----

async function classify(file: File): Promise<void> {
  showThumb('image-thumb', 'image-hint', file);
  const form = new FormData();
  form.append('kind', 'classify');
  form.append('options', JSON.stringify({ top: 5 }));
  form.append('image', file, file.name);
  say('classifying…', false, 'classify-status');
  try {
    const job = await call('POST', '/api/jobs', form);
    follow(job.id, () => undefined, (view) => {
      state.job = view;
      if (view.state !== 'done' || view.result?.kind !== 'classify') return say(`failed: ${view.error ?? view.state}`, true, 'classify-status');
      const list = $('top5');
      list.replaceChildren();
      for (const p of view.result.top) {
        const row = document.createElement('div');
        row.className = 'bar';
        const label = document.createElement('div');
        const fill = document.createElement('span');
        fill.className = 'fill';
        fill.style.width = `${(p.prob * 100).toFixed(1)}%`;
        label.append(`${p.label} `, fill);
        const prob = document.createElement('div');
        prob.textContent = `${(p.prob * 100).toFixed(1)} %`;
        row.append(label, prob);
        list.append(row);
      }
      say('', false, 'classify-status');
    });
  } catch (e) {
    say((e as Error).message, true, 'classify-status');
  }
}

// ---- Wiring ----

function selectTab(which: 'stylize' | 'classify'): void {
  for (const t of ['stylize', 'classify'] as const) {
    $(`tab-${t}`).setAttribute('aria-selected', String(t === which));
    $(t).hidden = t !== which;
  }
}

$('tab-stylize').addEventListener('click', () => selectTab('stylize'));
$('tab-classify').addEventListener('click', () => selectTab('classify'));
dropZone('content-drop', 'content', ([f]) => {
  content = f!;
  showThumb('content-thumb', 'content-hint', content);
});
dropZone('style-drop', 'style', (files) => {
  styles = [...styles, ...files.map((file) => ({ file, weight: 1 }))];
  renderStyles();
});
dropZone('image-drop', 'image', ([f]) => void classify(f!));
$('start').addEventListener('click', () => void start());
const where = $<HTMLSelectElement>('where');
where.addEventListener('change', () => ($('here').hidden = where.value !== 'browser'));
if (!navigator.gpu) {
  const here = where.options[1]!;
  here.disabled = true;
  here.textContent = 'this browser (no WebGPU here)';
}
$('cancel').addEventListener('click', () => void cancel());

fetch(withToken('/api/health'))
  .then((r) => r.json() as Promise<{ ok: boolean; weights: string | null; error: string | null }>)
  .then((h) => {
    $('health').textContent = h.ok ? `ready · ${h.weights?.split('/').pop()}` : `cannot run jobs: ${h.error}`;
    if (!h.ok) say(`the server cannot run jobs: ${h.error}`, true);
  })
  .catch(() => {
    // A page without its job server (e.g. from `pastiche web`) can still run here.
    $('health').textContent = 'no job server';
    if (navigator.gpu) {
      where.value = 'browser';
      $('here').hidden = false;
      $('here-hint').textContent = 'no job server here: choose imagenet-vgg-verydeep-19.mat';
    }
  });
