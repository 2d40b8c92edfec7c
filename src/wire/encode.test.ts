/**
 * Goal: the single-buffer encoders write exactly the bytes the generated ts-proto encoders write.
 * Method: seeded random messages (Prng) with edge values for every varint width (0, 127, 128,
 * 2^31, 2^32, 2^53-1) and value lengths around varint boundaries; compare bytes, then decode with
 * the generated decoder and compare messages.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConsumeResponse, ProduceBatchRequest, ProduceBatchResponse, ProduceRequest, ProduceResponse, type Record as WireRecord } from '../gen/log/v1/log.js';
import { Prng } from '../util/index.js';
import { encodeConsumeResponse, encodeProduceBatchRequest, encodeProduceBatchResponse, encodeProduceRequest, encodeProduceResponse } from './encode.js';

const EDGE_NUMBERS = [0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
const EDGE_LENGTHS = [0, 1, 127, 128, 300, 16383, 16384, 70_000];

function randomRecord(prng: Prng): WireRecord {
  const pickNumber = (max: number): number => {
    const candidates = EDGE_NUMBERS.filter((n) => n <= max);
    return prng.chance(0.5) ? prng.pick(candidates) : prng.int(0, Math.min(max, 2 ** 31));
  };
  const length = prng.chance(0.3) ? prng.pick(EDGE_LENGTHS) : prng.int(0, 2000);
  return {
    value: Buffer.from(prng.fill(new Uint8Array(length))),
    offset: pickNumber(2 ** 53 - 1),
    term: pickNumber(2 ** 53 - 1),
    type: pickNumber(2 ** 32 - 1),
  };
}

const generated = (bytes: Uint8Array): Buffer => Buffer.from(bytes);

describe('wire encoders', () => {
  it('match ts-proto byte for byte on random messages', () => {
    const prng = new Prng(20261126);
    for (let round = 0; round < 300; round++) {
      const record = randomRecord(prng);
      const produce = { record };
      assert.deepEqual(encodeProduceRequest(produce), generated(ProduceRequest.encode(produce).finish()));
      assert.deepEqual(ProduceRequest.decode(encodeProduceRequest(produce)), produce);
      const records = Array.from({ length: prng.int(0, 5) }, () => randomRecord(prng));
      const batch = { records, producerId: prng.chance(0.5) ? 0 : prng.pick(EDGE_NUMBERS), firstSequence: prng.chance(0.3) ? 0 : prng.pick(EDGE_NUMBERS) };
      assert.deepEqual(encodeProduceBatchRequest(batch), generated(ProduceBatchRequest.encode(batch).finish()));
      const consume = { record: prng.chance(0.5) ? record : undefined, records };
      assert.deepEqual(encodeConsumeResponse(consume), generated(ConsumeResponse.encode(consume).finish()));
      assert.deepEqual(ConsumeResponse.decode(encodeConsumeResponse(consume)), consume);
      const batchAnswer = { firstOffset: record.offset, lastOffset: record.term, count: record.type, duplicate: prng.chance(0.5) };
      assert.deepEqual(encodeProduceBatchResponse(batchAnswer), generated(ProduceBatchResponse.encode(batchAnswer).finish()));
      const answer = { offset: record.offset };
      assert.deepEqual(encodeProduceResponse(answer), generated(ProduceResponse.encode(answer).finish()));
    }
  });

  it('encodes an empty ProduceRequest as no bytes, as ts-proto does', () => {
    assert.deepEqual(encodeProduceRequest({ record: undefined }), Buffer.alloc(0));
    const empty = { value: Buffer.alloc(0), offset: 0, term: 0, type: 0 };
    assert.deepEqual(encodeProduceRequest({ record: empty }), Buffer.from([0x0a, 0x00]));
  });
});
