// Runs every compiled test file (dist/**/*.test.js) with Node's built-in test runner.
// Usage: node scripts/test.mjs [substring ...]  (only files whose path contains a substring)
// ANNAL_TEST_CONCURRENCY sets how many test files run at once (default: 2, the CI machine's cores).
// ANNAL_DEBUG=1 writes every component's debug logs into one file for this run (see
// src/telemetry/test-logger.ts) and prints its path.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function walk(dir, out) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = [...walk('dist/src', []), ...walk('dist/e2e', [])]
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.ANNAL_TEST_CONCURRENCY ?? '2';
const debug = /^(1|true|on|yes)$/i.test(process.env.ANNAL_DEBUG ?? '');
if (debug && !process.env.ANNAL_DEBUG_FILE) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  process.env.ANNAL_DEBUG_FILE = join(tmpdir(), `annal-test-${stamp}.log`);
}
if (debug) console.error(`debug logs: ${process.env.ANNAL_DEBUG_FILE}`);
const result = spawnSync(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
if (debug) console.error(`debug logs: ${process.env.ANNAL_DEBUG_FILE}`);
process.exit(result.status ?? 1);
