// Starts `ferry serve` on a free loopback port for the tests and stops it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export async function startServer(extraArgs = []) {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-e2e-'));
  const portFile = join(dir, 'port');
  const template = join(dir, 'chatml.jinja');
  writeFileSync(template, CHATML);
  const args = ['serve', '--model', process.env.FERRY_MODEL, '--port', '0', '--port-file', portFile,
    '--chat-template', template, ...extraArgs];
  const child = spawn(process.env.FERRY_BINARY, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited = false;
  child.on('exit', () => { exited = true; });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !exited) {
    if (existsSync(portFile)) {
      const port = parseInt(readFileSync(portFile, 'utf8'), 10);
      if (port > 0) {
        return {
          port,
          baseURL: `http://127.0.0.1:${port}/v1`,
          async stop() {
            if (exited) return child.exitCode;
            const done = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
            const code = await done;
            clearTimeout(timer);
            return code;
          },
        };
      }
    }
    await sleep(20);
  }
  child.kill('SIGKILL');
  throw new Error('ferry serve did not start');
}
