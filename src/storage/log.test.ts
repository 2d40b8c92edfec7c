/**
 * Goal: the commit log's contract: offsets, reads, segment rollover, retention, suffix removal,
 * the raw reader, group commit under concurrency, tail waiting, and config validation.
 * Method: real files in a temp dir per test; small segment limits force rollovers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ClosedError, InvalidArgumentError, OffsetOutOfRangeError, RecordTooLargeError } from '../util/index.js';
import { FRAME_HEADER_BYTES } from './format.js';
import { NODE_FILE_IO, type FileIo } from './file-io.js';
import { CommitLog, parseFsyncPolicy } from './log.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-log-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const value = (i: number): Buffer => Buffer.from(`record-${i}`);

describe('CommitLog', () => {
  it('appends and reads records at consecutive offsets', async () => {
    const log = await CommitLog.open(dir);
    assert.equal(log.nextOffset(), 0);
    assert.equal(log.highestOffset(), -1);
    for (let i = 0; i < 10; i++) assert.equal(await log.append({ value: value(i), term: 7, type: 1 }), i);
    for (let i = 0; i < 10; i++) {
      const record = log.read(i);
      assert.deepEqual(record, { offset: i, term: 7, type: 1, value: value(i) });
    }
    assert.equal(log.lowestOffset(), 0);
    assert.equal(log.highestOffset(), 9);
    await log.close();
  });

  it('appends a batch atomically with consecutive offsets', async () => {
    const log = await CommitLog.open(dir, { initialOffset: 100 });
    const range = await log.appendBatch([0, 1, 2, 3].map((i) => ({ value: value(i) })));
    assert.deepEqual(range, { firstOffset: 100, lastOffset: 103 });
    const batch = log.readBatch(100, { maxCount: 10, maxBytes: 1 << 20 });
    assert.deepEqual(batch.map((r) => r.value.toString()), ['record-0', 'record-1', 'record-2', 'record-3']);
    await assert.rejects(log.appendBatch([]), InvalidArgumentError);
    await log.close();
  });

  it('rejects offsets outside the log with the range in the error', async () => {
    const log = await CommitLog.open(dir, { initialOffset: 5 });
    assert.throws(() => log.read(5), (e: unknown) => e instanceof OffsetOutOfRangeError && /empty/.test(e.message));
    await log.append({ value: value(0) });
    assert.throws(() => log.read(6), (e: unknown) => e instanceof OffsetOutOfRangeError && e.offset === 6 && /5\.\.5/.test(e.message));
    assert.throws(() => log.read(4), OffsetOutOfRangeError);
    assert.throws(() => log.read(-1), OffsetOutOfRangeError);
    assert.throws(() => log.read(1.5), OffsetOutOfRangeError);
    assert.deepEqual(log.readBatch(6, { maxCount: 5, maxBytes: 100 }), []);
    await log.close();
  });

  it('refuses offsets past 2^53 - 1 instead of giving two records one offset', async () => {
    const last = Number.MAX_SAFE_INTEGER - 1; // the last offset whose next offset is still exact
    await assert.rejects(CommitLog.open(dir, { initialOffset: Number.MAX_SAFE_INTEGER }), /initialOffset must be below 9007199254740991/);
    let log = await CommitLog.open(dir, { initialOffset: last - 2 });
    await assert.rejects(log.appendBatch([0, 1, 2, 3].map((i) => ({ value: value(i) }))), (e: unknown) => e instanceof InvalidArgumentError && /log is full/.test(e.message));
    assert.deepEqual(await log.appendBatch([0, 1].map((i) => ({ value: value(i) }))), { firstOffset: last - 2, lastOffset: last - 1 });
    assert.equal(await log.append({ value: value(2) }), last);
    await assert.rejects(log.append({ value: value(3) }), (e: unknown) => e instanceof InvalidArgumentError && /log is full/.test(e.message));
    assert.equal(log.nextOffset(), Number.MAX_SAFE_INTEGER);
    await log.close();
    log = await CommitLog.open(dir);
    const records = log.readBatch(last - 2, { maxCount: 10, maxBytes: 1 << 20 });
    assert.deepEqual(records.map((r) => [r.offset, r.value.toString()]), [[last - 2, 'record-0'], [last - 1, 'record-1'], [last, 'record-2']]);
    await assert.rejects(log.append({ value: value(4) }), InvalidArgumentError);
    await log.close();
  });

  it('rejects records over maxRecordBytes and appends nothing of that batch', async () => {
    const log = await CommitLog.open(dir, { maxRecordBytes: 8 });
    await assert.rejects(log.appendBatch([{ value: value(1) }, { value: Buffer.alloc(9) }]), RecordTooLargeError);
    assert.equal(await log.append({ value: Buffer.alloc(8) }), 0);
    await log.close();
  });

  it('reopens with existing segments and continues at the next offset', async () => {
    let log = await CommitLog.open(dir, { maxStoreBytes: 200 });
    for (let i = 0; i < 30; i++) await log.append({ value: value(i) });
    assert.ok(log.segmentCount() > 3);
    await log.close();
    log = await CommitLog.open(dir, { maxStoreBytes: 200 });
    assert.deepEqual(log.recovery.actions, []);
    assert.equal(log.nextOffset(), 30);
    for (let i = 0; i < 30; i++) assert.equal(log.read(i).value.toString(), `record-${i}`);
    assert.equal(await log.append({ value: value(30) }), 30);
    await log.close();
  });

  it('rolls over when the index fills', async () => {
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 3 });
    for (let i = 0; i < 7; i++) await log.append({ value: value(i) });
    assert.equal(log.segmentCount(), 3);
    const stores = readdirSync(dir).filter((n) => n.endsWith('.store')).sort();
    assert.deepEqual(stores, ['00000000000000000000.store', '00000000000000000003.store', '00000000000000000006.store']);
    for (let i = 0; i < 7; i++) assert.equal(log.read(i).value.toString(), `record-${i}`);
    await log.close();
  });

  it('rolls over when the store fills, and a record never straddles segments', async () => {
    const frame = FRAME_HEADER_BYTES + value(0).length;
    const log = await CommitLog.open(dir, { maxStoreBytes: frame * 2 + 1, maxRecordBytes: 32 });
    for (let i = 0; i < 5; i++) await log.append({ value: value(i) });
    assert.equal(log.segmentCount(), 3);
    // A batch read stops at the segment boundary; the caller continues from there.
    assert.equal(log.readBatch(0, { maxCount: 10, maxBytes: 1 << 20 }).length, 2);
    assert.equal(log.readBatch(2, { maxCount: 10, maxBytes: 1 << 20 }).length, 2);
    await log.close();
  });

  for (const policy of ['never', 'always'] as const) {
    it(`writes a burst as its arena fills, frames larger than the arena and rolls included, and reopens it clean (fsync ${policy})`, async () => {
      const arenaBytes = 200;
      const config = { fsync: parseFsyncPolicy(policy), writeArenaBytes: arenaBytes, maxStoreBytes: 1500, maxRecordBytes: 400 };
      const log = await CommitLog.open(dir, config);
      // Sizes from empty to twice the arena, so some frames fill it exactly and some need their own buffer.
      const values = Array.from({ length: 120 }, (_, i) => Buffer.alloc((i * 37) % 400, i));
      const appended = values.map((v, i) => (i % 10 === 9 ? log.appendBatch([{ value: v, term: i }]).then((r) => r.firstOffset) : log.append({ value: v, term: i })));
      // Still in the turn that appended: the full arenas are on file already, nothing acknowledged yet.
      const firstStore = join(dir, '00000000000000000000.store');
      assert.ok(statSync(firstStore).size >= arenaBytes, `store holds ${statSync(firstStore).size} bytes before the flush`);
      assert.equal(log.nextOffset(), 0);
      assert.deepEqual(await Promise.all(appended), values.map((_, i) => i));
      assert.ok(log.segmentCount() > 3, `${log.segmentCount()} segments`);
      const check = (l: CommitLog): void => {
        for (let i = 0; i < values.length; i++) assert.deepEqual(l.read(i), { offset: i, term: i, type: 0, value: values[i] }, `offset ${i}`);
        let offset = 0;
        while (offset < values.length) offset += l.readBatch(offset, { maxCount: 1000, maxBytes: 1 << 20 }).length;
        assert.equal(offset, values.length);
      };
      check(log);
      await log.close();
      const reopened = await CommitLog.open(dir, config);
      // Every segment's store and index agreed: recovery had nothing to rebuild or cut.
      assert.deepEqual(reopened.recovery.actions, []);
      check(reopened);
      await reopened.close();
    });
  }

  it('readBatch honours maxCount and maxBytes but returns at least one record', async () => {
    const log = await CommitLog.open(dir);
    await log.appendBatch(Array.from({ length: 10 }, () => ({ value: Buffer.alloc(100, 1) })));
    assert.equal(log.readBatch(0, { maxCount: 3, maxBytes: 1 << 20 }).length, 3);
    assert.equal(log.readBatch(0, { maxCount: 10, maxBytes: 250 }).length, 2);
    assert.equal(log.readBatch(0, { maxCount: 10, maxBytes: 1 }).length, 1);
    await log.close();
  });

  it('truncate drops whole segments below the given offset and keeps the active one', async () => {
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 2 });
    for (let i = 0; i < 6; i++) await log.append({ value: value(i) });
    await log.truncate(3);
    assert.equal(log.lowestOffset(), 2); // segment [2, 4) still holds offset 3
    assert.throws(() => log.read(1), OffsetOutOfRangeError);
    assert.equal(log.read(2).value.toString(), 'record-2');
    await log.truncate(100);
    assert.equal(log.lowestOffset(), 4);
    assert.equal(log.nextOffset(), 6);
    assert.equal(await log.append({ value: value(6) }), 6);
    await log.close();
    const reopened = await CommitLog.open(dir, { maxIndexBytes: 12 * 2 });
    assert.equal(reopened.lowestOffset(), 4);
    assert.equal(reopened.read(6).value.toString(), 'record-6');
    await reopened.close();
  });

  it('removeFrom drops a suffix across segments, durably, and appends continue there', async () => {
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 3 });
    for (let i = 0; i < 8; i++) await log.append({ value: value(i) });
    await log.removeFrom(4);
    assert.equal(log.nextOffset(), 4);
    assert.throws(() => log.read(4), OffsetOutOfRangeError);
    assert.equal(await log.append({ value: Buffer.from('new-4') }), 4);
    assert.equal(await log.append({ value: Buffer.from('new-5') }), 5);
    await log.close();
    const reopened = await CommitLog.open(dir, { maxIndexBytes: 12 * 3 });
    assert.deepEqual(reopened.recovery.actions, []);
    assert.deepEqual(
      reopened.readBatch(0, { maxCount: 3, maxBytes: 1 << 20 }).map((r) => r.value.toString()),
      ['record-0', 'record-1', 'record-2'],
    );
    assert.equal(reopened.read(4).value.toString(), 'new-4');
    assert.equal(reopened.read(5).value.toString(), 'new-5');
    assert.equal(reopened.nextOffset(), 6);
    await assert.rejects(reopened.removeFrom(7), OffsetOutOfRangeError);
    await reopened.removeFrom(0);
    assert.equal(reopened.nextOffset(), 0);
    await reopened.close();
  });

  it('reader yields the bytes of every store file in order', async () => {
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 4 });
    for (let i = 0; i < 10; i++) await log.append({ value: value(i) });
    const chunks: Buffer[] = [];
    for await (const chunk of log.reader()) chunks.push(chunk as Buffer);
    const expected = Buffer.concat(
      readdirSync(dir).filter((n) => n.endsWith('.store')).sort().map((n) => readFileSync(join(dir, n))),
    );
    assert.ok(Buffer.concat(chunks).equals(expected));
    await log.close();
  });

  it('concurrent appenders get distinct offsets in call order, all readable', async () => {
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 100 });
    const offsets = await Promise.all(Array.from({ length: 1000 }, (_, i) => log.append({ value: value(i) })));
    assert.deepEqual(offsets, Array.from({ length: 1000 }, (_, i) => i));
    for (let i = 0; i < 1000; i += 97) assert.equal(log.read(i).value.toString(), `record-${i}`);
    assert.ok(log.segmentCount() >= 10);
    await log.close();
  });

  for (const policy of ['always', 'never', 'interval:5'] as const) {
    it(`acknowledges and reads back under fsync ${policy}`, async () => {
      const log = await CommitLog.open(dir, { fsync: parseFsyncPolicy(policy) });
      const offsets = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append({ value: value(i) })));
      assert.equal(offsets[49], 49);
      assert.equal(log.read(49).value.toString(), 'record-49');
      await log.close();
    });
  }

  it('waitForAppend resolves on the next append, rejects on abort and on close', async () => {
    const log = await CommitLog.open(dir);
    await log.waitForAppend(-1); // already satisfied
    const waiting = log.waitForAppend(0);
    assert.equal(log.waiterCount(), 1);
    await log.append({ value: value(0) });
    await waiting;
    assert.equal(log.waiterCount(), 0);
    const controller = new AbortController();
    const aborted = log.waitForAppend(1, controller.signal);
    controller.abort(new Error('client went away'));
    await assert.rejects(aborted, /client went away/);
    assert.equal(log.waiterCount(), 0);
    const closing = assert.rejects(log.waitForAppend(1), ClosedError);
    await log.close();
    await closing;
    await assert.rejects(log.append({ value: value(1) }), ClosedError);
  });

  it('validates its config and its directory', async () => {
    await assert.rejects(CommitLog.open(dir, { maxIndexBytes: 13 }), /multiple of 12/);
    await assert.rejects(CommitLog.open(dir, { maxStoreBytes: 100, maxRecordBytes: 100 }), /must fit/);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    await assert.rejects(CommitLog.open(file), (e: unknown) => e instanceof InvalidArgumentError && /not a directory/.test(e.message));
    assert.throws(() => parseFsyncPolicy('sometimes'), InvalidArgumentError);
    assert.deepEqual(parseFsyncPolicy('interval:200ms'), { kind: 'interval', intervalMs: 200 });
  });

  it('locks its directory against a second open until closed, and takes over a stale lock', async () => {
    const log = await CommitLog.open(dir);
    await assert.rejects(CommitLog.open(dir), (e: unknown) => e instanceof InvalidArgumentError && /in use by this process/.test(e.message));
    await log.close();
    const again = await CommitLog.open(dir);
    await again.close();
    // A lock left by a process that no longer exists (kill -9) is stale.
    writeFileSync(join(dir, 'LOCK'), '2147483646 12345\n');
    const afterCrash = await CommitLog.open(dir);
    await afterCrash.close();
  });

  it('releases its lock and files when the fsync of its close fails, so the process can reopen it in place', async () => {
    let failFsyncs = false;
    const eio = (): Error => Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    const io: FileIo = {
      ...NODE_FILE_IO,
      fsyncSync: (fd) => {
        if (failFsyncs) throw eio();
        NODE_FILE_IO.fsyncSync(fd);
      },
      fsync: (fd) => (failFsyncs ? Promise.reject(eio()) : NODE_FILE_IO.fsync(fd)),
      fdatasync: (fd) => (failFsyncs ? Promise.reject(eio()) : NODE_FILE_IO.fdatasync(fd)),
    };
    const log = await CommitLog.open(dir, { io });
    assert.equal(await log.append({ value: value(0) }), 0);
    failFsyncs = true;
    await assert.rejects(log.close(), /EIO/);
    failFsyncs = false;
    const again = await CommitLog.open(dir, { io });
    assert.equal(again.nextOffset(), 1);
    assert.deepEqual(again.read(0).value, value(0));
    await again.close();
  });

  // Under fsync=never the sealed segments are synced in the background so that they can be parked.
  for (const policy of ['always', 'never'] as const) {
    it(`keeps at most maxOpenSegments sealed segments open, reopening others on demand (fsync ${policy})`, async () => {
      const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 2, maxOpenSegments: 3, fsync: parseFsyncPolicy(policy) });
      for (let i = 0; i < 40; i++) await log.append({ value: value(i) });
      assert.equal(log.segmentCount(), 20);
      await log.truncate(0); // removes nothing; drains the writer, background syncs included
      const descriptorsIntoDir = (): number =>
        readdirSync('/proc/self/fd').filter((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
          } catch {
            return false;
          }
        }).length;
      for (const order of [[...Array(40).keys()], [...Array(40).keys()].reverse(), [7, 31, 2, 39, 18, 0, 25]]) {
        for (const offset of order) assert.equal(log.read(offset).value.toString(), `record-${offset}`);
        // The active segment plus at most three sealed ones; two files each, plus the directory.
        assert.ok(log.openSegmentCount() <= 4, `${log.openSegmentCount()} segments open`);
        assert.ok(descriptorsIntoDir() <= 2 * 4 + 1, `${descriptorsIntoDir()} descriptors open`);
      }
      const chunks: Buffer[] = [];
      for await (const chunk of log.reader()) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).length, log.sizeBytes());
      await log.removeFrom(3); // a parked segment becomes the active one again
      assert.equal(await log.append({ value: value(3) }), 3);
      assert.equal(log.read(2).value.toString(), 'record-2');
      await log.close();
      assert.equal(descriptorsIntoDir(), 0);
    });
  }

  it('reset empties the log', async () => {
    const log = await CommitLog.open(dir);
    await log.append({ value: value(0) });
    const fresh = await log.reset();
    assert.equal(fresh.nextOffset(), 0);
    await fresh.close();
  });
});
