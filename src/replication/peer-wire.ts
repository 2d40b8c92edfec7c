/**
 * Byte-level codecs of annal.raft.v1 for the messages every replicated record crosses:
 * MessageBatch (Raft messages, with the appends' entries) and ForwardRequest. They write the
 * same bytes as the generated ts-proto encoders and read the same values as its decoders
 * (peer-codec.test.ts checks both on random and mutated input), with three differences:
 *
 * - Encoding goes straight from the Raft core's `Message` objects into one buffer sized first,
 *   instead of building the generated objects and growing a BinaryWriter with a fork/join per
 *   nested message.
 * - Decoding never throws: malformed bytes give a `DecodeFailure`. uint64 values are read as
 *   numbers even above 2^53 - 1 (the generated code throws there), so that the validation in
 *   peer-codec.ts can name the field; such a number is never a safe integer.
 * - Entry payloads, snapshot chunk data and forwarded values are views into the received buffer,
 *   not copies. grpc-js assembles each received message into a buffer of its own and never reuses
 *   it; the cost is that one retained entry keeps its whole batch's buffer alive.
 *
 * Decoding is stricter than protobuf in one respect: groups (wire types 3 and 4) and field number
 * 0 are malformed, since no annal message has them.
 */
import type {
  AppendRequest as WireAppendRequest,
  AppendResponse as WireAppendResponse,
  Entry as WireEntry,
  ForwardRequest as WireForwardRequest,
  Heartbeat as WireHeartbeat,
  HeartbeatResponse as WireHeartbeatResponse,
  Message as WireMessage,
  MessageBatch as WireMessageBatch,
  SnapshotChunk as WireSnapshotChunk,
  SnapshotMeta as WireSnapshotMeta,
  SnapshotResponse as WireSnapshotResponse,
  TimeoutNow as WireTimeoutNow,
  VoteRequest as WireVoteRequest,
  VoteResponse as WireVoteResponse,
} from '../gen/annal/raft/v1/raft.js';
import type { Entry, Message, SnapshotMeta } from '../raft/index.js';
import { assert, unreachable } from '../util/index.js';

/** Bytes that are not a valid encoding of the expected message; `reason` says where and why. */
export class DecodeFailure {
  constructor(
    readonly messageName: string,
    readonly reason: string,
  ) {}
}

// ---- encoding ----

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

/** A one-byte tag (field numbers 1..15). */
function tag(field: number, wireType: number): number {
  return (field << 3) | wireType;
}

/** MessageBatch.messages and Message.body's field numbers, by Raft message type. */
const BODY_FIELD = {
  vote: 4,
  preVote: 5,
  voteResponse: 6,
  preVoteResponse: 7,
  append: 8,
  appendResponse: 9,
  heartbeat: 10,
  heartbeatResponse: 11,
  snapshot: 12,
  snapshotResponse: 13,
  timeoutNow: 14,
} as const satisfies Record<Message['type'], number>;

/** Bytes of the varint encoding of a non-negative safe integer. */
function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x20_0000) return 3;
  let size = 4;
  value = Math.floor(value / 0x1000_0000);
  while (value > 0) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** A varint field with a one-byte tag, or nothing for 0 (proto3 omits defaults). */
function uintFieldSize(value: number): number {
  return value === 0 ? 0 : 1 + varintSize(value);
}

function lengthFieldSize(length: number): number {
  return 1 + varintSize(length) + length;
}

function stringBytes(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}

/**
 * Sizes of nested messages, measured in a first pass and consumed in the same order by the
 * writing pass, so that no size is computed twice. Reused: encoding is synchronous.
 */
const sizes: number[] = [];

function entrySize(entry: Entry): number {
  return uintFieldSize(entry.index) + uintFieldSize(entry.term) + uintFieldSize(entry.type) + (entry.data.length === 0 ? 0 : lengthFieldSize(entry.data.length));
}

function metaSize(meta: SnapshotMeta): number {
  let size = uintFieldSize(meta.index) + uintFieldSize(meta.term);
  for (const id of meta.config.voters) size += lengthFieldSize(stringBytes(id));
  for (const id of meta.config.learners) size += lengthFieldSize(stringBytes(id));
  return size;
}

function contextSize(context: string | null): number {
  return context === null ? 0 : lengthFieldSize(stringBytes(context));
}

/** Size of the body sub-message; appends push each entry's size, snapshots their meta's. */
function measureBody(message: Message): number {
  switch (message.type) {
    case 'vote':
    case 'preVote':
      return uintFieldSize(message.lastLogIndex) + uintFieldSize(message.lastLogTerm) + (message.transfer ? 2 : 0);
    case 'voteResponse':
    case 'preVoteResponse':
      return message.reject ? 2 : 0;
    case 'append': {
      let size = uintFieldSize(message.prevLogIndex) + uintFieldSize(message.prevLogTerm) + uintFieldSize(message.commit);
      for (const entry of message.entries) {
        const inner = entrySize(entry);
        sizes.push(inner);
        size += lengthFieldSize(inner);
      }
      return size;
    }
    case 'appendResponse':
      return (message.reject ? 2 : 0) + uintFieldSize(message.index) + uintFieldSize(message.rejectHintIndex) + uintFieldSize(message.rejectHintTerm);
    case 'heartbeat':
      return uintFieldSize(message.commit) + contextSize(message.context);
    case 'heartbeatResponse':
      return contextSize(message.context);
    case 'snapshot': {
      const meta = metaSize(message.meta);
      sizes.push(meta);
      const data = message.data.length === 0 ? 0 : lengthFieldSize(message.data.length);
      return lengthFieldSize(meta) + uintFieldSize(message.offsetBytes) + uintFieldSize(message.totalBytes) + data;
    }
    case 'snapshotResponse':
      return uintFieldSize(message.snapshotIndex) + uintFieldSize(message.nextOffsetBytes);
    case 'timeoutNow':
      return 0;
    default:
      return unreachable(message);
  }
}

/** Size of the Message sub-message; pushes [message, body, nested...] sizes. */
function measureMessage(message: Message): number {
  const slot = sizes.length;
  sizes.push(0, 0);
  const body = measureBody(message);
  const from = message.from.length === 0 ? 0 : lengthFieldSize(stringBytes(message.from));
  const to = message.to.length === 0 ? 0 : lengthFieldSize(stringBytes(message.to));
  const size = from + to + uintFieldSize(message.term) + lengthFieldSize(body);
  sizes[slot] = size;
  sizes[slot + 1] = body;
  return size;
}

class Writer {
  position = 0;
  cursor = 0;
  constructor(readonly buffer: Buffer) {}

  varint(value: number): void {
    const buffer = this.buffer;
    while (value >= 0x80) {
      buffer[this.position++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buffer[this.position++] = value;
  }

  uintField(tagByte: number, value: number): void {
    if (value === 0) return;
    this.buffer[this.position++] = tagByte;
    this.varint(value);
  }

  boolField(tagByte: number, value: boolean): void {
    if (!value) return;
    this.buffer[this.position++] = tagByte;
    this.buffer[this.position++] = 1;
  }

  bytesField(tagByte: number, value: Uint8Array): void {
    this.buffer[this.position++] = tagByte;
    this.varint(value.length);
    this.buffer.set(value, this.position);
    this.position += value.length;
  }

  stringField(tagByte: number, value: string): void {
    this.buffer[this.position++] = tagByte;
    this.varint(stringBytes(value));
    this.position += this.buffer.write(value, this.position, 'utf8');
  }

  /** Tag and length of a nested message whose size the measuring pass recorded next. */
  nested(tagByte: number): void {
    this.buffer[this.position++] = tagByte;
    this.varint(sizes[this.cursor++]!);
  }
}

function writeEntry(writer: Writer, entry: Entry): void {
  writer.nested(tag(4, WIRE_LENGTH));
  writer.uintField(tag(1, WIRE_VARINT), entry.index);
  writer.uintField(tag(2, WIRE_VARINT), entry.term);
  writer.uintField(tag(3, WIRE_VARINT), entry.type);
  if (entry.data.length !== 0) writer.bytesField(tag(4, WIRE_LENGTH), entry.data);
}

function writeMeta(writer: Writer, meta: SnapshotMeta): void {
  writer.nested(tag(1, WIRE_LENGTH));
  writer.uintField(tag(1, WIRE_VARINT), meta.index);
  writer.uintField(tag(2, WIRE_VARINT), meta.term);
  for (const id of meta.config.voters) writer.stringField(tag(3, WIRE_LENGTH), id);
  for (const id of meta.config.learners) writer.stringField(tag(4, WIRE_LENGTH), id);
}

function writeBody(writer: Writer, message: Message): void {
  switch (message.type) {
    case 'vote':
    case 'preVote':
      writer.uintField(tag(1, WIRE_VARINT), message.lastLogIndex);
      writer.uintField(tag(2, WIRE_VARINT), message.lastLogTerm);
      writer.boolField(tag(3, WIRE_VARINT), message.transfer);
      return;
    case 'voteResponse':
    case 'preVoteResponse':
      writer.boolField(tag(1, WIRE_VARINT), message.reject);
      return;
    case 'append':
      writer.uintField(tag(1, WIRE_VARINT), message.prevLogIndex);
      writer.uintField(tag(2, WIRE_VARINT), message.prevLogTerm);
      writer.uintField(tag(3, WIRE_VARINT), message.commit);
      for (const entry of message.entries) writeEntry(writer, entry);
      return;
    case 'appendResponse':
      writer.boolField(tag(1, WIRE_VARINT), message.reject);
      writer.uintField(tag(2, WIRE_VARINT), message.index);
      writer.uintField(tag(3, WIRE_VARINT), message.rejectHintIndex);
      writer.uintField(tag(4, WIRE_VARINT), message.rejectHintTerm);
      return;
    case 'heartbeat':
      writer.uintField(tag(1, WIRE_VARINT), message.commit);
      if (message.context !== null) writer.stringField(tag(2, WIRE_LENGTH), message.context);
      return;
    case 'heartbeatResponse':
      if (message.context !== null) writer.stringField(tag(1, WIRE_LENGTH), message.context);
      return;
    case 'snapshot':
      writeMeta(writer, message.meta);
      writer.uintField(tag(2, WIRE_VARINT), message.offsetBytes);
      writer.uintField(tag(3, WIRE_VARINT), message.totalBytes);
      if (message.data.length !== 0) writer.bytesField(tag(4, WIRE_LENGTH), message.data);
      return;
    case 'snapshotResponse':
      writer.uintField(tag(1, WIRE_VARINT), message.snapshotIndex);
      writer.uintField(tag(2, WIRE_VARINT), message.nextOffsetBytes);
      return;
    case 'timeoutNow':
      return;
    default:
      unreachable(message);
  }
}

function writeMessage(writer: Writer, message: Message): void {
  writer.nested(tag(1, WIRE_LENGTH));
  const bodySize = sizes[writer.cursor++]!;
  if (message.from.length !== 0) writer.stringField(tag(1, WIRE_LENGTH), message.from);
  if (message.to.length !== 0) writer.stringField(tag(2, WIRE_LENGTH), message.to);
  writer.uintField(tag(3, WIRE_VARINT), message.term);
  writer.buffer[writer.position++] = tag(BODY_FIELD[message.type], WIRE_LENGTH);
  writer.varint(bodySize);
  writeBody(writer, message);
}

/**
 * The MessageBatch holding `messages`, in one buffer. Numbers must be non-negative safe
 * integers (the core's invariants; asserted by the size check at the end).
 */
export function encodeMessageBatch(messages: readonly Message[]): Buffer {
  sizes.length = 0;
  let total = 0;
  for (const message of messages) total += lengthFieldSize(measureMessage(message));
  const writer = new Writer(Buffer.allocUnsafe(total));
  for (const message of messages) writeMessage(writer, message);
  assert(writer.position === total, `MessageBatch encoder wrote ${writer.position} of ${total} bytes`);
  assert(writer.cursor === sizes.length, `MessageBatch encoder used ${writer.cursor} of ${sizes.length} sizes`);
  return writer.buffer;
}

/** The ForwardRequest with `values`, `subject` and an idempotent producer's fields (0 or absent: none), in one buffer. */
export function encodeForwardRequest(request: {
  readonly values: readonly Uint8Array[];
  readonly subject: string;
  readonly producerId?: number;
  readonly firstSequence?: number;
}): Buffer {
  const producerId = request.producerId ?? 0;
  const firstSequence = request.firstSequence ?? 0;
  let total = (request.subject.length === 0 ? 0 : lengthFieldSize(stringBytes(request.subject))) + uintFieldSize(producerId) + uintFieldSize(firstSequence);
  for (const value of request.values) total += lengthFieldSize(value.length);
  const writer = new Writer(Buffer.allocUnsafe(total));
  for (const value of request.values) writer.bytesField(tag(1, WIRE_LENGTH), value);
  if (request.subject.length !== 0) writer.stringField(tag(2, WIRE_LENGTH), request.subject);
  writer.uintField(tag(3, WIRE_VARINT), producerId);
  writer.uintField(tag(4, WIRE_VARINT), firstSequence);
  assert(writer.position === total, `ForwardRequest encoder wrote ${writer.position} of ${total} bytes`);
  return writer.buffer;
}

// ---- decoding ----

/** Thrown inside the decoder only, and turned into a DecodeFailure at its entry points. */
class Malformed extends Error {}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const VARINT_BYTES_MAX = 10;

class Reader {
  position: number;
  constructor(
    readonly buffer: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.position = start;
  }

  get done(): boolean {
    return this.position >= this.end;
  }

  /** A varint as a number; exact up to 2^53 - 1, never a safe integer above. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (this.position >= this.end) throw new Malformed('truncated varint');
      const byte = this.buffer[this.position++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    throw new Malformed('varint longer than 10 bytes');
  }

  /** A uint32 field: the varint's low 32 bits, as protobuf (and the generated code) reads it. */
  uint32(): number {
    let value = 0;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (this.position >= this.end) throw new Malformed('truncated varint');
      const byte = this.buffer[this.position++]!;
      if (i < 5) value |= (byte & 0x7f) << (7 * i);
      if (byte < 0x80) return value >>> 0;
    }
    throw new Malformed('varint longer than 10 bytes');
  }

  /** The bounds [start, end) of a length-delimited field's content; moves past it. */
  length(): [number, number] {
    const length = this.varint();
    const start = this.position;
    if (length > this.end - start) throw new Malformed(`length ${length} beyond the end of the message`);
    this.position = start + length;
    return [start, start + length];
  }

  bytes(): Buffer {
    const [start, end] = this.length();
    return this.buffer.subarray(start, end);
  }

  string(): string {
    const [start, end] = this.length();
    try {
      return utf8.decode(this.buffer.subarray(start, end));
    } catch {
      throw new Malformed('string field is not UTF-8');
    }
  }

  /** The next field's number and wire type (a tag is a uint32 varint). */
  tag(): [number, number] {
    const value = this.uint32();
    const field = value >>> 3;
    if (field === 0) throw new Malformed('field number 0');
    return [field, value & 7];
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LENGTH:
        this.length();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        throw new Malformed(`unsupported wire type ${wireType}`);
    }
  }

  /** A reader over the nested message that starts here; this reader moves past it. */
  nested(): Reader {
    const [start, end] = this.length();
    return new Reader(this.buffer, start, end);
  }

  private advance(count: number): void {
    if (count > this.end - this.position) throw new Malformed('truncated fixed-width field');
    this.position += count;
  }
}

/**
 * Reads every field of the message `reader` spans: `field` handles the ones it knows (returns
 * false for anything else, which is skipped as an unknown field, as the generated code does).
 */
function readFields(reader: Reader, field: (number: number, wireType: number) => boolean): void {
  while (!reader.done) {
    const [number, wireType] = reader.tag();
    if (!field(number, wireType)) reader.skip(wireType);
  }
}

function readVoteRequest(reader: Reader): WireVoteRequest {
  const value: WireVoteRequest = { lastLogIndex: 0, lastLogTerm: 0, transfer: false };
  readFields(reader, (field, wireType) => {
    if (wireType !== WIRE_VARINT) return false;
    if (field === 1) value.lastLogIndex = reader.varint();
    else if (field === 2) value.lastLogTerm = reader.varint();
    else if (field === 3) value.transfer = reader.varint() !== 0;
    else return false;
    return true;
  });
  return value;
}

function readVoteResponse(reader: Reader): WireVoteResponse {
  const value: WireVoteResponse = { reject: false };
  readFields(reader, (field, wireType) => {
    if (field !== 1 || wireType !== WIRE_VARINT) return false;
    value.reject = reader.varint() !== 0;
    return true;
  });
  return value;
}

const EMPTY = Buffer.alloc(0);

function readEntry(reader: Reader): WireEntry {
  // Same property order as the core's entries, so both share one object shape.
  const entry: WireEntry = { index: 0, term: 0, type: 0, data: EMPTY };
  readFields(reader, (field, wireType) => {
    if (field === 4 && wireType === WIRE_LENGTH) entry.data = reader.bytes();
    else if (wireType !== WIRE_VARINT) return false;
    else if (field === 1) entry.index = reader.varint();
    else if (field === 2) entry.term = reader.varint();
    else if (field === 3) entry.type = reader.uint32();
    else return false;
    return true;
  });
  return entry;
}

function readAppendRequest(reader: Reader): WireAppendRequest {
  const value: WireAppendRequest = { prevLogIndex: 0, prevLogTerm: 0, commit: 0, entries: [] };
  readFields(reader, (field, wireType) => {
    if (field === 4 && wireType === WIRE_LENGTH) value.entries.push(readEntry(reader.nested()));
    else if (wireType !== WIRE_VARINT) return false;
    else if (field === 1) value.prevLogIndex = reader.varint();
    else if (field === 2) value.prevLogTerm = reader.varint();
    else if (field === 3) value.commit = reader.varint();
    else return false;
    return true;
  });
  return value;
}

function readAppendResponse(reader: Reader): WireAppendResponse {
  const value: WireAppendResponse = { reject: false, index: 0, rejectHintIndex: 0, rejectHintTerm: 0 };
  readFields(reader, (field, wireType) => {
    if (wireType !== WIRE_VARINT) return false;
    if (field === 1) value.reject = reader.varint() !== 0;
    else if (field === 2) value.index = reader.varint();
    else if (field === 3) value.rejectHintIndex = reader.varint();
    else if (field === 4) value.rejectHintTerm = reader.varint();
    else return false;
    return true;
  });
  return value;
}

function readHeartbeat(reader: Reader): WireHeartbeat {
  const value: WireHeartbeat = { commit: 0, context: undefined };
  readFields(reader, (field, wireType) => {
    if (field === 1 && wireType === WIRE_VARINT) value.commit = reader.varint();
    else if (field === 2 && wireType === WIRE_LENGTH) value.context = reader.string();
    else return false;
    return true;
  });
  return value;
}

function readHeartbeatResponse(reader: Reader): WireHeartbeatResponse {
  const value: WireHeartbeatResponse = { context: undefined };
  readFields(reader, (field, wireType) => {
    if (field !== 1 || wireType !== WIRE_LENGTH) return false;
    value.context = reader.string();
    return true;
  });
  return value;
}

function readSnapshotMeta(reader: Reader): WireSnapshotMeta {
  const value: WireSnapshotMeta = { index: 0, term: 0, voters: [], learners: [] };
  readFields(reader, (field, wireType) => {
    if (field === 1 && wireType === WIRE_VARINT) value.index = reader.varint();
    else if (field === 2 && wireType === WIRE_VARINT) value.term = reader.varint();
    else if (field === 3 && wireType === WIRE_LENGTH) value.voters.push(reader.string());
    else if (field === 4 && wireType === WIRE_LENGTH) value.learners.push(reader.string());
    else return false;
    return true;
  });
  return value;
}

function readSnapshotChunk(reader: Reader): WireSnapshotChunk {
  const value: WireSnapshotChunk = { meta: undefined, offsetBytes: 0, totalBytes: 0, data: EMPTY };
  readFields(reader, (field, wireType) => {
    if (field === 1 && wireType === WIRE_LENGTH) value.meta = readSnapshotMeta(reader.nested());
    else if (field === 2 && wireType === WIRE_VARINT) value.offsetBytes = reader.varint();
    else if (field === 3 && wireType === WIRE_VARINT) value.totalBytes = reader.varint();
    else if (field === 4 && wireType === WIRE_LENGTH) value.data = reader.bytes();
    else return false;
    return true;
  });
  return value;
}

function readSnapshotResponse(reader: Reader): WireSnapshotResponse {
  const value: WireSnapshotResponse = { snapshotIndex: 0, nextOffsetBytes: 0 };
  readFields(reader, (field, wireType) => {
    if (wireType !== WIRE_VARINT) return false;
    if (field === 1) value.snapshotIndex = reader.varint();
    else if (field === 2) value.nextOffsetBytes = reader.varint();
    else return false;
    return true;
  });
  return value;
}

function readTimeoutNow(reader: Reader): WireTimeoutNow {
  readFields(reader, () => false);
  return {};
}

function readBody(field: number, reader: Reader): WireMessage['body'] {
  switch (field) {
    case BODY_FIELD.vote:
      return { $case: 'vote', value: readVoteRequest(reader) };
    case BODY_FIELD.preVote:
      return { $case: 'preVote', value: readVoteRequest(reader) };
    case BODY_FIELD.voteResponse:
      return { $case: 'voteResponse', value: readVoteResponse(reader) };
    case BODY_FIELD.preVoteResponse:
      return { $case: 'preVoteResponse', value: readVoteResponse(reader) };
    case BODY_FIELD.append:
      return { $case: 'append', value: readAppendRequest(reader) };
    case BODY_FIELD.appendResponse:
      return { $case: 'appendResponse', value: readAppendResponse(reader) };
    case BODY_FIELD.heartbeat:
      return { $case: 'heartbeat', value: readHeartbeat(reader) };
    case BODY_FIELD.heartbeatResponse:
      return { $case: 'heartbeatResponse', value: readHeartbeatResponse(reader) };
    case BODY_FIELD.snapshot:
      return { $case: 'snapshot', value: readSnapshotChunk(reader) };
    case BODY_FIELD.snapshotResponse:
      return { $case: 'snapshotResponse', value: readSnapshotResponse(reader) };
    case BODY_FIELD.timeoutNow:
      return { $case: 'timeoutNow', value: readTimeoutNow(reader) };
    default:
      throw new Malformed(`field ${field} is not a message body`);
  }
}

function isBodyField(field: number): boolean {
  return field >= BODY_FIELD.vote && field <= BODY_FIELD.timeoutNow;
}

function readMessage(reader: Reader): WireMessage {
  const message: WireMessage = { from: '', to: '', term: 0, body: undefined };
  readFields(reader, (field, wireType) => {
    if (field === 1 && wireType === WIRE_LENGTH) message.from = reader.string();
    else if (field === 2 && wireType === WIRE_LENGTH) message.to = reader.string();
    else if (field === 3 && wireType === WIRE_VARINT) message.term = reader.varint();
    else if (isBodyField(field) && wireType === WIRE_LENGTH) message.body = readBody(field, reader.nested());
    else return false;
    return true;
  });
  return message;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The MessageBatch in `bytes` (nothing validated beyond the encoding), or why it is not one. */
export function decodeMessageBatch(bytes: Uint8Array): WireMessageBatch | DecodeFailure {
  const buffer = asBuffer(bytes);
  const reader = new Reader(buffer, 0, buffer.length);
  const batch: WireMessageBatch = { messages: [] };
  try {
    readFields(reader, (field, wireType) => {
      if (field !== 1 || wireType !== WIRE_LENGTH) return false;
      batch.messages.push(readMessage(reader.nested()));
      return true;
    });
  } catch (error) {
    if (error instanceof Malformed) return new DecodeFailure('annal.raft.v1.MessageBatch', error.message);
    throw error;
  }
  return batch;
}

/** The ForwardRequest in `bytes`, its values views into `bytes`, or why it is not one. */
export function decodeForwardRequest(bytes: Uint8Array): WireForwardRequest | DecodeFailure {
  const buffer = asBuffer(bytes);
  const reader = new Reader(buffer, 0, buffer.length);
  const request: WireForwardRequest = { values: [], subject: '', producerId: 0, firstSequence: 0 };
  try {
    readFields(reader, (field, wireType) => {
      if (field === 1 && wireType === WIRE_LENGTH) request.values.push(reader.bytes());
      else if (field === 2 && wireType === WIRE_LENGTH) request.subject = reader.string();
      else if (field === 3 && wireType === WIRE_VARINT) request.producerId = reader.varint();
      else if (field === 4 && wireType === WIRE_VARINT) request.firstSequence = reader.varint();
      else return false;
      return true;
    });
  } catch (error) {
    if (error instanceof Malformed) return new DecodeFailure('annal.raft.v1.ForwardRequest', error.message);
    throw error;
  }
  return request;
}
