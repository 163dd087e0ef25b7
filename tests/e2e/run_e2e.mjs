// Runs the end-to-end tests, or exits 77 (skipped) when their inputs are
// missing: the openai package (installed by scripts/setup) or the model.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const skip = (why) => {
  console.log(`SKIP: ${why}`);
  process.exit(77);
};
if (!existsSync(join(here, 'node_modules', 'openai', 'package.json'))) {
  skip('tests/e2e/node_modules is missing; scripts/setup installs it (npm ci)');
}
if (!process.env.FERRY_BINARY || !existsSync(process.env.FERRY_BINARY)) skip('FERRY_BINARY is not built');
if (!process.env.FERRY_MODEL || !existsSync(process.env.FERRY_MODEL)) {
  skip(`model ${process.env.FERRY_MODEL} is absent`);
}
const result = spawnSync(process.execPath, ['--test', join(here, 'openai.test.mjs')], {
  stdio: 'inherit',
  env: process.env,
});
process.exit(result.status ?? 1);
