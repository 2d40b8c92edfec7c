// Goal: RaftLogStorage keeps its promises across a power loss, not only a process crash: a write
// whose promise resolved is in the reopened state, and one cut short leaves the state from before
// it or after it (or a prefix of an append's entries, or, for a conflicting append, the log
// without its replaced suffix), with the
// side file agreeing with the log, the term never going back and the commit never past the log.
// Method: per seed and write, the storage (commit log included) runs on a seeded SimDisk that
// loses unsynced writes and unsynced directory changes at a crash and tears the last write; the
// write starts, the machine crashes after a random number of event-loop turns (sometimes after
// the write resolved), and the storage reopens on what the disk kept. The states before and
// after come from a crash-free run on a fresh disk with the same setup.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import type { ClusterConfig, Entry } from '../raft/index.js';
import { encodeLogSnapshot, RaftLogStorage, type RaftStorageFaults } from '../replication/raft-storage.js';
import { configEntry, fullView, noop, normal, normals, truncatedView, type FullView } from '../replication/test-support.js';
import { Prng } from '../util/index.js';
import { SimDisk, eventLoopTurns as turns } from './disk.js';

const DIR = '/data/raft';
const config: ClusterConfig = { voters: ['a', 'b', 'c'], learners: [] };
const LOG = { maxStoreBytes: 512, maxIndexBytes: 12 * 4 };
const log1to10: Entry[] = [noop(1, 1), ...normals(2, 4, 1), configEntry(5, 1, config), ...normals(6, 8, 1), configEntry(9, 1, config), normal(10, 1)];

async function viewOn(disk: SimDisk): Promise<FullView> {
  const storage = await RaftLogStorage.open(DIR, { fileIo: disk, log: LOG });
  try {
    return fullView(storage);
  } finally {
    await storage.close();
  }
}

interface Scenario {
  readonly name: string;
  readonly setup: (storage: RaftLogStorage) => Promise<void>;
  readonly action: (storage: RaftLogStorage) => Promise<void>;
  /** States other than before and after that an interrupted write may leave. */
  readonly intermediate?: (before: FullView) => FullView[];
  /**
   * For an append: its entries. An interrupted append may leave any prefix of them (a power loss
   * keeps a prefix of the unsynced writes; Raft acknowledged none of them, so that is safe).
   */
  readonly appended?: readonly Entry[];
}

async function prepared(seed: number, scenario: Scenario): Promise<SimDisk> {
  const disk = new SimDisk({ seed, syncDelayTurnsMax: 3 });
  const storage = await RaftLogStorage.open(DIR, { fileIo: disk, log: LOG, initialConfig: config });
  await scenario.setup(storage);
  await storage.close();
  return disk;
}

async function powerLossRuns(scenario: Scenario, seeds: number, faults: RaftStorageFaults = {}): Promise<{ resolvedBeforeCrash: number; interrupted: number }> {
  let resolvedBeforeCrash = 0;
  let interrupted = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const before = await viewOn(await prepared(seed, scenario));
    const cleanDisk = await prepared(seed, scenario);
    const clean = await RaftLogStorage.open(DIR, { fileIo: cleanDisk, log: LOG });
    await scenario.action(clean);
    await clean.close();
    const after = await viewOn(cleanDisk);
    assert.ok(!isDeepStrictEqual(before, after), 'the write changes the state');
    const prefixes: FullView[] = [];
    for (let count = 1; count < (scenario.appended?.length ?? 0); count++) {
      const prefixDisk = await prepared(seed, scenario);
      const prefix = await RaftLogStorage.open(DIR, { fileIo: prefixDisk, log: LOG });
      await prefix.append((scenario.appended as Entry[]).slice(0, count));
      await prefix.close();
      prefixes.push(await viewOn(prefixDisk));
    }

    const disk = await prepared(seed, scenario);
    const storage = await RaftLogStorage.open(DIR, { fileIo: disk, log: LOG, faults });
    let resolved = false;
    void scenario.action(storage).then(
      () => (resolved = true),
      () => {},
    );
    await turns(new Prng(seed).int(0, 40));
    const where = `${scenario.name}, seed ${seed} (${resolved ? 'after the write resolved' : 'mid-write'})`;
    const view = await viewOn(disk.crash());
    if (resolved) {
      resolvedBeforeCrash++;
      assert.deepEqual(view, after, `${where}: a resolved write is lost`);
    } else {
      interrupted++;
      const allowed = [before, after, ...prefixes, ...(scenario.intermediate?.(before) ?? [])];
      assert.ok(allowed.some((state) => isDeepStrictEqual(state, view)), `${where}: neither before nor after:\n${JSON.stringify(view)}`);
    }
    assert.ok(view.hardState.term >= before.hardState.term, `${where}: the term went back`);
    assert.ok(view.hardState.commit <= view.lastIndex, `${where}: commit beyond the log`);
  }
  return { resolvedBeforeCrash, interrupted };
}

function appendScenario(name: string, entries: readonly Entry[]): Scenario {
  return { name, setup: (storage) => storage.append(log1to10), action: (storage) => storage.append(entries), appended: entries };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'setHardState',
    setup: async (storage) => {
      await storage.append(log1to10);
      await storage.setHardState({ term: 1, vote: 'a', commit: 3 });
    },
    action: (storage) => storage.setHardState({ term: 2, vote: null, commit: 9 }),
  },
  appendScenario('an append with control entries', [noop(11, 2), normal(12, 2), configEntry(13, 2, config), normal(14, 2)]),
  { ...appendScenario('a conflicting append', [noop(6, 2), configEntry(7, 2, config), normal(8, 2)]), intermediate: (before) => [truncatedView(before, 5)] },
  {
    name: 'applySnapshot',
    setup: async (storage) => {
      await storage.append(log1to10);
      await storage.setHardState({ term: 1, vote: 'a', commit: 8 });
    },
    action: (storage) => storage.applySnapshot({ meta: { index: 40, term: 3, config }, data: encodeLogSnapshot({ nextOffset: 100 }) }),
  },
  {
    name: 'createSnapshot',
    setup: (storage) => storage.append(log1to10),
    action: (storage) => storage.createSnapshot({ index: 9, config: { voters: ['a'], learners: [] }, data: new Uint8Array(0), trailingEntryCount: 3 }),
  },
];

for (const scenario of SCENARIOS) {
  test(`power loss during ${scenario.name}: a resolved write survives, an interrupted one leaves before or after`, async (t) => {
    const { resolvedBeforeCrash, interrupted } = await powerLossRuns(scenario, 60);
    t.diagnostic(`${scenario.name}: ${resolvedBeforeCrash} crashes after the write resolved, ${interrupted} mid-write`);
    assert.ok(resolvedBeforeCrash > 0 && interrupted > 0, 'crashes land both mid-write and after it');
  });
}

test('the power-loss runs catch the broken variant logStateUnsynced (a snapshot applied without persisting it)', async () => {
  const applySnapshot = SCENARIOS.find((scenario) => scenario.name === 'applySnapshot') as Scenario;
  await assert.rejects(powerLossRuns(applySnapshot, 10, { logStateUnsynced: true }), /applySnapshot, seed \d+ \(after the write resolved\): a resolved write is lost|log-state.json at byte \d+: (not valid JSON|no state-file header|the JSON line does not end the file|checksum mismatch)/);
});

test('an open makes durable the state files a killed process left in the page cache before the new process uses them', async () => {
  const ALWAYS = { ...LOG, fsync: { kind: 'always' as const } };
  for (let seed = 1; seed <= 20; seed++) {
    // Fsyncs complete at once, or are held (never complete) while `hold` is set.
    let hold = false;
    const held: (() => void)[] = [];
    const disk = new SimDisk({ seed, scheduleSync: (complete) => (hold ? held.push(complete) : queueMicrotask(complete)) });
    const first = await RaftLogStorage.open(DIR, { fileIo: disk, log: ALWAYS, initialConfig: config });
    await first.append(log1to10);
    await first.setHardState({ term: 1, vote: null, commit: 10 });
    hold = true;
    // The vote's temp file is synced and renamed over hard-state.json; the directory's fsync never completes.
    void first.setHardState({ term: 2, vote: 'b', commit: 10 }).catch(() => {});
    for (const release of [true, false]) {
      for (let turn = 0; turn < 100 && held.length === 0; turn++) await turns(1);
      assert.equal(held.length, 1, 'the write reached its next fsync');
      if (release) held.shift()!();
    }
    // kill -9: the page cache (the renamed file) survives the process, nothing more is durable.
    const restarted = disk.restartProcess();
    hold = false;
    const second = await RaftLogStorage.open(DIR, { fileIo: restarted, log: ALWAYS });
    assert.deepEqual(second.initialState().hardState, { term: 2, vote: 'b', commit: 10 }, 'the new process reads what the page cache holds');
    // It may act on that (refuse another candidate in term 2); then the power fails.
    const third = await RaftLogStorage.open(DIR, { fileIo: restarted.crash(), log: ALWAYS });
    assert.deepEqual(third.initialState().hardState, { term: 2, vote: 'b', commit: 10 }, `seed ${seed}: the vote the new process read survives a power loss`);
    await third.close();
  }
});

test('a storage whose snapshot install failed releases every log at close, even when closing the half-built one fails', async () => {
  const disk = new SimDisk({ seed: 1 });
  const storage = await RaftLogStorage.open(DIR, { fileIo: disk, log: LOG, initialConfig: config });
  await storage.append(log1to10);
  await storage.setHardState({ term: 1, vote: 'a', commit: 8 });
  // The install opens the next generation's log, then fails the fsync that would make it the current one.
  disk.failNextFsyncOf(DIR);
  await assert.rejects(storage.applySnapshot({ meta: { index: 40, term: 3, config }, data: encodeLogSnapshot({ nextOffset: 100 }) }), /EIO/);
  disk.failNextFsyncOf(`${DIR}/log.1`);
  await assert.rejects(storage.close(), /EIO: fsync of directory \/data\/raft\/log\.1/);
  // The process opens it again in place (as the replica's keeper does): no log may still hold its lock.
  const reopened = await RaftLogStorage.open(DIR, { fileIo: disk, log: LOG });
  try {
    assert.deepEqual(reopened.initialState().hardState, { term: 1, vote: 'a', commit: 8 });
    assert.equal(reopened.lastIndex(), 10);
  } finally {
    await reopened.close();
  }
});
