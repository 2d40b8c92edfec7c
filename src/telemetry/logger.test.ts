/**
 * Goal: logs are JSON lines with level names, ISO times and a `component` field; `--log-level`
 * values are checked; the test logger is silent by default and, with ANNAL_DEBUG=1, writes debug
 * lines (tagged with the test's name) into ANNAL_DEBUG_FILE, or into a per-process file whose path
 * it prints when run outside scripts/test.mjs.
 * Method: a logger writing into memory; the debug switch in child processes (the env is read at
 * first use), checking the files they leave in a temp dir.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { componentLogger, createLogger, parseLogLevel } from './logger.js';

const testLoggerUrl = new URL('./test-logger.js', import.meta.url).href;

/** Runs a child that logs one debug line through testLogger({ name: 'child test' }). */
function runChild(env: NodeJS.ProcessEnv): { stderr: string; status: number | null } {
  const script = `import { testLogger } from ${JSON.stringify(testLoggerUrl)};
    testLogger({ name: 'child test' }).child({ component: 'storage' }).debug({ offset: 7 }, 'appended');`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { PATH: process.env['PATH'], ...env },
    encoding: 'utf8',
  });
  return { stderr: result.stderr, status: result.status };
}

describe('logger', () => {
  const dir = mkdtempSync(join(tmpdir(), 'annal-logger-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes JSON lines with level, time and component', () => {
    const lines: Record<string, unknown>[] = [];
    const root = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    componentLogger(root, 'server').info({ port: 8400 }, 'listening');
    componentLogger(root, 'server').debug('dropped below the level');
    assert.equal(lines.length, 1);
    const [line] = lines as [Record<string, unknown>];
    assert.equal(line['level'], 'info');
    assert.equal(line['component'], 'server');
    assert.equal(line['port'], 8400);
    assert.equal(line['msg'], 'listening');
    assert.ok(!Number.isNaN(Date.parse(String(line['time']))));
  });

  it('batches file writes yet delivers a lone line within the flush interval, and flushes at exit', async () => {
    const lone = join(dir, 'lone.log');
    const logger = createLogger({ destination: lone, flushIntervalMs: 20 });
    logger.info('only line');
    // Nothing else is logged: the interval flush must write it. Bounded poll, no fixed sleep.
    let text = '';
    for (let attempt = 0; attempt < 250 && !text.includes('only line'); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = existsSync(lone) ? readFileSync(lone, 'utf8') : '';
    }
    assert.match(text, /"msg":"only line"/);

    const atExit = join(dir, 'exit.log');
    const loggerUrl = new URL('./logger.js', import.meta.url).href;
    const script = `import { createLogger } from ${JSON.stringify(loggerUrl)};
      const logger = createLogger({ destination: ${JSON.stringify(atExit)}, flushIntervalMs: 60000 });
      for (let i = 0; i < 3; i++) logger.info({ i }, 'before exit');
      process.exit(0);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(readFileSync(atExit, 'utf8').trim().split('\n').length, 3);
  });

  it('accepts the documented levels and names them when refusing one', () => {
    assert.equal(parseLogLevel('DEBUG'), 'debug');
    assert.equal(parseLogLevel('silent'), 'silent');
    assert.throws(() => parseLogLevel('verbose'), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, /trace, debug, info, warn, error, fatal, silent/);
      return true;
    });
  });

  it('is silent without ANNAL_DEBUG', () => {
    const file = join(dir, 'quiet.log');
    const child = runChild({ ANNAL_DEBUG_FILE: file });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(existsSync(file), false);
    assert.equal(child.stderr, '');
  });

  it('with ANNAL_DEBUG=1 writes debug lines tagged with the test into ANNAL_DEBUG_FILE', () => {
    const file = join(dir, 'run.log');
    for (let i = 0; i < 2; i++) assert.equal(runChild({ ANNAL_DEBUG: '1', ANNAL_DEBUG_FILE: file }).status, 0);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((text) => JSON.parse(text) as Record<string, unknown>);
    assert.equal(lines.length, 2, 'both processes appended to the one file');
    for (const line of lines) {
      assert.equal(line['level'], 'debug');
      assert.equal(line['test'], 'child test');
      assert.equal(line['component'], 'storage');
      assert.equal(line['offset'], 7);
    }
  });

  it('without ANNAL_DEBUG_FILE picks a per-process file and prints its path', () => {
    const child = runChild({ ANNAL_DEBUG: '1', TMPDIR: dir });
    assert.equal(child.status, 0, child.stderr);
    const match = /debug logs of this process go to (\S+)/.exec(child.stderr);
    assert.ok(match, child.stderr);
    assert.ok(match[1]!.startsWith(dir));
    assert.match(readFileSync(match[1]!, 'utf8'), /"msg":"appended"/);
  });
});
