// Goal: the reloader applies good changes, keeps the old value on a bad one (with one error line
// per bad version, not one per poll), finds changes by polling alone when fs.watch is off, and
// never runs two loads at once: triggers during a load share one queued load that sees the
// newest files.
// Method: real files in a temp dir; loads that parse a number and can be held open by the test.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { writeAtomically } from './certs-command.js';
import { FileReloader } from './file-reloader.js';
import { RecordingLogger, withTempDir } from './test-fixtures.js';

async function parseNumber(path: string): Promise<number> {
  const value = Number((await readFile(path, 'utf8')).trim());
  if (!Number.isSafeInteger(value)) throw new Error(`${path} does not hold an integer`);
  return value;
}

describe('FileReloader', { timeout: 60_000 }, () => {
  it('applies changes found by polling alone, and logs a bad version once', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'value');
      await writeAtomically(path, '1', 0o644);
      const applied: number[] = [];
      const logger = new RecordingLogger();
      const reloader = await FileReloader.start({
        name: 'value',
        paths: [path],
        load: () => parseNumber(path),
        apply: (value) => applied.push(value),
        logger,
        watch: false,
        pollIntervalMs: 50,
      });
      try {
        assert.deepEqual(applied, [1]);
        await writeAtomically(path, '2', 0o644);
        await logger.waitFor(/^value: reloaded/);
        assert.deepEqual(applied, [1, 2]);
        await writeAtomically(path, 'two', 0o644);
        await logger.waitFor(/^value: rejected the new files/);
        await writeAtomically(path, '3', 0o644);
        await logger.waitFor(/^value: reloaded/, { fromIndex: 2 });
        assert.deepEqual(applied, [1, 2, 3]);
        assert.equal(logger.matching(/rejected/).length, 1, 'the bad version is reported once, not on every poll');
      } finally {
        reloader.close();
      }
    });
  });

  it('runs one load at a time; triggers during a load share one queued load of the newest files', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'value');
      await writeAtomically(path, '1', 0o644);
      let loadsRunning = 0;
      let loadsStarted = 0;
      let release: (() => void) | undefined;
      const applied: number[] = [];
      const reloader = await FileReloader.start({
        name: 'value',
        paths: [path],
        load: async () => {
          loadsRunning += 1;
          loadsStarted += 1;
          assert.equal(loadsRunning, 1, 'loads never overlap');
          if (loadsStarted === 2) await new Promise<void>((resolve) => (release = resolve));
          const value = await parseNumber(path);
          loadsRunning -= 1;
          return value;
        },
        apply: (value) => applied.push(value),
        logger: new RecordingLogger(),
        watch: false,
        pollIntervalMs: 0,
      });
      try {
        const first = reloader.reload();
        while (release === undefined) await new Promise((resolve) => setImmediate(resolve));
        await writeAtomically(path, '7', 0o644);
        const second = reloader.reload();
        const third = reloader.reload();
        release();
        assert.deepEqual(await first, { type: 'applied' });
        assert.deepEqual(await second, { type: 'applied' });
        assert.equal(await third, await second);
        assert.equal(loadsStarted, 3, 'initial load, the held one, one shared queued one');
        assert.deepEqual(applied, [1, 7, 7]);
      } finally {
        reloader.close();
      }
    });
  });
});
