/**
 * Encoders for the messages on the hot paths (ProduceRequest and ProduceBatchRequest on the
 * client, ProduceResponse and ConsumeResponse on the server). They write the same bytes as the generated ts-proto
 * encoders (encode.test.ts checks that on random messages), but size the message first and
 * write it into one buffer, instead of growing a BinaryWriter with a fork/join per nested record.
 * Decoding stays with the generated code, which also validates.
 */
import type { ConsumeResponse, ProduceBatchRequest, ProduceBatchResponse, ProduceRequest, ProduceResponse, Record as WireRecord } from '../gen/log/v1/log.js';

const TAG_RECORD_VALUE = 0x0a; // field 1, length-delimited
const TAG_RECORD_OFFSET = 0x10; // field 2, varint
const TAG_RECORD_TERM = 0x18; // field 3, varint
const TAG_RECORD_TYPE = 0x20; // field 4, varint
const TAG_FIELD1_MESSAGE = 0x0a; // ProduceRequest.record, ProduceBatchRequest.records
const TAG_FIELD2_MESSAGE = 0x12; // ConsumeResponse.record
const TAG_FIELD3_MESSAGE = 0x1a; // ConsumeResponse.records
const TAG_FIELD1_VARINT = 0x08; // ProduceResponse.offset, ProduceBatchResponse.first_offset
const TAG_FIELD2_VARINT = 0x10; // ProduceBatchRequest.producer_id, ProduceBatchResponse.last_offset
const TAG_FIELD3_VARINT = 0x18; // ProduceBatchRequest.first_sequence, ProduceBatchResponse.count
const TAG_FIELD4_VARINT = 0x20; // ProduceBatchResponse.duplicate

/** Bytes of the varint encoding of a non-negative safe integer. */
function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(buffer: Buffer, position: number, value: number): number {
  while (value >= 128) {
    buffer[position++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[position++] = value;
  return position;
}

function recordSize(record: WireRecord): number {
  let size = 0;
  const valueBytes = record.value.length;
  if (valueBytes !== 0) size += 1 + varintSize(valueBytes) + valueBytes;
  if (record.offset !== 0) size += 1 + varintSize(record.offset);
  if (record.term !== 0) size += 1 + varintSize(record.term);
  if (record.type !== 0) size += 1 + varintSize(record.type);
  return size;
}

function writeRecord(buffer: Buffer, position: number, record: WireRecord): number {
  const value = record.value;
  if (value.length !== 0) {
    buffer[position++] = TAG_RECORD_VALUE;
    position = writeVarint(buffer, position, value.length);
    buffer.set(value, position);
    position += value.length;
  }
  if (record.offset !== 0) {
    buffer[position++] = TAG_RECORD_OFFSET;
    position = writeVarint(buffer, position, record.offset);
  }
  if (record.term !== 0) {
    buffer[position++] = TAG_RECORD_TERM;
    position = writeVarint(buffer, position, record.term);
  }
  if (record.type !== 0) {
    buffer[position++] = TAG_RECORD_TYPE;
    position = writeVarint(buffer, position, record.type);
  }
  return position;
}

/** Size of records written as a repeated (or single) embedded message field with a 1-byte tag. */
function recordsSize(records: readonly WireRecord[]): number {
  let size = 0;
  for (const record of records) {
    const inner = recordSize(record);
    size += 1 + varintSize(inner) + inner;
  }
  return size;
}

function writeRecordField(buffer: Buffer, position: number, tag: number, record: WireRecord): number {
  buffer[position++] = tag;
  position = writeVarint(buffer, position, recordSize(record));
  return writeRecord(buffer, position, record);
}

function finish(buffer: Buffer, position: number): Buffer {
  if (position !== buffer.length) throw new Error(`wire encoder wrote ${position} of ${buffer.length} bytes`);
  return buffer;
}

export function encodeProduceRequest(message: ProduceRequest): Buffer {
  const record = message.record;
  if (record === undefined) return Buffer.alloc(0);
  const buffer = Buffer.allocUnsafe(recordsSize([record]));
  return finish(buffer, writeRecordField(buffer, 0, TAG_FIELD1_MESSAGE, record));
}

export function encodeProduceBatchRequest(message: ProduceBatchRequest): Buffer {
  const { producerId, firstSequence } = message;
  let size = recordsSize(message.records);
  if (producerId !== 0) size += 1 + varintSize(producerId);
  if (firstSequence !== 0) size += 1 + varintSize(firstSequence);
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  for (const record of message.records) position = writeRecordField(buffer, position, TAG_FIELD1_MESSAGE, record);
  if (producerId !== 0) {
    buffer[position++] = TAG_FIELD2_VARINT;
    position = writeVarint(buffer, position, producerId);
  }
  if (firstSequence !== 0) {
    buffer[position++] = TAG_FIELD3_VARINT;
    position = writeVarint(buffer, position, firstSequence);
  }
  return finish(buffer, position);
}

/** `allocate` returns a buffer of exactly the size asked for (a server may lend a reused one). */
export function encodeConsumeResponse(message: ConsumeResponse, allocate: (sizeBytes: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const single = message.record === undefined ? 0 : recordsSize([message.record]);
  const buffer = allocate(single + recordsSize(message.records));
  let position = 0;
  if (message.record !== undefined) position = writeRecordField(buffer, position, TAG_FIELD2_MESSAGE, message.record);
  for (const record of message.records) position = writeRecordField(buffer, position, TAG_FIELD3_MESSAGE, record);
  return finish(buffer, position);
}

export function encodeProduceResponse(message: ProduceResponse): Buffer {
  if (message.offset === 0) return Buffer.alloc(0);
  const buffer = Buffer.allocUnsafe(1 + varintSize(message.offset));
  buffer[0] = TAG_FIELD1_VARINT;
  return finish(buffer, writeVarint(buffer, 1, message.offset));
}

export function encodeProduceBatchResponse(message: ProduceBatchResponse): Buffer {
  const { firstOffset, lastOffset, count, duplicate } = message;
  const size =
    (firstOffset !== 0 ? 1 + varintSize(firstOffset) : 0) +
    (lastOffset !== 0 ? 1 + varintSize(lastOffset) : 0) +
    (count !== 0 ? 1 + varintSize(count) : 0) +
    (duplicate ? 2 : 0);
  const buffer = Buffer.allocUnsafe(size);
  let position = 0;
  if (firstOffset !== 0) {
    buffer[position++] = TAG_FIELD1_VARINT;
    position = writeVarint(buffer, position, firstOffset);
  }
  if (lastOffset !== 0) {
    buffer[position++] = TAG_FIELD2_VARINT;
    position = writeVarint(buffer, position, lastOffset);
  }
  if (count !== 0) {
    buffer[position++] = TAG_FIELD3_VARINT;
    position = writeVarint(buffer, position, count);
  }
  if (duplicate) {
    buffer[position++] = TAG_FIELD4_VARINT;
    buffer[position++] = 1;
  }
  return finish(buffer, position);
}
