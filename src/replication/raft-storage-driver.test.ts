// Goal: RaftNodes run on RaftLogStorage as they do on MemoryStorage: a three-node cluster elects
// a leader and commits proposals; a node restarted from its directory keeps its log and catches
// up; a node that fell behind the leader's compaction catches up through an installed snapshot,
// and every replica numbers the consumer records identically (control entries never count).
// Method: three RaftNodes over the InMemoryNetwork with a 5 ms tick, each on RaftLogStorage in
// its own temp dir with small segments; the state machine records each entry's consumer offset
// as the storage computes it. Waits are condition polls with generous deadlines.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { InMemoryNetwork, RaftNode, Role, type StateMachine } from '../raft/index.js';
import { Prng } from '../util/index.js';
import { decodeLogSnapshot, RaftLogStorage } from './raft-storage.js';
import { fullView, tempDir } from './test-support.js';

const ids = ['a', 'b', 'c'];
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** The log is the state: applying an entry just notes its consumer offset. */
class OffsetMachine implements StateMachine<number> {
  base = 0;
  values: string[] = [];
  constructor(private readonly storage: RaftLogStorage) {}
  apply(entry: { index: number; data: Uint8Array }): number {
    const offset = this.base + this.values.length;
    assert.equal(this.storage.offsetOfIndex(entry.index), offset, `entry ${entry.index} has consumer offset ${offset}`);
    this.values.push(textDecoder.decode(entry.data));
    return offset;
  }
  snapshot(): Uint8Array {
    return new Uint8Array(0); // ignored: RaftLogStorage makes its own descriptor
  }
  restore(data: Uint8Array): void {
    this.base = data.length === 0 ? 0 : decodeLogSnapshot(data).nextOffset;
    this.values = [];
  }
  /** One past the last applied record's offset. */
  get nextOffset(): number {
    return this.base + this.values.length;
  }
}

interface Member {
  id: string;
  dir: string;
  storage: RaftLogStorage;
  machine: OffsetMachine;
  node: RaftNode<number>;
}

interface Extra {
  snapshotEveryEntries?: number;
  trailingEntryCount?: number;
}

const LOG = { maxIndexBytes: 12 * 4 };

async function startMember(id: string, dir: string, network: InMemoryNetwork, extra: Extra): Promise<Member> {
  const storage = await RaftLogStorage.open(dir, { log: LOG, initialConfig: { voters: ids, learners: [] } });
  const machine = new OffsetMachine(storage);
  const node = new RaftNode({
    id,
    storage,
    transport: network.connect(id),
    stateMachine: machine,
    tickIntervalMs: 5,
    electionTicks: 40, // 200 ms: a loaded CI machine stalls fsyncs past a shorter timeout and re-elects mid-test
    heartbeatTicks: 2,
    prng: new Prng(ids.indexOf(id) + 100),
    ...extra,
  });
  node.start();
  return { id, dir, storage, machine, node };
}

async function stopMember(member: Member): Promise<void> {
  member.node.close();
  await member.storage.close();
}

async function waitUntil(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(5);
  }
}

async function waitForLeader(members: Map<string, Member>): Promise<Member> {
  let leader: Member | undefined;
  await waitUntil('a leader', () => {
    leader = [...members.values()].find((member) => member.node.status().role === Role.Leader);
    return leader !== undefined;
  });
  return leader!;
}

async function startCluster(extra: Extra = {}): Promise<{ members: Map<string, Member>; network: InMemoryNetwork; cleanup: () => Promise<void> }> {
  const network = new InMemoryNetwork();
  const root = tempDir('raft-driver');
  const members = new Map<string, Member>();
  for (const id of ids) members.set(id, await startMember(id, join(root.dir, id), network, extra));
  return {
    members,
    network,
    cleanup: async () => {
      for (const member of members.values()) await stopMember(member);
      root.remove();
    },
  };
}

function consumerRecords(storage: RaftLogStorage, from: number): string[] {
  const maxIndex = storage.lastIndex();
  return storage.readRecords(from, maxIndex, { maxCount: 10_000, maxBytes: Infinity }).map((r) => `${r.offset}:${r.value.toString()}`);
}

async function proposeAll(leader: Member, from: number, count: number): Promise<number[]> {
  const results = await Promise.all(Array.from({ length: count }, (_, i) => leader.node.propose(textEncoder.encode(`v${from + i}`))));
  return results.map((result) => result.result);
}

test('three nodes on RaftLogStorage: proposals get dense consumer offsets; a restarted node keeps its log and catches up', async () => {
  const { members, network, cleanup } = await startCluster();
  try {
    const leader = await waitForLeader(members);
    assert.deepEqual(await proposeAll(leader, 0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'the no-op takes no consumer offset');
    await waitUntil('every replica applies', () => [...members.values()].every((m) => m.machine.values.length === 10));
    const follower = [...members.values()].find((m) => m !== leader)!;
    const lastIndexBefore = follower.storage.lastIndex();
    await stopMember(follower);
    assert.deepEqual(await proposeAll(leader, 10, 10), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);

    const restarted = await startMember(follower.id, follower.dir, network, {});
    members.set(follower.id, restarted);
    assert.equal(restarted.storage.isNew, false);
    assert.ok(restarted.storage.lastIndex() >= lastIndexBefore, 'the log survived the restart');
    assert.ok(restarted.storage.initialState().hardState.term >= 1);
    await waitUntil(
      'the restarted node catches up',
      () => restarted.machine.values.length === 20 && restarted.storage.lastIndex() === leader.storage.lastIndex(),
    );
    assert.deepEqual(restarted.machine.values, leader.machine.values);
    assert.deepEqual(consumerRecords(restarted.storage, 0), consumerRecords(leader.storage, 0));
    assert.equal(consumerRecords(leader.storage, 0).length, 20);
    for (const member of members.values()) fullView(member.storage);
  } finally {
    await cleanup();
  }
});

test('a node behind the leader\'s compaction installs a snapshot; consumer offsets continue; it restarts from disk', async () => {
  const { members, network, cleanup } = await startCluster({ snapshotEveryEntries: 4, trailingEntryCount: 0 });
  try {
    const leader = await waitForLeader(members);
    await proposeAll(leader, 0, 3);
    const lagging = [...members.values()].find((m) => m !== leader)!;
    // nextOffset, not values: under load a re-election can make the leader compact already and send a snapshot.
    await waitUntil('the lagging node has the first entries', () => lagging.machine.nextOffset === 3);
    const laggingLast = lagging.storage.lastIndex();
    network.isolate(lagging.id);
    for (let i = 3; i < 40; i += 5) await proposeAll(leader, i, 5);
    await waitUntil('the leader compacts past the lagging node', () => leader.storage.firstIndex() > laggingLast + 1);
    network.reconnect(lagging.id);
    await waitUntil('the lagging node catches up', () => lagging.storage.lastIndex() === leader.storage.lastIndex() && lagging.machine.nextOffset === 43);
    assert.ok(lagging.storage.firstIndex() > laggingLast + 1, 'it could only have caught up through a snapshot');
    assert.ok(readdirSync(lagging.dir).some((name) => /^log\.[1-9]/.test(name)), 'installing the snapshot started a new log generation');
    assert.equal(lagging.storage.offsetOfIndex(lagging.storage.lastIndex() + 1), leader.storage.offsetOfIndex(leader.storage.lastIndex() + 1));
    const common = Math.max(lagging.storage.lowestOffset(), leader.storage.lowestOffset());
    assert.deepEqual(consumerRecords(lagging.storage, common), consumerRecords(leader.storage, common));
    assert.deepEqual(await proposeAll(leader, 43, 1), [43]);
    await waitUntil('the caught-up node applies new entries', () => lagging.machine.nextOffset === 44);

    await stopMember(lagging);
    const restarted = await startMember(lagging.id, lagging.dir, network, { snapshotEveryEntries: 4, trailingEntryCount: 0 });
    members.set(lagging.id, restarted);
    assert.deepEqual(restarted.storage.recovery.actions, []);
    assert.deepEqual(await proposeAll(leader, 44, 1), [44]);
    await waitUntil('the restarted node applies new entries', () => restarted.machine.nextOffset === 45);
    for (const member of members.values()) fullView(member.storage);
  } finally {
    await cleanup();
  }
});
