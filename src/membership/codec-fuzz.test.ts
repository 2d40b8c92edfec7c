// Goal: no input makes the decoders throw or allocate without bound; bad packets are dropped with a
// reason (which the node counts). Method: a seeded generator (SEED env to reproduce) feeds random
// bytes, truncations and byte flips of valid captured packets, hostile length prefixes, and
// well-formed msgpack with wrong field types into every decoder entry point.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../util/index.js';
import { addCrc, buildPacket, encodePushPull, parseEncryptedFrame, parseStream, unwrapPacket } from './framing.js';
import { encodePacketMessage, typed } from './messages.js';
import { encodeMsgpack } from './msgpack.js';
import { decodeSerfMessage, decodeSerfPushPull, decodeTags, encodeJoinIntent, encodeSerfPushPull, encodeTags } from './serf-messages.js';

const seed = Number(process.env.SEED ?? 20261126);
const iterations = 4000;

function samples(): Uint8Array[] {
  const alive = encodePacketMessage({ type: 'alive', incarnation: 3, node: 'n1', addr: Uint8Array.of(127, 0, 0, 1), port: 7946, meta: encodeTags({ rpc_addr: '127.0.0.1:8400' }), vsn: Uint8Array.of(1, 5, 2, 2, 5, 5) });
  const ping = encodePacketMessage({ type: 'ping', seqNo: 9, node: 'n2', sourceAddr: Uint8Array.of(127, 0, 0, 1), sourcePort: 7000, sourceNode: 'n1' });
  const user = encodePacketMessage({ type: 'user', payload: encodeJoinIntent({ lTime: 4, node: 'n1' }) });
  const pushPull = encodePushPull({ join: true, nodes: [{ name: 'n1', addr: Uint8Array.of(127, 0, 0, 1), port: 1, meta: new Uint8Array(0), incarnation: 1, state: 0, vsn: Uint8Array.of(1, 5, 2, 2, 5, 5) }], userState: encodeSerfPushPull({ lTime: 1, statusLTimes: new Map([['n1', 1]]), leftMembers: [], eventLTime: 1, queryLTime: 1 }) });
  return [alive, ping, user, addCrc(buildPacket([alive, ping, user])), pushPull];
}

function hostile(prng: Prng): Uint8Array {
  switch (prng.int(0, 5)) {
    case 0: // msgpack with every field of the wrong type
      return typed(prng.pick([0, 1, 2, 3, 4, 5, 11]), { Node: 7, SeqNo: 'x', Incarnation: -1, Addr: true, Meta: [1, 2], Vsn: Uint8Array.of(1, 2), Port: 1e6 });
    case 1: // a str32 / array32 / map32 claiming 4 GiB
      return Uint8Array.of(prng.pick([2, 4, 6]), prng.pick([0xdb, 0xdd, 0xdf, 0xc6]), 0xff, 0xff, 0xff, 0xff, 1, 2);
    case 2: // compound declaring more parts than bytes
      return Uint8Array.of(7, 255, 0xff, 0xff, 4, 0x80);
    case 3: // deep nesting
      return Uint8Array.from([4, ...new Array<number>(5000).fill(0x91), 0xc0]);
    case 4: // push/pull header claiming huge counts
      return typed(6, { Join: true, Nodes: 0xffff_ffff, UserStateLen: 0xffff_ffff });
    default: // ext types, reserved byte
      return Uint8Array.of(prng.pick([0, 3, 5]), prng.pick([0xc1, 0xd4, 0xc7, 0xd8]), 0, 0, 0);
  }
}

function mutate(prng: Prng, base: Uint8Array): Uint8Array {
  const choice = prng.int(0, 3);
  if (choice === 0) return base.subarray(0, prng.int(0, base.length));
  if (choice === 1) {
    const copy = base.slice();
    for (let i = prng.int(1, 4); i > 0; i--) copy[prng.int(0, copy.length - 1)] = prng.nextUint32() & 0xff;
    return copy;
  }
  if (choice === 2) return prng.fill(new Uint8Array(prng.int(0, 300)));
  return hostile(prng);
}

function everyDecoder(input: Uint8Array): void {
  const packet = unwrapPacket(input);
  assert.ok(packet.messages.length + packet.drops.length >= 0);
  parseStream(input);
  parseEncryptedFrame(input);
  decodeSerfMessage(input);
  decodeSerfPushPull(input);
  decodeTags(input);
}

test(`decoders never throw on random, truncated, mutated or hostile input (seed=${seed})`, () => {
  const prng = new Prng(seed);
  const bases = samples();
  let dropped = 0;
  for (let i = 0; i < iterations; i++) {
    const input = mutate(prng, prng.pick(bases));
    assert.doesNotThrow(() => everyDecoder(input), `seed=${seed} iteration=${i} input=${Buffer.from(input).toString('hex')}`);
    if (unwrapPacket(input).drops.length > 0) dropped++;
  }
  assert.ok(dropped > iterations / 4, `only ${dropped} of ${iterations} inputs were dropped`);
});

test('hostile inputs are dropped with a reason, not decoded', () => {
  const prng = new Prng(seed);
  for (let i = 0; i < 200; i++) {
    const input = hostile(prng);
    const result = unwrapPacket(input);
    assert.equal(result.messages.length, 0, Buffer.from(input).toString('hex'));
    assert.ok(result.drops.length > 0);
    const stream = parseStream(input);
    if (stream.status === 'ok') assert.fail(`stream accepted ${Buffer.from(input).toString('hex')}`);
  }
  // A truncated stream claiming huge lengths waits for more bytes rather than allocating them.
  assert.equal(parseStream(typed(6, { Join: true, Nodes: 0, UserStateLen: 20 * 1024 * 1024 })).status, 'need-more');
  assert.equal(parseStream(typed(6, { Join: true, Nodes: 0, UserStateLen: 0xffff_ffff })).status, 'invalid');
  assert.equal(unwrapPacket(encodeMsgpack('x')).drops.length, 1);
});

test('truncated compounds keep the parts that arrived whole', () => {
  const [alive, ping] = samples() as [Uint8Array, Uint8Array];
  const compound = buildPacket([alive, ping]);
  const result = unwrapPacket(compound.subarray(0, compound.length - 1));
  assert.deepEqual(result.messages.map((m) => m.type), ['alive']);
  assert.deepEqual(result.drops, ['truncated compound part']);
});
