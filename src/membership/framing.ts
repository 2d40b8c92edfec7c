/**
 * The layers around memberlist messages: compound packets, the CRC prefix, LZW compression, the
 * label header, and the one-message-per-connection TCP stream format (push/pull, TCP ping, reliable
 * user messages). Encryption is applied outside these (see transport-keyring.ts).
 *
 * Receiving never throws: everything malformed becomes a drop reason that the caller counts.
 */
import { crc32 } from './crc32.js';
import { LzwError, lzwDecompress } from './lzw.js';
import {
  type Decoded,
  FieldError,
  MessageType,
  type PacketMessage,
  type PushNodeState,
  asMap,
  concat,
  decodePacketMessage,
  decodePushNodeState,
  decodeWith,
  encodePushNodeState,
  readBool,
  readBytes,
  readText,
  readUint,
  typed,
} from './messages.js';
import { MsgpackDecodeError, decodeMsgpack, encodeMsgpack } from './msgpack.js';

/** A compound holds at most 255 parts (its count is one byte). */
export const compoundPartsMax = 255;
/** Wrappers (crc, compress, compound) may nest, but not without bound. */
const nestingMax = 4;
/** Decompressed size limit for one UDP packet (its compressed form is at most 64 KiB). */
const packetDecompressedBytesMax = 1 << 20;
/** memberlist refuses encrypted streams above 20 MiB; we apply the same bound to any stream. */
export const streamBytesMax = 20 * 1024 * 1024;
/** Bounds on a push/pull: node entries and serf user-state bytes. */
const pushPullNodesMax = 100_000;

export interface UnwrappedPacket {
  readonly messages: PacketMessage[];
  /** One reason per dropped message or packet, for the caller's counters. */
  readonly drops: string[];
}

/** Unwraps a (decrypted) UDP packet into its messages. */
export function unwrapPacket(packet: Uint8Array): UnwrappedPacket {
  const result: UnwrappedPacket = { messages: [], drops: [] };
  unwrapInto(packet, 0, result);
  return result;
}

function unwrapInto(bytes: Uint8Array, depth: number, out: UnwrappedPacket): void {
  if (depth > nestingMax) return void out.drops.push('wrappers nested too deep');
  if (bytes.length === 0) return void out.drops.push('empty message');
  switch (bytes[0]) {
    case MessageType.hasLabel:
      return void out.drops.push('labelled packet, but we have no label');
    case MessageType.hasCrc: {
      if (bytes.length < 5) return void out.drops.push('truncated crc header');
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const inner = bytes.subarray(5);
      if (view.getUint32(1) !== crc32(inner)) return void out.drops.push('crc mismatch');
      return unwrapInto(inner, depth + 1, out);
    }
    case MessageType.compress: {
      const inner = decompress(bytes.subarray(1), packetDecompressedBytesMax);
      if (!inner.ok) return void out.drops.push(inner.reason);
      return unwrapInto(inner.value, depth + 1, out);
    }
    case MessageType.compound:
      return unwrapCompound(bytes, depth, out);
    default: {
      const decoded = decodePacketMessage(bytes);
      if (decoded.ok) out.messages.push(decoded.value);
      else out.drops.push(decoded.reason);
    }
  }
}

function unwrapCompound(bytes: Uint8Array, depth: number, out: UnwrappedPacket): void {
  if (bytes.length < 2) return void out.drops.push('truncated compound header');
  const count = bytes[1] as number;
  const headerEnd = 2 + count * 2;
  if (bytes.length < headerEnd) return void out.drops.push('truncated compound header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = headerEnd;
  for (let i = 0; i < count; i++) {
    const length = view.getUint16(2 + i * 2);
    if (at + length > bytes.length) {
      // The parts read so far still count; the rest are truncated.
      for (let j = i; j < count; j++) out.drops.push('truncated compound part');
      return;
    }
    unwrapInto(bytes.subarray(at, at + length), depth + 1, out);
    at += length;
  }
}

/** Decodes a compress body (`{Algo, Buf}`) that fills `body`, and decompresses it. */
function decompress(body: Uint8Array, outputBytesMax: number): Decoded<Uint8Array> {
  try {
    const { value, end } = decodeMsgpack(body);
    if (end !== body.length) return { ok: false, reason: 'trailing bytes after compress header' };
    return decompressMap(value, outputBytesMax);
  } catch (error) {
    if (error instanceof MsgpackDecodeError) return { ok: false, reason: `compress: ${error.message}` };
    throw error;
  }
}

function decompressMap(value: Parameters<typeof asMap>[0], outputBytesMax: number): Decoded<Uint8Array> {
  const header = decodeWith(() => {
    const map = asMap(value);
    return { algo: readUint(map, 'Algo', 255), buf: readBytes(map, 'Buf', streamBytesMax) };
  });
  if (!header.ok) return { ok: false, reason: `compress: ${header.reason}` };
  if (header.value.algo !== 0) return { ok: false, reason: `unknown compression algorithm ${header.value.algo}` };
  try {
    return { ok: true, value: lzwDecompress(header.value.buf, outputBytesMax) };
  } catch (error) {
    if (error instanceof LzwError) return { ok: false, reason: `lzw: ${error.message}` };
    throw error;
  }
}

/** One message bare, several as a compound. Each part must be shorter than 64 KiB. */
export function buildPacket(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  if (parts.length > compoundPartsMax) throw new RangeError(`compound of ${parts.length} parts`);
  const header = new Uint8Array(2 + parts.length * 2);
  const view = new DataView(header.buffer);
  header[0] = MessageType.compound;
  header[1] = parts.length;
  parts.forEach((part, i) => {
    if (part.length > 0xffff) throw new RangeError(`compound part of ${part.length} bytes`);
    view.setUint16(2 + i * 2, part.length);
  });
  return concat([header, ...parts]);
}

/** Prefixes `[0x0c][crc32 BE]`; receivers with memberlist protocol >= 5 verify it. */
export function addCrc(packet: Uint8Array): Uint8Array {
  const header = new Uint8Array(5);
  header[0] = MessageType.hasCrc;
  new DataView(header.buffer).setUint32(1, crc32(packet));
  return concat([header, packet]);
}

// ---- TCP streams ----

export interface PushPull {
  readonly type: 'push-pull';
  readonly join: boolean;
  readonly nodes: PushNodeState[];
  /** The delegate's (serf's) state bytes. */
  readonly userState: Uint8Array;
}
export interface StreamPing {
  readonly type: 'ping';
  readonly seqNo: number;
  readonly node: string;
}
export interface StreamAck {
  readonly type: 'ack';
  readonly seqNo: number;
}
export interface StreamUser {
  readonly type: 'user';
  readonly payload: Uint8Array;
}
export interface StreamError {
  readonly type: 'error';
  readonly error: string;
}
export type StreamMessage = PushPull | StreamPing | StreamAck | StreamUser | StreamError;

export type StreamParse =
  | { readonly status: 'need-more' }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'ok'; readonly message: StreamMessage; readonly end: number };

/**
 * Parses one (decrypted) stream message from the bytes received so far: `need-more` until a whole
 * message is there. A compress wrapper must contain a whole message.
 */
export function parseStream(bytes: Uint8Array, depth = 0): StreamParse {
  try {
    return parseStreamAt(bytes, depth);
  } catch (error) {
    if (error instanceof MsgpackDecodeError) {
      return error.kind === 'truncated' ? { status: 'need-more' } : { status: 'invalid', reason: error.message };
    }
    if (error instanceof FieldError) return { status: 'invalid', reason: error.message };
    throw error;
  }
}

function parseStreamAt(bytes: Uint8Array, depth: number): StreamParse {
  if (bytes.length === 0) return { status: 'need-more' };
  const type = bytes[0] as number;
  if (type === MessageType.compress) {
    if (depth > 0) return { status: 'invalid', reason: 'nested compression' };
    const { value, end } = decodeMsgpack(bytes, 1);
    const inner = decompressMap(value, streamBytesMax);
    if (!inner.ok) return { status: 'invalid', reason: inner.reason };
    const parsed = parseStream(inner.value, depth + 1);
    if (parsed.status === 'need-more') return { status: 'invalid', reason: 'truncated message inside compression' };
    return parsed.status === 'ok' ? { ...parsed, end } : parsed;
  }
  const first = decodeMsgpack(bytes, 1);
  const map = asMap(first.value);
  switch (type) {
    case MessageType.pushPull:
      return parsePushPull(bytes, readBool(map, 'Join'), readUint(map, 'Nodes', pushPullNodesMax), readUint(map, 'UserStateLen', streamBytesMax), first.end);
    case MessageType.ping:
      return { status: 'ok', message: { type: 'ping', seqNo: readUint(map, 'SeqNo', 0xffff_ffff), node: readText(map, 'Node') }, end: first.end };
    case MessageType.ack:
      return { status: 'ok', message: { type: 'ack', seqNo: readUint(map, 'SeqNo', 0xffff_ffff) }, end: first.end };
    case MessageType.err:
      return { status: 'ok', message: { type: 'error', error: readText(map, 'Error', 4096) }, end: first.end };
    case MessageType.user: {
      const length = readUint(map, 'UserMsgLen', streamBytesMax);
      if (bytes.length < first.end + length) return { status: 'need-more' };
      const payload = bytes.slice(first.end, first.end + length);
      return { status: 'ok', message: { type: 'user', payload }, end: first.end + length };
    }
    default:
      return { status: 'invalid', reason: `unexpected stream message type ${type}` };
  }
}

function parsePushPull(bytes: Uint8Array, join: boolean, nodeCount: number, userStateBytes: number, start: number): StreamParse {
  const nodes: PushNodeState[] = [];
  let at = start;
  for (let i = 0; i < nodeCount; i++) {
    const { value, end } = decodeMsgpack(bytes, at);
    nodes.push(decodePushNodeState(value));
    at = end;
  }
  if (bytes.length < at + userStateBytes) return { status: 'need-more' };
  const userState = bytes.slice(at, at + userStateBytes);
  return { status: 'ok', message: { type: 'push-pull', join, nodes, userState }, end: at + userStateBytes };
}

/** Encodes a push/pull stream message (uncompressed; agents accept that). */
export function encodePushPull(pushPull: Omit<PushPull, 'type'>): Uint8Array {
  const header = typed(MessageType.pushPull, { Join: pushPull.join, Nodes: pushPull.nodes.length, UserStateLen: pushPull.userState.length });
  return concat([header, ...pushPull.nodes.map((node) => encodeMsgpack(encodePushNodeState(node))), pushPull.userState]);
}

export function encodeStreamMessage(message: StreamPing | StreamAck | StreamError): Uint8Array {
  switch (message.type) {
    case 'ping':
      return typed(MessageType.ping, { Node: message.node, SeqNo: message.seqNo });
    case 'ack':
      return typed(MessageType.ack, { Payload: null, SeqNo: message.seqNo });
    case 'error':
      return typed(MessageType.err, { Error: message.error });
  }
}

/** The encrypted stream frame `[0x0a][u32 BE length][blob]`: header bytes double as the AAD. */
export type EncryptedFrameParse =
  | { readonly status: 'need-more' }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'ok'; readonly header: Uint8Array; readonly blob: Uint8Array; readonly end: number };

export function parseEncryptedFrame(bytes: Uint8Array): EncryptedFrameParse {
  if (bytes.length < 5) return { status: 'need-more' };
  if (bytes[0] !== MessageType.encrypt) return { status: 'invalid', reason: 'stream is not encrypted, but we have a key' };
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1);
  if (length > streamBytesMax) return { status: 'invalid', reason: `encrypted stream of ${length} bytes` };
  if (bytes.length < 5 + length) return { status: 'need-more' };
  return { status: 'ok', header: bytes.subarray(0, 5), blob: bytes.subarray(5, 5 + length), end: 5 + length };
}

export function encryptedFrameHeader(blobBytes: number): Uint8Array {
  const header = new Uint8Array(5);
  header[0] = MessageType.encrypt;
  new DataView(header.buffer).setUint32(1, blobBytes);
  return header;
}
