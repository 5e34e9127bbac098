/** `pastiche web`: the browser page (VGG19 on WebGPU), served on this machine. */
import type { Command } from 'commander';
import { startWebServer } from '../../server/web-server.js';
import { hostOption, portOption, untilStopped } from '../options.js';

export function registerWeb(program: Command): void {
  program
    .command('web')
    .description('serve the browser page that classifies an image with VGG19 on the GPU (WebGPU); Ctrl-C stops it')
    .addOption(portOption())
    .addOption(hostOption())
    .action(async (opts: { port: number; host: string }) => {
      const server = await startWebServer({ port: opts.port, host: opts.host });
      process.stdout.write(`Pastiche web page: ${server.url} (open it in Chrome or Edge; Ctrl-C to stop)\n`);
      await untilStopped();
      await server.close();
    });
}
