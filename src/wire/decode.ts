/**
 * Fast paths for decoding the messages every record crosses: ProduceRequest (on the server),
 * ProduceResponse and ConsumeResponse (on the client). Each recognises only the shapes annal
 * sends and returns undefined for anything else (unknown fields, values that do not fit), which
 * then goes through the generated ts-proto decoder with its full validation. The main saving is
 * the generated code's uint64 path (BigInt, then a string, then a number, per field).
 * decode.test.ts checks on random and mutated input that a fast result always equals the
 * generated decoder's.
 *
 * A ProduceRequest's value is a view into the message buffer, not a copy: grpc-js assembles each
 * received message into a buffer of its own (Buffer.concat in its stream decoder) and never
 * reuses it, and the log copies the value into its write buffer. ConsumeResponse values are
 * copied, as the generated code does, so that a consumer keeping one record does not keep its
 * whole batch's buffer alive.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { ConsumeRequest, ConsumeResponse, ProduceBatchRequest, ProduceBatchResponse, ProduceRequest, ProduceResponse, Record as WireRecord } from '../gen/log/v1/log.js';

/** Varints longer than this are left to the generated decoder (2^53 needs 8 bytes). */
const VARINT_BYTES_MAX = 8;

/** The varint at `position` as [value, next position], or undefined if absent or too long. */
function readVarint(bytes: Uint8Array, position: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < VARINT_BYTES_MAX && position + i < bytes.length; i++) {
    const byte = bytes[position + i]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return Number.isSafeInteger(value) ? [value, position + i + 1] : undefined;
    scale *= 128;
  }
  return undefined;
}

/** `0a <n> 0a <m> <m value bytes>` with n = m + 1 + len(varint m), exactly; otherwise undefined. */
export function decodeProduceRequestFast(bytes: Buffer): ProduceRequest | undefined {
  if (bytes.length < 4 || bytes[0] !== 0x0a) return undefined;
  const outer = readVarint(bytes, 1);
  if (outer === undefined || outer[1] + outer[0] !== bytes.length) return undefined;
  const recordStart = outer[1];
  if (bytes[recordStart] !== 0x0a) return undefined;
  const inner = readVarint(bytes, recordStart + 1);
  if (inner === undefined || inner[0] === 0 || inner[1] + inner[0] !== bytes.length) return undefined;
  return { record: { value: bytes.subarray(inner[1]), offset: 0, term: 0, type: 0 } };
}

/** `08 <offset>` exactly (or no bytes: offset 0); otherwise undefined. */
export function decodeProduceResponseFast(bytes: Buffer): ProduceResponse | undefined {
  if (bytes.length === 0) return { offset: 0 };
  if (bytes[0] !== 0x08) return undefined;
  const offset = readVarint(bytes, 1);
  if (offset === undefined || offset[1] !== bytes.length) return undefined;
  return { offset: offset[0] };
}

const UINT32_MAX = 0xffff_ffff;

/** The Record in bytes [start, end), or undefined for any field or value the fast path leaves alone. */
function readRecord(bytes: Buffer, start: number, end: number): WireRecord | undefined {
  const record: WireRecord = { value: EMPTY, offset: 0, term: 0, type: 0 };
  let position = start;
  while (position < end) {
    const tag = bytes[position++];
    if (tag === 0x0a) {
      const length = readVarint(bytes, position);
      if (length === undefined || length[1] + length[0] > end) return undefined;
      record.value = Buffer.from(bytes.subarray(length[1], length[1] + length[0]));
      position = length[1] + length[0];
      continue;
    }
    const field = readVarint(bytes, position);
    if (field === undefined || field[1] > end) return undefined;
    position = field[1];
    if (tag === 0x10) record.offset = field[0];
    else if (tag === 0x18) record.term = field[0];
    else if (tag === 0x20 && field[0] <= UINT32_MAX) record.type = field[0];
    else return undefined;
  }
  return record;
}

const EMPTY = Buffer.alloc(0);

/** A ConsumeResponse with fields `record` and `records` only; otherwise undefined. */
export function decodeConsumeResponseFast(bytes: Buffer): ConsumeResponse | undefined {
  const message: ConsumeResponse = { record: undefined, records: [] };
  let position = 0;
  while (position < bytes.length) {
    const tag = bytes[position++];
    if (tag !== 0x12 && tag !== 0x1a) return undefined;
    const length = readVarint(bytes, position);
    if (length === undefined || length[1] + length[0] > bytes.length) return undefined;
    const record = readRecord(bytes, length[1], length[1] + length[0]);
    if (record === undefined) return undefined;
    if (tag === 0x12) message.record = record;
    else message.records.push(record);
    position = length[1] + length[0];
  }
  return message;
}

/**
 * A ConsumeRequest as the server reads it: `offset` is a number when it is a safe integer and
 * the exact bigint above 2^53 - 1, where the generated decoder throws. Offsets are uint64 on the
 * wire; no log reaches 2^53 - 1, so such a request is answered OUT_OF_RANGE with the log's range
 * rather than INVALID_ARGUMENT.
 */
export interface WideConsumeRequest extends Omit<ConsumeRequest, 'offset'> {
  offset: number | bigint;
}

/**
 * Decodes a ConsumeRequest like the generated decoder (same fields, wire types and skipping of
 * unknown fields) except for offsets above 2^53 - 1 (see WideConsumeRequest). Throws on bytes
 * that are not a protobuf encoding.
 */
export function decodeConsumeRequest(bytes: Uint8Array): WideConsumeRequest {
  const reader = new BinaryReader(bytes);
  const message: WideConsumeRequest = { offset: 0, maxBatch: 0, stopAtEnd: false, linearizable: false };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 0x08) {
      const offset = BigInt(reader.uint64());
      message.offset = offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : offset;
    } else if (tag === 0x10) {
      message.maxBatch = reader.uint32();
    } else if (tag === 0x18) {
      message.stopAtEnd = reader.bool();
    } else if (tag === 0x20) {
      message.linearizable = reader.bool();
    } else if ((tag & 7) === 4 || tag === 0) {
      break;
    } else {
      reader.skip(tag & 7);
    }
  }
  return message;
}

/**
 * A ProduceBatchRequest of records that carry a value only (`0a <n> 0a <m> <value>` each), then
 * optionally `producer_id` and `first_sequence`, in that order; otherwise undefined. Values are
 * views into `bytes`, as in decodeProduceRequestFast.
 */
export function decodeProduceBatchRequestFast(bytes: Buffer): ProduceBatchRequest | undefined {
  const message: ProduceBatchRequest = { records: [], producerId: 0, firstSequence: 0 };
  let position = 0;
  while (position < bytes.length && bytes[position] === 0x0a) {
    const outer = readVarint(bytes, position + 1);
    if (outer === undefined) return undefined;
    const end = outer[1] + outer[0];
    if (end > bytes.length || bytes[outer[1]] !== 0x0a) return undefined;
    const inner = readVarint(bytes, outer[1] + 1);
    if (inner === undefined || inner[0] === 0 || inner[1] + inner[0] !== end) return undefined;
    message.records.push({ value: bytes.subarray(inner[1], end), offset: 0, term: 0, type: 0 });
    position = end;
  }
  if (position < bytes.length && bytes[position] === 0x10) {
    const field = readVarint(bytes, position + 1);
    if (field === undefined) return undefined;
    message.producerId = field[0];
    position = field[1];
  }
  if (position < bytes.length && bytes[position] === 0x18) {
    const field = readVarint(bytes, position + 1);
    if (field === undefined) return undefined;
    message.firstSequence = field[0];
    position = field[1];
  }
  return position === bytes.length ? message : undefined;
}

/** A ProduceBatchResponse with fields 1-4 in order, each at most once; otherwise undefined. */
export function decodeProduceBatchResponseFast(bytes: Buffer): ProduceBatchResponse | undefined {
  const message: ProduceBatchResponse = { firstOffset: 0, lastOffset: 0, count: 0, duplicate: false };
  let position = 0;
  let lastTag = 0;
  while (position < bytes.length) {
    const tag = bytes[position]!;
    if (tag <= lastTag || (tag !== 0x08 && tag !== 0x10 && tag !== 0x18 && tag !== 0x20)) return undefined;
    lastTag = tag;
    const field = readVarint(bytes, position + 1);
    if (field === undefined) return undefined;
    position = field[1];
    if (tag === 0x08) message.firstOffset = field[0];
    else if (tag === 0x10) message.lastOffset = field[0];
    else if (tag === 0x18 && field[0] <= UINT32_MAX) message.count = field[0];
    else if (tag === 0x20 && field[0] <= 1) message.duplicate = field[0] === 1;
    else return undefined;
  }
  return message;
}
