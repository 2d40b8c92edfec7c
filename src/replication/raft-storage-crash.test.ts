// Goal: a crash at any point of a write leaves RaftLogStorage, once reopened, in the state from
// before the write or the state after it, never a torn mix: the side file agrees with the log
// (consumer offsets stay dense, configEntries complete), the hard state term never goes back and
// the commit index never points past the log. Recovery also repairs what the disk can lose: a
// torn store tail, a torn or missing side file, a log directory that vanished.
// Method: the write runs with FileOps that throw ("the process dies") before their k-th call, for
// every k until the write completes; the storage is closed without further writes and reopened
// with real file calls, then read completely (test-support.ts fullView checks the consumer view
// against the entries) and compared with the views before and after a crash-free run. A crash
// here keeps what reached the OS (kill -9); power loss is the commit log's own tests' subject.
import assert from 'node:assert/strict';
import { cpSync, openSync, closeSync, ftruncateSync, fstatSync, readdirSync, rmSync, writeFileSync, appendFileSync, readFileSync, statSync, truncateSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { test } from 'node:test';
import type { ClusterConfig, Entry } from '../raft/index.js';
import type { LogConfig } from '../storage/index.js';
import { NODE_FILE_OPS, type FileOps } from './file-ops.js';
import { encodeLogSnapshot, RaftLogStorage } from './raft-storage.js';
import { configEntry, fullView, noop, normal, normals, tempDir, truncatedView, type FullView } from './test-support.js';

const config: ClusterConfig = { voters: ['a', 'b', 'c'], learners: [] };
const LOG = { maxIndexBytes: 12 * 4 };

class CrashError extends Error {}

/** Real file calls until the armed one, which throws instead; every call after it throws too. */
class CrashingFileOps implements FileOps {
  private count = 0;
  private crashAt = Infinity;
  crashed = false;

  arm(k: number): void {
    this.count = 0;
    this.crashAt = k;
  }

  private step(what: string): void {
    if (this.crashed) throw new CrashError(`after the crash: ${what}`);
    this.count++;
    if (this.count === this.crashAt) {
      this.crashed = true;
      throw new CrashError(`crash before file operation ${this.count}: ${what}`);
    }
  }

  open(path: string, flags: 'r' | 'r+' | 'w'): number {
    this.step(`open ${basename(path)} ${flags}`);
    return NODE_FILE_OPS.open(path, flags);
  }
  write(fd: number, data: Uint8Array, position: number): void {
    this.step('write');
    NODE_FILE_OPS.write(fd, data, position);
  }
  truncate(fd: number, lengthBytes: number): void {
    this.step('truncate');
    NODE_FILE_OPS.truncate(fd, lengthBytes);
  }
  async fsync(fd: number): Promise<void> {
    this.step('fsync');
    await NODE_FILE_OPS.fsync(fd);
  }
  /** Not a crash point: the descriptors of a dead process close by themselves. */
  close(fd: number): void {
    NODE_FILE_OPS.close(fd);
  }
  rename(from: string, to: string): void {
    this.step(`rename ${basename(from)}`);
    NODE_FILE_OPS.rename(from, to);
  }
  remove(path: string): void {
    this.step(`remove ${basename(path)}`);
    NODE_FILE_OPS.remove(path);
  }
}

async function viewOf(dir: string, log: Partial<LogConfig> = LOG): Promise<{ view: FullView; actions: string[] }> {
  const storage = await RaftLogStorage.open(dir, { log });
  try {
    return { view: fullView(storage), actions: storage.recovery.actions };
  } finally {
    await storage.close();
  }
}

async function crashEverywhere(options: {
  setup: (storage: RaftLogStorage) => Promise<void>;
  action: (storage: RaftLogStorage) => Promise<void>;
  /** States other than before and after that the write may leave (e.g. a removed suffix). */
  intermediate?: (before: FullView) => FullView[];
  log?: Partial<LogConfig>;
}): Promise<number> {
  const log = options.log ?? LOG;
  const base = tempDir('raft-crash-base');
  const scratch = tempDir('raft-crash');
  try {
    const setup = await RaftLogStorage.open(base.dir, { log, initialConfig: config });
    await options.setup(setup);
    await setup.close();
    const before = (await viewOf(base.dir, log)).view;
    const cleanDir = join(scratch.dir, 'clean');
    cpSync(base.dir, cleanDir, { recursive: true });
    const clean = await RaftLogStorage.open(cleanDir, { log });
    await options.action(clean);
    await clean.close();
    const after = (await viewOf(cleanDir, log)).view;
    assert.ok(!isDeepStrictEqual(before, after), 'the write changes the state');
    const allowed = [before, after, ...(options.intermediate?.(before) ?? [])];
    let crashes = 0;
    for (let k = 1; ; k++) {
      const dir = join(scratch.dir, `crash-${k}`);
      cpSync(base.dir, dir, { recursive: true });
      const ops = new CrashingFileOps();
      const storage = await RaftLogStorage.open(dir, { log, fileOps: ops });
      ops.arm(k);
      let crash: CrashError | undefined;
      try {
        await options.action(storage);
      } catch (error) {
        if (!(error instanceof CrashError)) throw error;
        crash = error;
      }
      await storage.close();
      const { view, actions } = await viewOf(dir, log);
      const where = crash?.message ?? 'no crash';
      assert.ok(!actions.some((action) => action.includes('rebuilt')), `${where}: the side file needed a rebuild: ${actions.join('; ')}`);
      assert.ok(
        allowed.some((state) => isDeepStrictEqual(state, view)),
        `${where}: neither the state before nor after the write:\n${JSON.stringify(view)}\nbefore: ${JSON.stringify(before)}\nafter: ${JSON.stringify(after)}`,
      );
      assert.ok(view.hardState.term >= before.hardState.term, `${where}: the term went back`);
      assert.ok(view.hardState.commit <= view.lastIndex, `${where}: commit beyond the log`);
      // The recovered storage takes writes, and they survive the next reopen consistently.
      const again = await RaftLogStorage.open(dir, { log });
      const last = again.lastIndex();
      const term = again.term(last) + 1;
      await again.append([noop(last + 1, term), configEntry(last + 2, term, config), normal(last + 3, term)]);
      const written = fullView(again);
      await again.close();
      assert.deepEqual((await viewOf(dir, log)).view, written, `${where}: a write after recovery survives a reopen`);
      rmSync(dir, { recursive: true, force: true });
      if (crash === undefined) break;
      crashes++;
    }
    return crashes;
  } finally {
    base.remove();
    scratch.remove();
  }
}

const log1to10: Entry[] = [noop(1, 1), ...normals(2, 4, 1), configEntry(5, 1, config), ...normals(6, 8, 1), configEntry(9, 1, config), normal(10, 1)];

test('crash during setHardState: the old or the new hard state', async () => {
  const crashes = await crashEverywhere({
    setup: async (storage) => {
      await storage.append(log1to10);
      await storage.setHardState({ term: 1, vote: 'a', commit: 3 });
    },
    action: (storage) => storage.setHardState({ term: 2, vote: null, commit: 9 }),
  });
  assert.ok(crashes >= 5, `${crashes} crash points`);
});

test('crash during an append with control entries: the entries are all there or none', async () => {
  const crashes = await crashEverywhere({
    setup: (storage) => storage.append(log1to10),
    action: (storage) => storage.append([noop(11, 2), normal(12, 2), configEntry(13, 2, config), normal(14, 2)]),
  });
  assert.ok(crashes >= 2, `${crashes} crash points`);
});

test('crash during a conflicting append: old, new, or the old log without its replaced suffix', async () => {
  const crashes = await crashEverywhere({
    setup: (storage) => storage.append(log1to10),
    action: (storage) => storage.append([noop(6, 2), configEntry(7, 2, config), normal(8, 2)]),
    intermediate: (before) => [truncatedView(before, 5)],
  });
  assert.ok(crashes >= 2, `${crashes} crash points`);
});

test('crash during applySnapshot: the old log or the new empty one after the snapshot', async () => {
  for (const index of [40, 7]) {
    const crashes = await crashEverywhere({
      setup: async (storage) => {
        await storage.append(log1to10);
        await storage.setHardState({ term: 1, vote: 'a', commit: 8 });
        await storage.createSnapshot({ index: 4, config, data: new Uint8Array(0), trailingEntryCount: 1 });
      },
      action: (storage) => storage.applySnapshot({ meta: { index, term: 3, config }, data: encodeLogSnapshot({ nextOffset: 100 }) }),
    });
    assert.ok(crashes >= 8, `${crashes} crash points`);
  }
});

test('crash during createSnapshot: the old snapshot or the new one, compaction and side-file rewrite included', async () => {
  const noops: Entry[] = [];
  for (let index = 1; index <= 1100; index++) noops.push(noop(index, index));
  const crashes = await crashEverywhere({
    setup: (storage) => storage.append([...noops, ...normals(1101, 1110, 1100), configEntry(1111, 1100, config), normal(1112, 1100)]),
    action: (storage) => storage.createSnapshot({ index: 1105, config, data: new Uint8Array(0), trailingEntryCount: 2 }),
    log: { maxIndexBytes: 12 * 256 },
  });
  assert.ok(crashes >= 10, `${crashes} crash points (log state and side-file rewrite)`);
  const small = await crashEverywhere({
    setup: (storage) => storage.append(log1to10),
    action: (storage) => storage.createSnapshot({ index: 9, config: { voters: ['a'], learners: [] }, data: new Uint8Array(0), trailingEntryCount: 3 }),
  });
  assert.ok(small >= 5, `${small} crash points`);
});

function lastStoreFile(logDir: string): string {
  const stores = readdirSync(logDir).filter((name) => name.endsWith('.store')).sort();
  return join(logDir, stores[stores.length - 1]!);
}

test('a torn store tail: the lost entry leaves the side file, commit is lowered to the log', async () => {
  const { dir, remove } = tempDir('raft-torn');
  try {
    const storage = await RaftLogStorage.open(dir, { log: LOG });
    await storage.append([...log1to10, configEntry(11, 1, config)]);
    await storage.setHardState({ term: 1, vote: null, commit: 11 });
    const before = fullView(storage);
    await storage.close();
    const store = lastStoreFile(join(dir, 'log.0'));
    const fd = openSync(store, 'r+');
    ftruncateSync(fd, fstatSync(fd).size - 3);
    closeSync(fd);
    // A torn write never has its index entry (it is written after the whole frame); an indexed
    // record that fails to verify is damage, kept and served as DATA_LOSS instead.
    const index = store.replace(/\.store$/, '.index');
    truncateSync(index, statSync(index).size - 12);
    const { view, actions } = await viewOf(dir);
    assert.equal(view.lastIndex, 10);
    assert.deepEqual(view.configEntries.map((entry) => entry.index), [5, 9]);
    assert.equal(view.hardState.commit, 10);
    assert.deepEqual(view.consumer, before.consumer, 'the lost entry was a control entry: no consumer record moved');
    assert.ok(actions.some((action) => action.includes('torn tail')), actions.join('; '));
    assert.ok(actions.some((action) => action.includes('beyond the log')), actions.join('; '));
    assert.ok(actions.some((action) => action.includes('commit index 11')), actions.join('; '));
  } finally {
    remove();
  }
});

test('a torn, corrupt or missing side file is cut or rebuilt from the log', async () => {
  const { dir, remove } = tempDir('raft-side');
  try {
    const storage = await RaftLogStorage.open(dir, { log: LOG });
    await storage.append([...log1to10, noop(11, 2), normal(12, 2)]);
    const before = fullView(storage);
    await storage.close();
    const side = join(dir, 'control.0.idx');
    appendFileSync(side, Buffer.from([1, 2, 3, 4, 5]));
    let result = await viewOf(dir);
    assert.deepEqual(result.view, before);
    assert.ok(result.actions.some((action) => action.includes('torn or corrupt')), result.actions.join('; '));
    const bytes = readFileSync(side);
    bytes[24 + 9] = (bytes[24 + 9] ?? 0) ^ 0xff; // the second record's term
    writeFileSync(side, bytes);
    result = await viewOf(dir);
    assert.deepEqual(result.view, before);
    assert.ok(result.actions.some((action) => action.includes('rebuilt')), result.actions.join('; '));
    rmSync(side);
    result = await viewOf(dir);
    assert.deepEqual(result.view, before);
    assert.ok(result.actions.some((action) => action.includes('is missing')), result.actions.join('; '));
    assert.deepEqual((await viewOf(dir)).actions, [], 'the rebuilt file is sound');
  } finally {
    remove();
  }
});

test('a damaged last record of the side file is rebuilt from the log, not dropped as a torn tail', async () => {
  const { dir, remove } = tempDir('raft-side-last');
  try {
    // One control record (the no-op at 1), then entries of the same term: no term change betrays its loss.
    const storage = await RaftLogStorage.open(dir, { log: LOG });
    await storage.append([noop(1, 1), ...normals(2, 6, 1)]);
    const before = fullView(storage);
    await storage.close();
    const side = join(dir, 'control.0.idx');
    const bytes = readFileSync(side);
    bytes[3] = (bytes[3] ?? 0) ^ 0x01; // the index field of the only record
    writeFileSync(side, bytes);
    const result = await viewOf(dir);
    assert.deepEqual(result.view, before, 'consumer offsets still skip the no-op');
    assert.ok(result.actions.some((action) => action.includes('rebuilt')), result.actions.join('; '));
  } finally {
    remove();
  }
});

test('a log that no longer holds the snapshot entry restarts empty after the snapshot', async () => {
  const { dir, remove } = tempDir('raft-reconcile');
  try {
    const storage = await RaftLogStorage.open(dir, { log: LOG });
    await storage.append(log1to10);
    await storage.createSnapshot({ index: 8, config, data: new Uint8Array(0), trailingEntryCount: 2 });
    const nextOffset = storage.offsetOfIndex(9);
    await storage.close();
    rmSync(join(dir, 'log.0'), { recursive: true });
    const { view, actions } = await viewOf(dir);
    assert.equal(view.firstIndex, 9);
    assert.equal(view.lastIndex, 8);
    assert.equal(view.terms[0], 1);
    assert.equal(view.consumer.lowestOffset, nextOffset);
    assert.ok(actions.some((action) => action.includes('restarts empty after snapshot index 8')), actions.join('; '));
    assert.deepEqual((await viewOf(dir)).actions, []);
  } finally {
    remove();
  }
});
