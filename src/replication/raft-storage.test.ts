// Goal: RaftLogStorage answers every read exactly like MemoryStorage (the reference) after the
// same writes, also after a reopen from disk, and its consumer view numbers only the normal
// entries, densely, with offsets that continue across compaction and installed snapshots.
// Method: one scripted sequence (conflicting-suffix appends, a removed configuration entry,
// snapshots with trailing entries, compaction over many small segments, a leader's snapshot,
// appends after it) applied to both; after each step every read is compared, the consumer view
// is checked against the entries (test-support.ts fullView), the storage is reopened and
// compared again. Real files in temp dirs.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EntryType, MemoryStorage, type ClusterConfig, type Entry, type HardState, type Snapshot } from '../raft/index.js';
import { FRAME_HEADER_BYTES, NODE_FILE_IO, type FileIo } from '../storage/index.js';
import { CorruptionError, InvalidArgumentError, OffsetOutOfRangeError } from '../util/index.js';
import { decodeLogSnapshot, encodeLogSnapshot, LOG_SNAPSHOT_MAX_BYTES, RaftLogStorage, type FileOps } from './raft-storage.js';
import { CONTROL_RECORD_BYTES } from './control-index.js';
import { configEntry, fullView, noop, normal, normals, raftView, tempDir } from './test-support.js';

const config: ClusterConfig = { voters: ['a', 'b', 'c'], learners: [] };
/** Four records per segment, so compaction removes whole segments and reads cross boundaries. */
const SMALL_SEGMENTS = { maxIndexBytes: 12 * 4 };

type Step =
  | { kind: 'hardState'; hardState: HardState }
  | { kind: 'append'; entries: Entry[] }
  | { kind: 'createSnapshot'; index: number; config: ClusterConfig; trailingEntryCount: number }
  | { kind: 'applySnapshot'; snapshot: Snapshot };

class Harness {
  private constructor(
    readonly dir: string,
    public disk: RaftLogStorage,
    readonly memory: MemoryStorage,
  ) {}

  static async start(dir: string): Promise<Harness> {
    const disk = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: config });
    assert.equal(disk.isNew, true);
    return new Harness(dir, disk, new MemoryStorage(config));
  }

  async step(step: Step): Promise<void> {
    switch (step.kind) {
      case 'hardState':
        this.memory.setHardState(step.hardState);
        await this.disk.setHardState(step.hardState);
        break;
      case 'append':
        this.memory.append(step.entries);
        await this.disk.append(step.entries);
        break;
      case 'createSnapshot': {
        // MemoryStorage keeps what it is given; RaftLogStorage makes its descriptor. Give the
        // reference the descriptor the disk will produce, so the snapshots compare equal.
        const data = encodeLogSnapshot({ nextOffset: this.disk.offsetOfIndex(step.index + 1) });
        this.memory.createSnapshot({ ...step, data });
        await this.disk.createSnapshot({ ...step, data: new Uint8Array([1, 2, 3]) });
        break;
      }
      case 'applySnapshot':
        this.memory.applySnapshot(step.snapshot);
        await this.disk.applySnapshot(step.snapshot);
        break;
    }
    this.compare('after the write');
    const before = fullView(this.disk);
    await this.disk.close();
    this.disk = await RaftLogStorage.open(this.dir, { log: SMALL_SEGMENTS, initialConfig: { voters: ['ignored'], learners: [] } });
    assert.equal(this.disk.isNew, false);
    assert.deepEqual(this.disk.recovery.actions, [], 'a clean reopen repairs nothing');
    this.compare('after reopening');
    assert.deepEqual(fullView(this.disk), before, 'the consumer view survives the reopen');
  }

  compare(when: string): void {
    assert.deepEqual(raftView(this.disk), raftView(this.memory), when);
  }
}

test('RaftLogStorage matches MemoryStorage read for read through appends, conflicts, snapshots and reopens', async () => {
  const { dir, remove } = tempDir('raft-contract');
  const harness = await Harness.start(dir);
  try {
    harness.compare('new');
    assert.deepEqual(fullView(harness.disk).consumer, { lowestOffset: 0, nextOffset: 0, records: [] });
    const steps: Step[] = [
      { kind: 'hardState', hardState: { term: 1, vote: 'a', commit: 0 } },
      { kind: 'append', entries: [noop(1, 1), ...normals(2, 6, 1), configEntry(7, 1, { voters: ['a', 'b'], learners: [] }), ...normals(8, 10, 1)] },
      { kind: 'hardState', hardState: { term: 1, vote: 'a', commit: 5 } },
      // A new leader's entries replace the suffix from 8.
      { kind: 'append', entries: [noop(8, 2), ...normals(9, 12, 2)] },
      // Another replaces from 7, removing the configuration entry at 7, and adds one at 9.
      { kind: 'append', entries: [noop(7, 3), normal(8, 3), configEntry(9, 3, { voters: ['a', 'b', 'c', 'd'], learners: [] })] },
      { kind: 'hardState', hardState: { term: 3, vote: null, commit: 9 } },
      { kind: 'append', entries: normals(10, 30, 3) },
      { kind: 'createSnapshot', index: 6, config, trailingEntryCount: 2 },
      { kind: 'append', entries: [noop(31, 4), ...normals(32, 40, 4)] },
      // Trailing entries larger than the distance keep everything retained so far.
      { kind: 'createSnapshot', index: 12, config, trailingEntryCount: 100 },
      { kind: 'createSnapshot', index: 33, config, trailingEntryCount: 0 },
      { kind: 'hardState', hardState: { term: 4, vote: 'b', commit: 33 } },
      // A suffix conflict right at the first retained index.
      { kind: 'append', entries: [noop(34, 5), configEntry(35, 5, config), ...normals(36, 38, 5)] },
      // A leader's snapshot far ahead: the log restarts empty after it.
      { kind: 'applySnapshot', snapshot: { meta: { index: 60, term: 7, config }, data: encodeLogSnapshot({ nextOffset: 500 }) } },
      { kind: 'hardState', hardState: { term: 7, vote: null, commit: 60 } },
      // The first entries after a snapshot may be mid-term (their no-op was compacted).
      { kind: 'append', entries: normals(61, 64, 7) },
      { kind: 'append', entries: [noop(65, 8), ...normals(66, 70, 8), configEntry(71, 8, config), normal(72, 8)] },
      { kind: 'createSnapshot', index: 66, config, trailingEntryCount: 3 },
      // A snapshot at an index we hold (it still restarts the log, like MemoryStorage).
      { kind: 'applySnapshot', snapshot: { meta: { index: 70, term: 8, config }, data: encodeLogSnapshot({ nextOffset: 509 }) } },
      { kind: 'append', entries: [configEntry(71, 8, config), normal(72, 8), noop(73, 9), normal(74, 9)] },
    ];
    for (const step of steps) await harness.step(step);
    const view = fullView(harness.disk);
    assert.equal(view.consumer.lowestOffset, 509, 'consumer offsets continue at the snapshot descriptor');
    assert.deepEqual(view.consumer.records.map(([offset, index]) => [offset, index]), [[509, 72], [510, 74]]);
  } finally {
    await harness.disk.close();
    remove();
  }
});

test('consumer offsets skip control entries and continue across compaction', async () => {
  const { dir, remove } = tempDir('raft-offsets');
  let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
  try {
    await storage.append([noop(1, 1), normal(2, 1, 'a'), normal(3, 1, 'b'), configEntry(4, 1, config), normal(5, 1, 'c')]);
    await storage.append([noop(6, 2), normal(7, 2, 'd')]);
    const read = (offset: number, maxIndex = storage.lastIndex()): string[] =>
      storage.readRecords(offset, maxIndex, { maxCount: 100, maxBytes: 1 << 20 }).map((record) => `${record.offset}:${record.value.toString()}:${record.term}`);
    assert.deepEqual(read(0), ['0:a:1', '1:b:1', '2:c:1', '3:d:2']);
    assert.deepEqual([2, 3, 4, 5, 6, 7, 8].map((index) => storage.offsetOfIndex(index)), [0, 1, 2, 2, 3, 3, 4]);
    assert.deepEqual([0, 1, 2, 3].map((offset) => storage.indexOfOffset(offset)), [2, 3, 5, 7]);
    assert.deepEqual(read(1, 4), ['1:b:1'], 'maxIndex 4 hides the entries after the config');
    assert.deepEqual(read(4), [], 'at the end: nothing yet');
    assert.throws(() => storage.indexOfOffset(4), OffsetOutOfRangeError);
    await storage.append(normals(8, 20, 2));
    await storage.createSnapshot({ index: 12, config, data: new Uint8Array(0), trailingEntryCount: 0 });
    assert.equal(storage.firstIndex(), 13);
    assert.equal(storage.lowestOffset(), storage.offsetOfIndex(13));
    assert.equal(storage.lowestOffset(), 9, 'four normal entries before index 8 and five in [8, 12]');
    assert.throws(() => storage.readRecords(8, 20, { maxCount: 1, maxBytes: 0 }), OffsetOutOfRangeError);
    assert.equal(decodeLogSnapshot(storage.snapshot().data).nextOffset, 9);
    assert.deepEqual(storage.snapshot().meta, { index: 12, term: 2, config });
    await storage.close();
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.lowestOffset(), 9);
    assert.equal(storage.indexOfOffset(9), 13);
    assert.equal(read(9).length, 8);
    const files = readdirSync(join(dir, 'log.0')).filter((name) => name.endsWith('.store'));
    assert.ok(files.length <= 3, `compaction removed whole segments (left ${files.join(', ')})`);
    fullView(storage);
  } finally {
    await storage.close();
    remove();
  }
});

test('append asserts: no gaps, no overwriting compacted entries, a new term starts with a no-op', async () => {
  const { dir, remove } = tempDir('raft-asserts');
  const storage = await RaftLogStorage.open(dir);
  try {
    await storage.append([noop(1, 1), normal(2, 1)]);
    await assert.rejects(storage.append([normal(4, 1)]), /gap/);
    await assert.rejects(storage.append([normal(3, 2)]), /starts term 2 but is not a no-op/);
    await assert.rejects(storage.append([noop(3, 2), normal(4, 1)]), /below the previous/);
    await storage.createSnapshot({ index: 2, config, data: new Uint8Array(0), trailingEntryCount: 0 });
    await assert.rejects(storage.append([noop(2, 2)]), /compacted/);
    await assert.rejects(storage.setHardState({ term: 1, vote: null, commit: 3 }), /beyond the last index/);
    await storage.setHardState({ term: 2, vote: null, commit: 2 });
    await assert.rejects(storage.setHardState({ term: 1, vote: null, commit: 2 }), /went back/);
    // Refused writes changed nothing and the storage keeps working.
    await storage.append(normals(3, 4, 1));
    assert.equal(storage.lastIndex(), 4);
    await assert.rejects(
      storage.applySnapshot({ meta: { index: 9, term: 3, config }, data: new Uint8Array(LOG_SNAPSHOT_MAX_BYTES + 1) }),
      InvalidArgumentError,
    );
    await assert.rejects(storage.applySnapshot({ meta: { index: 9, term: 3, config }, data: new TextEncoder().encode('{"x":1}') }), InvalidArgumentError);
  } finally {
    await storage.close();
    remove();
  }
});

test('cluster id: set once, durable, a different one refused; isNew only for an empty dir', async () => {
  const { dir, remove } = tempDir('raft-cluster');
  let storage = await RaftLogStorage.open(dir);
  try {
    assert.equal(storage.isNew, true);
    assert.equal(storage.clusterId(), undefined);
    await storage.setClusterId('c-1');
    await storage.setClusterId('c-1');
    await assert.rejects(storage.setClusterId('c-2'), InvalidArgumentError);
    await storage.close();
    storage = await RaftLogStorage.open(dir);
    assert.equal(storage.clusterId(), 'c-1');
    assert.equal(storage.isNew, true, 'a cluster id alone is no Raft state');
    await storage.setHardState({ term: 1, vote: 'a', commit: 0 });
    await storage.close();
    storage = await RaftLogStorage.open(dir);
    assert.equal(storage.isNew, false);
    assert.deepEqual(storage.initialState().hardState, { term: 1, vote: 'a', commit: 0 });
  } finally {
    await storage.close();
    remove();
  }
});

test('a second open of the same dir is refused; a damaged state file is reported, not guessed', async () => {
  const { dir, remove } = tempDir('raft-lock');
  const storage = await RaftLogStorage.open(dir);
  try {
    await assert.rejects(RaftLogStorage.open(dir), /in use/);
    await storage.setHardState({ term: 1, vote: null, commit: 0 });
  } finally {
    await storage.close();
  }
  writeFileSync(join(dir, 'hard-state.json'), '{"version":1,"term":');
  await assert.rejects(RaftLogStorage.open(dir), CorruptionError);
  remove();
});

test('a state file carries a checksum: a flipped bit that leaves valid JSON is damage; a file from before checksums still reads', async () => {
  const { dir, remove } = tempDir('raft-state-checksum');
  try {
    const storage = await RaftLogStorage.open(dir);
    await storage.setHardState({ term: 5, vote: 'b', commit: 0 });
    await storage.close();
    const path = join(dir, 'hard-state.json');
    const written = readFileSync(path);
    assert.match(written.toString(), /^annal-state crc32=[0-9a-f]{8}\n\{"version":1,"term":5,"vote":"b","commit":0\}\n$/);
    // '5' (0x35) becomes '7' (0x37): one bit, still valid JSON, a term the node never had.
    const flipped = Buffer.from(written);
    flipped[written.indexOf('"term":5') + 7] ^= 0x02;
    writeFileSync(path, flipped);
    await assert.rejects(RaftLogStorage.open(dir), (error: unknown) => error instanceof CorruptionError && /checksum mismatch/.test(error.message));
    writeFileSync(path, '{"version":1,"term":5,"vote":"b","commit":0}\n');
    const legacy = await RaftLogStorage.open(dir);
    assert.deepEqual(legacy.initialState().hardState, { term: 5, vote: 'b', commit: 0 });
    await legacy.close();
  } finally {
    remove();
  }
});

test('an open that fails on a dying disk (an fsync error, then its close fails too) reports that error and leaves the dir unlocked for the next open', async () => {
  const { dir, remove } = tempDir('raft-dying-disk');
  try {
    // Once one fsync has failed, every fsync fails until the device is mended.
    let dying = false;
    let mended = false;
    const eio = (): Error => Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    const failing = (): boolean => dying && !mended;
    const fileIo: FileIo = {
      ...NODE_FILE_IO,
      fsyncSync: (fd) => {
        if (failing()) throw eio();
        NODE_FILE_IO.fsyncSync(fd);
      },
      // The first asynchronous fsync of the open (the new log directory's entry) fails.
      fsync: (fd) => {
        if (!mended) dying = true;
        return failing() ? Promise.reject(eio()) : NODE_FILE_IO.fsync(fd);
      },
    };
    await assert.rejects(RaftLogStorage.open(dir, { fileIo, initialConfig: config }), /EIO/);
    assert.equal(dying, true);
    mended = true;
    const storage = await RaftLogStorage.open(dir, { fileIo, initialConfig: config });
    await storage.close();
  } finally {
    remove();
  }
});

test('the side file is rewritten without stale records once compaction leaves many behind', async () => {
  const { dir, remove } = tempDir('raft-rewrite');
  let storage = await RaftLogStorage.open(dir);
  try {
    // 1,100 terms, each just its no-op, then normal entries.
    const entries: Entry[] = [];
    for (let index = 1; index <= 1100; index++) entries.push(noop(index, index));
    await storage.append([...entries, ...normals(1101, 1105, 1100)]);
    const controlFile = join(dir, 'control.0.idx');
    assert.equal(statSync(controlFile).size, 1100 * 24);
    await storage.createSnapshot({ index: 1102, config, data: new Uint8Array(0), trailingEntryCount: 0 });
    assert.equal(statSync(controlFile).size, 0, 'no control entry is retained');
    assert.equal(storage.term(1103), 1100);
    assert.equal(storage.configEntries(0).length, 0);
    await storage.append([noop(1106, 1101), { index: 1107, term: 1101, type: EntryType.Config, data: new TextEncoder().encode('{"voters":[],"learners":[]}') }]);
    assert.equal(statSync(controlFile).size, 2 * 24);
    await storage.close();
    storage = await RaftLogStorage.open(dir);
    assert.deepEqual(storage.recovery.actions, []);
    assert.deepEqual(storage.configEntries(0).map((entry) => entry.index), [1107]);
    assert.equal(storage.term(1106), 1101);
    assert.equal(storage.term(1105), 1100);
    const view = fullView(storage);
    assert.deepEqual(view.consumer.records.map(([offset, index]) => [offset, index]), [[2, 1103], [3, 1104], [4, 1105]]);
  } finally {
    await storage.close();
    remove();
  }
});

/** Flips a bit near the end of the third segment of `dir`'s log (offsets 8..11 with SMALL_SEGMENTS); returns the log dir. */
function flipBitInThirdSegment(dir: string): string {
  const logDir = join(dir, 'log.0');
  const store = join(logDir, readdirSync(logDir).filter((name) => name.endsWith('.store')).sort()[2]!);
  const bytes = readFileSync(store);
  bytes[bytes.length - 30]! ^= 0x10;
  writeFileSync(store, bytes);
  return logDir;
}

test('damage on a replica of a multi-voter cluster: the log is cut before it and the replica must get it back before it votes', async () => {
  const { dir, remove } = tempDir('raft-damage');
  try {
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: config });
    await storage.append([noop(1, 1), ...normals(2, 20, 1)]);
    await storage.setHardState({ term: 1, vote: 'a', commit: 12 });
    await storage.close();
    // A flipped bit in a record of an older, sealed segment: only a full read finds it.
    const logDir = flipBitInThirdSegment(dir);

    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.lastIndex(), 11, 'cut before index 12 (offset 11)');
    assert.equal(storage.initialState().repairTo, 20);
    assert.equal(storage.initialState().repairTerm, 1, 'the term when the damage was found bounds the lost entries\' terms');
    assert.equal(storage.initialState().hardState.commit, 11, 'commit lowered to the log');
    assert.match(storage.recovery.actions.join('\n'), /CUT AT DAMAGE: the record for offset 11 fails verification.*cut before it \(it held up to offset 19\)/);
    assert.ok(readdirSync(`${logDir}.damaged`).length === 1, 'the damaged files are kept aside');
    // Durable across a restart while repairing.
    await storage.close();
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.repairTo(), 20);
    assert.equal(storage.initialState().repairTerm, 1);
    // The leader sends the entries again: repaired once the log reaches 20.
    await storage.append(normals(12, 19, 1));
    assert.equal(storage.repairTo(), 20);
    await storage.append(normals(20, 22, 1));
    assert.equal(storage.repairTo(), 0);
    assert.equal(storage.initialState().repairTo, undefined);
    assert.equal(storage.initialState().repairTerm, undefined);
    await storage.close();
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.repairTo(), 0);
    assert.deepEqual(storage.recovery.actions, []);
    await storage.close();
  } finally {
    remove();
  }
});

test('damage with a side file the device cannot read: still cut and repaired, not an open that fails', async () => {
  const { dir, remove } = tempDir('raft-damage-eio');
  try {
    // Bootstrapped alone, then two voters added at index 21: only the side file says so.
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: { voters: ['a'], learners: [] } });
    await storage.append([noop(1, 1), ...normals(2, 20, 1), configEntry(21, 1, config), ...normals(22, 24, 1)]);
    await storage.setHardState({ term: 1, vote: 'a', commit: 12 });
    await storage.close();
    flipBitInThirdSegment(dir);
    // Which configuration is current is read from the side file; unreadable, it cannot say the
    // replica is alone, so the damage is cut as on any replica with others to repair from.
    const control = join(dir, 'control.0.idx');
    const eio = (): Error => Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    const fileIo: FileIo = { ...NODE_FILE_IO, readFile: (path) => { if (path === control) throw eio(); return NODE_FILE_IO.readFile(path); } };
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, fileIo });
    assert.equal(storage.lastIndex(), 11, 'cut before index 12 (offset 11)');
    assert.equal(storage.repairTo(), 24);
    assert.match(storage.recovery.actions.join('\n'), /rebuilt .*control\.0\.idx from the log because the device failed to read .*control\.0\.idx \(EIO\)/);
    await storage.close();
  } finally {
    remove();
  }
});

test('a damaged side file is rebuilt even when the rebuild before died: its bad tail stays until the rebuild replaces it', async () => {
  const { dir, remove } = tempDir('raft-control-rebuild');
  try {
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: { voters: ['a'], learners: [] } });
    await storage.append([noop(1, 1), ...normals(2, 10, 1), configEntry(11, 1, config), ...normals(12, 20, 1)]);
    await storage.close();
    // A flipped bit in the side file's record of the configuration entry (its second record).
    const control = join(dir, 'control.0.idx');
    const bytes = readFileSync(control);
    bytes[CONTROL_RECORD_BYTES + 2]! ^= 0x04;
    writeFileSync(control, bytes);
    // The open decides to rebuild the side file from the log, and dies replacing it.
    const dying: FileOps = {
      ...NODE_FILE_IO,
      rename: (from, to) => {
        if (to === control) throw new Error('the process died');
        NODE_FILE_IO.rename(from, to);
      },
    };
    await assert.rejects(RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, fileOps: dying }), /the process died/);
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.deepEqual(storage.controlEntries(EntryType.Config, 1).map((entry) => entry.index), [11], 'the configuration entry is listed again');
    await storage.close();
  } finally {
    remove();
  }
});

test('a lone voter keeps a damaged record in place (nobody could repair it): served as DATA_LOSS, no repair', async () => {
  const { dir, remove } = tempDir('raft-damage-lone');
  try {
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: { voters: ['a'], learners: [] } });
    await storage.append([noop(1, 1), ...normals(2, 20, 1)]);
    await storage.close();
    flipBitInThirdSegment(dir);
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.lastIndex(), 20);
    assert.equal(storage.repairTo(), 0);
    assert.throws(() => storage.entries(12, 13, Infinity), CorruptionError);
    await storage.close();
  } finally {
    remove();
  }
});

test('a member whose log lists one voter, another member, is not alone: the damage is cut and repaired from the cluster', async () => {
  const { dir, remove } = tempDir('raft-damage-not-self');
  try {
    // A member that took the bootstrap entry (voter a) from the leader and nothing after it yet.
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, selfId: 'b' });
    await storage.append([configEntry(1, 1, { voters: ['a'], learners: [] }), ...normals(2, 20, 1)]);
    await storage.close();
    flipBitInThirdSegment(dir);
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, selfId: 'b' });
    assert.equal(storage.lastIndex(), 11, 'cut before index 12 (offset 11)');
    assert.equal(storage.repairTo(), 20);
    await storage.close();
    // The same files opened as the one voter itself: alone, the damage stays in place.
    const alone = tempDir('raft-damage-self');
    try {
      storage = await RaftLogStorage.open(alone.dir, { log: SMALL_SEGMENTS, selfId: 'a' });
      await storage.append([configEntry(1, 1, { voters: ['a'], learners: [] }), ...normals(2, 20, 1)]);
      await storage.close();
      flipBitInThirdSegment(alone.dir);
      storage = await RaftLogStorage.open(alone.dir, { log: SMALL_SEGMENTS, selfId: 'a' });
      assert.equal(storage.lastIndex(), 20);
      assert.equal(storage.repairTo(), 0);
      await storage.close();
    } finally {
      alone.remove();
    }
  } finally {
    remove();
  }
});

test('damage in entries written while the node was alone is cut too once the configuration has other voters (they hold the whole log)', async () => {
  const { dir, remove } = tempDir('raft-damage-grown');
  try {
    // Bootstrapped alone, then two voters added at index 21.
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: { voters: ['a'], learners: [] } });
    await storage.append([noop(1, 1), ...normals(2, 20, 1), configEntry(21, 1, config), ...normals(22, 24, 1)]);
    await storage.close();
    flipBitInThirdSegment(dir);
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.lastIndex(), 11, 'cut before index 12 (offset 11)');
    assert.equal(storage.repairTo(), 24);
    await storage.close();
  } finally {
    remove();
  }
});

test('a commit index beyond the log (a truncated segment) means entries were lost: repair to it', async () => {
  const { dir, remove } = tempDir('raft-truncated');
  try {
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: config });
    await storage.append([noop(1, 1), ...normals(2, 20, 1)]);
    await storage.setHardState({ term: 1, vote: null, commit: 18 });
    await storage.close();
    const logDir = join(dir, 'log.0');
    const stores = readdirSync(logDir).filter((name) => name.endsWith('.store')).sort();
    for (const name of stores.slice(-2)) {
      rmSync(join(logDir, name));
      rmSync(join(logDir, name.replace('.store', '.index')));
    }
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.ok(storage.lastIndex() < 18);
    assert.equal(storage.repairTo(), 18);
    await storage.close();
  } finally {
    remove();
  }
});

test('a gap in the log is cut at open only after the replica recorded everything its files showed: a crash after the cut forgets nothing', async () => {
  const { dir, remove } = tempDir('raft-gap');
  try {
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: config });
    await storage.append([noop(1, 1), ...normals(2, 20, 1)]);
    await storage.setHardState({ term: 1, vote: null, commit: 3 });
    await storage.close();
    // The second of five segments (offsets 4..7) is gone: damage the open cannot keep in place.
    const logDir = join(dir, 'log.0');
    const second = readdirSync(logDir).filter((name) => name.endsWith('.store')).sort()[1]!;
    rmSync(join(logDir, second));
    rmSync(join(logDir, second.replace('.store', '.index')));
    // The process dies at the first state file it replaces after the cut set the files aside.
    const dying: FileOps = {
      ...NODE_FILE_IO,
      rename: (from, to) => {
        if (readdirSync(dir).includes('log.0.damaged')) throw new Error('the process died');
        NODE_FILE_IO.rename(from, to);
      },
    };
    await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, fileOps: dying }).then(
      async (opened) => opened.close(),
      () => undefined,
    );
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.lastIndex(), 4, 'cut at the gap');
    assert.equal(storage.repairTo(), 20, 'the last index the five segments showed, not the commit index or the end of the segment after the gap');
    await storage.close();
  } finally {
    remove();
  }
});

test('damage to a record that open itself reads (a term\'s no-op) is cut before anything reads it', async () => {
  const { dir, remove } = tempDir('raft-damage-control');
  try {
    let storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS, initialConfig: config });
    await storage.append([noop(1, 1), ...normals(2, 10, 1), noop(11, 2), ...normals(12, 20, 2)]);
    await storage.setHardState({ term: 2, vote: 'a', commit: 20 });
    await storage.close();
    // Index 11 is offset 10: the third record of the segment holding offsets 8..11.
    const logDir = join(dir, 'log.0');
    const store = join(logDir, readdirSync(logDir).filter((name) => name.endsWith('.store')).sort()[2]!);
    const bytes = readFileSync(store);
    let position = 0;
    for (let i = 0; i < 2; i++) position += FRAME_HEADER_BYTES + bytes.readUInt32LE(position);
    bytes[position + 20]! ^= 0x01; // in the term field (the checksum covers it)
    writeFileSync(store, bytes);
    storage = await RaftLogStorage.open(dir, { log: SMALL_SEGMENTS });
    assert.equal(storage.lastIndex(), 10);
    assert.equal(storage.repairTo(), 20);
    await storage.append([noop(11, 3), ...normals(12, 20, 3)]);
    assert.equal(storage.repairTo(), 0);
    await storage.close();
  } finally {
    remove();
  }
});
