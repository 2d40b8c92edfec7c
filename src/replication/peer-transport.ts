/**
 * The Raft Transport over gRPC: outgoing messages go to each peer on one long-lived
 * annal.raft.v1.Raft/Stream (see peer-link.ts for batching, backpressure, bounds and
 * reconnection); incoming ones arrive through the PeerService on this node's server, which hands
 * them to `deliver`. The same per-peer channel carries Forward and ReadIndex calls.
 *
 * Delivery is best effort, as the Transport contract says: `send` never blocks or throws, an
 * unreachable or slow peer only loses its own messages, and Raft resends what matters.
 *
 * Channels use keepalive pings (every keepaliveTimeMs, answered within as long) so that a dead
 * peer's stream fails within about two seconds instead of waiting for TCP, and reconnect after
 * at most a second; both suit peers on one LAN.
 */
import { Metadata, status as Status, type ChannelCredentials, type ChannelOptions, type Client, type ServiceError } from '@grpc/grpc-js';
import { RateLimitedLog } from '../auth/index.js';
import type { Message, NodeId, Transport } from '../raft/index.js';
import { errorFromStatus, ErrorMetadataKey } from '../wire/index.js';
import { assert, AssertionError, ClosedError, OutcomeUnknownError, UnavailableError, type AnnalError } from '../util/index.js';
import { KeyedLogLimit } from './log-limit.js';
import { PeerLink } from './peer-link.js';
import { SendDropReason, type PeerLogger, type PeerMetrics } from './peer-metrics.js';
import { PeerMetadataKey, RaftPeerService } from './peer-protocol.js';

const MIB = 1024 * 1024;
/** Below grpc-js's default 4 MiB receive limit, with room for the framing the estimate misses. */
const BATCH_BYTES_DEFAULT = 4 * MIB - 64 * 1024;

export interface PeerTransportOptions {
  selfId: NodeId;
  /** Our cluster id, sent as stream metadata (undefined before we have one). */
  clusterId: () => string | undefined;
  /** grpc-js channel credentials for calls to peers (peer mTLS, or createInsecure()). */
  credentials: ChannelCredentials;
  /** The gRPC address `host:port` of a peer now (it may change; re-dial when it does). */
  addressOf: (id: NodeId) => string | undefined;
  logger: PeerLogger;
  /** Bytes of messages queued per peer before new ones are dropped (Raft tolerates loss). Default 64 MiB. */
  maxQueuedBytesPerPeer?: number;
  /**
   * Largest MessageBatch written at once, in estimated bytes (one larger message still goes
   * alone). Must stay below the receivers' grpc.max_receive_message_length (LogServer's is at
   * least 16 MiB; grpc-js's default is 4 MiB). Default 4 MiB - 64 KiB.
   */
  maxBatchBytes?: number;
  /** First delay before reopening a failed stream; doubles per failure. Default 50 ms. */
  reconnectBackoffMsMin?: number;
  /** Cap of that delay (jittered over its upper half). Default 1000 ms. */
  reconnectBackoffMsMax?: number;
  /** Interval of HTTP/2 keepalive pings, and how long one may go unanswered. Default 1000 ms. */
  keepaliveTimeMs?: number;
  /** Optional counters/gauges hooks (messages/bytes sent by type, drops by reason). */
  metrics?: PeerMetrics;
}

export interface ForwardOptions {
  /** Absolute deadline in ms since the epoch (Date.now() + timeout), like grpc-js's `deadline`. */
  deadlineMs: number;
  /** Extra call metadata (e.g. trace context); annal-from and annal-cluster-id are added. */
  metadata?: Metadata;
}

export interface ReadIndexOptions {
  /** Absolute deadline in ms since the epoch (Date.now() + timeout). */
  deadlineMs: number;
}

/** Deadlines before this (September 2001) are surely durations passed by mistake. */
const EPOCH_MS_MIN = 1e12;

export class PeerTransport implements Transport {
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly calls = new Set<{ cancel(): void }>();
  private readonly channelOptions: ChannelOptions;
  private readonly warnLog: RateLimitedLog;
  private readonly peerErrorLog = new KeyedLogLimit({ windowMs: 60_000, keysMax: 1024 });
  private handler: ((message: Message) => void) | undefined;
  private closed = false;

  constructor(private readonly options: PeerTransportOptions) {
    const keepaliveTimeMs = options.keepaliveTimeMs ?? 1000;
    const backoffMsMax = options.reconnectBackoffMsMax ?? 1000;
    for (const [name, value] of Object.entries({
      keepaliveTimeMs,
      reconnectBackoffMsMax: backoffMsMax,
      reconnectBackoffMsMin: options.reconnectBackoffMsMin ?? 50,
      maxQueuedBytesPerPeer: options.maxQueuedBytesPerPeer ?? 64 * MIB,
      maxBatchBytes: options.maxBatchBytes ?? BATCH_BYTES_DEFAULT,
    })) {
      assert(Number.isSafeInteger(value) && value > 0, `${name} must be a positive integer, got ${value}`);
    }
    assert((options.reconnectBackoffMsMin ?? 50) <= backoffMsMax, 'reconnectBackoffMsMin must not exceed reconnectBackoffMsMax');
    this.channelOptions = {
      'grpc.keepalive_time_ms': keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': keepaliveTimeMs,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': Math.min(100, backoffMsMax),
      'grpc.max_reconnect_backoff_ms': backoffMsMax,
      'grpc.max_send_message_length': -1,
      // No retry buffering: grpc-js would otherwise take up to 256 KiB per call into its retry
      // buffer and report each write done at once, hiding the stream's backpressure (and
      // resending old Raft messages after a reconnect helps nobody).
      'grpc.enable_retries': 0,
      'grpc.per_rpc_retry_buffer_size': 0,
      // Each transport's channels own their connections: a test or tool with several nodes in
      // one process must not share (or tear down) another node's subchannels.
      'grpc.use_local_subchannel_pool': 1,
    };
    this.warnLog = new RateLimitedLog(options.logger, { linesPerWindowMax: 20, windowMs: 10_000 });
  }

  send(messages: readonly Message[]): void {
    const metrics = this.options.metrics;
    // One address lookup per peer per call, not per message.
    const refreshed = new Set<NodeId>();
    for (const message of messages) {
      if (this.closed) {
        metrics?.messageDropped?.(message.to, message.type, SendDropReason.Closed);
      } else if (message.to === this.options.selfId) {
        metrics?.messageDropped?.(message.to, message.type, SendDropReason.ToSelf);
      } else {
        const link = this.link(message.to);
        if (!refreshed.has(message.to)) {
          refreshed.add(message.to);
          link.setAddress(this.options.addressOf(message.to));
        }
        link.enqueue(message);
      }
    }
  }

  onMessage(handler: (message: Message) => void): void {
    this.handler = handler;
  }

  /** Hands a message the PeerService validated to the registered handler (PeerServiceOptions.deliver). */
  deliver(message: Message): void {
    if (this.closed) return;
    const handler = this.handler;
    if (handler === undefined) {
      this.options.logger.debug({ peer: message.from, type: message.type }, 'dropped a peer message: no handler registered yet');
      return;
    }
    handler(message);
  }

  /** Closes every stream and channel; later sends are dropped and calls fail with ClosedError. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.calls) call.cancel();
    this.calls.clear();
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  /**
   * Sends a client's produce to `to` (the leader). Rejects with the AnnalError the leader's
   * status stands for (errorFromStatus), e.g. NotLeaderError with the leader it knows, so that
   * this node's server answers its client with the same status; with UnavailableError when `to`
   * has no address, and ClosedError when called after close(). A call cut off after it was sent
   * (close() here, or the connection failing without an answer from the leader, e.g. the leader
   * killed) rejects with OutcomeUnknownError: the leader may have appended the records. A call that
   * never reached the leader (no connection, stream refused) stays UnavailableError.
   */
  forward(
    to: NodeId,
    request: { values: Uint8Array[]; subject: string; producerId?: number; firstSequence?: number },
    options: ForwardOptions,
  ): Promise<{ firstOffset: number; lastOffset: number; duplicate: boolean }> {
    const cutOff = (cause: unknown): AnnalError => new OutcomeUnknownError('this node stopped while the leader had the forwarded write; it may still commit', { cause });
    return this.unary(to, RaftPeerService.forward, request, options, cutOff, lostAfterSending).then(({ firstOffset, lastOffset, duplicate }) => ({
      firstOffset,
      lastOffset,
      duplicate,
    }));
  }

  /** Asks `to` (the leader) for a linearizable read index; errors as for forward() (a cut-off read is ClosedError). */
  readIndex(to: NodeId, options: ReadIndexOptions): Promise<number> {
    return this.unary(to, RaftPeerService.readIndex, {}, options, (cause) => new ClosedError('the peer transport is closed', { cause })).then((response) => response.index);
  }

  private link(id: NodeId): PeerLink {
    let link = this.links.get(id);
    if (link === undefined) {
      link = new PeerLink(id, {
        selfId: this.options.selfId,
        clusterId: this.options.clusterId,
        credentials: this.options.credentials,
        channelOptions: this.channelOptions,
        logger: this.options.logger,
        warnLog: this.warnLog,
        peerErrorLog: this.peerErrorLog,
        metrics: this.options.metrics,
        maxQueuedBytes: this.options.maxQueuedBytesPerPeer ?? 64 * MIB,
        maxBatchBytes: this.options.maxBatchBytes ?? BATCH_BYTES_DEFAULT,
        backoffMsMin: this.options.reconnectBackoffMsMin ?? 50,
        backoffMsMax: this.options.reconnectBackoffMsMax ?? 1000,
      });
      this.links.set(id, link);
    }
    return link;
  }

  private unary<Request, Response>(
    to: NodeId,
    method: { path: string; requestSerialize: (value: Request) => Buffer; responseDeserialize: (bytes: Buffer) => Response },
    request: Request,
    options: { deadlineMs: number; metadata?: Metadata },
    /** The error for a call close() cuts off. */
    cutOff: (cause: unknown) => AnnalError,
    /** The error for a transport failure, when it is not the status's own. */
    transportFailure: (error: ServiceError) => AnnalError | undefined = () => undefined,
  ): Promise<Response> {
    if (this.closed) return Promise.reject(new ClosedError('the peer transport is closed'));
    if (!(options.deadlineMs > EPOCH_MS_MIN)) {
      return Promise.reject(new AssertionError(`deadlineMs ${options.deadlineMs} is not an absolute time (Date.now() + timeout)`));
    }
    const link = this.link(to);
    link.setAddress(this.options.addressOf(to));
    if (link.address === undefined) return Promise.reject(new UnavailableError(`no address known for node ${to}`));
    const metadata = options.metadata?.clone() ?? new Metadata();
    metadata.set(PeerMetadataKey.from, this.options.selfId);
    metadata.set(PeerMetadataKey.clusterId, this.options.clusterId() ?? '');
    const client: Client = link.channel();
    return new Promise((resolve, reject) => {
      const call = client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        metadata,
        { deadline: options.deadlineMs },
        (error: ServiceError | null, response?: Response) => {
          this.calls.delete(call);
          if (error === null) resolve(response!);
          else if (this.closed) reject(cutOff(error));
          else reject(transportFailure(error) ?? errorFromStatus(error));
        },
      );
      this.calls.add(call);
    });
  }
}

/**
 * A forwarded write whose call failed in the transport after it may have reached the leader: the
 * outcome is unknown. That is UNAVAILABLE or CANCELLED without annal's error code (a dropped
 * connection; a leader shutting down resets its streams with CANCEL; this node's own cancelling
 * happens only in close(), handled before). Failing to connect, and HTTP/2's REFUSED_STREAM, mean
 * the leader's handler never saw it (those stay UnavailableError).
 */
function lostAfterSending(error: ServiceError): AnnalError | undefined {
  if (error.code !== Status.UNAVAILABLE && error.code !== Status.CANCELLED) return undefined;
  if (error.metadata?.get(ErrorMetadataKey.code).length > 0) return undefined;
  if (/^(No connection established|Stream refused by server)/.test(error.details)) return undefined;
  return new OutcomeUnknownError(`the connection to the leader failed with the forwarded write unanswered; it may still commit (${error.details})`, { cause: error });
}
