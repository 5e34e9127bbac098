/**
 * The HTTP face of `pastiche serve`: a JSON API over the job queue, described by OpenAPI generated
 * from the same route schemas that validate the requests (/openapi.json). Fastify, for its schema
 * validation and serialisation, its plugins for multipart uploads, OpenAPI and rate limits, and
 * because a malformed request ends in its error handler instead of the process.
 *
 * Nothing a client sends reaches the file system as a path: uploads are written under the job's
 * own folder by names the server chooses, and job ids are checked against the server's own.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import multipart from '@fastify/multipart';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { decoderReason } from '../image/preprocess.js';
import { loadSharp } from '../image/sharp.js';
import { planMemory } from '../app/memory-plan.js';
import { outputSize } from '../app/stylize.js';
import { parseStylizeSettings } from '../app/stylize-request.js';
import { browserCanRead } from '../app/weights.js';
import { PasticheError } from '../errors.js';
import type { JobView } from './jobs.js';
import type { JobQueue, Upload } from './queue.js';
import { isRedisDown } from './redis-errors.js';
import { pageFile, requestPath } from './web-server.js';

export interface ApiOptions {
  readonly queue: JobQueue;
  /** Requests to /api/ must carry `authorization: Bearer TOKEN` (or `?token=` for event streams). */
  readonly token?: string;
  /** The largest upload (all files of a request together), bytes. */
  readonly maxUploadBytes: number;
  /** The most pixels an uploaded image may decode to (decompression bombs stop here). */
  readonly maxPixels: number;
  /** Jobs waiting at most; more are refused with 429. */
  readonly maxQueued: number;
  /** Requests per minute per client address. */
  readonly rateLimit: number;
  /** Memory the worker may use for one job, bytes (the CLI's estimate is held against it). */
  readonly memoryLimit: number;
  /**
   * The weights file on this machine that /api/weights gives to Studio's "Run in this browser"
   * (the server's own choice, never a client's); absent or undefined: none to give.
   */
  readonly browserWeights?: () => Promise<string | undefined>;
}

/** A refusal with its HTTP status, from the handlers. */
class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const ERROR = { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] } as const;
const ID_PARAMS = { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } }, required: ['id'] } as const;
const NUMBERS = ['iteration', 'of', 'content', 'style', 'tv', 'total', 'seconds', 'etaSeconds'] as const;
const JOB = {
  type: 'object',
  required: ['id', 'kind', 'state', 'createdAt', 'previews'],
  properties: {
    id: { type: 'string' },
    kind: { type: 'string', enum: ['stylize', 'classify'] },
    state: { type: 'string', enum: ['queued', 'running', 'done', 'failed', 'cancelled'] },
    createdAt: { type: 'string' },
    startedAt: { type: 'string' },
    finishedAt: { type: 'string' },
    previews: { type: 'integer', description: 'how many preview images have come; the latest is at /api/jobs/{id}/preview' },
    progress: { type: 'object', properties: Object.fromEntries(NUMBERS.map((k) => [k, { type: 'number' }])) },
    result: {
      type: 'object',
      description: "stylize: the image's size and best loss (the image: /api/jobs/{id}/result); classify: the top classes",
      properties: {
        kind: { type: 'string' },
        width: { type: 'integer' },
        height: { type: 'integer' },
        bestLoss: { type: 'number' },
        iterations: { type: 'integer' },
        interrupted: { type: 'boolean' },
        top: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, label: { type: 'string' }, prob: { type: 'number' } } } },
      },
    },
    error: { type: 'string' },
  },
} as const;
const IMAGE_FILE = { description: 'an image file (PNG, JPEG, WebP, ...)' } as const;

const FINAL = new Set(['done', 'failed', 'cancelled']);

/** Decodes an upload once (bounded by maxPixels) to prove it is an image; returns its size. */
async function inspectImage(bytes: unknown, field: string, maxPixels: number): Promise<{ width: number; height: number }> {
  if (!Buffer.isBuffer(bytes) || bytes.length === 0) throw new HttpError(400, `${field}: an image file is required`);
  // A server that cannot load its image codec is broken, not the request: a 500 that says why.
  const sharp = await loadSharp().catch((e: Error) => {
    throw new HttpError(500, e.message);
  });
  try {
    const { info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' }).rotate().raw().toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height };
  } catch (e) {
    const reason = decoderReason((e as Error).message);
    throw new HttpError(400, /pixel limit/i.test(reason) ? `${field}: the image has more than ${maxPixels} pixels` : `${field}: cannot decode image: ${reason}`);
  }
}

const asList = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

export async function buildApi(o: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: o.maxUploadBytes, return503OnClosing: true });
  await app.register(swagger, {
    openapi: {
      info: { title: 'Pastiche', version: '0.1.0', description: 'Neural style transfer and VGG19 classification as jobs: submit, watch (Server-Sent Events), cancel, download.' },
      components: { securitySchemes: o.token ? { bearer: { type: 'http', scheme: 'bearer' } } : {} },
    },
  });
  await app.register(rateLimit, { max: o.rateLimit, timeWindow: '1 minute' });
  await app.register(multipart, { attachFieldsToBody: 'keyValues', limits: { fileSize: o.maxUploadBytes, files: 9, fields: 4, parts: 13 } });

  app.setErrorHandler((err: FastifyError | HttpError | PasticheError, _req, reply) => {
    const code = (err as FastifyError).code;
    let status = (err as { statusCode?: number }).statusCode ?? 500;
    if (err instanceof PasticheError) status = 400;
    if (code && /^FST_(REQ_FILE_TOO_LARGE|FILES_LIMIT|PARTS_LIMIT|FIELDS_LIMIT|ERR_CTP_BODY_TOO_LARGE)$/.test(code)) status = 413;
    if ((err as FastifyError).validation) status = 400;
    if (isRedisDown(err)) return reply.code(503).send({ error: 'the job queue (Redis) does not answer: try again shortly' });
    // Our own refusals say why (a 503 too); anything else that breaks is not the client's business.
    if (status >= 500 && !(err instanceof HttpError)) return reply.code(500).send({ error: 'internal error' });
    return reply.code(status).send({ error: err.message });
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: 'not found' }));

  app.addHook('onRequest', async (req, reply) => {
    if (!o.token || !req.url.startsWith('/api/')) return;
    const query = new URLSearchParams(req.url.split('?')[1] ?? '').get('token');
    if (req.headers.authorization !== `Bearer ${o.token}` && query !== o.token) {
      await reply.code(401).send({ error: 'this server needs a token: send authorization: Bearer TOKEN' });
    }
  });

  const job = async (id: string): Promise<JobView> => {
    const view = await o.queue.get(id);
    if (!view) throw new HttpError(404, `no job ${id}`);
    return view;
  };

  app.get('/api/health', { schema: { summary: 'whether the worker has its weights, and the queue', response: { 200: { type: 'object', additionalProperties: true } } } }, async () => {
    const info = await o.queue.ready();
    return { ok: !info.error, weights: info.weightsFile ?? null, error: info.error ?? null, queued: await o.queue.queued() };
  });

  app.post(
    '/api/jobs',
    {
      schema: {
        summary: 'submit a job: multipart/form-data with kind, options (JSON) and the images',
        consumes: ['multipart/form-data'],
        body: {
          type: 'object',
          properties: {
            kind: { type: 'string', enum: ['stylize', 'classify'], default: 'stylize' },
            options: { type: 'string', maxLength: 4096, description: "JSON: stylize's options as the CLI has them, in camelCase (preset, size, iterations, styleWeight, styleBlend, ...); classify: { top }" },
            content: IMAGE_FILE,
            style: { description: 'one or more style images (stylize)' },
            image: { ...IMAGE_FILE, description: 'the image to classify (classify)' },
          },
        },
        response: { 201: JOB, 400: ERROR, 413: ERROR, 415: ERROR, 429: ERROR, 503: ERROR },
      },
      preValidation: async (req) => {
        if (!req.isMultipart()) throw new HttpError(415, 'POST /api/jobs takes multipart/form-data: kind, options (JSON), and the image files');
      },
    },
    async (req, reply) => {
      const body = (req.body ?? {}) as Record<string, unknown>;
      const kind = body['kind'] === 'classify' ? 'classify' : 'stylize';
      const waiting = await o.queue.queued();
      if (waiting >= o.maxQueued) throw new HttpError(429, `${waiting} jobs are already waiting: try again later`);
      const info = await o.queue.ready();
      if (info.error) throw new HttpError(503, `the server cannot run jobs: ${info.error}`);
      let options: Record<string, unknown> = {};
      if (typeof body['options'] === 'string' && body['options'].trim() !== '') {
        try {
          options = JSON.parse(body['options']) as Record<string, unknown>;
        } catch {
          throw new HttpError(400, 'options: not valid JSON');
        }
        if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new HttpError(400, 'options: must be a JSON object');
      }
      if (kind === 'classify') {
        const image = asList(body['image']);
        if (image.length !== 1) throw new HttpError(400, 'image: exactly one image file is required');
        await inspectImage(image[0], 'image', o.maxPixels);
        const top = options['top'] ?? 5;
        if (!Number.isInteger(top) || (top as number) < 1 || (top as number) > 1000) throw new HttpError(400, 'top: a whole number from 1 to 1000');
        return reply.code(201).send(await o.queue.submit({ kind, uploads: [{ field: 'image', bytes: image[0] as Buffer }], top: top as number, previewEvery: 1 }));
      }
      const content = asList(body['content']);
      const styles = asList(body['style']);
      if (content.length !== 1) throw new HttpError(400, 'content: exactly one image file is required');
      if (styles.length === 0) throw new HttpError(400, 'style: at least one style image is required');
      const settings = parseStylizeSettings(options, styles.length);
      if (settings.init.kind === 'file') throw new HttpError(400, "init: 'content', 'noise' or 'blend' (the server takes no file paths)");
      const size = await inspectImage(content[0], 'content', o.maxPixels);
      for (const [k, s] of styles.entries()) await inspectImage(s, `style ${k + 1}`, o.maxPixels);
      // The workers' weights decide the memory a size needs; until a worker has said which it
      // holds (queue mode), its own check in stylize() refuses a size that cannot fit.
      // A size beyond what even tiles can fit (memory-plan.ts) is refused here, with the same line.
      if (info.shapes) {
        const out = outputSize(size, settings.size);
        const budget = Math.min(settings.maxMemory ?? Infinity, o.memoryLimit);
        const budgetName = settings.maxMemory !== undefined && settings.maxMemory <= o.memoryLimit ? 'maxMemory' : 'what this server gives a job';
        planMemory({ ...settings, layers: info.shapes, budget, budgetName, fieldName: (f) => f }, out.height, out.width);
      }
      const uploads: Upload[] = [{ field: 'content', bytes: content[0] as Buffer }, ...styles.map((b) => ({ field: 'style' as const, bytes: b as Buffer }))];
      const total = settings.iterations * ((settings.scales ?? []).length + 1);
      return reply.code(201).send(await o.queue.submit({ kind, uploads, settings, previewEvery: Math.max(1, Math.round(total / 25)) }));
    },
  );

  app.get('/api/jobs', { schema: { summary: 'recent jobs, newest first', response: { 200: { type: 'object', properties: { jobs: { type: 'array', items: JOB } } } } } }, async () => ({
    jobs: await o.queue.list(),
  }));

  app.get('/api/jobs/:id', { schema: { summary: "a job's state, progress and result", params: ID_PARAMS, response: { 200: JOB, 404: ERROR } } }, async (req) => job((req.params as { id: string }).id));

  app.delete('/api/jobs/:id', { schema: { summary: 'cancel a job (a running one stops after its current iteration and keeps its best image)', params: ID_PARAMS, response: { 200: JOB, 404: ERROR, 409: ERROR } } }, async (req) => {
    const { id } = req.params as { id: string };
    const view = await job(id);
    if (FINAL.has(view.state)) throw new HttpError(409, `job ${id} has already ended (${view.state})`);
    return (await o.queue.cancel(id))!;
  });

  const image = async (reply: FastifyReply, bytes: Uint8Array | undefined, what: string, name?: string) => {
    if (!bytes) throw new HttpError(404, `no ${what} yet`);
    reply.header('content-type', 'image/png').header('cache-control', 'no-store');
    if (name) reply.header('content-disposition', `attachment; filename="${name}"`);
    return reply.send(Buffer.from(bytes));
  };
  app.get('/api/jobs/:id/result', { schema: { summary: 'the stylized image (PNG)', params: ID_PARAMS, produces: ['image/png'] } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    await job(id);
    return image(reply, await o.queue.result(id), 'result', `pastiche-${id.slice(0, 8)}.png`);
  });
  app.get('/api/jobs/:id/preview', { schema: { summary: 'the latest preview image (PNG)', params: ID_PARAMS, produces: ['image/png'] } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    await job(id);
    return image(reply, await o.queue.preview(id), 'preview');
  });

  app.get('/api/jobs/:id/events', { schema: { summary: "Server-Sent Events: 'state', 'progress' and 'preview', each with the job's view; the stream ends with the job", params: ID_PARAMS, produces: ['text/event-stream'] } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const first = await job(id);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (event: string, view: JobView) => res.write(`event: ${event}\ndata: ${JSON.stringify(view)}\n\n`);
    send('state', first);
    if (FINAL.has(first.state)) {
      res.end();
      return;
    }
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const stop = () => {
      clearInterval(keepAlive);
      unsubscribe();
    };
    const unsubscribe = o.queue.subscribe(id, (view, what) => {
      send(what, view);
      if (FINAL.has(view.state)) {
        stop();
        res.end();
      }
    });
    req.raw.on('close', stop);
  });

  app.get(
    '/api/weights',
    { schema: { summary: "the VGG19 weights file this server's worker uses, for running in a browser (Studio's \"Run in this browser\")", produces: ['application/octet-stream'], response: { 404: ERROR } } },
    async (_req, reply) => {
      const file = await o.browserWeights?.();
      const st = file ? await stat(file).catch(() => undefined) : undefined;
      if (!file || !st?.isFile()) throw new HttpError(404, 'this server has no weights file to give: choose the .mat file in the page');
      if (!(await browserCanRead(file))) throw new HttpError(404, "this server's weights are not a MatConvNet .mat, the format the page reads: choose imagenet-vgg-verydeep-19.mat in the page");
      // The name tells the page's MAT reader what it reads; the length lets it show progress.
      reply.header('content-type', 'application/octet-stream').header('content-length', st.size).header('x-pastiche-weights', encodeURIComponent(path.basename(file)));
      return reply.send(createReadStream(file));
    },
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // The Studio at /, and the pages of `pastiche web` (the in-browser classifier, the kernel check).
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.header('content-type', 'text/html; charset=utf-8').send(await readFile(pageFile('/studio.html')!.file)));
  app.get('/*', { schema: { hide: true } }, async (req, reply) => {
    const page = pageFile(requestPath(req.url));
    if (!page) throw new HttpError(404, 'not found');
    return reply.header('content-type', page.type).send(await readFile(page.file));
  });

  await app.ready();
  return app;
}
