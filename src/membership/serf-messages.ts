/**
 * serf's messages (carried as memberlist user messages: `[serf type][msgpack]`), serf's push/pull
 * user state, and serf's tag encoding in node meta (`0xFF` + msgpack map, ≤ 512 bytes).
 */
import { type Decoded, FieldError, asMap, concat, decodeBodyMap, decodeWith, metaBytesMax, readBool, readBytes, readText, readUint } from './messages.js';
import { type EncValue, type MsgValue, decodeMsgpack, encodeMsgpack, utf8 } from './msgpack.js';

export const SerfMessageType = {
  leave: 0,
  join: 1,
  pushPull: 2,
  userEvent: 3,
  query: 4,
  queryResponse: 5,
  conflictResponse: 6,
  keyRequest: 7,
  keyResponse: 8,
  relay: 9,
} as const;

/** Lamport times are uint64 on the wire; we keep them as safe integers and drop anything larger. */
const lamportMax = 2 ** 52; // leaves headroom for witnessing (v + 1) and incrementing
/** serf keeps this many user-event and query slots (EventBuffer / QueryBuffer). */
export const eventBufferSlots = 512;
const tagsMagic = 0xff;

export interface JoinIntent {
  readonly type: 'join';
  readonly lTime: number;
  readonly node: string;
}
export interface LeaveIntent {
  readonly type: 'leave';
  readonly lTime: number;
  readonly node: string;
  readonly prune: boolean;
}
export interface UserEvent {
  readonly type: 'user-event';
  readonly lTime: number;
  readonly name: string;
  readonly payload: Uint8Array;
  readonly coalesce: boolean;
}
/** A query filter: only listed nodes, or nodes whose tag matches a (Go) regular expression. */
export type QueryFilter =
  | { readonly kind: 'nodes'; readonly names: string[] }
  | { readonly kind: 'tag'; readonly tag: string; readonly expr: string }
  | { readonly kind: 'unknown'; readonly type: number };

export interface Query {
  readonly type: 'query';
  readonly filters: QueryFilter[];
  readonly lTime: number;
  readonly id: number;
  readonly flags: number;
  readonly addr: Uint8Array;
  readonly port: number;
  readonly name: string;
  readonly sourceNode: string;
}
export interface QueryResponse {
  readonly type: 'query-response';
  readonly lTime: number;
  readonly id: number;
  readonly from: string;
  readonly flags: number;
}
export type SerfMessage = JoinIntent | LeaveIntent | UserEvent | Query | QueryResponse;

/** Query flag bits. */
export const QueryFlag = { ack: 1, noBroadcast: 2 } as const;

export function decodeSerfMessage(bytes: Uint8Array): Decoded<SerfMessage> {
  if (bytes.length === 0) return { ok: false, reason: 'empty serf message' };
  const type = bytes[0] as number;
  return decodeWith((): SerfMessage => {
    const map = decodeBodyMap(bytes.subarray(1));
    const lTime = readUint(map, 'LTime', lamportMax);
    switch (type) {
      case SerfMessageType.join:
        return { type: 'join', lTime, node: nonEmpty(readText(map, 'Node'), 'Node') };
      case SerfMessageType.leave:
        return { type: 'leave', lTime, node: nonEmpty(readText(map, 'Node'), 'Node'), prune: readBool(map, 'Prune') };
      case SerfMessageType.userEvent:
        return { type: 'user-event', lTime, name: readText(map, 'Name', 9216), payload: readBytes(map, 'Payload', 9216), coalesce: readBool(map, 'CC') };
      case SerfMessageType.query:
        return {
          type: 'query',
          lTime,
          id: readUint(map, 'ID', 0xffff_ffff),
          flags: readUint(map, 'Flags', 0xffff_ffff),
          addr: readBytes(map, 'Addr', 16),
          port: readUint(map, 'Port', 0xffff),
          name: readText(map, 'Name', 1024),
          sourceNode: readText(map, 'SourceNode'),
          filters: decodeFilters(map.get('Filters')),
        };
      case SerfMessageType.queryResponse:
        return { type: 'query-response', lTime, id: readUint(map, 'ID', 0xffff_ffff), from: readText(map, 'From'), flags: readUint(map, 'Flags', 0xffff_ffff) };
      default:
        throw new FieldError(`unsupported serf message type ${type}`);
    }
  });
}

function decodeFilters(value: MsgValue | undefined): QueryFilter[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.length > 64) throw new FieldError('Filters: expected a short array');
  return value.map((item): QueryFilter => {
    if (!(item instanceof Uint8Array) || item.length === 0) throw new FieldError('Filters: expected raw filters');
    const body = item.subarray(1);
    if (item[0] === 0) {
      const { value: names, end } = decodeMsgpack(body);
      if (end !== body.length) throw new FieldError('node filter: trailing bytes');
      return { kind: 'nodes', names: textArray(names) };
    }
    if (item[0] === 1) {
      const map = decodeBodyMap(body);
      return { kind: 'tag', tag: readText(map, 'Tag'), expr: readText(map, 'Expr', 1024) };
    }
    return { kind: 'unknown', type: item[0] as number };
  });
}

function nonEmpty(text: string, what: string): string {
  if (text === '') throw new FieldError(`empty ${what}`);
  return text;
}

function serfTyped(type: number, body: EncValue): Uint8Array {
  return concat([Uint8Array.of(type), encodeMsgpack(body)]);
}

export function encodeJoinIntent(intent: Omit<JoinIntent, 'type'>): Uint8Array {
  return serfTyped(SerfMessageType.join, { LTime: intent.lTime, Node: intent.node });
}

export function encodeLeaveIntent(intent: Omit<LeaveIntent, 'type'>): Uint8Array {
  return serfTyped(SerfMessageType.leave, { LTime: intent.lTime, Node: intent.node, Prune: intent.prune });
}

export function encodeQueryAck(ack: { lTime: number; id: number; from: string }): Uint8Array {
  return serfTyped(SerfMessageType.queryResponse, { Flags: QueryFlag.ack, From: ack.from, ID: ack.id, LTime: ack.lTime, Payload: null });
}

/** serf's push/pull user state (`[0x02]{...}`). We carry no user events, so `Events` is an empty ring. */
export interface SerfPushPull {
  readonly lTime: number;
  readonly statusLTimes: Map<string, number>;
  readonly leftMembers: string[];
  readonly eventLTime: number;
  readonly queryLTime: number;
}

export function encodeSerfPushPull(state: SerfPushPull): Uint8Array {
  return serfTyped(SerfMessageType.pushPull, {
    EventLTime: state.eventLTime,
    Events: new Array<null>(eventBufferSlots).fill(null),
    LTime: state.lTime,
    LeftMembers: state.leftMembers,
    QueryLTime: state.queryLTime,
    StatusLTimes: state.statusLTimes,
  });
}

export function decodeSerfPushPull(bytes: Uint8Array): Decoded<SerfPushPull> {
  if (bytes.length === 0 || bytes[0] !== SerfMessageType.pushPull) return { ok: false, reason: 'user state is not a serf push/pull' };
  return decodeWith((): SerfPushPull => {
    const map = decodeBodyMap(bytes.subarray(1));
    const statusLTimes = new Map<string, number>();
    const statusValue = map.get('StatusLTimes');
    if (statusValue !== undefined && statusValue !== null) {
      for (const [name, value] of asMap(statusValue)) {
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new FieldError('StatusLTimes: bad time');
        statusLTimes.set(name, value);
      }
    }
    return {
      lTime: readUint(map, 'LTime', lamportMax),
      statusLTimes,
      leftMembers: textArray(map.get('LeftMembers')),
      eventLTime: readUint(map, 'EventLTime', lamportMax),
      queryLTime: readUint(map, 'QueryLTime', lamportMax),
    };
  });
}

function textArray(value: MsgValue | undefined): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new FieldError('expected an array of strings');
  return value.map((item) => {
    if (!(item instanceof Uint8Array)) throw new FieldError('expected a string');
    return utf8(item);
  });
}

/** Tags as node meta: `0xFF` + msgpack map with sorted keys (deterministic bytes). */
export function encodeTags(tags: ReadonlyMap<string, string> | Readonly<Record<string, string>>): Uint8Array {
  const entries = tags instanceof Map ? new Map(tags) : new Map(Object.entries(tags));
  return concat([Uint8Array.of(tagsMagic), encodeMsgpack(entries)]);
}

export function tagsFitMeta(meta: Uint8Array): boolean {
  return meta.length <= metaBytesMax;
}

/** Decodes meta into tags; meta without the magic byte is a bare `role` (serf protocol < 3). */
export function decodeTags(meta: Uint8Array): Decoded<Record<string, string>> {
  if (meta.length === 0 || meta[0] !== tagsMagic) {
    return { ok: true, value: meta.length === 0 ? {} : { role: utf8(meta) } };
  }
  return decodeWith(() => {
    const { value, end } = decodeMsgpack(meta, 1);
    if (end !== meta.length) throw new FieldError('trailing bytes after tags');
    const tags: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [key, item] of asMap(value)) {
      if (!(item instanceof Uint8Array)) throw new FieldError(`tag ${key}: not a string`);
      tags[key] = utf8(item);
    }
    return { ...tags };
  });
}
