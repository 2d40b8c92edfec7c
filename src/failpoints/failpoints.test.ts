// Goal: ANNAL_FAILPOINTS parses into exactly the faults it names (and refuses what it does not
// know, saying what it knows), and each fault does what it says on a real file: a delayed fsync,
// a failing one, a durable-length report that survives a new instance, and the deliberately
// broken skip that reports nothing durable. Method: Failpoints instances built from specs, on
// files in a temp dir.
import assert from 'node:assert/strict';
import { closeSync, fsync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Failpoints, failpoints, parseFailpoints } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'annal-failpoints-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('failpoints', () => {
  it('are off unless ANNAL_FAILPOINTS is set', () => {
    assert.equal(process.env.ANNAL_FAILPOINTS, undefined);
    assert.equal(failpoints, undefined);
  });

  it('parse every term, and refuse unknown or malformed ones by name', () => {
    assert.deepEqual(parseFailpoints('fsync-delay=200ms, fsync-error=1.5%,sync-report=/x/y.json,unsafe-skip-fsync,seed=7'), {
      fsyncDelayMs: 200, fsyncErrorRatio: 0.015, syncReportPath: '/x/y.json', skipFsync: true, seed: 7,
    });
    assert.equal(parseFailpoints('fsync-delay=2s,seed=1').fsyncDelayMs, 2000);
    assert.throws(() => parseFailpoints('fsync-dely=1ms'), /unknown failpoint "fsync-dely" \(known: fsync-delay/);
    assert.throws(() => parseFailpoints('fsync-delay=soon'), /expected <n>ms or <n>s/);
    assert.throws(() => parseFailpoints('fsync-error=101%'), /percentage/);
    assert.throws(() => parseFailpoints('sync-report'), /needs a file path/);
  });

  it('delay and fail fsyncs as configured', async () => {
    const fd = openSync(join(dir, 'delayed'), 'w');
    try {
      const slow = new Failpoints(parseFailpoints('fsync-delay=100ms,seed=1'));
      const startMs = performance.now();
      await slow.fsync(fd, fsync);
      assert.ok(performance.now() - startMs >= 95);
      const failing = new Failpoints(parseFailpoints('fsync-error=100%,seed=1'));
      await assert.rejects(failing.fsync(fd, fsync), (error: NodeJS.ErrnoException) => error.code === 'EIO');
      const some = new Failpoints(parseFailpoints('fsync-error=50%,seed=3'));
      const outcomes = await Promise.all(Array.from({ length: 40 }, () => some.fsync(fd, fsync).then(() => true, () => false)));
      assert.ok(outcomes.includes(true) && outcomes.includes(false), 'about half fail');
    } finally {
      closeSync(fd);
    }
  });

  it('report the length each file had when its last successful fsync began, across instances', async () => {
    const report = join(dir, 'durable.json');
    const path = join(dir, 'segment.store');
    const fd = openSync(path, 'w');
    try {
      const points = new Failpoints(parseFailpoints(`sync-report=${report}`));
      writeSync(fd, Buffer.alloc(100));
      await points.fsync(fd, fsync);
      writeSync(fd, Buffer.alloc(50)); // written, never synced
      assert.deepEqual(JSON.parse(readFileSync(report, 'utf8')), { [path]: 100 });
      const again = new Failpoints(parseFailpoints(`sync-report=${report}`));
      await again.fsync(fd, fsync);
      assert.deepEqual(JSON.parse(readFileSync(report, 'utf8')), { [path]: 150 }, 'the earlier instance\'s entries are kept and updated');
    } finally {
      closeSync(fd);
    }
  });

  it("report the names a directory's last fsync covered, also from a synchronous fsync", async () => {
    const logDir = mkdtempSync(join(dir, 'log-'));
    const report = join(dir, 'dirs.json');
    const points = new Failpoints(parseFailpoints(`sync-report=${report}`));
    closeSync(openSync(join(logDir, '0.store'), 'w'));
    const dirFd = openSync(logDir, 'r');
    try {
      await points.fsync(dirFd, fsync);
      // Created after the fsync: not durable until the next one.
      closeSync(openSync(join(logDir, '1.store'), 'w'));
      assert.deepEqual(JSON.parse(readFileSync(report, 'utf8')), { [logDir]: ['0.store'] });
      points.fsyncSync(dirFd, fsyncSync);
      assert.deepEqual(JSON.parse(readFileSync(report, 'utf8')), { [logDir]: ['0.store', '1.store'] });
    } finally {
      closeSync(dirFd);
    }
    const fd = openSync(join(logDir, '1.store'), 'r+');
    try {
      writeSync(fd, Buffer.alloc(10));
      points.fsyncSync(fd, fsyncSync);
      assert.equal(JSON.parse(readFileSync(report, 'utf8'))[join(logDir, '1.store')], 10);
    } finally {
      closeSync(fd);
    }
  });

  it('unsafe-skip-fsync succeeds without making anything durable', async () => {
    const report = join(dir, 'skipped.json');
    const path = join(dir, 'skipped.store');
    const fd = openSync(path, 'w');
    try {
      const broken = new Failpoints(parseFailpoints(`unsafe-skip-fsync,sync-report=${report}`));
      writeSync(fd, Buffer.alloc(10));
      await broken.fsync(fd, () => assert.fail('the skip must not sync'));
      assert.deepEqual(JSON.parse(readFileSync(report, 'utf8')), { [path]: 0 });
    } finally {
      closeSync(fd);
    }
  });
});
