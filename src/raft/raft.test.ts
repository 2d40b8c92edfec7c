// Goal: the core's basic contract on small clusters: election, replication and commit, refusals
// with a leader hint, persist-before-send ordering, and fast conflict backtracking. Method: a tiny
// synchronous harness that handles each Ready like a driver (persist, then send, then apply) and
// delivers messages in FIFO order until the cluster is quiet. Randomized failure schedules are
// the simulator's job (src/sim); scenario scripts live there too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Prng } from '../util/index.js';
import { RawNode } from './raw-node.js';
import { MemoryStorage } from './storage.js';
import { EntryType, Role, type Entry, type Message } from './types.js';

class Harness {
  readonly nodes = new Map<string, { raw: RawNode; storage: MemoryStorage; applied: Entry[] }>();
  readonly inFlight: Message[] = [];
  readonly delivered: Message[] = [];
  blocked = new Set<string>();

  constructor(ids: string[], prepare?: (id: string, storage: MemoryStorage) => void) {
    for (const [i, id] of ids.entries()) {
      const storage = new MemoryStorage({ voters: ids, learners: [] });
      prepare?.(id, storage);
      const raw = new RawNode({ id, storage, prng: new Prng(i + 1), electionTicks: 10, heartbeatTicks: 1 });
      this.nodes.set(id, { raw, storage, applied: [] });
    }
  }

  node(id: string): { raw: RawNode; storage: MemoryStorage; applied: Entry[] } {
    const node = this.nodes.get(id);
    assert.ok(node);
    return node;
  }

  /** Handles every node's Ready and delivers messages until nothing moves (bounded). */
  stabilize(): void {
    for (let round = 0; round < 10_000; round++) {
      let moved = false;
      for (const [id, node] of this.nodes) {
        while (node.raw.hasReady()) {
          moved = true;
          const ready = node.raw.ready();
          if (ready.hardState !== null) node.storage.setHardState(ready.hardState);
          node.storage.append(ready.entries);
          // Persist-before-send: what a message promises must already be durable.
          for (const message of ready.messages) {
            if (message.type === 'voteResponse' && !message.reject) assert.equal(node.storage.initialState().hardState.vote, message.to);
            if (message.type === 'appendResponse' && !message.reject) assert.ok(node.storage.lastIndex() >= message.index);
            assert.equal(message.from, id);
            this.inFlight.push(message);
          }
          node.applied.push(...ready.committedEntries);
          node.raw.advance(ready);
        }
      }
      const message = this.inFlight.shift();
      if (message !== undefined) {
        moved = true;
        this.delivered.push(message);
        if (!this.blocked.has(message.from) && !this.blocked.has(message.to)) this.node(message.to).raw.step(message);
      }
      if (!moved) return;
    }
    assert.fail('cluster did not stabilize');
  }

  electByTicks(id: string): void {
    const raw = this.node(id).raw;
    for (let i = 0; i < 20 && raw.status().role !== Role.Leader; i++) {
      raw.tick();
      this.stabilize();
    }
    assert.equal(raw.status().role, Role.Leader);
  }
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

test('a single node elects itself and commits a proposal', () => {
  const harness = new Harness(['a']);
  harness.electByTicks('a');
  const result = harness.node('a').raw.propose(text('x'));
  assert.ok(result.ok);
  harness.stabilize();
  const applied = harness.node('a').applied;
  assert.deepEqual(
    applied.map((e) => [e.index, e.type]),
    [
      [1, EntryType.Noop],
      [2, EntryType.Normal],
    ],
  );
});

test('three nodes: a leader is elected, replicates and commits; followers refuse with a hint', () => {
  const harness = new Harness(['a', 'b', 'c']);
  harness.electByTicks('a');
  assert.equal(harness.node('b').raw.status().leaderId, 'a');
  for (let i = 0; i < 10; i++) assert.ok(harness.node('a').raw.propose(text(`v${i}`)).ok);
  harness.stabilize();
  for (const id of ['a', 'b', 'c']) {
    const values = harness.node(id).applied.filter((e) => e.type === EntryType.Normal).map((e) => new TextDecoder().decode(e.data));
    assert.deepEqual(values, Array.from({ length: 10 }, (_, i) => `v${i}`), `node ${id}`);
  }
  const refused = harness.node('b').raw.propose(text('nope'));
  assert.deepEqual(refused, { ok: false, reason: 'notLeader', leaderId: 'a' });
});

test('a leader commits nothing without a quorum, and commits once the quorum is back', () => {
  const harness = new Harness(['a', 'b', 'c']);
  harness.electByTicks('a');
  const commitBefore = harness.node('a').raw.status().commit;
  harness.blocked = new Set(['b', 'c']);
  assert.ok(harness.node('a').raw.propose(text('x')).ok);
  harness.stabilize();
  assert.equal(harness.node('a').raw.status().commit, commitBefore);
  harness.blocked = new Set();
  harness.node('a').raw.tick();
  harness.stabilize();
  assert.equal(harness.node('a').raw.status().commit, commitBefore + 1);
});

test('fast backtracking skips a whole conflicting term in one round trip', () => {
  // a and c hold 1..100 from term 2; b holds a long stale tail 2..60 from term 1.
  const harness = new Harness(['a', 'b', 'c'], (id, storage) => {
    const log: Entry[] = [{ index: 1, term: 1, type: EntryType.Normal, data: new Uint8Array(0) }];
    const [last, term] = id === 'b' ? [60, 1] : [100, 2];
    for (let index = 2; index <= last; index++) log.push({ index, term, type: EntryType.Normal, data: new Uint8Array(1) });
    storage.append(log);
    storage.setHardState({ term: 2, vote: null, commit: 1 });
  });
  harness.electByTicks('a');
  const rejections = harness.delivered.filter((m) => m.type === 'appendResponse' && m.from === 'b' && m.reject).length;
  assert.ok(rejections >= 1 && rejections <= 2, `rejections: ${rejections}`);
  assert.equal(harness.node('b').storage.lastIndex(), 101);
  assert.equal(harness.node('b').storage.term(60), 2);
});

test('a candidate with a stale log cannot win; an up-to-date one can', () => {
  const harness = new Harness(['a', 'b', 'c']);
  harness.electByTicks('a');
  harness.blocked = new Set(['c']);
  assert.ok(harness.node('a').raw.propose(text('x')).ok);
  harness.stabilize();
  harness.blocked = new Set(['a']);
  // c lacks the entry: b's vote is refused, so c stays a (pre-)candidate.
  const c = harness.node('c').raw;
  for (let i = 0; i < 40; i++) {
    c.tick();
    harness.stabilize();
  }
  assert.notEqual(c.status().role, Role.Leader);
  const b = harness.node('b').raw;
  for (let i = 0; i < 40 && b.status().role !== Role.Leader; i++) {
    b.tick();
    harness.stabilize();
  }
  assert.equal(b.status().role, Role.Leader);
});

test('a replica repairing damage that does not know the term of what it lost neither votes nor campaigns until its log is back, so no leader lacks what it lost', () => {
  // a and c held 1..5 (4 and 5 committed by their quorum); c lost 4..5 to damage; b has 1..3.
  // With a down, an unrepaired c would help b (or itself) win with 1..3, losing 4 and 5.
  const build = (repairTo: number | undefined): Harness =>
    new Harness(['a', 'b', 'c'], (id, storage) => {
      const last = id === 'a' ? 5 : 3;
      storage.append(Array.from({ length: last }, (_, i) => ({ index: i + 1, term: 1, type: EntryType.Normal, data: text(`v${i + 1}`) })));
      storage.setHardState({ term: 1, vote: null, commit: 3 });
      if (id === 'c' && repairTo !== undefined) {
        const initial = storage.initialState.bind(storage);
        storage.initialState = () => ({ ...initial(), repairTo });
      }
    });
  const runWithoutA = (harness: Harness): void => {
    harness.blocked = new Set(['a']);
    for (let i = 0; i < 60; i++) {
      for (const id of ['b', 'c']) harness.node(id).raw.tick();
      harness.stabilize();
    }
  };

  const unprotected = build(undefined);
  runWithoutA(unprotected);
  assert.ok(['b', 'c'].some((id) => unprotected.node(id).raw.status().role === Role.Leader), 'without repair a leader lacking 4..5 is elected');

  const harness = build(5);
  const c = harness.node('c').raw;
  assert.equal(c.raft.repairing(), true);
  runWithoutA(harness);
  for (const id of ['b', 'c']) assert.notEqual(harness.node(id).raw.status().role, Role.Leader, `${id} must not lead without entries 4..5`);
  assert.ok(!harness.delivered.some((m) => m.from === 'c' && (m.type === 'vote' || m.type === 'preVote')), 'c never campaigns');
  const answers = harness.delivered.filter((m) => m.from === 'c' && (m.type === 'voteResponse' || m.type === 'preVoteResponse'));
  assert.ok(answers.length > 0 && answers.every((m) => (m as { reject: boolean }).reject), 'c refuses every vote');
  // a comes back and leads (b's vote suffices); once c holds 5 again it is an ordinary voter.
  harness.blocked = new Set();
  harness.electByTicks('a');
  assert.ok(harness.node('c').storage.lastIndex() >= 5);
  assert.equal(c.raft.repairing(), false);
  assert.equal(new TextDecoder().decode(harness.node('c').storage.entries(5, 6, Infinity)[0]!.data), 'v5');
});

test('a node whose durable term is below its last entry\'s (entries are written first) starts in that entry\'s term', () => {
  // c appended entries of term 3 and lost the hard state that would have recorded term 3.
  const harness = new Harness(['a', 'b', 'c'], (id, storage) => {
    storage.append([
      { index: 1, term: 1, type: EntryType.Normal, data: text('v1') },
      { index: 2, term: 3, type: EntryType.Normal, data: text('v2') },
    ]);
    storage.setHardState({ term: id === 'c' ? 1 : 3, vote: null, commit: 1 });
  });
  const c = harness.node('c').raw;
  assert.equal(c.status().term, 3);
  assert.equal(c.status().vote, null);
  // Its first campaign asks for term 4 with its last entry's term 3 (not term 2 with 3).
  harness.blocked = new Set(['a', 'b']);
  for (let i = 0; i < 60 && !harness.delivered.some((m) => m.from === 'c' && m.type === 'preVote'); i++) {
    c.tick();
    harness.stabilize();
  }
  const sent = harness.delivered.find((m) => m.from === 'c' && m.type === 'preVote');
  assert.ok(sent !== undefined && sent.type === 'preVote', 'c campaigned');
  assert.equal(sent.term, 4);
  assert.equal(sent.lastLogTerm, 3);
});

test('a repairing replica that knows the term of what it lost votes for a candidate holding it, never for one lacking it', () => {
  // As above: a and c held 1..5 in term 1, c lost 4..5; c recorded repairTo 5 and repairTerm 1.
  const harness = new Harness(['a', 'b', 'c'], (id, storage) => {
    const last = id === 'a' ? 5 : 3;
    storage.append(Array.from({ length: last }, (_, i) => ({ index: i + 1, term: 1, type: EntryType.Normal, data: text(`v${i + 1}`) })));
    storage.setHardState({ term: 1, vote: null, commit: 3 });
    if (id === 'c') {
      const initial = storage.initialState.bind(storage);
      storage.initialState = () => ({ ...initial(), repairTo: 5, repairTerm: 1 });
    }
  });
  const c = harness.node('c').raw;
  assert.equal(c.raft.repairing(), true);
  // With a down, b (1..3) cannot win: c refuses it.
  harness.blocked = new Set(['a']);
  for (let i = 0; i < 60; i++) {
    for (const id of ['b', 'c']) harness.node(id).raw.tick();
    harness.stabilize();
  }
  for (const id of ['b', 'c']) assert.notEqual(harness.node(id).raw.status().role, Role.Leader, `${id} must not lead without entries 4..5`);
  assert.ok(!harness.delivered.some((m) => m.from === 'c' && (m.type === 'vote' || m.type === 'preVote')), 'c never campaigns');
  // With b down instead, c's vote elects a, which holds 1..5: the cluster is available again.
  harness.blocked = new Set(['b']);
  const a = harness.node('a').raw;
  for (let i = 0; i < 60 && a.status().role !== Role.Leader; i++) {
    a.tick();
    harness.stabilize();
  }
  assert.equal(a.status().role, Role.Leader, 'a wins with the repairing c\'s vote');
  harness.stabilize();
  assert.equal(c.raft.repairing(), false, 'c holds 4..5 again');
});

test('what one Ready handles together goes out once: a follower acknowledges several appends with one response, a leader answers several acknowledgements and a proposal with one append per follower', () => {
  const harness = new Harness(['a', 'b', 'c']);
  harness.electByTicks('a');
  const leader = harness.node('a');
  const handle = (id: string): readonly Message[] => {
    const node = harness.node(id);
    assert.ok(node.raw.hasReady());
    const ready = node.raw.ready();
    if (ready.hardState !== null) node.storage.setHardState(ready.hardState);
    node.storage.append(ready.entries);
    node.applied.push(...ready.committedEntries);
    node.raw.advance(ready);
    return ready.messages;
  };
  // Two proposals in two Readies: two appends to each follower.
  const sent: Message[] = [];
  for (const value of ['p1', 'p2']) {
    assert.ok(leader.raw.propose(text(value)).ok);
    sent.push(...handle('a'));
  }
  const last = leader.raw.status().lastIndex;
  const acknowledgements: Message[] = [];
  for (const id of ['b', 'c']) {
    const appends = sent.filter((message) => message.type === 'append' && message.to === id);
    assert.equal(appends.length, 2);
    for (const message of appends) harness.node(id).raw.step(message);
    const responses = handle(id).filter((message) => message.type === 'appendResponse');
    assert.deepEqual(responses.map((message) => message.type === 'appendResponse' && [message.reject, message.index]), [[false, last]], `follower ${id}`);
    acknowledgements.push(...responses);
  }
  // Both acknowledgements commit p1 and p2; a third proposal arrives in the same Ready.
  for (const message of acknowledgements) leader.raw.step(message);
  assert.ok(leader.raw.propose(text('p3')).ok);
  const out = handle('a');
  for (const id of ['b', 'c']) {
    const appends = out.filter((message) => message.type === 'append' && message.to === id);
    assert.equal(appends.length, 1, `one append to ${id}, not ${appends.length}`);
    const append = appends[0]!;
    assert.ok(append.type === 'append');
    assert.equal(append.commit, last);
    assert.deepEqual(append.entries.map((entry) => entry.index), [last + 1]);
  }
  harness.inFlight.push(...out);
  harness.stabilize();
  for (const id of ['a', 'b', 'c']) {
    assert.deepEqual(harness.node(id).applied.filter((e) => e.type === EntryType.Normal).map((e) => new TextDecoder().decode(e.data)), ['p1', 'p2', 'p3']);
  }
});
