// Goal: our memberlist/serf codec reads what real serf 0.9.4 agents send and writes byte-identical
// messages. Method: packets captured between two real serf 0.9.4 agents (kept below as hex) are
// decoded through every layer (crc, LZW, compound, push/pull, serf state) and our encoder's output
// is compared byte for byte with the captured form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from './crc32.js';
import { addCrc, buildPacket, encodePushPull, parseStream, unwrapPacket } from './framing.js';
import { lzwDecompress } from './lzw.js';
import { decodePacketMessage, encodePacketMessage, type Alive } from './messages.js';
import { decodeMsgpack, encodeMsgpack } from './msgpack.js';
import { decodeSerfMessage, decodeSerfPushPull, decodeTags, encodeLeaveIntent, encodeSerfPushPull, encodeTags } from './serf-messages.js';

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s/g, ''), 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

const gossipAlive =
  '0c09b8454a0702004a00440486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461b1ff82a26463a36f6e65a4726f6c65a26462a44e6f6465a161a4506f7274cd1f0aa356736ea60105020205050486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461abff81a4726f6c65a3776562a44e6f6465a162a4506f7274cd1f0ba356736ea6010502020505';
const gossipCompressed =
  '0cb4b872400982a4416c676f00a3427566da0097000f0c00a0040011001108182215840c1939a4fe0000106055123763c2c87113864e9a376e02906a52864e9858ff048922336614c832a4e4bc615366a518524ede9029132a0c29286fe4d069f641c1282b73dc980a504080800205143274085122458b183572f40852244993abfe058a39b3cca83b656ee6dc19ea2650a144171c4dbab4e9d3020802082ac5844a9a366544aee5292620';
const pushPullRequest =
  '0982a4416c676f00a3427566da00ce000d0c22a5e44d1a37c34a397943a6cc9c00acaacc2923670a9d3074ca3029e3a69980248748052143460ea93f0000045895c4cd983072dc604cf3c64d00524dca5c5cf52f1029396fd8941975a78c18524ec2b42913ea28943772e834fbb0a094458c65008cb232c78da9000504082810d690aa227638d2614225cdd200a6d0aa9dc34d00006078f3eaddcbb7afdfbf80030b1e4cb8b0e1c388132b5eccb8b1e3c790234b9e4cb9b2e1526cdd9659b9d10c9d9c6dc4509c034955943a14f3647ecbea2a9d3a73563b0cd4144040';

test('alive gossip datagram: crc + compound of two alives, re-encoded byte for byte', () => {
  const packet = hex(gossipAlive);
  assert.equal(crc32(packet.subarray(5)), 0x09b8454a);
  const { messages, drops } = unwrapPacket(packet);
  assert.deepEqual(drops, []);
  assert.equal(messages.length, 2);
  const a = messages[0] as Alive;
  assert.equal(a.type, 'alive');
  assert.equal(a.node, 'a');
  assert.equal(a.port, 7946);
  assert.equal(a.incarnation, 1);
  assert.deepEqual([...a.addr], [127, 0, 0, 1]);
  assert.deepEqual([...a.vsn], [1, 5, 2, 2, 5, 5]);
  assert.deepEqual(decodeTags(a.meta), { ok: true, value: { dc: 'one', role: 'db' } });
  assert.deepEqual(encodeTags({ role: 'db', dc: 'one' }), a.meta);
  const parts = messages.map((m) => encodePacketMessage(m));
  assert.equal(toHex(addCrc(buildPacket(parts))), gossipAlive);
});

test('compressed gossip datagram carries alive, alive and a serf join intent', () => {
  const { messages, drops } = unwrapPacket(hex(gossipCompressed));
  assert.deepEqual(drops, []);
  assert.deepEqual(messages.map((m) => m.type), ['alive', 'alive', 'user']);
  const user = messages[2];
  assert.ok(user?.type === 'user');
  assert.deepEqual(decodeSerfMessage(user.payload), { ok: true, value: { type: 'join', lTime: 1, node: 'b' } });
});

test('push/pull join request: LZW stream decodes to header, one node, serf state', () => {
  const parsed = parseStream(hex(pushPullRequest));
  assert.equal(parsed.status, 'ok');
  assert.ok(parsed.status === 'ok' && parsed.message.type === 'push-pull');
  const message = parsed.message;
  assert.equal(parsed.end, hex(pushPullRequest).length);
  assert.equal(message.join, true);
  assert.equal(message.nodes.length, 1);
  assert.equal(message.nodes[0]?.name, 'b');
  assert.equal(message.nodes[0]?.state, 0);
  assert.equal(message.userState.length, 585);
  const serf = decodeSerfPushPull(message.userState);
  assert.ok(serf.ok);
  assert.equal(serf.value.lTime, 1);
  assert.deepEqual([...serf.value.statusLTimes], [['b', 0]]);
  assert.deepEqual(serf.value.leftMembers, []);
  // Our encoder produces the same serf state and the same uncompressed stream, byte for byte.
  assert.deepEqual(encodeSerfPushPull(serf.value), message.userState);
  const plain = lzwDecompress(hex(pushPullRequest).subarray(15), 1 << 20);
  assert.equal(plain.length, 690);
  assert.deepEqual(encodePushPull(message), plain);
});

test('a push/pull stream is reported incomplete until its last byte arrives', () => {
  const plain = encodePushPull({ join: false, nodes: [], userState: encodeSerfPushPull({ lTime: 3, statusLTimes: new Map([['x', 2]]), leftMembers: ['y'], eventLTime: 1, queryLTime: 1 }) });
  for (const cut of [1, 5, 20, plain.length - 1]) assert.equal(parseStream(plain.subarray(0, cut)).status, 'need-more', `cut at ${cut}`);
  assert.equal(parseStream(plain).status, 'ok');
});

test('captured probe messages decode and re-encode identically', () => {
  const vectors = [
    '0085a44e6f6465a162a55365714e6f01aa536f7572636541646472a47f000001aa536f757263654e6f6465a161aa536f75726365506f7274cd1f0a',
    '0188a44e61636bc3a44e6f6465a163a4506f7274cd1f0ca55365714e6f1daa536f7572636541646472a47f000001aa536f757263654e6f6465a161aa536f75726365506f7274cd1f0aa6546172676574a47f000001',
    '0b81a55365714e6f1d',
    '0383a446726f6da161ab496e6361726e6174696f6e02a44e6f6465a163',
    '0583a446726f6da162ab496e6361726e6174696f6e01a44e6f6465a162',
  ];
  for (const vector of vectors) {
    const decoded = decodePacketMessage(hex(vector));
    assert.ok(decoded.ok, vector);
    assert.equal(toHex(encodePacketMessage(decoded.value)), vector);
  }
  const ping = decodePacketMessage(hex(vectors[0] as string));
  assert.deepEqual(ping.ok && ping.value, { type: 'ping', seqNo: 1, node: 'b', sourceAddr: Uint8Array.of(127, 0, 0, 1), sourceNode: 'a', sourcePort: 7946 });
});

test('ack with a coordinate payload keeps the payload as raw bytes', () => {
  const vector = '0282a75061796c6f6164da00820184aa41646a7573746d656e74cb3eee6d801576fb2da54572726f72cb3ff6f10366e8624aa6486569676874cb3ee4f8b588e368f1a356656398cbbef3d52251791ecacbbf068bcb25322b1ccb3ef2fbab885a971bcbbf0373db4a827773cbbf051aa3ec144a3ccb3eb5bff12ae65044cb3ee0731a9c4af67ecbbf02c01cedcd5316a55365714e6f01';
  const decoded = decodePacketMessage(hex(vector));
  assert.ok(decoded.ok && decoded.value.type === 'ack');
  assert.equal(decoded.value.seqNo, 1);
  assert.equal(decoded.value.payload.length, 130);
  assert.equal(decoded.value.payload[0], 1);
});

test('serf intents, user events and queries decode; the leave intent re-encodes identically', () => {
  const leave = hex('080083a54c54696d6503a44e6f6465a162a55072756e65c2');
  assert.deepEqual(decodeSerfMessage(leave.subarray(1)), { ok: true, value: { type: 'leave', lTime: 3, node: 'b', prune: false } });
  assert.deepEqual(encodeLeaveIntent({ lTime: 3, node: 'b', prune: false }), leave.subarray(1));
  const event = decodeSerfMessage(hex('0384a24343c3a54c54696d6501a44e616d65a66465706c6f79a75061796c6f6164a568656c6c6f'));
  assert.deepEqual(event, { ok: true, value: { type: 'user-event', lTime: 1, name: 'deploy', payload: text('hello'), coalesce: true } });
  const query = decodeSerfMessage(
    hex('048ba441646472a47f000001a746696c74657273c0a5466c61677301a24944ce3e53f455a54c54696d6501a44e616d65a470696e67a75061796c6f6164ab70696e677061796c6f6164a4506f7274cd1f0aab52656c6179466163746f7200aa536f757263654e6f6465a161a754696d656f7574ce77359400'),
  );
  assert.ok(query.ok && query.value.type === 'query');
  assert.equal(query.value.id, 1045689429);
  assert.equal(query.value.flags, 1);
  assert.equal(query.value.port, 7946);
});

test('msgpack encoder follows the Go dialect: raw str family only, sorted keys, smallest ints', () => {
  assert.equal(toHex(encodeMsgpack('x'.repeat(40))).slice(0, 6), 'da0028'); // str16, never str8
  assert.equal(toHex(encodeMsgpack(Uint8Array.of(1, 2))), 'a20102'); // bytes as raw, never bin
  assert.equal(toHex(encodeMsgpack({ b: 1, B: 2, a: undefined })), '82a142' + '02' + 'a162' + '01');
  assert.equal(toHex(encodeMsgpack(300)), 'cd012c');
  assert.equal(toHex(encodeMsgpack(-1)), 'ff');
  assert.equal(toHex(encodeMsgpack(2 ** 40)), 'cf0000010000000000');
  assert.equal(toHex(encodeMsgpack(0.5)), 'cb3fe0000000000000');
  const round = decodeMsgpack(encodeMsgpack([1n << 60n, -5, null, true, new Map([['k', 'v']])]));
  assert.deepEqual(round.value, [1n << 60n, -5, null, true, new Map([['k', text('v')]])]);
});
