/**
 * What the peer transport and service report: a logger shape (pino's Logger fits) and plain
 * metric callbacks, so that replication needs no telemetry import; the agent maps them onto its
 * counters and gauges.
 */
import type { MessageType, NodeId } from '../raft/index.js';
import type { InvalidReason } from './peer-codec.js';

export interface PeerLogger {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/** Why the transport dropped an outgoing message (Raft tolerates loss and resends). */
export const SendDropReason = {
  /** addressOf() knows no address for the peer. */
  NoAddress: 'noAddress',
  /** The peer's queue already holds maxQueuedBytesPerPeer. */
  QueueFull: 'queueFull',
  /** The stream to the peer failed with the message still queued. */
  StreamFailed: 'streamFailed',
  /** Sent after close(). */
  Closed: 'closed',
  /** Addressed to this node itself (the core never does this). */
  ToSelf: 'toSelf',
} as const;
export type SendDropReason = (typeof SendDropReason)[keyof typeof SendDropReason];

/**
 * Every callback is optional. batchSent's size is the encoded MessageBatch's; per-message sizes
 * are estimates (estimateMessageBytes), which is what the queue bound counts too.
 */
export interface PeerMetrics {
  /** A message went out to `to` in a batch. */
  messageSent?(to: NodeId, type: MessageType, sizeBytes: number): void;
  /** One MessageBatch was written to the stream to `to` (writes per message show batching). */
  batchSent?(to: NodeId, messageCount: number, sizeBytes: number): void;
  messageDropped?(to: NodeId, type: MessageType, reason: SendDropReason): void;
  /** Gauge: the bytes now queued for `to` (estimated; see estimateMessageBytes). */
  queuedBytes?(to: NodeId, sizeBytes: number): void;
  /** The stream to `to` ended other than by close(), with this gRPC status code. */
  streamFailed?(to: NodeId, code: number): void;
  /** A message from `from` passed the gateway and was delivered. */
  messageReceived?(from: NodeId, type: MessageType): void;
  /** A message (or a whole batch: `malformed`) from `from` was dropped at the gateway. */
  messageRejected?(from: NodeId, reason: InvalidReason): void;
}
