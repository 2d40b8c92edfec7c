/**
 * Goal: every Raft message type survives the wire unchanged; the hand-written codecs write and
 * read exactly what the generated ts-proto codecs do; and the gateway lets through only messages
 * that keep the core's invariants, naming the rule for each one it drops, without ever throwing.
 * Method: one sample of every type, round-tripped and compared byte for byte with ts-proto; a
 * table of hostile messages, each sent next to a valid one that must still pass; seeded fuzzing
 * with random bytes and with mutations (byte flips, truncations, insertions, splices) of random
 * valid batches, checking each accepted message against an independent statement of the rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ForwardRequest, Message as WireMessageCodec, MessageBatch } from '../gen/annal/raft/v1/raft.js';
import type { Message as WireMessage } from '../gen/annal/raft/v1/raft.js';
import { encodeConfig, EntryType, type Message } from '../raft/index.js';
import { Prng } from '../util/index.js';
import {
  decodeBatch,
  DEFAULT_PEER_LIMITS,
  estimateMessageBytes,
  InvalidReason,
  messageFromWire,
  messageToWire,
  NODE_ID_LENGTH_MAX,
  SnapshotSizes,
  type GatewayContext,
  type PeerLimits,
} from './peer-codec.js';
import { comparable, randomMessage, sampleMessages } from './peer-test-fixtures.js';
import { decodeForwardRequest, decodeMessageBatch, DecodeFailure, encodeForwardRequest, encodeMessageBatch } from './peer-wire.js';

const SELF = 'n1';
const PEER = 'n2';
const CONTEXT: GatewayContext = { selfId: SELF, from: PEER, limits: DEFAULT_PEER_LIMITS };

function generatedBytes(messages: readonly Message[]): Buffer {
  return Buffer.from(MessageBatch.encode({ messages: messages.map(messageToWire) }).finish());
}

function decodeValid(bytes: Uint8Array, context: GatewayContext = CONTEXT): Message[] {
  const result = decodeBatch(bytes, context);
  assert.ok(result.ok, `batch rejected: ${result.ok ? '' : result.detail}`);
  assert.deepEqual(result.rejected, []);
  return result.messages;
}

describe('peer codec: round trips', () => {
  it('carries every message type unchanged, in the bytes ts-proto writes', () => {
    const messages = sampleMessages(PEER, SELF);
    const types = new Set(messages.map((message) => message.type));
    assert.equal(types.size, 11, 'the samples cover every Message type');
    for (const message of messages) {
      const bytes = encodeMessageBatch([message]);
      assert.deepEqual(bytes, generatedBytes([message]), `${message.type}: same bytes as ts-proto`);
      assert.deepEqual(comparable(decodeValid(bytes)), comparable([message]), `${message.type}: round trip`);
      assert.ok(estimateMessageBytes(message) >= bytes.length, `${message.type}: the estimate bounds the encoding`);
    }
    const all = encodeMessageBatch(messages);
    assert.deepEqual(all, generatedBytes(messages));
    assert.deepEqual(comparable(decodeValid(all)), comparable(messages));
  });

  it('decodes what ts-proto decodes, entry data as views into the received buffer', () => {
    const messages = sampleMessages(PEER, SELF);
    const bytes = encodeMessageBatch(messages);
    const ours = decodeMessageBatch(bytes);
    assert.ok(!(ours instanceof DecodeFailure));
    assert.deepEqual(ours, MessageBatch.decode(bytes));
    const append = decodeValid(bytes).find((message) => message.type === 'append' && message.entries.length > 0);
    assert.ok(append !== undefined && append.type === 'append');
    assert.equal(append.entries[0]!.data.buffer, bytes.buffer, 'no copy of entry payloads');
  });

  it('keeps a null heartbeat context apart from an empty one', () => {
    const [nullContext, emptyContext] = [null, ''].map((context) => decodeValid(encodeMessageBatch([{ type: 'heartbeat', from: PEER, to: SELF, term: 1, commit: 0, context }]))[0]);
    assert.equal(nullContext?.type === 'heartbeat' && nullContext.context, null);
    assert.equal(emptyContext?.type === 'heartbeat' && emptyContext.context, '');
  });

  it('encodes and decodes ForwardRequest (plain and an idempotent producer\'s) as ts-proto does, values as views', () => {
    const prng = new Prng(7);
    for (let round = 0; round < 200; round++) {
      const values = Array.from({ length: prng.int(0, 5) }, () => Buffer.from(prng.fill(new Uint8Array(prng.int(0, 300)))));
      const sequenced = prng.chance(0.5);
      const request = {
        values,
        subject: prng.chance(0.3) ? '' : `client-${prng.int(0, 99)}-é`,
        producerId: sequenced ? prng.int(1, 2 ** 21) * 2 ** 32 + prng.int(0, 2 ** 31) : 0,
        firstSequence: sequenced && prng.chance(0.8) ? prng.int(0, 2 ** 31) * 2 ** 10 : 0,
      };
      const bytes = encodeForwardRequest(request);
      assert.deepEqual(bytes, Buffer.from(ForwardRequest.encode(request).finish()));
      const decoded = decodeForwardRequest(bytes);
      assert.deepEqual(decoded, ForwardRequest.decode(bytes));
      if (!(decoded instanceof DecodeFailure) && decoded.values.length > 0) assert.equal(decoded.values[0]!.buffer, bytes.buffer);
    }
    assert.ok(decodeForwardRequest(Buffer.from([0x0a, 0x05, 0x01])) instanceof DecodeFailure);
  });
});

// ---- hostile messages ----

const base = { from: PEER, to: SELF, term: 7 };
const validHeartbeat: Message = { type: 'heartbeat', ...base, commit: 1, context: null };
const normal = (index: number, term: number, data = 'x') => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(data) });
const config = (text: string) => ({ index: 11, term: 7, type: EntryType.Config, data: new TextEncoder().encode(text) });
const append = (entries: { index: number; term: number; type: number; data: Uint8Array }[], extra: object = {}) =>
  ({ type: 'append', ...base, prevLogIndex: 10, prevLogTerm: 5, commit: 3, entries, ...extra }) as Message;
const snapshot = (extra: object) =>
  ({
    type: 'snapshot',
    ...base,
    meta: { index: 100, term: 6, config: { voters: [PEER], learners: [] } },
    offsetBytes: 0,
    totalBytes: 16,
    data: new Uint8Array(16),
    ...extra,
  }) as Message;
const tight: PeerLimits = { maxSnapshotBytes: 1000, maxEntriesPerMessage: 3, maxMessageBytes: 100 };

/** [name, message (encoded with the hand-written encoder, which writes any number), expected reason, limits]. */
const HOSTILE: [string, Message, InvalidReason, PeerLimits?][] = [
  ['empty from', { ...validHeartbeat, from: '' }, InvalidReason.BadId],
  ['over-long from', { ...validHeartbeat, from: 'x'.repeat(NODE_ID_LENGTH_MAX + 1) }, InvalidReason.BadId],
  ['empty to', { ...validHeartbeat, to: '' }, InvalidReason.BadId],
  ['to another node', { ...validHeartbeat, to: 'n3' }, InvalidReason.WrongTo],
  ['forged from', { ...validHeartbeat, from: 'n3' }, InvalidReason.WrongFrom],
  ['term 2^53', { ...validHeartbeat, term: 2 ** 53 }, InvalidReason.BadInteger],
  ['term 2^63', { ...validHeartbeat, term: 2 ** 63 }, InvalidReason.BadInteger],
  ['heartbeat commit above 2^53 - 1', { ...validHeartbeat, commit: 2 ** 53 + 2 }, InvalidReason.BadInteger],
  ['over-long context', { ...validHeartbeat, context: 'c'.repeat(5000) }, InvalidReason.BadContext],
  ['over-long response context', { type: 'heartbeatResponse', ...base, context: 'c'.repeat(5000) }, InvalidReason.BadContext],
  ['vote lastLogTerm above term', { type: 'vote', ...base, lastLogIndex: 5, lastLogTerm: 8, transfer: false }, InvalidReason.BadTerm],
  ['preVote lastLogIndex 2^60', { type: 'preVote', ...base, lastLogIndex: 2 ** 60, lastLogTerm: 1, transfer: false }, InvalidReason.BadInteger],
  ['appendResponse hint term above term', { type: 'appendResponse', ...base, reject: true, index: 4, rejectHintIndex: 3, rejectHintTerm: 9 }, InvalidReason.BadTerm],
  ['appendResponse index 2^53', { type: 'appendResponse', ...base, reject: false, index: 2 ** 53, rejectHintIndex: 0, rejectHintTerm: 0 }, InvalidReason.BadInteger],
  ['snapshotResponse offset 2^54', { type: 'snapshotResponse', ...base, snapshotIndex: 3, nextOffsetBytes: 2 ** 54 }, InvalidReason.BadInteger],
  ['append prevLogTerm above term', append([], { prevLogTerm: 8 }), InvalidReason.BadTerm],
  ['append prevLogIndex 2^53', append([], { prevLogIndex: 2 ** 53 }), InvalidReason.BadInteger],
  ['append entries past 2^53 - 1', append([normal(2 ** 53 - 1, 7), normal(2 ** 53, 7)], { prevLogIndex: 2 ** 53 - 2 }), InvalidReason.BadInteger],
  ['append commit 2^53', append([], { commit: 2 ** 53 }), InvalidReason.BadInteger],
  ['first entry index off by one', append([normal(12, 6)]), InvalidReason.EntryIndex],
  ['a gap between entries', append([normal(11, 6), normal(13, 6)]), InvalidReason.EntryIndex],
  ['a repeated entry index', append([normal(11, 6), normal(11, 6)]), InvalidReason.EntryIndex],
  ['entry index 2^53', append([normal(2 ** 53, 6)]), InvalidReason.EntryIndex],
  ['entry terms decrease', append([normal(11, 7), normal(12, 6)]), InvalidReason.BadTerm],
  ['entry term below prevLogTerm', append([normal(11, 4)]), InvalidReason.BadTerm],
  ['entry term above the message term', append([normal(11, 8)]), InvalidReason.BadTerm],
  ['entry term 0', append([normal(1, 0)], { prevLogIndex: 0, prevLogTerm: 0 }), InvalidReason.BadTerm],
  ['entry term 2^53', append([normal(11, 2 ** 53)], { term: 2 ** 53 }), InvalidReason.BadInteger],
  ['entry type 5', append([{ ...normal(11, 6), type: 5 }]), InvalidReason.EntryType],
  ['entry type 2^31', append([{ ...normal(11, 6), type: 2 ** 31 }]), InvalidReason.EntryType],
  ['config entry that is not JSON', append([config('{voters')]), InvalidReason.BadConfig],
  ['config entry that is a number', append([config('5')]), InvalidReason.BadConfig],
  ['config entry that is null', append([config('null')]), InvalidReason.BadConfig],
  ['config entry without voters', append([config('{"voters":[],"learners":["n2"]}')]), InvalidReason.BadConfig],
  ['config entry with a numeric voter', append([config('{"voters":[1],"learners":[]}')]), InvalidReason.BadConfig],
  ['config entry naming a member twice', append([config('{"voters":["n1"],"learners":["n1"]}')]), InvalidReason.BadConfig],
  ['config entry with an empty id', append([config('{"voters":[""],"learners":[]}')]), InvalidReason.BadConfig],
  ['config entry that is not UTF-8', append([{ ...config(''), data: new Uint8Array([0xff, 0xfe, 0x7b]) }]), InvalidReason.BadConfig],
  ['too many entries', append([normal(11, 6), normal(12, 6), normal(13, 6), normal(14, 6)]), InvalidReason.TooManyEntries, tight],
  ['too many entry bytes', append([normal(11, 6, 'y'.repeat(60)), normal(12, 6, 'y'.repeat(60))]), InvalidReason.TooLarge, tight],
  ['snapshot at index 0', snapshot({ meta: { index: 0, term: 0, config: { voters: [PEER], learners: [] } } }), InvalidReason.BadSnapshot],
  ['snapshot term above the message term', snapshot({ meta: { index: 5, term: 8, config: { voters: [PEER], learners: [] } } }), InvalidReason.BadTerm],
  ['snapshot index 2^53', snapshot({ meta: { index: 2 ** 53, term: 1, config: { voters: [PEER], learners: [] } } }), InvalidReason.BadInteger],
  ['snapshot without voters', snapshot({ meta: { index: 5, term: 1, config: { voters: [], learners: [PEER] } } }), InvalidReason.BadConfig],
  ['snapshot with an empty voter id', snapshot({ meta: { index: 5, term: 1, config: { voters: [''], learners: [] } } }), InvalidReason.BadConfig],
  ['snapshot larger than maxSnapshotBytes', snapshot({ totalBytes: DEFAULT_PEER_LIMITS.maxSnapshotBytes + 1 }), InvalidReason.SnapshotTooLarge],
  ['snapshot of 2^53 bytes', snapshot({ totalBytes: 2 ** 53 }), InvalidReason.BadInteger],
  ['chunk past the total', snapshot({ offsetBytes: 8, totalBytes: 16 }), InvalidReason.SnapshotRange],
  ['chunk data past the total', snapshot({ totalBytes: 15 }), InvalidReason.SnapshotRange],
  ['chunk larger than maxMessageBytes', snapshot({ data: new Uint8Array(101), totalBytes: 200 }), InvalidReason.TooLarge, tight],
];

describe('peer codec: the gateway', () => {
  for (const [name, message, reason, limits] of HOSTILE) {
    it(`drops ${name} (${reason}) and keeps the valid message next to it`, () => {
      const context = { ...CONTEXT, limits: limits ?? DEFAULT_PEER_LIMITS };
      const result = decodeBatch(encodeMessageBatch([validHeartbeat, message, validHeartbeat]), context);
      assert.ok(result.ok);
      assert.deepEqual(
        result.rejected.map((rejection) => rejection.reason),
        [reason],
        `detail: ${result.rejected.map((rejection) => rejection.detail).join('; ')}`,
      );
      assert.ok(result.rejected[0]!.detail.length > 0);
      assert.deepEqual(comparable(result.messages), comparable([validHeartbeat, validHeartbeat]));
    });
  }

  it('drops messages without a body and snapshot chunks without meta', () => {
    const noBody = Buffer.from(MessageBatch.encode({ messages: [{ from: PEER, to: SELF, term: 1, body: undefined }] }).finish());
    const noMeta: WireMessage = { from: PEER, to: SELF, term: 1, body: { $case: 'snapshot', value: { meta: undefined, offsetBytes: 0, totalBytes: 1, data: Buffer.alloc(1) } } };
    for (const bytes of [noBody, Buffer.from(MessageBatch.encode({ messages: [noMeta] }).finish())]) {
      const result = decodeBatch(bytes, CONTEXT);
      assert.ok(result.ok);
      assert.deepEqual(result.rejected.map((rejection) => rejection.reason), [InvalidReason.MissingField]);
    }
  });

  it('drops numbers that never come off the wire: negative, fractional, NaN', () => {
    for (const term of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const wire = { ...messageToWire(validHeartbeat), term };
      const result = messageFromWire(wire, CONTEXT);
      assert.ok(!result.ok && result.reason === InvalidReason.BadInteger, `term ${term}`);
    }
  });

  it('reports malformed batches as one failure', () => {
    const valid = encodeMessageBatch([validHeartbeat]);
    const cases: [string, Buffer][] = [
      ['truncated', valid.subarray(0, valid.length - 1)],
      ['length past the end', Buffer.from([0x0a, 0x7f, 0x00])],
      ['an 11-byte varint', Buffer.from([0x08, ...new Array(10).fill(0xff), 0x01])],
      ['a group', Buffer.from([0x0b, 0x0c])],
      ['field number 0', Buffer.from([0x02, 0x00])],
      ['an id that is not UTF-8', encodeMessageBatch([{ ...validHeartbeat, from: 'n\u00e9' }]).map((byte) => (byte === 0xc3 ? 0xff : byte)) as Buffer],
    ];
    for (const [name, bytes] of cases) {
      const result = decodeBatch(bytes, CONTEXT);
      assert.ok(!result.ok, name);
      assert.equal(result.reason, InvalidReason.Malformed, name);
    }
    assert.deepEqual(decodeValid(Buffer.alloc(0)), [], 'an empty batch is valid');
  });

  it('skips unknown fields, as protobuf requires', () => {
    const unknown = Buffer.from([0x78, 0x05, 0x15, 1, 2, 3, 4, 0x19, 1, 2, 3, 4, 5, 6, 7, 8]);
    const bytes = Buffer.concat([encodeMessageBatch([validHeartbeat]), unknown]);
    assert.deepEqual(comparable(decodeValid(bytes)), comparable([validHeartbeat]));
  });

  it('refuses a snapshot chunk that announces another total for a snapshot already seen', () => {
    const sizes = new SnapshotSizes(2);
    const chunk = (index: number, totalBytes: number) => snapshot({ meta: { index, term: 6, config: { voters: [PEER], learners: [] } }, totalBytes, data: new Uint8Array(0) });
    assert.equal(sizes.check(chunk(100, 16)), undefined);
    assert.equal(sizes.check(chunk(100, 16)), undefined);
    assert.equal(sizes.check(chunk(100, 32))?.reason, InvalidReason.SnapshotSizeChanged);
    assert.equal(sizes.check(validHeartbeat), undefined);
    assert.equal(sizes.check(chunk(101, 8)), undefined);
    assert.equal(sizes.check(chunk(102, 8)), undefined);
    assert.equal(sizes.check(chunk(100, 32)), undefined, 'the oldest key was forgotten');
  });
});

// ---- fuzzing ----

const isUint = (value: number) => Number.isSafeInteger(value) && value >= 0;

/** The gateway's promises, stated independently of its code. */
function checkAccepted(message: Message, context: GatewayContext): void {
  assert.equal(message.to, context.selfId);
  assert.equal(message.from, context.from);
  assert.ok(isUint(message.term));
  const numbers = Object.entries(message).filter(([, value]) => typeof value === 'number');
  for (const [name, value] of numbers) assert.ok(isUint(value as number), `${message.type}.${name} = ${value}`);
  if (message.type === 'append') {
    assert.ok(message.entries.length <= context.limits.maxEntriesPerMessage);
    message.entries.forEach((entry, i) => {
      assert.equal(entry.index, message.prevLogIndex + 1 + i);
      assert.ok(isUint(entry.index) && isUint(entry.term) && entry.term >= 1 && entry.term <= message.term);
      assert.ok(entry.term >= (i === 0 ? message.prevLogTerm : message.entries[i - 1]!.term));
      assert.ok([0, 1, 2].includes(entry.type));
      if (entry.type === EntryType.Config) {
        const parsed = JSON.parse(new TextDecoder().decode(entry.data)) as { voters: unknown[]; learners: unknown[] };
        assert.ok(parsed.voters.length > 0 && [...parsed.voters, ...parsed.learners].every((id) => typeof id === 'string' && id.length > 0));
      }
    });
  }
  if (message.type === 'snapshot') {
    assert.ok(isUint(message.meta.index) && message.meta.index >= 1 && isUint(message.meta.term) && message.meta.term <= message.term);
    assert.ok(message.totalBytes <= context.limits.maxSnapshotBytes);
    assert.ok(message.offsetBytes + message.data.length <= message.totalBytes);
    assert.ok(message.meta.config.voters.length > 0);
  }
}

/** Our decoder against ts-proto's on the same bytes (ts-proto throws on uint64 above 2^53 - 1). */
function agreeWithGenerated(bytes: Buffer): void {
  const ours = decodeMessageBatch(bytes);
  let theirs: unknown;
  let theirError: Error | undefined;
  try {
    theirs = MessageBatch.decode(bytes);
  } catch (error) {
    theirError = error as Error;
  }
  if (ours instanceof DecodeFailure) return;
  if (theirError !== undefined) {
    assert.match(theirError.message, /MAX_SAFE_INTEGER/, `only unsafe integers make ts-proto alone fail: ${bytes.toString('hex')}`);
    return;
  }
  assert.deepEqual(ours, theirs, bytes.toString('hex'));
}

function mutate(prng: Prng, valid: Buffer, others: Buffer): Buffer {
  switch (prng.int(0, 4)) {
    case 0: {
      const copy = Buffer.from(valid);
      for (let flips = prng.int(1, 3); flips > 0 && copy.length > 0; flips--) copy[prng.int(0, copy.length - 1)] = prng.nextUint32() & 0xff;
      return copy;
    }
    case 1:
      return valid.subarray(0, prng.int(0, valid.length));
    case 2: {
      const at = prng.int(0, valid.length);
      return Buffer.concat([valid.subarray(0, at), Buffer.from(prng.fill(new Uint8Array(prng.int(1, 8)))), valid.subarray(at)]);
    }
    case 3: {
      const at = prng.int(0, valid.length);
      return Buffer.concat([valid.subarray(0, at), others.subarray(prng.int(0, others.length))]);
    }
    default: {
      const copy = Buffer.from(valid);
      if (copy.length > 0) copy[prng.int(0, copy.length - 1)] ^= 1 << prng.int(0, 7);
      return copy;
    }
  }
}

describe('peer codec: fuzzing', () => {
  it('never throws on random bytes, and what it accepts keeps the rules', () => {
    const prng = new Prng(20261201);
    for (let round = 0; round < 20_000; round++) {
      const bytes = Buffer.from(prng.fill(new Uint8Array(prng.int(0, 64))));
      const result = decodeBatch(bytes, CONTEXT);
      if (result.ok) for (const message of result.messages) checkAccepted(message, CONTEXT);
      agreeWithGenerated(bytes);
      decodeForwardRequest(bytes);
    }
  });

  it('round-trips random valid batches exactly, as ts-proto encodes them', () => {
    const prng = new Prng(42);
    for (let round = 0; round < 2_000; round++) {
      const messages = Array.from({ length: prng.int(0, 6) }, () => randomMessage(prng, PEER, SELF));
      const bytes = encodeMessageBatch(messages);
      assert.deepEqual(bytes, generatedBytes(messages), `seed 42 round ${round}`);
      assert.deepEqual(comparable(decodeValid(bytes)), comparable(messages), `seed 42 round ${round}`);
    }
  });

  it('never throws on mutated valid batches, and what it accepts keeps the rules', () => {
    const prng = new Prng(1234);
    const limits: PeerLimits = { maxSnapshotBytes: 2000, maxEntriesPerMessage: 5, maxMessageBytes: 150 };
    const context = { ...CONTEXT, limits };
    let accepted = 0;
    let rejected = 0;
    let malformed = 0;
    let previous = encodeMessageBatch([validHeartbeat]);
    for (let round = 0; round < 20_000; round++) {
      const messages = Array.from({ length: prng.int(1, 3) }, () => randomMessage(prng, PEER, SELF));
      const valid = encodeMessageBatch(messages);
      const bytes = mutate(prng, valid, previous);
      previous = valid;
      const result = decodeBatch(bytes, context);
      if (!result.ok) {
        malformed += 1;
      } else {
        for (const message of result.messages) checkAccepted(message, context);
        accepted += result.messages.length;
        rejected += result.rejected.length;
      }
      agreeWithGenerated(bytes);
    }
    // The mutations reach all three outcomes, so the checks above were exercised.
    assert.ok(accepted > 1000 && rejected > 1000 && malformed > 1000, `accepted ${accepted}, rejected ${rejected}, malformed ${malformed}`);
  });

  it('agrees with ts-proto on single messages with unknown and repeated fields', () => {
    const prng = new Prng(99);
    for (let round = 0; round < 2_000; round++) {
      const wire = messageToWire(randomMessage(prng, PEER, SELF));
      const inner = Buffer.from(WireMessageCodec.encode(wire).finish());
      // A message repeated (the last oneof case wins) and an unknown varint field appended.
      const doubled = Buffer.concat([inner, Buffer.from(WireMessageCodec.encode(messageToWire(randomMessage(prng, PEER, SELF))).finish()), Buffer.from([0x78, prng.int(0, 127)])]);
      const framed = Buffer.concat([Buffer.from([0x0a]), varint(doubled.length), doubled]);
      agreeWithGenerated(framed);
    }
  });
});

function varint(value: number): Buffer {
  const bytes: number[] = [];
  while (value >= 0x80) {
    bytes.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

// Keep the config encoder in the picture: a configuration entry written by the core passes.
it('accepts configuration entries the core writes', () => {
  const entry = { index: 11, term: 7, type: EntryType.Config, data: encodeConfig({ voters: [SELF, PEER], learners: ['n9'] }) };
  assert.deepEqual(decodeValid(encodeMessageBatch([append([entry])])).length, 1);
});
