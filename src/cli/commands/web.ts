/** `pastiche web`: the browser pages (VGG19 and real-time style on WebGPU, Studio, the kernel check), served on this machine. */
import type { Command } from 'commander';
import { startWebServer } from '../../server/web-server.js';
import { hostOption, portOption, untilStopped } from '../options.js';

export function registerWeb(program: Command): void {
  program
    .command('web')
    .description('serve the browser pages: VGG19 classification and real-time style (a picture or the webcam) on the GPU through WebGPU, Studio, the kernel check; Ctrl-C stops it')
    .addOption(portOption())
    .addOption(hostOption())
    .action(async (opts: { port: number; host: string }) => {
      const server = await startWebServer({ port: opts.port, host: opts.host });
      process.stdout.write(`Pastiche web page: ${server.url} (open it in Chrome or Edge; real-time style: ${server.url}live.html; Ctrl-C to stop)\n`);
      await untilStopped();
      await server.close();
    });
}
