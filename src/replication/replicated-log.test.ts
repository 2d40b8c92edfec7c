// Goal: a replica restarted after retention compacted its log serves and extends the log where it
// left off: its visible log, offsets and producer table are those of the log itself, not reset to
// the snapshot that marks where the log begins; one that died after applying a retention decision
// but before compacting compacts at its restart (nothing else would: the entry is not applied again).
// Method: a one-voter RaftNode on RaftLogStorage (real files, small segments) driving a
// ReplicatedLog; records across several segments, a retain entry that drops the oldest, a restart
// from the directory, then more records and a resend of an idempotent batch. The compaction is
// awaited by a condition poll with a generous deadline (the driver runs it after applying).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { EntryType, InMemoryNetwork, RaftNode, Role, type Entry } from '../raft/index.js';
import { Prng } from '../util/index.js';
import { RaftLogStorage } from './raft-storage.js';
import { ReplicatedLog } from './replicated-log.js';
import { encodeControl } from './retention.js';
import { tempDir } from './test-support.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NO_PEERS = {
  forward: () => Promise.reject(new Error('a lone voter forwards nothing')),
  readIndex: () => Promise.reject(new Error('a lone voter forwards nothing')),
};

interface Started {
  storage: RaftLogStorage;
  log: ReplicatedLog;
  node: RaftNode<number>;
}

/** A one-voter replica on `dir`, not started: it has no leader until `node.start()`. */
async function create(dir: string): Promise<Started> {
  const storage = await RaftLogStorage.open(dir, { log: { maxIndexBytes: 12 * 4 }, initialConfig: { voters: ['a'], learners: [] } });
  const log = new ReplicatedLog({ storage, peers: NO_PEERS });
  const node = new RaftNode<number>({
    id: 'a', storage, transport: new InMemoryNetwork().connect('a'), stateMachine: log, applied: log.appliedAtStart,
    tickIntervalMs: 5, electionTicks: 4, heartbeatTicks: 1, prng: new Prng(7),
  });
  log.attach(node);
  return { storage, log, node };
}

async function start(dir: string): Promise<Started> {
  const { storage, log, node } = await create(dir);
  const led = new Promise<void>((resolve) => {
    const stop = node.subscribe((status) => {
      if (status.role === Role.Leader) {
        stop();
        resolve();
      }
    });
  });
  node.start();
  await led;
  return { storage, log, node };
}

async function stop({ storage, log, node }: Started): Promise<void> {
  log.close();
  node.close();
  await storage.close();
}

function values(log: ReplicatedLog): string[] {
  const out: string[] = [];
  for (let offset = log.lowestOffset(); offset < log.nextOffset(); ) {
    const records = log.readBatch(offset, { maxCount: 100, maxBytes: 1 << 20 });
    for (const record of records) out.push(`${record.offset}:${decoder.decode(record.value)}`);
    offset += records.length;
  }
  return out;
}

test('a replica restarted after retention continues its log at the same offsets', async () => {
  const { dir, remove } = tempDir('replicated-log-retention');
  try {
    const first = await start(dir);
    for (let i = 0; i < 12; i++) assert.equal(await first.log.append({ value: encoder.encode(`r${i}`) }), i);
    const batch = await first.log.appendSequenced([{ value: encoder.encode('p') }], 9, 0);
    assert.equal(batch.firstOffset, 12);
    const segments = first.storage.segments();
    assert.ok(segments.length >= 3, `${segments.length} segments`);
    await first.node.proposeControl(encodeControl({ kind: 'retain', firstIndex: segments[1]!.firstIndex }));
    // The driver compacts at its next Ready after applying the entry.
    for (let i = 0; i < 200 && first.log.lowestOffset() === 0; i++) await delay(10);
    const lowest = first.log.lowestOffset();
    assert.ok(lowest > 0, 'the oldest segment is gone');
    const before = values(first.log);
    await stop(first);

    const second = await start(dir);
    try {
      assert.equal(second.log.lowestOffset(), lowest);
      assert.deepEqual(values(second.log), before);
      assert.equal(await second.log.append({ value: encoder.encode('after') }), 13);
      // The producer table was rebuilt from the retained log: the resend is a duplicate.
      assert.deepEqual(await second.log.appendSequenced([{ value: encoder.encode('p') }], 9, 0), { firstOffset: 12, lastOffset: 12, duplicate: true });
      assert.deepEqual(values(second.log), [...before, '13:after']);
    } finally {
      await stop(second);
    }
  } finally {
    remove();
  }
});

test('a replica that died between applying a retention decision and compacting compacts at its restart', async () => {
  const { dir, remove } = tempDir('replicated-log-retention-lost');
  try {
    // The log as such a process leaves it: a retain entry committed (so applied, and never
    // applied again), the compaction it asked for never written.
    const storage = await RaftLogStorage.open(dir, { log: { maxIndexBytes: 12 * 4 }, initialConfig: { voters: ['a'], learners: [] } });
    const entries: Entry[] = [{ index: 1, term: 1, type: EntryType.Noop, data: new Uint8Array(0) }];
    for (let i = 0; i < 12; i++) entries.push({ index: entries.length + 1, term: 1, type: EntryType.Normal, data: encoder.encode(`r${i}`) });
    await storage.append(entries);
    const retainFrom = storage.segments()[1]!.firstIndex;
    await storage.append([{ index: 14, term: 1, type: EntryType.Control, data: encodeControl({ kind: 'retain', firstIndex: retainFrom }) }]);
    await storage.setHardState({ term: 1, vote: 'a', commit: 14 });
    await storage.close();

    const restarted = await start(dir);
    try {
      for (let i = 0; i < 200 && restarted.storage.firstIndex() < retainFrom; i++) await delay(10);
      assert.equal(restarted.storage.firstIndex(), retainFrom, 'the decision applied before the restart removed the oldest segment');
      assert.equal(restarted.log.lowestOffset(), retainFrom - 2, 'offsets are indexes less the no-op and one');
    } finally {
      await stop(restarted);
    }
  } finally {
    remove();
  }
});

// Goal: one client's plain writes through one node keep their order across that node becoming
// leader: a write made the moment it leads goes after the writes it queued (to forward) while it
// had no leader, not before them.
test('a write made as this node becomes leader is ordered after the writes it queued before', async () => {
  const { dir, remove } = tempDir('replicated-log-forward-order');
  const replica = await create(dir);
  try {
    // No leader yet: the first writes queue to be forwarded, waiting for one to be known.
    const queued = [replica.log.append({ value: encoder.encode('first') }), replica.log.append({ value: encoder.encode('second') })];
    const afterLeading = new Promise<Promise<number>>((resolve) => {
      const stop = replica.node.subscribe((status) => {
        if (status.role !== Role.Leader) return;
        stop();
        // Synchronously in the change: the queued writes have not been proposed yet.
        resolve(replica.log.append({ value: encoder.encode('third') }));
      });
    });
    replica.node.start();
    const offsets = await Promise.all([...queued, await afterLeading]);
    assert.deepEqual(offsets, [0, 1, 2]);
    assert.deepEqual(values(replica.log), ['0:first', '1:second', '2:third']);
  } finally {
    await stop(replica);
    remove();
  }
});

test('a leader cut off from the others does not refuse as out of order a sequence a later leader committed', async () => {
  const { dir, remove } = tempDir('replicated-log-deposed');
  const network = new InMemoryNetwork();
  const ids = ['a', 'b', 'c'];
  const replicas = new Map<string, Started>();
  const forwarded: string[] = [];
  try {
    for (const id of ids) {
      const storage = await RaftLogStorage.open(`${dir}/${id}`, { initialConfig: { voters: ids, learners: [] } });
      const log = new ReplicatedLog({
        storage,
        peers: {
          forward: (to, write) => {
            forwarded.push(`${id}->${to}`);
            return replicas.get(to)!.log.appendForwarded(write);
          },
          readIndex: (to) => replicas.get(to)!.log.readIndexForPeer(),
        },
      });
      // 'a' ticks slowly: once it leads and is cut off, it takes 2 s to notice that it lost its
      // quorum, while b and c elect a leader among themselves within a few hundred milliseconds.
      const node = new RaftNode<number>({
        id, storage, transport: network.connect(id), stateMachine: log, applied: log.appliedAtStart,
        tickIntervalMs: id === 'a' ? 50 : 5, electionTicks: 40, heartbeatTicks: 1, prng: new Prng(ids.indexOf(id) + 1),
      });
      log.attach(node);
      replicas.set(id, { storage, log, node });
    }
    const leads = (id: string): Promise<void> =>
      new Promise((resolve) => {
        const node = replicas.get(id)!.node;
        if (node.status().role === Role.Leader) return resolve();
        const stop = node.subscribe((status) => {
          if (status.role !== Role.Leader) return;
          stop();
          resolve();
        });
      });
    for (const { node } of replicas.values()) node.start();
    const first = await Promise.race(['b', 'c'].map((id) => leads(id).then(() => id)));
    await replicas.get(first)!.node.transferLeadership('a');
    await leads('a');
    const a = replicas.get('a')!;
    assert.equal((await a.log.appendSequenced([{ value: encoder.encode('s0') }], 5, 0)).firstOffset, 0);

    network.isolate('a');
    const next = await Promise.race(['b', 'c'].map((id) => leads(id).then(() => id)));
    assert.equal(a.node.status().role, Role.Leader, "'a' has not noticed yet");
    assert.equal((await replicas.get(next)!.log.appendSequenced([{ value: encoder.encode('s1') }], 5, 1)).firstOffset, 1);

    // The producer, told that sequence 1 is in the log, sends 2 to 'a', which still leads in its
    // own view and has not seen sequence 1: refusing it ("the log expects 1") would be wrong.
    const third = a.log.appendSequenced([{ value: encoder.encode('s2') }], 5, 2);
    network.reconnect('a');
    assert.deepEqual(await third, { firstOffset: 2, lastOffset: 2, duplicate: false });
    assert.deepEqual(forwarded, [`a->${next}`]);
    const leader = replicas.get(next)!.log;
    assert.deepEqual(values(leader), ['0:s0', '1:s1', '2:s2']);
  } finally {
    for (const replica of replicas.values()) await stop(replica);
    remove();
  }
});
