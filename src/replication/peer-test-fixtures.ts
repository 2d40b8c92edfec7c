/**
 * Shared pieces for replication's peer tests (not a test file itself): one valid message of every
 * Raft type, seeded random valid messages, a comparable form of messages (bytes as hex, so a
 * Buffer view and a Uint8Array compare equal), a recording logger and recording metrics.
 */
import { encodeConfig, EntryType, type Entry, type Message, type MessageType, type NodeId } from '../raft/index.js';
import type { Prng } from '../util/index.js';
import type { InvalidReason } from './peer-codec.js';
import type { PeerLogger, PeerMetrics, SendDropReason } from './peer-metrics.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** One valid message of each type from `from` to `to`, with values that exercise every field. */
export function sampleMessages(from: NodeId, to: NodeId): Message[] {
  const base = { from, to };
  const entries: Entry[] = [
    { index: 41, term: 6, type: EntryType.Normal, data: bytes('first record') },
    { index: 42, term: 7, type: EntryType.Noop, data: new Uint8Array(0) },
    { index: 43, term: 7, type: EntryType.Config, data: encodeConfig({ voters: [from, to, 'voter-c'], learners: ['learner-d'] }) },
    { index: 44, term: 7, type: EntryType.Normal, data: new Uint8Array(1024).fill(0xab) },
  ];
  return [
    { type: 'vote', ...base, term: 7, lastLogIndex: 40, lastLogTerm: 6, transfer: false },
    { type: 'preVote', ...base, term: 8, lastLogIndex: MAX_SAFE, lastLogTerm: 7, transfer: true },
    { type: 'voteResponse', ...base, term: 7, reject: false },
    { type: 'preVoteResponse', ...base, term: 8, reject: true },
    { type: 'append', ...base, term: 7, prevLogIndex: 40, prevLogTerm: 6, commit: 39, entries },
    { type: 'append', ...base, term: 1, prevLogIndex: 0, prevLogTerm: 0, commit: 0, entries: [] },
    { type: 'appendResponse', ...base, term: 7, reject: true, index: 40, rejectHintIndex: 30, rejectHintTerm: 5 },
    { type: 'appendResponse', ...base, term: 7, reject: false, index: 2 ** 40, rejectHintIndex: 0, rejectHintTerm: 0 },
    { type: 'heartbeat', ...base, term: 7, commit: 44, context: null },
    { type: 'heartbeat', ...base, term: 7, commit: 0, context: `${from}:17` },
    { type: 'heartbeat', ...base, term: 7, commit: 3, context: '' },
    { type: 'heartbeatResponse', ...base, term: 7, context: null },
    { type: 'heartbeatResponse', ...base, term: 7, context: `${from}:17` },
    {
      type: 'snapshot',
      ...base,
      term: 7,
      meta: { index: 100, term: 6, config: { voters: [from, to], learners: ['learner-c', 'learner-d'] } },
      offsetBytes: 4096,
      totalBytes: 10_000,
      data: new Uint8Array(2048).fill(7),
    },
    { type: 'snapshot', ...base, term: 7, meta: { index: 1, term: 1, config: { voters: [from], learners: [] } }, offsetBytes: 0, totalBytes: 0, data: new Uint8Array(0) },
    { type: 'snapshotResponse', ...base, term: 7, snapshotIndex: 100, nextOffsetBytes: 6144 },
    { type: 'timeoutNow', ...base, term: 7 },
    { type: 'timeoutNow', ...base, term: 0 },
  ];
}

/** An integer in [0, MAX_SAFE] with every varint length about equally likely. */
export function randomUint(prng: Prng, max = MAX_SAFE): number {
  const bits = prng.int(0, 53);
  const value = Math.floor(prng.next() * 2 ** bits);
  return Math.min(value, max);
}

function randomData(prng: Prng, maxBytes: number): Uint8Array {
  return prng.fill(new Uint8Array(prng.int(0, maxBytes)));
}

function randomContext(prng: Prng, from: NodeId): string | null {
  return prng.chance(0.5) ? null : prng.chance(0.2) ? '' : `${from}:${prng.int(0, 1_000_000)}`;
}

const TYPES: readonly MessageType[] = [
  'vote',
  'preVote',
  'voteResponse',
  'preVoteResponse',
  'append',
  'appendResponse',
  'heartbeat',
  'heartbeatResponse',
  'snapshot',
  'snapshotResponse',
  'timeoutNow',
];

function randomEntries(prng: Prng, from: NodeId, prevLogIndex: number, prevLogTerm: number, term: number): Entry[] {
  const entries: Entry[] = [];
  let entryTerm = Math.max(prevLogTerm, 1);
  const count = prng.int(0, 6);
  for (let i = 0; i < count; i++) {
    entryTerm = prng.int(entryTerm, term);
    const type = prng.pick([EntryType.Normal, EntryType.Normal, EntryType.Noop, EntryType.Config]);
    const data = type === EntryType.Config ? encodeConfig({ voters: [from, `${from}-b`], learners: prng.chance(0.5) ? [`${from}-c`] : [] }) : randomData(prng, 40);
    entries.push({ index: prevLogIndex + 1 + i, term: entryTerm, type, data });
  }
  return entries;
}

/** A random message that passes the gateway for a receiver `to` on the stream of `from`. */
export function randomMessage(prng: Prng, from: NodeId, to: NodeId): Message {
  const term = randomUint(prng);
  const base = { from, to, term };
  const type = prng.pick(TYPES);
  switch (type) {
    case 'vote':
    case 'preVote':
      return { type, ...base, lastLogIndex: randomUint(prng), lastLogTerm: randomUint(prng, term), transfer: prng.chance(0.5) };
    case 'voteResponse':
    case 'preVoteResponse':
      return { type, ...base, reject: prng.chance(0.5) };
    case 'append': {
      const entryTerm = Math.max(term, 1);
      const prevLogIndex = randomUint(prng, MAX_SAFE - 10);
      const prevLogTerm = randomUint(prng, entryTerm);
      return { type, ...base, term: entryTerm, prevLogIndex, prevLogTerm, commit: randomUint(prng), entries: randomEntries(prng, from, prevLogIndex, prevLogTerm, entryTerm) };
    }
    case 'appendResponse':
      return { type, ...base, reject: prng.chance(0.5), index: randomUint(prng), rejectHintIndex: randomUint(prng), rejectHintTerm: randomUint(prng, term) };
    case 'heartbeat':
      return { type, ...base, commit: randomUint(prng), context: randomContext(prng, from) };
    case 'heartbeatResponse':
      return { type, ...base, context: randomContext(prng, from) };
    case 'snapshot': {
      const snapshotTerm = Math.max(term, 1);
      const data = randomData(prng, 64);
      const offsetBytes = prng.int(0, 1000);
      const totalBytes = offsetBytes + data.length + prng.int(0, 1000);
      const meta = { index: Math.max(randomUint(prng), 1), term: prng.int(1, Math.min(snapshotTerm, 1000)), config: { voters: [from, to], learners: prng.chance(0.5) ? [`${from}-c`] : [] } };
      return { type, ...base, term: snapshotTerm, meta, offsetBytes, totalBytes, data };
    }
    case 'snapshotResponse':
      return { type, ...base, snapshotIndex: randomUint(prng), nextOffsetBytes: randomUint(prng) };
    case 'timeoutNow':
      return { type, ...base };
  }
}

/** A deep copy with every byte array as `hex:<...>`, for deepEqual across Buffer and Uint8Array. */
export function comparable(value: unknown): unknown {
  if (value instanceof Uint8Array) return `hex:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  if (Array.isArray(value)) return value.map(comparable);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, comparable(inner)]));
  }
  return value;
}

export interface LoggedLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  object: object;
  message: string;
}

/** Records every line; `waitFor` resolves on the first matching line (already logged or later). */
export class RecordingPeerLogger implements PeerLogger {
  readonly lines: LoggedLine[] = [];
  private waiters: { pattern: RegExp; resolve: (line: LoggedLine) => void }[] = [];

  debug(object: object, message: string): void {
    this.push({ level: 'debug', object, message });
  }
  info(object: object, message: string): void {
    this.push({ level: 'info', object, message });
  }
  warn(object: object, message: string): void {
    this.push({ level: 'warn', object, message });
  }
  error(object: object, message: string): void {
    this.push({ level: 'error', object, message });
  }

  matching(pattern: RegExp, level?: LoggedLine['level']): LoggedLine[] {
    return this.lines.filter((line) => pattern.test(line.message) && (level === undefined || line.level === level));
  }

  waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<LoggedLine> {
    const seen = this.lines.find((line) => pattern.test(line.message));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  private push(line: LoggedLine): void {
    this.lines.push(line);
    const ready = this.waiters.filter((waiter) => waiter.pattern.test(line.message));
    this.waiters = this.waiters.filter((waiter) => !waiter.pattern.test(line.message));
    for (const waiter of ready) waiter.resolve(line);
  }
}

/** Counts every PeerMetrics callback. */
export class RecordingMetrics implements PeerMetrics {
  readonly sent = new Map<MessageType, number>();
  readonly dropped = new Map<SendDropReason, number>();
  readonly received = new Map<MessageType, number>();
  readonly rejected = new Map<InvalidReason, number>();
  batchCount = 0;
  batchMessageCount = 0;
  batchBytes = 0;
  queuedBytesMax = 0;
  streamFailures = 0;
  private readonly queued = new Map<NodeId, number>();
  private waiters: { holds: () => boolean; resolve: () => void }[] = [];

  /** Resolves once `holds()` is true (checked now and after every callback). */
  until(holds: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    if (holds()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        holds,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  private changed(): void {
    const ready = this.waiters.filter((waiter) => waiter.holds());
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((waiter) => !ready.includes(waiter));
    for (const waiter of ready) waiter.resolve();
  }

  messageSent(_to: NodeId, type: MessageType): void {
    this.sent.set(type, (this.sent.get(type) ?? 0) + 1);
    this.changed();
  }
  batchSent(_to: NodeId, messageCount: number, sizeBytes: number): void {
    this.batchCount += 1;
    this.batchMessageCount += messageCount;
    this.batchBytes += sizeBytes;
    this.changed();
  }
  messageDropped(_to: NodeId, _type: MessageType, reason: SendDropReason): void {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    this.changed();
  }
  queuedBytes(to: NodeId, sizeBytes: number): void {
    this.queued.set(to, sizeBytes);
    this.queuedBytesMax = Math.max(this.queuedBytesMax, sizeBytes);
    this.changed();
  }
  streamFailed(): void {
    this.streamFailures += 1;
    this.changed();
  }
  messageReceived(_from: NodeId, type: MessageType): void {
    this.received.set(type, (this.received.get(type) ?? 0) + 1);
    this.changed();
  }
  messageRejected(_from: NodeId, reason: InvalidReason): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    this.changed();
  }

  total(map: Map<string, number>): number {
    let sum = 0;
    for (const value of map.values()) sum += value;
    return sum;
  }
}
