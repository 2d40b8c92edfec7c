// Goal: the driver settles every request correctly on a real (timer-driven) cluster: proposals
// resolve with the state machine's result, refusals carry the leader hint, an overwritten proposal
// fails with LeadershipLostError and never applies, reads pass a ReadIndex barrier, a learner
// added later catches up through a snapshot, and close() fails what is pending. Method: three or
// four RaftNodes over the InMemoryNetwork with a 5 ms tick; waits are condition polls with
// generous deadlines (no timing assertions), so a loaded CI machine only makes them slower.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ClosedError, DeadlineExceededError, NotLeaderError, Prng, ProposalOutcomeUnknownError } from '../util/index.js';
import { LeadershipLostError } from './errors.js';
import { RaftNode, type StateMachine } from './driver.js';
import { MemoryStorage } from './storage.js';
import { InMemoryNetwork, type Transport } from './transport.js';
import { Role, type Entry, type HardState, type Message } from './types.js';

class ListMachine implements StateMachine<number> {
  values: string[] = [];
  apply(entry: { data: Uint8Array }): number {
    this.values.push(new TextDecoder().decode(entry.data));
    return this.values.length - 1;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(this.values));
  }
  restore(data: Uint8Array): void {
    this.values = data.length === 0 ? [] : (JSON.parse(new TextDecoder().decode(data)) as string[]);
  }
}

interface Member {
  node: RaftNode<number>;
  machine: ListMachine;
}

function startCluster(ids: string[], network: InMemoryNetwork, extra: { snapshotEveryEntries?: number } = {}): Map<string, Member> {
  const members = new Map<string, Member>();
  for (const [i, id] of ids.entries()) members.set(id, startMember(id, network, new MemoryStorage({ voters: ids, learners: [] }), i, extra));
  return members;
}

function startMember(
  id: string,
  network: InMemoryNetwork,
  storage: MemoryStorage,
  seed: number,
  extra: { snapshotEveryEntries?: number; applied?: number; schedule?: (run: () => void) => void; writeInBackground?: boolean },
  wrapTransport: (transport: Transport) => Transport = (transport) => transport,
): Member {
  const machine = new ListMachine();
  const node = new RaftNode({
    id,
    storage,
    transport: wrapTransport(network.connect(id)),
    stateMachine: machine,
    tickIntervalMs: 5,
    electionTicks: 10,
    heartbeatTicks: 2,
    prng: new Prng(seed + 100),
    addressOf: (peer) => `${peer}.local:7000`,
    ...extra,
  });
  node.start();
  return { node, machine };
}

async function waitUntil(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(5);
  }
}

async function waitForLeader(members: Map<string, Member>, exclude: string[] = []): Promise<string> {
  let leader: string | null = null;
  await waitUntil('a leader', () => {
    for (const [id, { node }] of members) if (!exclude.includes(id) && node.status().role === Role.Leader) leader = id;
    return leader !== null;
  });
  return leader as unknown as string;
}

function closeAll(members: Map<string, Member>): void {
  for (const { node } of members.values()) node.close();
}

test('proposals resolve with the applied result; followers refuse with a leader hint', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network);
  try {
    const leaderId = await waitForLeader(members);
    const leader = (members.get(leaderId) as Member).node;
    const results = await Promise.all([0, 1, 2].map((i) => leader.propose(new TextEncoder().encode(`v${i}`))));
    assert.deepEqual(results.map((r) => r.result), [0, 1, 2]);
    const followerId = ['a', 'b', 'c'].find((id) => id !== leaderId) as string;
    await waitUntil('follower knows the leader', () => members.get(followerId)?.node.status().leaderId === leaderId);
    const refusal = await members.get(followerId)?.node.propose(new Uint8Array([1])).then(
      () => null,
      (error: unknown) => error,
    );
    assert.ok(refusal instanceof NotLeaderError);
    assert.equal(refusal.leaderId, leaderId);
    assert.equal(refusal.leaderAddress, `${leaderId}.local:7000`);
    const readIndex = await leader.readBarrier();
    assert.ok(readIndex >= 4, 'the barrier covers the three proposals and the no-op');
    await waitUntil('every replica applies', () => [...members.values()].every((m) => m.machine.values.length === 3));
  } finally {
    closeAll(members);
  }
});

test('a proposal overwritten by a new leader fails with LeadershipLostError and never applies', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network);
  try {
    const oldLeaderId = await waitForLeader(members);
    const oldLeader = members.get(oldLeaderId) as Member;
    network.isolate(oldLeaderId);
    const doomed = oldLeader.node.propose(new TextEncoder().encode('doomed')).then(
      () => assert.fail('an isolated proposal must not succeed'),
      (error: unknown) => error,
    );
    const newLeaderId = await waitForLeader(members, [oldLeaderId]);
    const newLeader = members.get(newLeaderId) as Member;
    await newLeader.node.propose(new TextEncoder().encode('winner'));
    network.reconnect(oldLeaderId);
    const error = await doomed;
    assert.ok(error instanceof LeadershipLostError, String(error));
    await waitUntil('the old leader applies the winner', () => oldLeader.machine.values.includes('winner'));
    for (const { machine } of members.values()) assert.ok(!machine.values.includes('doomed'));
  } finally {
    closeAll(members);
  }
});

test('a learner added later catches up through a snapshot and is promoted to voter', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network, { snapshotEveryEntries: 5 });
  try {
    const leaderId = await waitForLeader(members);
    const leader = (members.get(leaderId) as Member).node;
    for (let i = 0; i < 20; i++) await leader.propose(new TextEncoder().encode(`v${i}`));
    await leader.changeConfig({ type: 'addLearner', nodeId: 'd' });
    const learner = startMember('d', network, new MemoryStorage({ voters: [], learners: [] }), 9, { snapshotEveryEntries: 5 });
    members.set('d', learner);
    await waitUntil('the learner catches up', () => learner.machine.values.length === 20);
    await leader.changeConfig({ type: 'addVoter', nodeId: 'd' });
    await waitUntil('d sees itself as a voter', () => learner.node.status().config.voters.includes('d'));
    await leader.propose(new TextEncoder().encode('after'));
    await waitUntil('d applies new entries', () => learner.machine.values.at(-1) === 'after');
  } finally {
    closeAll(members);
  }
});

test('close() fails appended proposals with ProposalOutcomeUnknownError (they may still commit); later calls fail at once with ClosedError', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network);
  try {
    const leaderId = await waitForLeader(members);
    const leader = (members.get(leaderId) as Member).node;
    for (const id of ['a', 'b', 'c']) if (id !== leaderId) network.isolate(id);
    const pending = leader.propose(new Uint8Array([1])).then(
      () => null,
      (error: unknown) => error,
    );
    // The entry is appended (the proposal was taken) before the node stops.
    await waitUntil('the proposal is appended', () => leader.status().lastIndex > leader.status().commit);
    leader.close();
    const error = await pending;
    assert.ok(error instanceof ProposalOutcomeUnknownError, String(error));
    assert.equal(error.index, leader.status().lastIndex);
    await assert.rejects(leader.propose(new Uint8Array([2])), ClosedError);
  } finally {
    closeAll(members);
  }
});

/** Storage whose appends, once `hold` is set, stay in progress until released (a slow disk). */
class HeldStorage extends MemoryStorage {
  hold = false;
  held: (() => void)[] = [];
  override append(entries: readonly Entry[]): void | Promise<void> {
    if (!this.hold) return super.append(entries);
    return new Promise((resolve) =>
      this.held.push(() => {
        super.append(entries);
        resolve();
      }),
    );
  }
}

test('close() during a storage write: the proposal being written is of unknown outcome, one still queued behind the write fails with ClosedError (never appended)', async () => {
  const storage = new HeldStorage({ voters: ['solo'], learners: [] });
  // A write the loop waits for (a leader's own appends otherwise go on in the background).
  const { node } = startMember('solo', new InMemoryNetwork(), storage, 0, { writeInBackground: false });
  try {
    node.campaign();
    await waitUntil('the lone voter leads', () => node.status().role === Role.Leader);
    await node.propose(new Uint8Array([0]));
    storage.hold = true;
    const settle = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => null, (error: unknown) => error);
    const appended = settle(node.propose(new Uint8Array([1])));
    await waitUntil('the append is in progress', () => storage.held.length === 1);
    const queued = settle(node.propose(new Uint8Array([2])));
    node.close();
    const first = await appended;
    assert.ok(first instanceof ProposalOutcomeUnknownError, String(first));
    const second = await queued;
    assert.ok(second instanceof ClosedError, String(second));
    for (const release of storage.held) release();
  } finally {
    node.close();
  }
});

test('an isolated leader steps down (CheckQuorum) and fails its pending read barrier', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network);
  try {
    const leaderId = await waitForLeader(members);
    const leader = (members.get(leaderId) as Member).node;
    const roles: string[] = [];
    const unsubscribe = leader.subscribe((status) => roles.push(status.role));
    assert.equal(roles[0], Role.Leader, 'subscribe yields the current status first');
    network.isolate(leaderId);
    const error = await leader.readBarrier().then(
      () => null,
      (failure: unknown) => failure,
    );
    assert.ok(error instanceof LeadershipLostError, String(error));
    assert.notEqual(leader.status().role, Role.Leader);
    assert.ok(roles.includes(Role.Follower));
    unsubscribe();
    const refused = await leader.readBarrier().then(
      () => null,
      (failure: unknown) => failure,
    );
    assert.ok(refused instanceof NotLeaderError);
  } finally {
    closeAll(members);
  }
});

test('a proposal with timeoutMs rejects with DeadlineExceededError when no outcome is known', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network);
  try {
    const leaderId = await waitForLeader(members);
    const leader = (members.get(leaderId) as Member).node;
    for (const id of ['a', 'b', 'c']) if (id !== leaderId) network.isolate(id);
    await assert.rejects(leader.propose(new Uint8Array([1]), { timeoutMs: 50 }), DeadlineExceededError);
  } finally {
    closeAll(members);
  }
});

/** Storage whose writes become durable only when their promise resolves, a macrotask later. */
class AsyncStorage extends MemoryStorage {
  writesInFlight = 0;
  override setHardState(hardState: HardState): Promise<void> {
    return this.later(() => super.setHardState(hardState));
  }
  override append(entries: readonly Entry[]): Promise<void> {
    return this.later(() => super.append(entries));
  }
  private later(write: () => void): Promise<void> {
    this.writesInFlight++;
    return new Promise((resolve) =>
      setImmediate(() => {
        write();
        this.writesInFlight--;
        resolve();
      }),
    );
  }
}

test('with asynchronous storage, no message leaves before what it promises is durable (a leader\'s appends and heartbeats promise nothing)', async () => {
  const network = new InMemoryNetwork();
  const ids = ['a', 'b', 'c'];
  const members = new Map<string, Member>();
  let checked = 0;
  let checkedGrants = 0;
  let checkedAppendAcks = 0;
  let earlySendable = 0;
  let sentDuringWrite = 0;
  for (const [i, id] of ids.entries()) {
    const storage = new AsyncStorage({ voters: ids, learners: [] });
    const checking = (transport: Transport): Transport => ({
      ...transport,
      send(messages: readonly Message[]) {
        for (const message of messages) {
          if (message.type === 'append' || message.type === 'heartbeat') {
            earlySendable++;
            const last = message.type === 'append' ? message.entries[message.entries.length - 1] : undefined;
            if (last !== undefined && storage.lastIndex() < last.index) sentDuringWrite++;
            transport.send([message]);
            continue;
          }
          assert.equal(storage.writesInFlight, 0, `${message.type} sent during a write`);
          if (message.type === 'voteResponse' && !message.reject) {
            assert.equal(storage.initialState().hardState.vote, message.to);
            checkedGrants++;
          }
          if (message.type === 'appendResponse' && !message.reject) {
            assert.ok(storage.lastIndex() >= message.index);
            checkedAppendAcks++;
          }
          checked++;
        }
        transport.send(messages.filter((message) => message.type !== 'append' && message.type !== 'heartbeat'));
      },
    });
    members.set(id, startMember(id, network, storage, i, {}, checking));
  }
  try {
    const leaderId = await waitForLeader(members);
    const leader = (members.get(leaderId) as Member).node;
    await Promise.all(Array.from({ length: 20 }, (_, i) => leader.propose(new TextEncoder().encode(`v${i}`))));
    await waitUntil('every replica applies', () => [...members.values()].every((m) => m.machine.values.length === 20));
    // Batching decides how many messages 20 proposals take; what matters is that the checks ran
    // on the messages that depend on durable state.
    assert.ok(checkedGrants >= 1 && checkedAppendAcks >= 2, `checked ${checked} messages: ${checkedGrants} vote grants, ${checkedAppendAcks} append acks`);
    // The leader's appends overlap its own writes (sent before them).
    assert.ok(earlySendable > 0 && sentDuringWrite > 0, `${sentDuringWrite} of ${earlySendable} appends and heartbeats went out before the leader's own copy was durable`);
  } finally {
    closeAll(members);
  }
});

test('proposeBatch resolves once with every entry’s result in order; onApplied reports the applied index', async () => {
  const network = new InMemoryNetwork();
  const members = startCluster(['a', 'b', 'c'], network);
  try {
    const leader = members.get(await waitForLeader(members))!;
    const applied: number[] = [];
    leader.node.onApplied((index) => applied.push(index));
    await leader.node.propose(new TextEncoder().encode('solo'));
    const batch = await leader.node.proposeBatch(['x', 'y', 'z'].map((value) => new TextEncoder().encode(value)));
    assert.equal(batch.lastIndex - batch.firstIndex, 2);
    // The list machine returns each value's position: consecutive, after 'solo'.
    assert.deepEqual(batch.results, [1, 2, 3]);
    assert.deepEqual(leader.machine.values, ['solo', 'x', 'y', 'z']);
    // The listener runs once the Ready that applied the batch is fully handled, after it resolved.
    await waitUntil('the applied listener', () => applied.length > 0 && applied[applied.length - 1]! >= batch.lastIndex);
    for (let i = 1; i < applied.length; i++) assert.ok(applied[i]! >= applied[i - 1]!, 'applied never goes back');
  } finally {
    for (const { node } of members.values()) node.close();
  }
});

test('with `applied` at start-up a restarted node does not replay what its state machine already holds', async () => {
  const network = new InMemoryNetwork();
  const storage = new MemoryStorage({ voters: ['solo'], learners: [] });
  const first = startMember('solo', network, storage, 1, {});
  await waitUntil('leadership', () => first.node.status().role === Role.Leader);
  await first.node.proposeBatch(['a', 'b'].map((value) => new TextEncoder().encode(value)));
  const commit = first.node.status().commit;
  first.node.close();
  // Without `applied` the committed entries are applied again from the snapshot (index 0).
  const replaying = startMember('solo', new InMemoryNetwork(), storage, 2, {});
  await waitUntil('replay', () => replaying.machine.values.length === 2);
  replaying.node.close();
  const committed = storage.initialState().hardState.commit;
  assert.ok(committed >= commit);
  const skipping = startMember('solo', new InMemoryNetwork(), storage, 3, { applied: committed });
  try {
    await waitUntil('leadership', () => skipping.node.status().role === Role.Leader);
    assert.ok(skipping.node.status().applied >= committed);
    assert.deepEqual(skipping.machine.values, [], 'entries at or below `applied` are not applied again');
    await skipping.node.propose(new TextEncoder().encode('c'));
    assert.deepEqual(skipping.machine.values, ['c']);
  } finally {
    skipping.node.close();
  }
});

test('with injected timers and synchronous storage the node runs synchronously: ticks elect it, outcomes settle within the call, deadlines follow the injected clock', () => {
  // A lone voter whose clock is a list of callbacks: nothing happens until the test fires them.
  const ticks: (() => void)[] = [];
  const deadlines: { delayMs: number; callback: () => void; cancelled: boolean }[] = [];
  const timers = {
    every(_intervalMs: number, callback: () => void) {
      ticks.push(callback);
      return () => ticks.splice(ticks.indexOf(callback), 1);
    },
    after(delayMs: number, callback: () => void) {
      const deadline = { delayMs, callback, cancelled: false };
      deadlines.push(deadline);
      return () => {
        deadline.cancelled = true;
      };
    },
  };
  const sent: Message[] = [];
  const machine = new ListMachine();
  const node = new RaftNode({
    id: 'a',
    storage: new MemoryStorage({ voters: ['a'], learners: [] }),
    transport: { send: (messages) => sent.push(...messages), onMessage: () => {}, close: () => {} },
    stateMachine: machine,
    timers,
    electionTicks: 10,
    prng: new Prng(7),
  });
  node.start();
  assert.equal(ticks.length, 1, 'start() schedules the tick on the injected timers');
  for (let i = 0; i < 20 && node.status().role !== Role.Leader; i++) (ticks[0] as () => void)();
  assert.equal(node.status().role, Role.Leader, 'ticks alone elect a lone voter, with no real time passing');

  const settled: string[] = [];
  node.submitProposal([new TextEncoder().encode('x')], {
    resolve: ({ lastIndex, results }) => settled.push(`ok ${lastIndex} ${String(results[0])}`),
    reject: (error) => settled.push(`error ${error.name}`),
  }, { timeoutMs: 50 });
  assert.deepEqual(settled, ['ok 2 0'], 'committed and applied before submitProposal returned');
  assert.deepEqual(deadlines.map(({ delayMs, cancelled }) => ({ delayMs, cancelled })), [{ delayMs: 50, cancelled: true }], 'the deadline ran on the injected timers and was cancelled by the outcome');
  assert.deepEqual(machine.values, ['x']);

  // A refusal reaches `refuse` (no error object is built) when the caller handles it.
  const refusals: string[] = [];
  node.submitConfigChange({ type: 'remove', nodeId: 'zz' }, { resolve: () => refusals.push('accepted'), reject: () => refusals.push('rejected'), refuse: (reason) => refusals.push(reason) });
  assert.deepEqual(refusals, ['invalidConfigChange']);

  node.close();
  assert.equal(ticks.length, 0, 'close() cancels the tick');
  assert.equal(sent.length, 0, 'a lone voter sends nothing');
});

/** Storage whose writes complete in order, one at a time, and only while its gate is open. */
class GatedStorage extends MemoryStorage {
  open = true;
  readonly appendSizes: number[] = [];
  private readonly queue: { write: () => void; resolve: () => void }[] = [];
  override setHardState(hardState: HardState): Promise<void> {
    return this.later(() => super.setHardState(hardState));
  }
  override append(entries: readonly Entry[]): Promise<void> {
    this.appendSizes.push(entries.length);
    return this.later(() => super.append(entries));
  }
  get queued(): number {
    return this.queue.length;
  }
  release(): void {
    this.open = true;
    this.drain();
  }
  private later(write: () => void): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push({ write, resolve });
      if (this.queue.length === 1) setImmediate(() => this.drain());
    });
  }
  private drain(): void {
    while (this.open && this.queue.length > 0) {
      const next = this.queue.shift() as { write: () => void; resolve: () => void };
      next.write();
      next.resolve();
    }
  }
}

test('a leader does not wait for its own write: followers\' acknowledgements commit, what it cannot read back waits, and proposals made meanwhile share the next write', async () => {
  const network = new InMemoryNetwork();
  const ids = ['a', 'b', 'c'];
  const storages = new Map<string, GatedStorage>();
  const members = new Map<string, Member>();
  for (const [i, id] of ids.entries()) {
    const storage = new GatedStorage({ voters: ids, learners: [] });
    storages.set(id, storage);
    members.set(id, startMember(id, network, storage, i, {}));
  }
  try {
    const leaderId = await waitForLeader(members);
    const leader = members.get(leaderId) as Member;
    const disk = storages.get(leaderId) as GatedStorage;
    const encode = (value: string): Uint8Array => new TextEncoder().encode(value);
    await leader.node.propose(encode('warm-up'));
    await waitUntil('the leader idle', () => disk.queued === 0);

    disk.open = false;
    const writesBefore = disk.appendSizes.length;
    const first = leader.node.propose(encode('p1'));
    await waitUntil('p1 handed to the leader\'s disk', () => disk.appendSizes.length === writesBefore + 1);
    const p1Index = leader.node.status().lastIndex;
    // Committed on the followers' acknowledgements while the leader's own copy is not durable.
    await waitUntil('p1 committed without the leader\'s write', () => leader.node.status().commit >= p1Index);
    const later = [leader.node.propose(encode('p2')), leader.node.propose(encode('p3'))];
    await waitUntil('p2 and p3 committed on the followers', () => leader.node.status().commit >= p1Index + 2);
    // Nothing it cannot read back is applied, and no second write starts while the first is out.
    assert.deepEqual(leader.machine.values, ['warm-up']);
    assert.equal(disk.appendSizes.length, writesBefore + 1);

    disk.release();
    assert.equal(await first.then(({ result }) => result), 1);
    assert.deepEqual(await Promise.all(later.map((proposal) => proposal.then(({ result }) => result))), [2, 3]);
    assert.deepEqual(leader.machine.values, ['warm-up', 'p1', 'p2', 'p3']);
    // Everything proposed while the first write was out went to the disk in one write.
    assert.deepEqual(disk.appendSizes.slice(writesBefore), [1, 2]);
    await waitUntil('every replica applies', () => [...members.values()].every((m) => m.machine.values.length === 4));
  } finally {
    closeAll(members);
  }
});

test('entries are applied from memory right after they become durable: applying reads nothing back from storage', async () => {
  class CountingStorage extends GatedStorage {
    reads = 0;
    override entries(lo: number, hi: number, maxSizeBytes: number): readonly Entry[] {
      this.reads++;
      return super.entries(lo, hi, maxSizeBytes);
    }
  }
  const network = new InMemoryNetwork();
  const storage = new CountingStorage({ voters: ['a'], learners: [] });
  const member = startMember('a', network, storage, 0, {});
  try {
    member.node.campaign();
    await waitForLeader(new Map([['a', member]]));
    const readsBefore = storage.reads;
    for (let i = 0; i < 50; i++) await member.node.propose(new TextEncoder().encode(`v${i}`));
    assert.equal(member.machine.values.length, 50);
    assert.equal(storage.reads - readsBefore, 0);
  } finally {
    member.node.close();
  }
});

test('with a deferred schedule, proposals made together share one Ready (one append per follower), and close() answers those not yet started', async () => {
  const network = new InMemoryNetwork();
  const ids = ['a', 'b', 'c'];
  const members = new Map<string, Member>();
  const appendsWithEntries = new Map<string, number>();
  for (const [i, id] of ids.entries()) {
    const counting = (transport: Transport): Transport => ({
      ...transport,
      send(messages: readonly Message[]) {
        for (const message of messages) {
          if (message.type === 'append' && message.entries.length > 0) appendsWithEntries.set(message.to, (appendsWithEntries.get(message.to) ?? 0) + 1);
        }
        transport.send(messages);
      },
    });
    members.set(id, startMember(id, network, new MemoryStorage({ voters: ids, learners: [] }), i, { schedule: (run: () => void) => void setImmediate(run) }, counting));
  }
  try {
    const leaderId = await waitForLeader(members);
    const leader = members.get(leaderId) as Member;
    await leader.node.propose(new TextEncoder().encode('warm-up'));
    await waitUntil('every replica applies', () => [...members.values()].every((m) => m.machine.values.length === 1));
    appendsWithEntries.clear();
    const proposals = Array.from({ length: 20 }, (_, i) => leader.node.propose(new TextEncoder().encode(`v${i}`)));
    assert.deepEqual(await Promise.all(proposals.map((p) => p.then(({ result }) => result))), Array.from({ length: 20 }, (_, i) => i + 1));
    for (const id of ids.filter((id) => id !== leaderId)) assert.equal(appendsWithEntries.get(id), 1, `appends with entries to ${id}`);

    const cut = leader.node.propose(new TextEncoder().encode('never started'));
    leader.node.close();
    await assert.rejects(cut, ClosedError);
  } finally {
    closeAll(members);
  }
});
