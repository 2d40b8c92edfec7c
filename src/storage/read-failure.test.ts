/**
 * Goal: a sector the device can no longer read (EIO, a medium error) is damage like a record that
 * fails its checksum: reads of the records it holds fail with CorruptionError naming the file and
 * byte, the records around it stay readable, verify finds it, and a replica's open cuts the log
 * before it instead of failing.
 * Method: real files behind a FileIo that fails reads overlapping one byte range of one file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CorruptionError } from '../util/index.js';
import { NODE_FILE_IO, type FileIo } from './file-io.js';
import { FRAME_HEADER_BYTES } from './format.js';
import { CommitLog } from './log.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-read-failure-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const value = (i: number): Buffer => Buffer.from(`value-${String(i).padStart(4, '0')}`);
const FRAME = FRAME_HEADER_BYTES + value(0).length;
const SMALL_SEGMENTS = { maxIndexBytes: 12 * 8 };

/** node:fs, except that reads of `file` overlapping bytes [from, to) fail with EIO. */
function failingReads(file: () => string, from: number, to: number): FileIo {
  const paths = new Map<number, string>();
  const eio = (): Error => Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
  return {
    ...NODE_FILE_IO,
    open: (path, flags) => {
      const fd = NODE_FILE_IO.open(path, flags);
      paths.set(fd, path);
      return fd;
    },
    read: (fd, target, offset, length, position) => {
      if (paths.get(fd) === file() && position < to && position + length > from) throw eio();
      return NODE_FILE_IO.read(fd, target, offset, length, position);
    },
    readFile: (path) => {
      if (path === file()) throw eio();
      return NODE_FILE_IO.readFile(path);
    },
    copyFile: (source, target) => {
      if (source === file()) throw eio();
      NODE_FILE_IO.copyFile(source, target);
    },
  };
}

async function writeLog(count: number): Promise<void> {
  const log = await CommitLog.open(dir, SMALL_SEGMENTS);
  await log.appendBatch(Array.from({ length: count }, (_, i) => ({ value: value(i), term: 1 })));
  await log.close();
}

const store = (k: number): string => join(dir, readdirSync(dir).filter((name) => name.endsWith('.store')).sort()[k]!);

describe('a sector the device cannot read', () => {
  it('fails reads of the records it holds with DATA_LOSS naming file and byte; the records around it stay readable', async () => {
    await writeLog(20); // segments of 8: offset 10 is the third record of the second segment
    const io = failingReads(() => store(1), 2 * FRAME + 3, 2 * FRAME + 4);
    const log = await CommitLog.open(dir, { ...SMALL_SEGMENTS, io });
    assert.throws(
      () => log.read(10),
      (e: unknown) => e instanceof CorruptionError && e.file === store(1) && e.positionBytes === 2 * FRAME && /EIO/.test(e.message),
    );
    assert.equal(log.read(9).value.toString(), value(9).toString());
    assert.equal(log.read(11).value.toString(), value(11).toString());
    // A batch starting before the sector returns what precedes it rather than failing whole.
    const batch = log.readBatch(8, { maxCount: 8, maxBytes: 1 << 20 });
    assert.deepEqual(batch.map((record) => record.offset), [8]);
    assert.equal(log.verify(), 10);
    await log.close();
  });

  it('in a sealed segment: a replica\'s open that cuts at damage cuts just before it and sets the files aside', async () => {
    await writeLog(20);
    const io = failingReads(() => store(1), 2 * FRAME, 2 * FRAME + 1);
    const log = await CommitLog.open(dir, { ...SMALL_SEGMENTS, io });
    const damaged = log.verify();
    assert.equal(damaged, 10);
    await log.cutAtDamage(damaged);
    assert.equal(log.nextOffset(), 10);
    assert.equal(log.read(9).value.toString(), value(9).toString());
    await log.close();
    assert.equal(readdirSync(`${dir}.damaged`).length, 1, 'the segments as they were, kept aside');
    rmSync(`${dir}.damaged`, { recursive: true, force: true });
  });

  it('in the unindexed tail at open: undelimitable damage, refused with file and byte, cut by cutAtDamage', async () => {
    await writeLog(20); // the active segment holds offsets 16..19
    const { truncateSync } = await import('node:fs');
    truncateSync(join(dir, readdirSync(dir).filter((name) => name.endsWith('.index')).sort()[2]!), 0);
    const active = store(2);
    const io = failingReads(() => active, 0, 512); // the first sector: all four records
    await assert.rejects(
      CommitLog.open(dir, { ...SMALL_SEGMENTS, io }),
      (e: unknown) => e instanceof CorruptionError && e.file === active && /offset 16.*EIO/.test(e.message) && e.damage?.firstOffset === 16,
    );
    const log = await CommitLog.open(dir, { ...SMALL_SEGMENTS, io, cutAtDamage: true });
    assert.equal(log.nextOffset(), 16);
    // Nothing readable follows, so the file's 152 bytes may hold as many frames as fit: up to
    // offset 16 + ceil(152 / 28) - 1 = 21, an upper bound on the 16..19 it held.
    assert.deepEqual(log.recovery.cut, { fromOffset: 16, evidenceEndOffset: 21 });
    await log.close();
    rmSync(`${dir}.damaged`, { recursive: true, force: true });
  });
});
