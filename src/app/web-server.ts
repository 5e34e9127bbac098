/**
 * Serves the browser page (dist/web, built by `npm run build`) on the local machine. Only the
 * page's own files are served; the weights and images never leave the browser.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PasticheError } from '../errors.js';

/** dist/web, next to this module's dist/src/app. */
export const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

const FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/classify-page.js': 'classify-page.js',
  '/classify-page.js.map': 'classify-page.js.map',
  '/check.html': 'check.html',
  '/check-page.js': 'check-page.js',
  '/check-page.js.map': 'check-page.js.map',
};

const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', map: 'application/json' };

export interface WebServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startWebServer(options: { port?: number; host?: string } = {}): Promise<WebServer> {
  if (!existsSync(`${WEB_ROOT}classify-page.js`)) {
    throw new PasticheError(`the web page is not built (${WEB_ROOT} has no classify-page.js): run 'npm run build'`);
  }
  const server: Server = createServer((req, res) => {
    const name = FILES[new URL(req.url ?? '/', 'http://x').pathname];
    if (req.method !== 'GET' || !name) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[name.split('.').pop()!]!, 'cache-control': 'no-store' });
    res.end(readFileSync(`${WEB_ROOT}${name}`));
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new PasticheError(e.code === 'EADDRINUSE' ? `port ${options.port} is in use: choose another with --port` : `cannot serve the page: ${e.message}`)),
    );
    server.listen(options.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
