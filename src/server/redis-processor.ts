/**
 * The BullMQ sandboxed processor of `pastiche worker`: it runs in a child process of the worker, so
 * the CPU-bound work never starves BullMQ's lock renewal in the parent. It loads the weights once
 * per process, fetches a job's uploads from Redis into a temporary folder, runs it (run-work.ts, the
 * same code as the embedded worker), checks the job's cancel flag after every iteration, and puts
 * the result and the latest preview back into Redis.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import type { SandboxedJob } from 'bullmq';
import { paramShapes } from '../app/stylize.js';
import { getBackend } from '../backends/index.js';
import { PasticheError } from '../errors.js';
import type { Vgg19Weights } from '../model/vgg19-params.js';
import { loadWeightsFile } from '../app/load-model.js';
import { resolveWeightsFile } from '../weights/weights-source.js';
import { BLOB_TTL_SECONDS, keys, redisConnection, type RedisJobData, type RedisProgress, type RedisReturn, type WorkerAnnouncement } from './redis-queue.js';
import type { Upload } from './queue.js';
import { runWork, workFor } from './run-work.js';

const redis = redisConnection(process.env['PASTICHE_REDIS_URL']!);
const me = `${process.pid}@${hostname()}`;

// A job's folder holds the user's uploads; it is removed when the job ends, but not by a worker
// killed mid-job. So the folders name their process (and host, where containers share /tmp), and
// each processor removes those of this host's processes that are gone before it takes jobs.
const host = hostname().replace(/[^A-Za-z0-9]/g, '_');
const JOB_DIR = new RegExp(`^pastiche-job-${host}-(\\d+)-`);
async function removeOrphanedJobDirs(): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM'; // someone else's: alive
    }
  };
  for (const name of await readdir(tmpdir()).catch(() => [])) {
    const pid = JOB_DIR.exec(name)?.[1];
    if (pid && !alive(Number(pid))) await rm(path.join(tmpdir(), name), { recursive: true, force: true });
  }
}
await removeOrphanedJobDirs();

let weights: Vgg19Weights | undefined;
let loadError: string | undefined;
try {
  const file = resolveWeightsFile(process.env['PASTICHE_WORKER_WEIGHTS'] || undefined);
  weights = await loadWeightsFile(file);
  await announce({ weightsFile: file, shapes: [...paramShapes(weights)] });
} catch (e) {
  loadError = e instanceof PasticheError ? e.message : String(e);
  await announce({ error: loadError });
}

async function announce(a: WorkerAnnouncement): Promise<void> {
  await redis.hset(keys.workers, me, JSON.stringify(a));
}

export default async function processJob(job: SandboxedJob<RedisJobData, RedisReturn>): Promise<RedisReturn> {
  if (!weights) throw new Error(loadError ?? 'no weights');
  const id = job.id!;
  if ((await redis.exists(keys.cancel(id))) === 1) return { cancelled: true };
  const dir = await mkdtemp(path.join(tmpdir(), `pastiche-job-${host}-${process.pid}-`));
  try {
    const files: Record<Upload['field'], string[]> = { content: [], style: [], image: [] };
    for (const input of job.data.inputs) {
      const bytes = await redis.getBuffer(input.key);
      if (!bytes) throw new Error(`the upload ${input.key} is gone from Redis (older than ${BLOB_TTL_SECONDS} s?)`);
      const file = path.join(dir, path.basename(input.key));
      await writeFile(file, bytes);
      files[input.field].push(file);
    }
    const d = job.data;
    const work = workFor(d, files, dir);
    const controller = new AbortController();
    let previews = 0;
    let last: RedisProgress = { previews: 0 };
    const updates: Promise<unknown>[] = [];
    const result = await runWork(work, weights, getBackend(), {
      signal: controller.signal,
      onProgress: (progress) => {
        last = { progress, previews };
        updates.push(
          job.updateProgress(last as unknown as object),
          redis.exists(keys.cancel(id)).then((n) => n === 1 && controller.abort()),
        );
      },
      onPreview: (png) => {
        previews++;
        last = { ...last, previews };
        updates.push(redis.set(keys.blob(id, 'preview'), Buffer.from(png), 'EX', BLOB_TTL_SECONDS).then(() => job.updateProgress(last as unknown as object)));
      },
    });
    await Promise.all(updates);
    if (work.kind === 'stylize') await redis.set(keys.blob(id, 'result'), await readFile(work.output), 'EX', BLOB_TTL_SECONDS);
    return { result };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
