/**
 * Serves the browser page (dist/web, built by `npm run build`) on the local machine. Only the
 * page's own files are served; the weights and images never leave the browser.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PasticheError } from '../errors.js';

/** dist/web, next to this module's dist/src/server. */
export const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

const FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/classify-page.js': 'classify-page.js',
  '/classify-page.js.map': 'classify-page.js.map',
  '/check.html': 'check.html',
  '/check-page.js': 'check-page.js',
  '/check-page.js.map': 'check-page.js.map',
  '/studio.html': 'studio.html',
  '/studio-page.js': 'studio-page.js',
  '/studio-page.js.map': 'studio-page.js.map',
  '/live.html': 'live.html',
  '/live-page.js': 'live-page.js',
  '/live-page.js.map': 'live-page.js.map',
};

const TYPES: Record<string, string> = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', map: 'application/json' };

/** The page file served at `pathname`, with its content type; undefined for any other path. */
export function pageFile(pathname: string): { file: string; type: string } | undefined {
  const name = Object.hasOwn(FILES, pathname) ? FILES[pathname] : undefined;
  return name ? { file: `${WEB_ROOT}${name}`, type: TYPES[name.split('.').pop()!]! } : undefined;
}

/** The path of a request target; a target that is no valid URL path (e.g. 'http://[x/') has none. */
export function requestPath(target: string | undefined): string {
  try {
    return new URL(target ?? '/', 'http://localhost').pathname;
  } catch {
    return '';
  }
}

export interface WebServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startWebServer(options: { port?: number; host?: string } = {}): Promise<WebServer> {
  if (!existsSync(`${WEB_ROOT}classify-page.js`)) {
    throw new PasticheError(`the web page is not built (${WEB_ROOT} has no classify-page.js): run 'npm run build'`);
  }
  const host = options.host ?? '127.0.0.1';
  const server: Server = createServer((req, res) => {
    // Whatever a client sends gets an HTTP answer; nothing in a request can end the server.
    try {
      const page = pageFile(requestPath(req.url));
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
        return;
      }
      if (!page) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      res.writeHead(200, { 'content-type': page.type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : readFileSync(page.file));
    } catch {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    }
  });
  // Requests Node's parser rejects (bad request lines, huge headers) get a 4xx and a closed socket.
  server.on('clientError', (e: NodeJS.ErrnoException, socket) => {
    const status = e.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      const why: Record<string, string> = {
        EADDRINUSE: `port ${options.port} is in use: choose another with --port`,
        EACCES: `port ${options.port} needs administrator rights here: choose one above 1023 with --port`,
        EADDRNOTAVAIL: `--host ${host} is not an address of this machine`,
        ENOTFOUND: `--host ${host}: no such host name`,
      };
      reject(new PasticheError(why[e.code ?? ''] ?? `cannot serve the page on ${host}:${options.port}: ${e.code ?? e.message}`));
    });
    server.listen(options.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
