/**
 * Goal: the published package holds the library and the CLI but none of the tests, test helpers
 * or test data, even when the tests' compiled files sit in dist/ next to it.
 * Method: the TypeScript compiler lists the files tsconfig.build.json (the package build) takes;
 * `npm pack --dry-run --ignore-scripts` lists what `files` in package.json would ship from the
 * dist/ the test run built (tests included), without touching it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TEST_FILE = /(\.test\.|\/test-[^/]*$|\/testdata\/)/;

describe('the published package', { timeout: 120_000 }, () => {
  it('builds without tests, test helpers or test data', async () => {
    const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
    const { stdout } = await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--listFilesOnly'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    const sources = stdout.split('\n').filter((path) => path.startsWith(`${ROOT}src/`));
    assert.ok(sources.some((path) => path.endsWith('src/cli/main.ts')), 'the CLI is built');
    assert.ok(sources.some((path) => path.endsWith('src/client/index.ts')), 'the client library is built');
    assert.deepEqual(sources.filter((path) => TEST_FILE.test(path)), []);
  });

  it('ships no compiled test file from dist/', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((file) => file.path);
    assert.ok(files.includes('dist/src/cli/main.js'), 'the CLI ships');
    assert.ok(files.includes('proto/descriptor.binpb'), 'the descriptor set for reflection ships');
    assert.ok(!files.some((path) => path.startsWith('dist/e2e/') || path.startsWith('dist/bench/')));
    assert.deepEqual(files.filter((path) => TEST_FILE.test(path)), []);
  });
});
