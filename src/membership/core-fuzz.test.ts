// Goal: well-formed but hostile messages (extreme incarnations and Lamport times, our own name,
// other members' names, bad addresses and version vectors, random serf messages, random push/pull
// states) never make the SWIM/Serf core throw or break its invariants. Method: a seeded generator
// (SEED env) feeds thousands of such messages into one node of a running 3-node in-memory cluster
// while simulated time advances; invariants are checked after every message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../util/index.js';
import { lanTimings } from './config.js';
import { buildPacket } from './framing.js';
import { type PacketMessage, type PushNodeState, WireNodeState, defaultVsn, encodePacketMessage } from './messages.js';
import { Serf } from './serf.js';
import { encodeJoinIntent, encodeLeaveIntent, encodeQueryAck, encodeSerfPushPull, encodeTags } from './serf-messages.js';

const seed = Number(process.env.SEED ?? 99);

function pick<T>(prng: Prng, items: readonly T[]): T {
  return prng.pick(items);
}

function hostileMessage(prng: Prng, names: string[]): PacketMessage {
  const node = pick(prng, [...names, 'ghost', 'x'.repeat(200)]);
  const from = pick(prng, [...names, 'ghost']);
  const incarnation = pick(prng, [0, 1, 2, 3, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff, prng.nextUint32()]);
  const addr = pick(prng, [Uint8Array.of(10, 0, 0, 1), Uint8Array.of(10, 0, 0, 2), Uint8Array.of(10, 6, 6, 6), new Uint8Array(16), new Uint8Array(0), Uint8Array.of(1, 2, 3)]);
  const vsn = pick(prng, [defaultVsn, Uint8Array.of(0, 0, 0, 0, 0, 0), Uint8Array.of(5, 1, 2, 2, 5, 5), Uint8Array.of(1, 5, 9, 2, 5, 9), new Uint8Array(0)]);
  const meta = pick(prng, [encodeTags({ rpc_addr: 'evil' }), new Uint8Array(0), prng.fill(new Uint8Array(prng.int(0, 512))), Uint8Array.of(0xff, 0xc1)]);
  const lTime = pick(prng, [0, 1, 2 ** 52, prng.nextUint32()]);
  const port = pick(prng, [0, 1, 7946, 65535]);
  switch (prng.int(0, 8)) {
    case 0:
      return { type: 'alive', node, incarnation, addr, port, meta, vsn };
    case 1:
      return { type: 'suspect', node, incarnation, from };
    case 2:
      return { type: 'dead', node, incarnation, from };
    case 3:
      return { type: 'ping', seqNo: prng.nextUint32(), node, sourceAddr: addr, sourcePort: port, sourceNode: from };
    case 4:
      return { type: 'indirect-ping', seqNo: prng.nextUint32(), target: addr, port, node, nack: prng.chance(0.5) };
    case 5:
      return { type: 'ack', seqNo: prng.int(0, 50), payload: new Uint8Array(0) };
    case 6:
      return { type: 'user', payload: encodeJoinIntent({ lTime, node }) };
    case 7:
      return { type: 'user', payload: encodeLeaveIntent({ lTime, node, prune: prng.chance(0.5) }) };
    default:
      return { type: 'user', payload: encodeQueryAck({ lTime, id: prng.nextUint32(), from }) };
  }
}

function hostilePushPull(prng: Prng, names: string[]): { join: boolean; nodes: PushNodeState[]; userState: Uint8Array } {
  const nodes: PushNodeState[] = names.map((name) => ({
    name,
    addr: Uint8Array.of(10, 0, 0, prng.int(1, 4)),
    port: 7946,
    meta: new Uint8Array(0),
    incarnation: pick(prng, [0, 1, 0xffff_ffff]),
    state: pick(prng, [WireNodeState.alive, WireNodeState.suspect, WireNodeState.dead, WireNodeState.left]),
    vsn: defaultVsn,
  }));
  const statusLTimes = new Map(names.map((name) => [name, pick(prng, [0, 5, 2 ** 52])] as [string, number]));
  const userState = encodeSerfPushPull({ lTime: pick(prng, [0, 2 ** 52]), statusLTimes, leftMembers: names.filter(() => prng.chance(0.3)), eventLTime: 2 ** 52, queryLTime: 0 });
  return { join: prng.chance(0.5), nodes, userState };
}

test(`the core survives hostile well-formed messages with its invariants intact (seed=${seed})`, () => {
  const prng = new Prng(seed);
  const nodes = ['n0', 'n1', 'n2'].map(
    (name, i) => new Serf({ name, advertise: { host: `10.0.0.${i + 1}`, port: 7946 }, addr: Uint8Array.of(10, 0, 0, i + 1), tags: {}, timings: lanTimings, prng: new Prng(seed + i), nowMs: 0, packetOverheadBytes: 0 }),
  );
  const [target] = nodes as [Serf];
  let nowMs = 0;
  for (const node of nodes.slice(1)) {
    const refused = target.mergeRemoteState(node.localState(true), nowMs) ?? node.mergeRemoteState(target.localState(true), nowMs);
    assert.equal(refused, undefined);
  }
  const names = ['n0', 'n1', 'n2'];
  for (let i = 0; i < 5000; i++) {
    nowMs += prng.int(0, 50);
    if (prng.chance(0.05)) {
      target.mergeRemoteState(hostilePushPull(prng, names), nowMs);
    } else {
      const parts = Array.from({ length: prng.int(1, 3) }, () => encodePacketMessage(hostileMessage(prng, names)));
      target.receivePacket(buildPacket(parts), { host: '10.6.6.6', port: 666 }, nowMs);
    }
    for (const node of nodes) {
      if (node.nextDeadlineMs() <= nowMs) node.tick(nowMs);
      node.drainOutbox();
      node.drainEvents();
    }
    const self = target.swim.self();
    assert.ok(Number.isSafeInteger(self.incarnation) && self.incarnation <= 0xffff_ffff, `incarnation ${self.incarnation} at step ${i}`);
    assert.equal(self.status, 'alive', `we never consider ourselves anything but alive (step ${i})`);
    assert.ok(target.swim.awarenessScore() >= 0 && target.swim.awarenessScore() < lanTimings.awarenessMaxMultiplier);
  }
  assert.ok([...target.counters.keys()].some((key) => key.startsWith('drop:')));
});
