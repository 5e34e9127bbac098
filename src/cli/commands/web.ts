/** `pastiche web`: the browser page (VGG19 on WebGPU), served on this machine. */
import type { Command } from 'commander';
import { startWebServer } from '../../server/web-server.js';
import { portNumber } from '../options.js';

export function registerWeb(program: Command): void {
  program
    .command('web')
    .description('serve the browser page that classifies an image with VGG19 on the GPU (WebGPU); Ctrl-C stops it')
    .option('-p, --port <n>', 'port (1-65535)', portNumber, 8080)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .action(async (opts: { port: number; host: string }) => {
      const server = await startWebServer({ port: opts.port, host: opts.host });
      process.stdout.write(`Pastiche web page: ${server.url} (open it in Chrome or Edge; Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
    });
}
