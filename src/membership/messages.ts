/**
 * memberlist's messages: the type bytes, the typed forms we work with, their msgpack field names,
 * and conversion in both directions. Decoding never throws: it returns a value or a reason string,
 * and every field is type-checked (a wrong msgpack type drops the whole message, as Go does).
 */
import { type EncValue, type MsgMap, type MsgValue, MsgpackDecodeError, decodeMsgpack, encodeMsgpack, utf8 } from './msgpack.js';

export const MessageType = {
  ping: 0,
  indirectPing: 1,
  ack: 2,
  suspect: 3,
  alive: 4,
  dead: 5,
  pushPull: 6,
  compound: 7,
  user: 8,
  compress: 9,
  encrypt: 10,
  nack: 11,
  hasCrc: 12,
  err: 13,
  hasLabel: 244,
} as const;

/** memberlist node states as carried in push/pull (`pushNodeState.State`). */
export const WireNodeState = { alive: 0, suspect: 1, dead: 2, left: 3 } as const;
export type WireNodeState = (typeof WireNodeState)[keyof typeof WireNodeState];

/** The version vector every real agent advertises: memberlist 1..5 speaking 2, serf 2..5 speaking 5. */
export const defaultVsn: Uint8Array = Uint8Array.of(1, 5, 2, 2, 5, 5);
/** memberlist refuses node meta above this size. */
export const metaBytesMax = 512;

export interface Ping {
  readonly type: 'ping';
  readonly seqNo: number;
  /** The target's name; a receiver drops a ping addressed to another name. */
  readonly node: string;
  readonly sourceAddr?: Uint8Array;
  readonly sourcePort?: number;
  readonly sourceNode?: string;
}
export interface IndirectPing {
  readonly type: 'indirect-ping';
  readonly seqNo: number;
  readonly target: Uint8Array;
  readonly port: number;
  readonly node: string;
  readonly nack: boolean;
  readonly sourceAddr?: Uint8Array;
  readonly sourcePort?: number;
  readonly sourceNode?: string;
}
export interface Ack {
  readonly type: 'ack';
  readonly seqNo: number;
  readonly payload: Uint8Array;
}
export interface Nack {
  readonly type: 'nack';
  readonly seqNo: number;
}
export interface Suspect {
  readonly type: 'suspect';
  readonly incarnation: number;
  readonly node: string;
  readonly from: string;
}
export interface Alive {
  readonly type: 'alive';
  readonly incarnation: number;
  readonly node: string;
  readonly addr: Uint8Array;
  readonly port: number;
  readonly meta: Uint8Array;
  readonly vsn: Uint8Array;
}
export interface Dead {
  readonly type: 'dead';
  readonly incarnation: number;
  readonly node: string;
  /** The accuser; equal to `node` for a graceful leave. */
  readonly from: string;
}
export interface User {
  readonly type: 'user';
  /** Delegate bytes: for serf, a serf type byte and a msgpack value. */
  readonly payload: Uint8Array;
}
export type PacketMessage = Ping | IndirectPing | Ack | Nack | Suspect | Alive | Dead | User;

/** One node's entry in a push/pull exchange. */
export interface PushNodeState {
  readonly name: string;
  readonly addr: Uint8Array;
  readonly port: number;
  readonly meta: Uint8Array;
  readonly incarnation: number;
  readonly state: WireNodeState;
  readonly vsn: Uint8Array;
}

export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/** Thrown by the field readers below; caught at the decode boundary and turned into a reason. */
class FieldError extends Error {}

function field(map: MsgMap, key: string): MsgValue | undefined {
  return map.get(key);
}

export function readUint(map: MsgMap, key: string, valueMax: number): number {
  const value = field(map, key);
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > valueMax) {
    throw new FieldError(`field ${key}: expected an unsigned integer <= ${valueMax}`);
  }
  return value;
}

export function readText(map: MsgMap, key: string, lengthBytesMax = 512): string {
  const value = field(map, key);
  if (value === undefined || value === null) return '';
  if (!(value instanceof Uint8Array)) throw new FieldError(`field ${key}: expected a string`);
  if (value.length > lengthBytesMax) throw new FieldError(`field ${key}: longer than ${lengthBytesMax} bytes`);
  return utf8(value);
}

export function readBytes(map: MsgMap, key: string, lengthBytesMax: number): Uint8Array {
  const value = field(map, key);
  if (value === undefined || value === null) return new Uint8Array(0);
  if (!(value instanceof Uint8Array)) throw new FieldError(`field ${key}: expected bytes`);
  if (value.length > lengthBytesMax) throw new FieldError(`field ${key}: longer than ${lengthBytesMax} bytes`);
  return value.slice();
}

export function readBool(map: MsgMap, key: string): boolean {
  const value = field(map, key);
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new FieldError(`field ${key}: expected a bool`);
  return value;
}

export function asMap(value: MsgValue): MsgMap {
  if (!(value instanceof Map)) throw new FieldError('expected a map');
  return value;
}

/** Runs a field-reading function; turns field and msgpack errors into a reason. */
export function decodeWith<T>(read: () => T): Decoded<T> {
  try {
    return { ok: true, value: read() };
  } catch (error) {
    if (error instanceof FieldError || error instanceof MsgpackDecodeError) return { ok: false, reason: error.message };
    throw error;
  }
}

/** Decodes exactly one msgpack map filling `body` (trailing bytes are an error). */
export function decodeBodyMap(body: Uint8Array): MsgMap {
  const { value, end } = decodeMsgpack(body);
  if (end !== body.length) throw new FieldError(`${body.length - end} trailing bytes after the message`);
  return asMap(value);
}

const u32 = 0xffff_ffff;
const u16 = 0xffff;
const ipBytesMax = 16;

function optionalSource(map: MsgMap): { sourceAddr?: Uint8Array; sourcePort?: number; sourceNode?: string } {
  const sourceAddr = readBytes(map, 'SourceAddr', ipBytesMax);
  const sourcePort = readUint(map, 'SourcePort', u16);
  const sourceNode = readText(map, 'SourceNode');
  const source: { sourceAddr?: Uint8Array; sourcePort?: number; sourceNode?: string } = {};
  if (sourceAddr.length > 0) source.sourceAddr = sourceAddr;
  if (sourcePort > 0) source.sourcePort = sourcePort;
  if (sourceNode !== '') source.sourceNode = sourceNode;
  return source;
}

function checkVsn(vsn: Uint8Array): void {
  // A vector of 1..5 bytes crashes Go receivers; we refuse anything but 0 or 6 bytes.
  if (vsn.length !== 0 && vsn.length !== 6) throw new FieldError(`Vsn of ${vsn.length} bytes`);
}

/** Decodes a single (non-compound, non-wrapper) packet message: a type byte and a msgpack body. */
export function decodePacketMessage(bytes: Uint8Array): Decoded<PacketMessage> {
  if (bytes.length === 0) return { ok: false, reason: 'empty message' };
  const type = bytes[0] as number;
  const body = bytes.subarray(1);
  if (type === MessageType.user) return { ok: true, value: { type: 'user', payload: body.slice() } };
  return decodeWith((): PacketMessage => {
    const map = decodeBodyMap(body);
    switch (type) {
      case MessageType.ping:
        return { type: 'ping', seqNo: readUint(map, 'SeqNo', u32), node: readText(map, 'Node'), ...optionalSource(map) };
      case MessageType.indirectPing:
        return {
          type: 'indirect-ping',
          seqNo: readUint(map, 'SeqNo', u32),
          target: readBytes(map, 'Target', ipBytesMax),
          port: readUint(map, 'Port', u16),
          node: readText(map, 'Node'),
          nack: readBool(map, 'Nack'),
          ...optionalSource(map),
        };
      case MessageType.ack:
        return { type: 'ack', seqNo: readUint(map, 'SeqNo', u32), payload: readBytes(map, 'Payload', 65536) };
      case MessageType.nack:
        return { type: 'nack', seqNo: readUint(map, 'SeqNo', u32) };
      case MessageType.suspect:
      case MessageType.dead: {
        const common = { incarnation: readUint(map, 'Incarnation', u32), node: readText(map, 'Node'), from: readText(map, 'From') };
        if (common.node === '') throw new FieldError('empty Node');
        return type === MessageType.suspect ? { type: 'suspect', ...common } : { type: 'dead', ...common };
      }
      case MessageType.alive: {
        const alive: Alive = {
          type: 'alive',
          incarnation: readUint(map, 'Incarnation', u32),
          node: readText(map, 'Node'),
          addr: readBytes(map, 'Addr', ipBytesMax),
          port: readUint(map, 'Port', u16),
          meta: readBytes(map, 'Meta', metaBytesMax),
          vsn: readBytes(map, 'Vsn', 6),
        };
        if (alive.node === '') throw new FieldError('empty Node');
        checkVsn(alive.vsn);
        return alive;
      }
      default:
        throw new FieldError(`unknown or misplaced message type ${type}`);
    }
  });
}

/** Encodes a packet message as `[type][msgpack]` with Go's field names. */
export function encodePacketMessage(message: PacketMessage): Uint8Array {
  switch (message.type) {
    case 'ping':
      return typed(MessageType.ping, {
        Node: message.node,
        SeqNo: message.seqNo,
        SourceAddr: message.sourceAddr,
        SourceNode: message.sourceNode,
        SourcePort: message.sourcePort,
      });
    case 'indirect-ping':
      return typed(MessageType.indirectPing, {
        Nack: message.nack,
        Node: message.node,
        Port: message.port,
        SeqNo: message.seqNo,
        SourceAddr: message.sourceAddr,
        SourceNode: message.sourceNode,
        SourcePort: message.sourcePort,
        Target: message.target,
      });
    case 'ack':
      return typed(MessageType.ack, { Payload: message.payload, SeqNo: message.seqNo });
    case 'nack':
      return typed(MessageType.nack, { SeqNo: message.seqNo });
    case 'suspect':
      return typed(MessageType.suspect, { From: message.from, Incarnation: message.incarnation, Node: message.node });
    case 'dead':
      return typed(MessageType.dead, { From: message.from, Incarnation: message.incarnation, Node: message.node });
    case 'alive':
      return typed(MessageType.alive, {
        Addr: message.addr,
        Incarnation: message.incarnation,
        Meta: message.meta,
        Node: message.node,
        Port: message.port,
        Vsn: message.vsn,
      });
    case 'user':
      return concat([Uint8Array.of(MessageType.user), message.payload]);
  }
}

export function typed(type: number, body: EncValue): Uint8Array {
  return concat([Uint8Array.of(type), encodeMsgpack(body)]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function encodePushNodeState(node: PushNodeState): EncValue {
  return { Addr: node.addr, Incarnation: node.incarnation, Meta: node.meta, Name: node.name, Port: node.port, State: node.state, Vsn: node.vsn };
}

export function decodePushNodeState(value: MsgValue): PushNodeState {
  const map = asMap(value);
  const state = readUint(map, 'State', 3) as WireNodeState;
  const node: PushNodeState = {
    name: readText(map, 'Name'),
    addr: readBytes(map, 'Addr', ipBytesMax),
    port: readUint(map, 'Port', u16),
    meta: readBytes(map, 'Meta', metaBytesMax),
    incarnation: readUint(map, 'Incarnation', u32),
    state,
    vsn: readBytes(map, 'Vsn', 6),
  };
  if (node.name === '') throw new FieldError('empty Name');
  checkVsn(node.vsn);
  return node;
}

export { FieldError };
