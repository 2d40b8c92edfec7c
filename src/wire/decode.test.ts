/**
 * Goal: the fast decoders never disagree with the generated ts-proto decoders: whenever a fast
 * path returns a message it equals the generated result, and whenever the generated decoder
 * rejects the bytes the fast path declines (returns undefined), so the slow path reports it.
 * Method: seeded random messages in canonical and non-canonical shapes (extra fields, empty
 * values, big varints), plus truncations, single-byte mutations and random bytes of each.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConsumeRequest, ConsumeResponse, ProduceBatchRequest, ProduceBatchResponse, ProduceRequest, ProduceResponse } from '../gen/log/v1/log.js';
import { Prng } from '../util/index.js';
import {
  decodeConsumeRequest,
  decodeConsumeResponseFast,
  decodeProduceBatchRequestFast,
  decodeProduceBatchResponseFast,
  decodeProduceRequestFast,
  decodeProduceResponseFast,
} from './decode.js';

function agree<T>(bytes: Buffer, fast: (b: Buffer) => T | undefined, slow: (b: Buffer) => T, what: string): void {
  let expected: T | undefined;
  let slowFailed = false;
  try {
    expected = slow(bytes);
  } catch {
    slowFailed = true;
  }
  const actual = fast(bytes);
  if (actual === undefined) return;
  assert.ok(!slowFailed, `${what}: fast path accepted bytes the generated decoder rejects: ${bytes.toString('hex')}`);
  assert.deepEqual(actual, expected, `${what}: ${bytes.toString('hex')}`);
}

function variants(prng: Prng, valid: Buffer): Buffer[] {
  const out = [valid, valid.subarray(0, prng.int(0, valid.length)), Buffer.from(prng.fill(new Uint8Array(prng.int(0, 12))))];
  if (valid.length > 0) {
    const mutated = Buffer.from(valid);
    mutated[prng.int(0, mutated.length - 1)] = prng.nextUint32() & 0xff;
    out.push(mutated);
  }
  out.push(Buffer.concat([valid, Buffer.from([prng.nextUint32() & 0xff])]));
  return out;
}

describe('fast decoders', () => {
  it('agree with ts-proto on ProduceRequest', () => {
    const prng = new Prng(7);
    let fastHits = 0;
    for (let round = 0; round < 3000; round++) {
      const length = prng.pick([0, 1, 5, 127, 128, 300, 16384, prng.int(0, 2000)]);
      const record = {
        value: Buffer.from(prng.fill(new Uint8Array(length))),
        offset: prng.chance(0.8) ? 0 : prng.int(0, 2 ** 31),
        term: prng.chance(0.9) ? 0 : prng.int(1, 1000),
        type: prng.chance(0.9) ? 0 : prng.int(1, 5),
      };
      const valid = Buffer.from(ProduceRequest.encode({ record: prng.chance(0.05) ? undefined : record }).finish());
      for (const bytes of variants(prng, valid)) {
        if (decodeProduceRequestFast(bytes) !== undefined) fastHits++;
        agree(bytes, decodeProduceRequestFast, (b) => ProduceRequest.decode(b), 'ProduceRequest');
      }
    }
    assert.ok(fastHits > 1000, `the fast path took ${fastHits} messages`);
  });

  it('agree with ts-proto on ProduceResponse', () => {
    const prng = new Prng(8);
    for (let round = 0; round < 3000; round++) {
      const offset = prng.pick([0, 1, 127, 128, 2 ** 32, 2 ** 53 - 1, prng.int(0, 2 ** 31)]);
      const valid = Buffer.from(ProduceResponse.encode({ offset }).finish());
      assert.deepEqual(decodeProduceResponseFast(valid), { offset });
      for (const bytes of variants(prng, valid)) agree(bytes, decodeProduceResponseFast, (b) => ProduceResponse.decode(b), 'ProduceResponse');
    }
    // 2^53 does not fit a JavaScript number exactly: the generated decoder rejects it, and so must the fast path.
    assert.equal(decodeProduceResponseFast(Buffer.from([0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10])), undefined);
  });

  it('agree with ts-proto on ConsumeResponse', () => {
    const prng = new Prng(9);
    let fastHits = 0;
    const randomRecord = () => ({
      value: Buffer.from(prng.fill(new Uint8Array(prng.pick([0, 1, 100, 128, prng.int(0, 1500)])))),
      offset: prng.pick([0, 1, 128, 2 ** 32, 2 ** 53 - 1, prng.int(0, 2 ** 31)]),
      term: prng.pick([0, 3, 2 ** 40]),
      type: prng.pick([0, 1, 2 ** 32 - 1]),
    });
    for (let round = 0; round < 2000; round++) {
      const message = {
        record: prng.chance(0.3) ? randomRecord() : undefined,
        records: Array.from({ length: prng.int(0, 4) }, randomRecord),
      };
      const valid = Buffer.from(ConsumeResponse.encode(message).finish());
      assert.deepEqual(decodeConsumeResponseFast(valid), message);
      for (const bytes of variants(prng, valid)) {
        if (decodeConsumeResponseFast(bytes) !== undefined) fastHits++;
        agree(bytes, decodeConsumeResponseFast, (b) => ConsumeResponse.decode(b), 'ConsumeResponse');
      }
    }
    assert.ok(fastHits > 2000, `the fast path took ${fastHits} messages`);
  });

  it('decode ConsumeRequest as ts-proto does, keeping offsets above 2^53 - 1 exact', () => {
    const prng = new Prng(10);
    for (let round = 0; round < 3000; round++) {
      const message = {
        offset: prng.pick([0, 1, 127, 128, 2 ** 32, 2 ** 53 - 1, prng.int(0, 2 ** 31)]),
        maxBatch: prng.pick([0, 1, 256, 2 ** 32 - 1]),
        stopAtEnd: prng.chance(0.5),
        linearizable: prng.chance(0.5),
      };
      const valid = Buffer.from(ConsumeRequest.encode(message).finish());
      assert.deepEqual(decodeConsumeRequest(valid), message);
      for (const bytes of variants(prng, valid)) {
        let expected: ConsumeRequest | undefined;
        try {
          expected = ConsumeRequest.decode(bytes);
        } catch {
          expected = undefined;
        }
        let actual: ReturnType<typeof decodeConsumeRequest> | undefined;
        try {
          actual = decodeConsumeRequest(bytes);
        } catch {
          actual = undefined;
        }
        // The generated decoder fails on an offset above 2^53 - 1, where this one returns a bigint.
        if (actual !== undefined && typeof actual.offset === 'bigint') continue;
        assert.deepEqual(actual, expected, bytes.toString('hex'));
      }
    }
    for (const offset of [2n ** 53n, 2n ** 64n - 1n]) {
      const bytes = Buffer.from(ConsumeRequest.encode({ offset: offset as unknown as number, maxBatch: 3, stopAtEnd: true, linearizable: true }).finish());
      assert.deepEqual(decodeConsumeRequest(bytes), { offset, maxBatch: 3, stopAtEnd: true, linearizable: true });
    }
  });
  it('agree with ts-proto on ProduceBatchRequest and ProduceBatchResponse', () => {
    const prng = new Prng(11);
    let fastHits = 0;
    for (let round = 0; round < 2000; round++) {
      const records = Array.from({ length: prng.int(0, 4) }, () => ({
        value: Buffer.from(prng.fill(new Uint8Array(prng.pick([0, 1, 127, 128, prng.int(0, 1500)])))),
        offset: prng.chance(0.9) ? 0 : prng.int(1, 100),
        term: 0,
        type: prng.chance(0.95) ? 0 : 1,
      }));
      const request = { records, producerId: prng.pick([0, 1, 2 ** 32, 2 ** 53 - 1]), firstSequence: prng.pick([0, 7, 2 ** 40]) };
      for (const bytes of variants(prng, Buffer.from(ProduceBatchRequest.encode(request).finish()))) {
        if (decodeProduceBatchRequestFast(bytes) !== undefined) fastHits++;
        agree(bytes, decodeProduceBatchRequestFast, (b) => ProduceBatchRequest.decode(b), 'ProduceBatchRequest');
      }
      const response = { firstOffset: prng.pick([0, 5, 2 ** 40]), lastOffset: prng.pick([0, 9, 2 ** 53 - 1]), count: prng.pick([0, 1, 2 ** 32 - 1]), duplicate: prng.chance(0.5) };
      const valid = Buffer.from(ProduceBatchResponse.encode(response).finish());
      assert.deepEqual(decodeProduceBatchResponseFast(valid), response);
      for (const bytes of variants(prng, valid)) agree(bytes, decodeProduceBatchResponseFast, (b) => ProduceBatchResponse.decode(b), 'ProduceBatchResponse');
    }
    assert.ok(fastHits > 1000, `the fast path took ${fastHits} messages`);
  });
});
