/**
 * Raft messages to and from annal.raft.v1, with the validation of everything a peer sends.
 *
 * This is the gateway: `messageFromWire` is the only way a received message reaches the Raft
 * core, and it returns a message only if every property the core relies on holds (the idea of
 * etcd's logSlice.valid()): ids are non-empty and bounded and name this node and the stream's
 * sender; every index, term, offset and size is a non-negative safe integer; an append's entries
 * are contiguous after prevLogIndex with non-decreasing terms no higher than the message's, of a
 * known type, configuration entries decode; a snapshot chunk lies within a total size no larger
 * than `maxSnapshotBytes` (the core allocates that many bytes on the first chunk); and entry
 * count and payload bytes per message are bounded. Anything else is an `Invalid` value naming
 * the rule: nothing here throws on input.
 *
 * What the gateway cannot check is state: whether a heartbeat's commit lies within our log or an
 * append conflicts with our committed prefix. Those stay assertions of the core, as in etcd: a
 * peer holding the `replicate` permission is trusted to run a correct Raft.
 */
import type { Message as WireMessage } from '../gen/annal/raft/v1/raft.js';
import { decodeConfig, EntryType, type ClusterConfig, type Entry, type Message, type NodeId } from '../raft/index.js';
import { unreachable } from '../util/index.js';

const ENTRY_TYPES: ReadonlySet<number> = new Set(Object.values(EntryType));
import { decodeMessageBatch, DecodeFailure } from './peer-wire.js';

/** Why a received message (or batch: `malformed`) was dropped; also the metric's label. */
export const InvalidReason = {
  /** The bytes are not a protobuf MessageBatch. */
  Malformed: 'malformed',
  /** No message body, or a snapshot chunk without its meta. */
  MissingField: 'missingField',
  /** An empty, too long or otherwise unusable node id. */
  BadId: 'badId',
  /** Addressed to another node. */
  WrongTo: 'wrongTo',
  /** Claims a sender other than the stream's `annal-from`. */
  WrongFrom: 'wrongFrom',
  /** An index, term, offset or size that is not a non-negative safe integer (uint64 above 2^53 - 1). */
  BadInteger: 'badInteger',
  /** A term above the message's, entry terms that decrease, or an entry of term 0. */
  BadTerm: 'badTerm',
  /** Entries not contiguous after prevLogIndex. */
  EntryIndex: 'entryIndex',
  /** An entry type other than normal, no-op, configuration and control. */
  EntryType: 'entryType',
  /** A configuration (entry or snapshot meta) that does not decode or is not a valid membership. */
  BadConfig: 'badConfig',
  TooManyEntries: 'tooManyEntries',
  /** Entry or chunk payload bytes above `maxMessageBytes`. */
  TooLarge: 'tooLarge',
  /** A snapshot chunk of a snapshot at index 0. */
  BadSnapshot: 'badSnapshot',
  /** A snapshot whose total size exceeds `maxSnapshotBytes`. */
  SnapshotTooLarge: 'snapshotTooLarge',
  /** A chunk that ends beyond its snapshot's total size. */
  SnapshotRange: 'snapshotRange',
  /** A chunk of a snapshot seen before with another total size (see SnapshotSizes). */
  SnapshotSizeChanged: 'snapshotSizeChanged',
  /** A ReadIndex context above READ_CONTEXT_LENGTH_MAX. */
  BadContext: 'badContext',
} as const;
export type InvalidReason = (typeof InvalidReason)[keyof typeof InvalidReason];

export interface Invalid {
  readonly ok: false;
  readonly reason: InvalidReason;
  /** What exactly is wrong, for the log line. */
  readonly detail: string;
}

export type Validated = { readonly ok: true; readonly message: Message } | Invalid;

/** Bounds on what one received message may carry. */
export interface PeerLimits {
  /** Largest snapshot a chunk may announce (the core allocates it whole). Default 1 MiB. */
  readonly maxSnapshotBytes: number;
  /** Most entries in one append. Default 65536 (the core's 1 MiB messages hold at most ~44k). */
  readonly maxEntriesPerMessage: number;
  /**
   * Most payload bytes (entry data, snapshot chunk data) in one message. Default 16 MiB: above
   * the core's maxMessageBytes (1 MiB) plus one entry, which the core always sends whole.
   */
  readonly maxMessageBytes: number;
}

const MIB = 1024 * 1024;

export const DEFAULT_PEER_LIMITS: PeerLimits = {
  maxSnapshotBytes: MIB,
  maxEntriesPerMessage: 65536,
  maxMessageBytes: 16 * MIB,
};

/** Longest node id accepted, in UTF-16 code units (host names are at most 253). */
export const NODE_ID_LENGTH_MAX = 255;
/** Longest ReadIndex context accepted (the driver's are `<node id>:<counter>`). */
export const READ_CONTEXT_LENGTH_MAX = NODE_ID_LENGTH_MAX + 32;
/** Most members (voters plus learners) a configuration may name. */
export const CONFIG_MEMBERS_MAX = 1024;

export interface GatewayContext {
  /** This node: every message must be addressed to it. */
  readonly selfId: NodeId;
  /** The stream's `annal-from`: every message must claim it as sender. */
  readonly from: NodeId;
  readonly limits: PeerLimits;
}

export function isValidNodeId(id: unknown): id is NodeId {
  return typeof id === 'string' && id.length > 0 && id.length <= NODE_ID_LENGTH_MAX;
}

function isUint(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function invalid(reason: InvalidReason, detail: string): Invalid {
  return { ok: false, reason, detail };
}

function badUint(name: string, value: number): Invalid | undefined {
  return isUint(value) ? undefined : invalid(InvalidReason.BadInteger, `${name} ${value} is not a non-negative safe integer`);
}

function quoted(id: string): string {
  return JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}…` : id);
}

/** Why `config` is not a usable membership, or undefined if it is one. */
export function configProblem(config: { voters: unknown; learners: unknown }): string | undefined {
  const { voters, learners } = config;
  if (!Array.isArray(voters) || !Array.isArray(learners)) return 'voters and learners must be lists';
  if (voters.length === 0) return 'a configuration needs at least one voter';
  if (voters.length + learners.length > CONFIG_MEMBERS_MAX) return `more than ${CONFIG_MEMBERS_MAX} members`;
  const seen = new Set<string>();
  for (const id of [...voters, ...learners] as unknown[]) {
    if (!isValidNodeId(id)) return `member ${JSON.stringify(id)} is not a valid node id`;
    if (seen.has(id)) return `member ${quoted(id)} is listed twice`;
    seen.add(id);
  }
  return undefined;
}

function configEntryProblem(data: Uint8Array): string | undefined {
  let config: ClusterConfig;
  try {
    config = decodeConfig(data);
  } catch (error) {
    return `does not decode: ${error instanceof Error ? error.message : String(error)}`;
  }
  return configProblem(config);
}

function contextProblem(context: string | undefined): Invalid | undefined {
  if (context === undefined || context.length <= READ_CONTEXT_LENGTH_MAX) return undefined;
  return invalid(InvalidReason.BadContext, `context of ${context.length} characters (at most ${READ_CONTEXT_LENGTH_MAX})`);
}

type Base = { readonly from: NodeId; readonly to: NodeId; readonly term: number };
type Body<C extends NonNullable<WireMessage['body']>['$case']> = Extract<NonNullable<WireMessage['body']>, { $case: C }>['value'];

function appendFromWire(base: Base, value: Body<'append'>, limits: PeerLimits): Validated {
  const { prevLogIndex, prevLogTerm, commit, entries } = value;
  const bad = badUint('prevLogIndex', prevLogIndex) ?? badUint('prevLogTerm', prevLogTerm) ?? badUint('commit', commit);
  if (bad !== undefined) return bad;
  if (prevLogTerm > base.term) return invalid(InvalidReason.BadTerm, `prevLogTerm ${prevLogTerm} above the message's term ${base.term}`);
  if (entries.length > limits.maxEntriesPerMessage) {
    return invalid(InvalidReason.TooManyEntries, `${entries.length} entries (at most ${limits.maxEntriesPerMessage})`);
  }
  if (!isUint(prevLogIndex + entries.length)) return invalid(InvalidReason.BadInteger, `entries beyond index 2^53 - 1`);
  let payloadBytes = 0;
  let previousTerm = prevLogTerm;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    if (entry.index !== prevLogIndex + 1 + i) {
      return invalid(InvalidReason.EntryIndex, `entry ${i} has index ${entry.index}, expected ${prevLogIndex + 1 + i}`);
    }
    const badTerm = badUint(`entry ${entry.index} term`, entry.term);
    if (badTerm !== undefined) return badTerm;
    if (entry.term < previousTerm || entry.term > base.term || entry.term === 0) {
      return invalid(InvalidReason.BadTerm, `entry ${entry.index} has term ${entry.term}: not in [${Math.max(previousTerm, 1)}, ${base.term}]`);
    }
    if (!ENTRY_TYPES.has(entry.type)) {
      return invalid(InvalidReason.EntryType, `entry ${entry.index} has type ${entry.type}`);
    }
    if (entry.type === EntryType.Config) {
      const problem = configEntryProblem(entry.data);
      if (problem !== undefined) return invalid(InvalidReason.BadConfig, `configuration entry ${entry.index}: ${problem}`);
    }
    payloadBytes += entry.data.length;
    previousTerm = entry.term;
  }
  if (payloadBytes > limits.maxMessageBytes) {
    return invalid(InvalidReason.TooLarge, `${payloadBytes} bytes of entries (at most ${limits.maxMessageBytes})`);
  }
  // The entries were checked field by field above: their type is one of EntryType's.
  return { ok: true, message: { type: 'append', ...base, prevLogIndex, prevLogTerm, commit, entries: entries as readonly Entry[] } };
}

function snapshotFromWire(base: Base, value: Body<'snapshot'>, limits: PeerLimits): Validated {
  const { meta, offsetBytes, totalBytes, data } = value;
  if (meta === undefined) return invalid(InvalidReason.MissingField, 'snapshot chunk without meta');
  const bad = badUint('meta.index', meta.index) ?? badUint('meta.term', meta.term) ?? badUint('offsetBytes', offsetBytes) ?? badUint('totalBytes', totalBytes);
  if (bad !== undefined) return bad;
  if (meta.index === 0) return invalid(InvalidReason.BadSnapshot, 'snapshot at index 0');
  if (meta.term === 0 || meta.term > base.term) return invalid(InvalidReason.BadTerm, `snapshot term ${meta.term}: not in [1, ${base.term}]`);
  const config: ClusterConfig = { voters: meta.voters, learners: meta.learners };
  const problem = configProblem(config);
  if (problem !== undefined) return invalid(InvalidReason.BadConfig, `snapshot configuration: ${problem}`);
  if (totalBytes > limits.maxSnapshotBytes) {
    return invalid(InvalidReason.SnapshotTooLarge, `snapshot of ${totalBytes} bytes (at most ${limits.maxSnapshotBytes})`);
  }
  if (data.length > limits.maxMessageBytes) return invalid(InvalidReason.TooLarge, `chunk of ${data.length} bytes (at most ${limits.maxMessageBytes})`);
  if (offsetBytes + data.length > totalBytes) {
    return invalid(InvalidReason.SnapshotRange, `chunk [${offsetBytes}, ${offsetBytes + data.length}) beyond the snapshot's ${totalBytes} bytes`);
  }
  const snapshotMeta = { index: meta.index, term: meta.term, config };
  return { ok: true, message: { type: 'snapshot', ...base, meta: snapshotMeta, offsetBytes, totalBytes, data } };
}

function bodyFromWire(base: Base, body: NonNullable<WireMessage['body']>, limits: PeerLimits): Validated {
  switch (body.$case) {
    case 'vote':
    case 'preVote': {
      const { lastLogIndex, lastLogTerm, transfer } = body.value;
      const bad = badUint('lastLogIndex', lastLogIndex) ?? badUint('lastLogTerm', lastLogTerm);
      if (bad !== undefined) return bad;
      if (lastLogTerm > base.term) return invalid(InvalidReason.BadTerm, `lastLogTerm ${lastLogTerm} above the message's term ${base.term}`);
      return { ok: true, message: { type: body.$case, ...base, lastLogIndex, lastLogTerm, transfer } };
    }
    case 'voteResponse':
    case 'preVoteResponse':
      return { ok: true, message: { type: body.$case, ...base, reject: body.value.reject } };
    case 'append':
      return appendFromWire(base, body.value, limits);
    case 'appendResponse': {
      const { reject, index, rejectHintIndex, rejectHintTerm } = body.value;
      const bad = badUint('index', index) ?? badUint('rejectHintIndex', rejectHintIndex) ?? badUint('rejectHintTerm', rejectHintTerm);
      if (bad !== undefined) return bad;
      if (rejectHintTerm > base.term) return invalid(InvalidReason.BadTerm, `rejectHintTerm ${rejectHintTerm} above the message's term ${base.term}`);
      return { ok: true, message: { type: 'appendResponse', ...base, reject, index, rejectHintIndex, rejectHintTerm } };
    }
    case 'heartbeat': {
      const { commit, context } = body.value;
      const bad = badUint('commit', commit) ?? contextProblem(context);
      if (bad !== undefined) return bad;
      return { ok: true, message: { type: 'heartbeat', ...base, commit, context: context ?? null } };
    }
    case 'heartbeatResponse': {
      const { context } = body.value;
      const bad = contextProblem(context);
      if (bad !== undefined) return bad;
      return { ok: true, message: { type: 'heartbeatResponse', ...base, context: context ?? null } };
    }
    case 'snapshot':
      return snapshotFromWire(base, body.value, limits);
    case 'snapshotResponse': {
      const { snapshotIndex, nextOffsetBytes } = body.value;
      const bad = badUint('snapshotIndex', snapshotIndex) ?? badUint('nextOffsetBytes', nextOffsetBytes);
      if (bad !== undefined) return bad;
      return { ok: true, message: { type: 'snapshotResponse', ...base, snapshotIndex, nextOffsetBytes } };
    }
    case 'timeoutNow':
      return { ok: true, message: { type: 'timeoutNow', ...base } };
    default:
      return unreachable(body);
  }
}

/** The Raft message `wire` stands for if it passes every rule above, or the rule it breaks. */
export function messageFromWire(wire: WireMessage, context: GatewayContext): Validated {
  const { from, to, term, body } = wire;
  if (body === undefined) return invalid(InvalidReason.MissingField, 'message without a body');
  if (!isValidNodeId(from)) return invalid(InvalidReason.BadId, `from ${quoted(from)} is not a valid node id`);
  if (!isValidNodeId(to)) return invalid(InvalidReason.BadId, `to ${quoted(to)} is not a valid node id`);
  if (to !== context.selfId) return invalid(InvalidReason.WrongTo, `${body.$case} to ${quoted(to)} arrived at ${quoted(context.selfId)}`);
  if (from !== context.from) {
    return invalid(InvalidReason.WrongFrom, `${body.$case} from ${quoted(from)} arrived on the stream of ${quoted(context.from)}`);
  }
  const bad = badUint('term', term);
  if (bad !== undefined) return bad;
  return bodyFromWire({ from, to, term }, body, context.limits);
}

/** The wire form of a Raft message (what encodeMessageBatch writes, as generated objects). */
export function messageToWire(message: Message): WireMessage {
  const base = { from: message.from, to: message.to, term: message.term };
  switch (message.type) {
    case 'vote':
    case 'preVote': {
      const { lastLogIndex, lastLogTerm, transfer } = message;
      return { ...base, body: { $case: message.type, value: { lastLogIndex, lastLogTerm, transfer } } };
    }
    case 'voteResponse':
    case 'preVoteResponse':
      return { ...base, body: { $case: message.type, value: { reject: message.reject } } };
    case 'append': {
      const entries = message.entries.map(({ index, term, type, data }) => ({ index, term, type, data: Buffer.from(data) }));
      return { ...base, body: { $case: 'append', value: { prevLogIndex: message.prevLogIndex, prevLogTerm: message.prevLogTerm, commit: message.commit, entries } } };
    }
    case 'appendResponse': {
      const { reject, index, rejectHintIndex, rejectHintTerm } = message;
      return { ...base, body: { $case: 'appendResponse', value: { reject, index, rejectHintIndex, rejectHintTerm } } };
    }
    case 'heartbeat':
      return { ...base, body: { $case: 'heartbeat', value: { commit: message.commit, context: message.context ?? undefined } } };
    case 'heartbeatResponse':
      return { ...base, body: { $case: 'heartbeatResponse', value: { context: message.context ?? undefined } } };
    case 'snapshot': {
      const { index, term, config } = message.meta;
      const meta = { index, term, voters: [...config.voters], learners: [...config.learners] };
      const value = { meta, offsetBytes: message.offsetBytes, totalBytes: message.totalBytes, data: Buffer.from(message.data) };
      return { ...base, body: { $case: 'snapshot', value } };
    }
    case 'snapshotResponse':
      return { ...base, body: { $case: 'snapshotResponse', value: { snapshotIndex: message.snapshotIndex, nextOffsetBytes: message.nextOffsetBytes } } };
    case 'timeoutNow':
      return { ...base, body: { $case: 'timeoutNow', value: {} } };
    default:
      return unreachable(message);
  }
}

export interface DecodedBatch {
  readonly ok: true;
  /** The messages that passed the gateway, in order. */
  readonly messages: Message[];
  /** The ones that did not, with why. */
  readonly rejected: Invalid[];
}

/** Decodes and validates a received MessageBatch; `malformed` when the bytes are not one. */
export function decodeBatch(bytes: Uint8Array, context: GatewayContext): DecodedBatch | Invalid {
  const batch = decodeMessageBatch(bytes);
  return batch instanceof DecodeFailure ? invalid(InvalidReason.Malformed, batch.reason) : validateBatch(batch.messages, context);
}

/** Validates the messages of a decoded MessageBatch. */
export function validateBatch(messages: readonly WireMessage[], context: GatewayContext): DecodedBatch {
  const valid: Message[] = [];
  const rejected: Invalid[] = [];
  for (const wire of messages) {
    const result = messageFromWire(wire, context);
    if (result.ok) valid.push(result.message);
    else rejected.push(result);
  }
  return { ok: true, messages: valid, rejected };
}

/**
 * The core keeps one incoming snapshot, keyed by (index, term), in a buffer sized by the first
 * chunk's totalBytes, and writes later chunks of the same key into it. A later chunk announcing
 * another total could write past that buffer, which no per-message rule can see. This remembers
 * the first total announced for the last few keys and rejects chunks that disagree.
 */
export class SnapshotSizes {
  private readonly totals = new Map<string, number>();

  constructor(private readonly keysMax = 16) {}

  check(message: Message): Invalid | undefined {
    if (message.type !== 'snapshot') return undefined;
    const key = `${message.meta.index}/${message.meta.term}`;
    const known = this.totals.get(key);
    if (known === undefined) {
      if (this.totals.size >= this.keysMax) this.totals.delete(this.totals.keys().next().value!);
      this.totals.set(key, message.totalBytes);
      return undefined;
    }
    if (known === message.totalBytes) return undefined;
    return invalid(
      InvalidReason.SnapshotSizeChanged,
      `chunk of snapshot ${key} announces ${message.totalBytes} bytes; an earlier chunk announced ${known}`,
    );
  }
}

/**
 * Roughly the bytes `message` takes in a MessageBatch (an upper bound for ASCII ids and entries
 * under 2 MiB): what the transport's queue bound counts, without the encoder's exact sizing pass.
 */
export function estimateMessageBytes(message: Message): number {
  let bytes = 64 + message.from.length + message.to.length;
  switch (message.type) {
    case 'append':
      for (const entry of message.entries) bytes += entry.data.length + 32;
      return bytes;
    case 'snapshot':
      bytes += message.data.length;
      for (const id of message.meta.config.voters) bytes += id.length + 3;
      for (const id of message.meta.config.learners) bytes += id.length + 3;
      return bytes;
    case 'heartbeat':
    case 'heartbeatResponse':
      return bytes + (message.context?.length ?? 0);
    default:
      return bytes;
  }
}
