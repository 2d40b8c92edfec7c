/**
 * Goal: recovery keeps everything that was acknowledged and reports what it drops.
 * Method: write a log, close it, damage its files the way a crash or a bad disk would (cut the
 * last record at every byte, flip bits, delete or garble the index, corrupt sealed segments),
 * reopen, and compare the readable records and the recovery report with what was written.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CorruptionError } from '../util/index.js';
import { FRAME_HEADER_BYTES } from './format.js';
import { CommitLog } from './log.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-recovery-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const value = (i: number): Buffer => Buffer.from(`value-${String(i).padStart(4, '0')}`);
const FRAME = FRAME_HEADER_BYTES + value(0).length;

async function writeLog(count: number, config = {}): Promise<void> {
  const log = await CommitLog.open(dir, config);
  await log.appendBatch(Array.from({ length: count }, (_, i) => ({ value: value(i), term: 3 })));
  await log.close();
}

function files(kind: 'store' | 'index'): string[] {
  return readdirSync(dir).filter((n) => n.endsWith(`.${kind}`)).sort().map((n) => join(dir, n));
}

async function readAll(config = {}): Promise<{ values: string[]; log: CommitLog }> {
  const log = await CommitLog.open(dir, config);
  const values: string[] = [];
  for (let offset = log.lowestOffset(); offset < log.nextOffset(); offset++) values.push(log.read(offset).value.toString());
  return { values, log };
}

const expected = (count: number): string[] => Array.from({ length: count }, (_, i) => value(i).toString());

function flipBit(path: string, positionBytes: number, bit = 0): void {
  const bytes = readFileSync(path);
  bytes[positionBytes]! ^= 1 << bit;
  writeFileSync(path, bytes);
}

/** Flips two bits of a frame's length field: no one-bit change of it delimits the frame again. */
function garbleLength(path: string, frameAt: number): void {
  flipBit(path, frameAt + 2, 3);
  flipBit(path, frameAt + 2, 5);
}

/** Reads every offset; a damaged one yields `DATA_LOSS <file>@<byte>`. */
function readEach(log: CommitLog): string[] {
  const out: string[] = [];
  for (let offset = log.lowestOffset(); offset < log.nextOffset(); offset++) {
    try {
      out.push(log.read(offset).value.toString());
    } catch (error) {
      assert.ok(error instanceof CorruptionError, String(error));
      out.push(`DATA_LOSS ${error.file}@${error.positionBytes}`);
    }
  }
  return out;
}

describe('recovery', () => {
  it('cut at every byte of the last record: keeps the rest and reports the torn tail', async () => {
    for (let cut = 1; cut <= FRAME; cut++) {
      rmSync(dir, { recursive: true, force: true });
      await writeLog(5);
      const store = files('store')[0]!;
      truncateSync(store, statSync(store).size - cut);
      truncateSync(files('index')[0]!, 12 * 4); // a torn write: its index entry was never written
      const { values, log } = await readAll();
      assert.deepEqual(values, expected(4), `cut ${cut}`);
      if (cut < FRAME) {
        assert.equal(log.recovery.droppedTailBytes, FRAME - cut, `cut ${cut}`);
        assert.match(log.recovery.actions.join('\n'), /cut a torn tail of \d+ bytes .* at byte \d+/);
      }
      // The log is writable again at the right offset.
      assert.equal(await log.append({ value: Buffer.from('after') }), 4);
      await log.close();
    }
  });

  it('a torn tail after a missing index still recovers every whole record', async () => {
    await writeLog(20);
    unlinkSync(files('index')[0]!);
    const store = files('store')[0]!;
    truncateSync(store, statSync(store).size - 3);
    const { values, log } = await readAll();
    assert.deepEqual(values, expected(19));
    assert.equal(log.recovery.rebuiltIndexEntries, 19);
    await log.close();
  });

  it('rebuilds a deleted index file for the active and for sealed segments', async () => {
    await writeLog(10, { maxIndexBytes: 12 * 4 });
    for (const index of files('index')) unlinkSync(index);
    const { values, log } = await readAll({ maxIndexBytes: 12 * 4 });
    assert.deepEqual(values, expected(10));
    assert.equal(log.recovery.rebuiltIndexEntries, 10);
    assert.equal(log.recovery.droppedTailBytes, 0);
    await log.close();
    // Rebuilt once: a second open has nothing to do.
    const again = await readAll({ maxIndexBytes: 12 * 4 });
    assert.deepEqual(again.log.recovery.actions, []);
    await again.log.close();
  });

  it('rewrites index entries it rebuilt inside an index file of the right length, so they are sound once the segment is sealed', async () => {
    // The pages of a failed fsync (or a flipped bit) inside the active segment's index: the file
    // keeps its length, entries 1 to 5 read as zeros after the power loss.
    const config = { maxIndexBytes: 12 * 8 };
    await writeLog(6, config);
    const index = files('index')[0]!;
    const bytes = readFileSync(index);
    writeFileSync(index, Buffer.concat([bytes.subarray(0, 12), Buffer.alloc(12 * 5)]));
    const log = await CommitLog.open(dir, config);
    assert.equal(log.recovery.rebuiltIndexEntries, 5);
    // Fill segment 0 so it is sealed: reads then use its index file.
    await log.appendBatch([6, 7, 8].map((i) => ({ value: value(i), term: 3 })));
    assert.equal(files('index').length, 2);
    assert.deepEqual(readEach(log), expected(9));
    await log.close();
    const again = await readAll(config);
    assert.deepEqual(again.values, expected(9));
    assert.deepEqual(again.log.recovery.actions, []);
    await again.log.close();
  });

  it('rewrites an active index entry that points at the wrong byte, so reads after the reopen find the record', async () => {
    await writeLog(5);
    flipBit(files('index')[0]!, 4 * 12 + 4); // offset 4's position, one byte past its frame
    const { values, log } = await readAll();
    assert.deepEqual(values, expected(5));
    assert.equal(readFileSync(files('index')[0]!).readUInt32LE(4 * 12 + 4), 4 * FRAME);
    await log.close();
  });

  it('ignores garbage and partial entries at the end of the active index', async () => {
    await writeLog(6);
    const index = files('index')[0]!;
    const bytes = readFileSync(index);
    writeFileSync(index, Buffer.concat([bytes.subarray(0, 12 * 4), Buffer.alloc(12 * 3, 0xee), Buffer.alloc(5)]));
    const { values, log } = await readAll();
    assert.deepEqual(values, expected(6));
    assert.equal(log.recovery.rebuiltIndexEntries, 2);
    await log.close();
  });

  it('a flipped bit in the last, unindexed record (its length field included) keeps it as DATA_LOSS: it was written whole, so it may have been acknowledged', async () => {
    for (let position = 0; position < FRAME; position++) {
      const name = `flip at ${position}`;
      rmSync(dir, { recursive: true, force: true });
      await writeLog(5);
      const store = files('store')[0]!;
      flipBit(store, 4 * FRAME + position, position % 8);
      truncateSync(files('index')[0]!, 12 * 4);
      const log = await CommitLog.open(dir);
      assert.deepEqual(readEach(log), [...expected(4), `DATA_LOSS ${store}@${4 * FRAME}`], name);
      assert.equal(log.recovery.droppedTailBytes, 0, name);
      assert.deepEqual(log.recovery.damagedOffsets, [4], name);
      assert.equal(await log.append({ value: Buffer.from('after') }), 5, name);
      await log.close();
      const again = await CommitLog.open(dir);
      assert.deepEqual(readEach(again), [...expected(4), `DATA_LOSS ${store}@${4 * FRAME}`, 'after'], `${name}, reopened`);
      await again.close();
    }
  });

  it('a last record with a sector that reads as zeros, or that ends past the file, is cut as a torn tail', async () => {
    // What a crash leaves of an append: the file ends inside the frame, or a block the file
    // system allocated was never written. Record 2 is 2 KiB, so it covers whole sectors.
    const big = Buffer.alloc(2048, 0x5a);
    const frameAt = 2 * FRAME;
    const cases = [
      { name: 'one whole sector zeroed', damage: (bytes: Buffer) => bytes.fill(0, 1024, 1536) },
      { name: 'the end never written', damage: (bytes: Buffer) => bytes.fill(0, 1024) },
      { name: 'cut short', damage: (bytes: Buffer) => bytes.subarray(0, frameAt + 700) },
    ];
    for (const { name, damage } of cases) {
      rmSync(dir, { recursive: true, force: true });
      const log = await CommitLog.open(dir);
      await log.appendBatch([{ value: value(0) }, { value: value(1) }, { value: big }]);
      await log.close();
      const store = files('store')[0]!;
      writeFileSync(store, damage(readFileSync(store)));
      truncateSync(files('index')[0]!, 12 * 2);
      const { values, log: reopened } = await readAll();
      assert.deepEqual(values, expected(2), name);
      assert.deepEqual(reopened.recovery.damagedOffsets, [], name);
      assert.ok(reopened.recovery.droppedTailBytes > 0, name);
      await reopened.close();
    }
    // The same record with a flipped bit and no zeroed sector was written whole: kept, not cut.
    rmSync(dir, { recursive: true, force: true });
    const log = await CommitLog.open(dir);
    await log.appendBatch([{ value: value(0) }, { value: value(1) }, { value: big }]);
    await log.close();
    flipBit(files('store')[0]!, frameAt + 1200, 2);
    truncateSync(files('index')[0]!, 12 * 2);
    const reopened = await CommitLog.open(dir);
    assert.deepEqual(reopened.recovery.damagedOffsets, [2]);
    assert.equal(reopened.recovery.droppedTailBytes, 0);
    await reopened.close();
  });


  it('a flipped bit or a cut in the last, indexed record of the active segment keeps it as DATA_LOSS, never cuts it', async () => {
    const damage = [
      ...Array.from({ length: Math.ceil(FRAME / 3) }, (_, k) => ({ name: `flip at ${k * 3}`, at: k * 3, cut: 0 })),
      { name: 'cut 3 bytes', at: -1, cut: 3 },
    ];
    for (const { name, at, cut } of damage) {
      rmSync(dir, { recursive: true, force: true });
      await writeLog(5);
      const store = files('store')[0]!;
      if (at >= 0) flipBit(store, 4 * FRAME + at, at % 8);
      if (cut > 0) truncateSync(store, 5 * FRAME - cut);
      const log = await CommitLog.open(dir);
      assert.deepEqual(readEach(log), [...expected(4), `DATA_LOSS ${store}@${4 * FRAME}`], name);
      assert.equal(log.recovery.droppedTailBytes, 0, name);
      assert.match(log.recovery.actions.join('\n'), new RegExp(`CORRUPT: record for offset 4 in ${store} at byte ${4 * FRAME}`), name);
      assert.equal(await log.append({ value: Buffer.from('after') }), 5, name);
      assert.equal(log.read(5).value.toString(), 'after', name);
      await log.close();
      const again = await CommitLog.open(dir);
      assert.deepEqual(readEach(again), [...expected(4), `DATA_LOSS ${store}@${4 * FRAME}`, 'after'], `${name}, reopened`);
      await again.close();
    }
  });

  it('a last indexed record whose store ends inside its frame header is cut as a torn tail: it was never written whole, so never synced', async () => {
    // A power loss kept the index page and lost the end of the store page: the index names a
    // record of which fewer bytes than a frame header remain.
    for (const kept of [0, 7, FRAME_HEADER_BYTES - 1]) {
      rmSync(dir, { recursive: true, force: true });
      await writeLog(5);
      const store = files('store')[0]!;
      truncateSync(store, 4 * FRAME + kept);
      const log = await CommitLog.open(dir);
      assert.deepEqual(readEach(log), expected(4), `${kept} bytes kept`);
      assert.equal(log.recovery.droppedTailBytes, kept, `${kept} bytes kept`);
      assert.doesNotMatch(log.recovery.actions.join('\n'), /CORRUPT/);
      assert.equal(await log.append({ value: Buffer.from('after') }), 4);
      await log.close();
      const again = await CommitLog.open(dir);
      assert.deepEqual(readEach(again), [...expected(4), 'after']);
      assert.deepEqual(again.recovery.actions, []);
      await again.close();
    }
  });

  it('several damaged indexed records at the tail refuse to open unless quarantined', async () => {
    await writeLog(5);
    const store = files('store')[0]!;
    garbleLength(store, 3 * FRAME); // offset 3's length field: offsets 3 and 4 can no longer be delimited by a scan
    flipBit(store, 4 * FRAME + FRAME_HEADER_BYTES);
    await assert.rejects(
      CommitLog.open(dir),
      (e: unknown) => e instanceof CorruptionError && e.file === store && e.positionBytes === 3 * FRAME && /--quarantine-damaged/.test(e.message),
    );
    assert.equal(statSync(store).size, 5 * FRAME, 'nothing was cut');
    const log = await CommitLog.open(dir, { quarantineDamaged: true });
    assert.deepEqual(readEach(log), [...expected(3), `DATA_LOSS ${store}@${3 * FRAME}`, `DATA_LOSS ${store}@${4 * FRAME}`]);
    assert.match(log.recovery.actions.join('\n'), /QUARANTINED: records for offsets 3 to 4/);
    await log.close();
  });

  it('a flipped bit in an indexed middle record is reported on read with file and position', async () => {
    await writeLog(5);
    const store = files('store')[0]!;
    flipBit(store, 2 * FRAME + FRAME_HEADER_BYTES + 1);
    const log = await CommitLog.open(dir);
    assert.deepEqual(log.recovery.actions, []);
    assert.throws(
      () => log.read(2),
      (e: unknown) => e instanceof CorruptionError && e.file === store && e.positionBytes === 2 * FRAME && /checksum/.test(e.message),
    );
    assert.equal(log.read(3).value.toString(), value(3).toString());
    assert.throws(() => log.readBatch(0, { maxCount: 5, maxBytes: 1 << 20 }), CorruptionError);
    await log.close();
  });

  it('a corrupt middle record in the unindexed tail is kept and reported; the records after it stay', async () => {
    await writeLog(5);
    unlinkSync(files('index')[0]!);
    const store = files('store')[0]!;
    flipBit(store, 2 * FRAME + FRAME_HEADER_BYTES + 1);
    const log = await CommitLog.open(dir);
    assert.equal(log.nextOffset(), 5);
    assert.match(log.recovery.actions.join('\n'), /CORRUPT: record for offset 2 .* at byte \d+/);
    assert.throws(() => log.read(2), CorruptionError);
    assert.equal(log.read(4).value.toString(), value(4).toString());
    await log.close();
  });

  it('a garbled length in the middle of the unindexed tail refuses to open rather than cut acknowledged records', async () => {
    await writeLog(5);
    unlinkSync(files('index')[0]!);
    const store = files('store')[0]!;
    flipBit(store, 2 * FRAME + 2, 3); // the length field of offset 2: no longer delimits the frame
    await assert.rejects(
      CommitLog.open(dir),
      (e: unknown) => e instanceof CorruptionError && e.file === store && e.positionBytes === 2 * FRAME && /valid records follow/.test(e.message),
    );
    // Nothing was modified: the file is as it was.
    assert.equal(statSync(store).size, 5 * FRAME);
    // An operator can start it anyway: the damaged range is served as DATA_LOSS.
    const log = await CommitLog.open(dir, { quarantineDamaged: true });
    assert.deepEqual(readEach(log), [...expected(2), `DATA_LOSS ${store}@${2 * FRAME}`, ...expected(5).slice(3)]);
    assert.match(log.recovery.actions.join('\n'), new RegExp(`QUARANTINED: records for offsets 2 to 2 in ${store} at bytes ${2 * FRAME} to ${3 * FRAME}`));
    await log.close();
  });

  it('a sealed segment whose last record is corrupt opens, reports it and serves it as DATA_LOSS', async () => {
    for (const at of [2, 8, FRAME_HEADER_BYTES]) {
      rmSync(dir, { recursive: true, force: true });
      await writeLog(10, { maxIndexBytes: 12 * 4 });
      const sealed = files('store')[0]!;
      flipBit(sealed, 3 * FRAME + at, 3);
      const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 4 });
      const values = readEach(log);
      assert.deepEqual(values, [...expected(3), `DATA_LOSS ${sealed}@${3 * FRAME}`, ...expected(10).slice(4)], `flip at ${at}`);
      assert.match(log.recovery.actions.join('\n'), new RegExp(`CORRUPT: record for offset 3 in ${sealed} at byte ${3 * FRAME}`));
      await log.close();
    }
  });

  it('a sealed segment with several undelimitable records at its end opens only when quarantined', async () => {
    await writeLog(10, { maxIndexBytes: 12 * 4 });
    const sealed = files('store')[0]!;
    garbleLength(sealed, 2 * FRAME); // offset 2's length field: the scan cannot delimit offsets 2 and 3
    flipBit(sealed, 3 * FRAME + FRAME_HEADER_BYTES);
    await assert.rejects(
      CommitLog.open(dir, { maxIndexBytes: 12 * 4 }),
      (e: unknown) => e instanceof CorruptionError && e.file === sealed && e.positionBytes === 2 * FRAME && /offsets 2 to 3 were acknowledged/.test(e.message),
    );
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 4, quarantineDamaged: true });
    assert.deepEqual(readEach(log), [...expected(2), `DATA_LOSS ${sealed}@${2 * FRAME}`, `DATA_LOSS ${sealed}@${2 * FRAME + 1}`, ...expected(10).slice(4)]);
    await log.close();
  });

  it('a missing segment in the middle is reported as a gap', async () => {
    await writeLog(12, { maxIndexBytes: 12 * 4 });
    unlinkSync(files('store')[1]!);
    unlinkSync(files('index')[1]!);
    await assert.rejects(CommitLog.open(dir, { maxIndexBytes: 12 * 4 }), /records are missing/);
  });

  it('an index file with no store is removed; an empty trailing segment is reused', async () => {
    await writeLog(4, { maxIndexBytes: 12 * 4 });
    writeFileSync(join(dir, '00000000000000000999.index'), Buffer.alloc(12));
    const { values, log } = await readAll({ maxIndexBytes: 12 * 4 });
    assert.deepEqual(values, expected(4));
    assert.match(log.recovery.actions.join('\n'), /no store file/);
    assert.equal(await log.append({ value: value(4) }), 4);
    await log.close();
  });
});

describe('a roll interrupted by a crash', () => {
  // Ten records per segment: 25 records make segments at 0, 10 and 20. What a crash after the
  // roll to 20 and before the flush of 16..19 leaves: segment 10 holds `secondStoreBytes` (6
  // whole frames, perhaps part of the seventh) and segment 20 exists, empty.
  const config = { maxStoreBytes: FRAME * 10, maxRecordBytes: value(0).length };
  async function interruptedRoll(secondStoreBytes: number): Promise<{ values: string[]; log: CommitLog }> {
    await writeLog(25, config);
    const [, second, third] = files('store');
    const [, secondIndex, thirdIndex] = files('index');
    truncateSync(second!, secondStoreBytes);
    truncateSync(secondIndex!, 12 * 6);
    truncateSync(third!, 0);
    truncateSync(thirdIndex!, 0);
    return readAll(config);
  }

  it('drops an empty last segment that starts after a gap (the previous segment tail was never written) and resumes there', async () => {
    const { values, log } = await interruptedRoll(FRAME * 6);
    try {
      assert.deepEqual(values, Array.from({ length: 16 }, (_, i) => value(i).toString()));
      assert.equal(log.nextOffset(), 16);
      assert.ok(log.recovery.actions.some((action) => action.includes('a roll interrupted before its first record was written')), log.recovery.actions.join('\n'));
      assert.equal(await log.append({ value: value(16) }), 16, 'appends continue at the gap');
    } finally {
      await log.close();
    }
  });

  it('after a power loss, also when the previous segment tail is torn mid-frame (it was never synced, so never acknowledged)', async () => {
    const { values, log } = await interruptedRoll(FRAME * 6 + 5);
    try {
      assert.deepEqual(values, Array.from({ length: 16 }, (_, i) => value(i).toString()));
      assert.match(log.recovery.actions.join('\n'), /a roll interrupted before its first record was written[\s\S]*cut a torn tail of 5 bytes/);
      assert.equal(await log.append({ value: value(16) }), 16);
    } finally {
      await log.close();
    }
  });
});

describe('cutAtDamage (a replica, which fetches what it drops from the others)', () => {
  const damagedCopies = (): string[] => {
    try {
      return readdirSync(`${dir}.damaged`).flatMap((stamp) => readdirSync(join(`${dir}.damaged`, stamp)));
    } catch {
      return [];
    }
  };
  afterEach(() => rmSync(`${dir}.damaged`, { recursive: true, force: true }));

  it('cuts before undelimitable damage in a sealed segment, keeps the files as they were aside, and appends there again', async () => {
    const config = { maxIndexBytes: 12 * 4 };
    await writeLog(10, config);
    const sealed = files('store')[0]!;
    garbleLength(sealed, 2 * FRAME); // offset 2's length field: the scan cannot delimit offsets 2 and 3
    flipBit(sealed, 3 * FRAME + FRAME_HEADER_BYTES); // and the sealed segment's last record fails: refuses to open without a mode
    await assert.rejects(CommitLog.open(dir, config), CorruptionError);
    const log = await CommitLog.open(dir, { ...config, cutAtDamage: true });
    assert.equal(log.nextOffset(), 2);
    assert.deepEqual(log.recovery.cut, { fromOffset: 2, evidenceEndOffset: 9 });
    assert.match(log.recovery.actions.join('\n'), /CUT AT DAMAGE: truncated .*\(before offset 2\)/);
    assert.deepEqual(readEach(log), expected(2));
    assert.equal(await log.append({ value: value(2) }), 2);
    await log.close();
    // The damaged segment and the two after it, as they were.
    assert.equal(damagedCopies().filter((name) => name.endsWith('.store')).length, 3);
  });

  it('cuts before a delimited corrupt record (kept in place without the mode)', async () => {
    await writeLog(5);
    unlinkSync(files('index')[0]!);
    flipBit(files('store')[0]!, 2 * FRAME + FRAME_HEADER_BYTES + 1);
    const log = await CommitLog.open(dir, { cutAtDamage: true });
    assert.equal(log.nextOffset(), 2);
    assert.deepEqual(log.recovery.cut, { fromOffset: 2, evidenceEndOffset: 4 });
    await log.close();
  });

  it('cuts at a missing segment in the middle, reporting how far the last segment went', async () => {
    const config = { maxIndexBytes: 12 * 4 };
    await writeLog(16, config);
    unlinkSync(files('store')[1]!);
    unlinkSync(files('index')[1]!);
    assert.equal(CommitLog.heldThroughOffset(dir, config), 15);
    const log = await CommitLog.open(dir, { ...config, cutAtDamage: true });
    assert.equal(log.nextOffset(), 4);
    assert.deepEqual(log.recovery.cut, { fromOffset: 4, evidenceEndOffset: 15 }, 'the segments after the one after the gap count too');
    assert.deepEqual(readEach(log), expected(4));
    await log.close();
  });

  it('leaves an undamaged log and a torn tail alone', async () => {
    await writeLog(5);
    const store = files('store')[0]!;
    truncateSync(store, statSync(store).size - 3);
    truncateSync(files('index')[0]!, 12 * 4);
    const log = await CommitLog.open(dir, { cutAtDamage: true });
    assert.equal(log.nextOffset(), 4);
    assert.equal(log.recovery.cut, undefined);
    assert.deepEqual(damagedCopies(), []);
    await log.close();
  });
});

describe('verify', () => {
  it('finds what open does not check: a flipped bit in an older record; rebuilds an index that does not match an intact store; nothing on a clean log', async () => {
    const config = { maxIndexBytes: 12 * 4 };
    await writeLog(12, config);
    let log = await CommitLog.open(dir, config);
    assert.equal(log.verify(), undefined);
    await log.close();
    flipBit(files('store')[1]!, FRAME + FRAME_HEADER_BYTES + 2); // offset 5, in the middle of a sealed segment
    log = await CommitLog.open(dir, config);
    assert.deepEqual(log.recovery.actions, [], 'open checks sealed segments in O(1) reads');
    assert.equal(log.verify(), 5);
    await log.close();
    flipBit(files('store')[1]!, FRAME + FRAME_HEADER_BYTES + 2); // repaired
    flipBit(files('index')[0]!, 2 * 12 + 4, 1); // offset 2's index entry points elsewhere
    log = await CommitLog.open(dir, config);
    const repairs: string[] = [];
    assert.equal(log.verify((action) => repairs.push(action)), undefined, 'the store is intact: nothing is lost');
    assert.equal(repairs.length, 1);
    assert.match(repairs[0]!, /rebuilt .*00000000000000000000\.index from its store: the index did not match it at offset 1/);
    assert.deepEqual(readEach(log), expected(12));
    await log.close();
    // A flipped bit in a frame as well: the index cannot be rebuilt, and the damage is reported.
    flipBit(files('index')[0]!, 2 * 12 + 4, 1);
    flipBit(files('store')[0]!, FRAME + FRAME_HEADER_BYTES + 2); // offset 1
    log = await CommitLog.open(dir, config);
    assert.equal(log.verify(), 1);
    await log.close();
  });

  it('cuts at a record whose own index entry is damaged (its position found by walking the frames)', async () => {
    const config = { maxIndexBytes: 12 * 4 };
    await writeLog(12, config);
    flipBit(files('index')[1]!, 2 * 12 + 7, 4); // offset 6's index entry: its position far past the store's end
    const log = await CommitLog.open(dir, config);
    await log.cutAtDamage(6);
    assert.equal(log.nextOffset(), 6);
    assert.deepEqual(readEach(log), expected(6));
    await log.close();
  });
});
