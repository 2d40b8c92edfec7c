/**
 * The server side of annal.raft.v1.Raft: peers' Raft message streams, forwarded produces and
 * ReadIndex requests, served on the node's gRPC port next to log.v1.Log.
 *
 * - Stream: the call's metadata names the sender (`annal-from`) and its cluster id. A sender of
 *   another cluster is refused with FAILED_PRECONDITION naming both ids; a sender without an id
 *   (a node that just joined) is accepted; when this node has no id yet it adopts the sender's
 *   (durably, through `adoptClusterId`) before taking any message. An accepted stream gets its
 *   response headers at once, which tells the sender it is open. Every batch then goes through
 *   the gateway (peer-codec.ts): malformed batches and invalid messages are dropped, counted by
 *   reason and logged at a bounded rate; the stream stays open and later messages are delivered.
 * - Forward and ReadIndex call the options' handlers; their errors become gRPC status through
 *   the server's error table, so the follower maps them back to the same error class.
 *
 * Nothing a peer sends can make a handler throw: decoding never throws (a custom deserializer
 * turns bad bytes into a DecodeFailure value, as the log service does), and delivery errors are
 * caught and logged.
 */
import {
  Metadata,
  status as Status,
  type StatusObject,
  type sendUnaryData,
  type ServerReadableStream,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { RateLimitedLog } from '../auth/index.js';
import type {
  ForwardResponse,
  ReadIndexRequest,
  ReadIndexResponse,
  StreamAck,
  ForwardRequest as WireForwardRequest,
  MessageBatch as WireMessageBatch,
} from '../gen/annal/raft/v1/raft.js';
import type { Message, NodeId } from '../raft/index.js';
import { statusFromError } from '../wire/index.js';
import { AnnalError, assert } from '../util/index.js';
import { ClusterAdmission } from './cluster-admission.js';
import { KeyedLogLimit } from './log-limit.js';
import { DEFAULT_PEER_LIMITS, InvalidReason, isValidNodeId, messageFromWire, SnapshotSizes, type PeerLimits } from './peer-codec.js';
import type { PeerLogger, PeerMetrics } from './peer-metrics.js';
import { CLUSTER_ID_LENGTH_MAX, PeerMetadataKey } from './peer-protocol.js';
import { DecodeFailure } from './peer-wire.js';

export interface PeerServiceOptions {
  selfId: NodeId;
  /** This node's cluster id now (undefined before it has one). */
  clusterId: () => string | undefined;
  /** Called when a peer's stream carries a cluster id and we have none yet: adopt it (durably) before delivering. */
  adoptClusterId: (id: string) => void | Promise<void>;
  /** The node's admission rule, when it is shared (the replica's); else one over clusterId and adoptClusterId. */
  admission?: ClusterAdmission;
  /** Hands a validated message to Raft (PeerTransport.deliver); must not block. */
  deliver: (message: Message) => void;
  /**
   * Appends a forwarded produce on this node (the leader), an idempotent producer's batch when
   * `producerId` is not 0; resolves with the assigned offsets (the original ones for a duplicate).
   */
  forward: (request: { values: Uint8Array[]; subject: string; producerId: number; firstSequence: number }) => Promise<{ firstOffset: number; lastOffset: number; duplicate?: boolean }>;
  /** A linearizable read index from this node (the leader). */
  readIndex: () => Promise<number>;
  logger: PeerLogger;
  metrics?: PeerMetrics;
  /** Bounds on received messages; each defaults to DEFAULT_PEER_LIMITS'. */
  limits?: Partial<PeerLimits>;
}

interface PeerIdentity {
  from: NodeId;
  /** Empty when the sender has none. */
  clusterId: string;
}

type Refusal = Partial<StatusObject> & { code: Status; details: string };

type StreamCall = ServerReadableStream<WireMessageBatch | DecodeFailure, StreamAck>;

function firstString(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : undefined;
}

export class PeerService {
  private readonly limits: PeerLimits;
  private readonly snapshotSizes = new SnapshotSizes();
  /** Open streams and how to end each one (for drain). */
  private readonly streams = new Map<StreamCall, (refusal?: Refusal) => void>();
  private readonly invalidLog: RateLimitedLog;
  private readonly peerErrorLog = new KeyedLogLimit({ windowMs: 60_000, keysMax: 1024 });
  private readonly admission: ClusterAdmission;
  private draining = false;

  constructor(private readonly options: PeerServiceOptions) {
    this.admission = options.admission ?? new ClusterAdmission({ clusterId: options.clusterId, adoptClusterId: options.adoptClusterId, logger: options.logger });
    this.limits = {
      maxSnapshotBytes: options.limits?.maxSnapshotBytes ?? DEFAULT_PEER_LIMITS.maxSnapshotBytes,
      maxEntriesPerMessage: options.limits?.maxEntriesPerMessage ?? DEFAULT_PEER_LIMITS.maxEntriesPerMessage,
      maxMessageBytes: options.limits?.maxMessageBytes ?? DEFAULT_PEER_LIMITS.maxMessageBytes,
    };
    for (const [name, value] of Object.entries(this.limits)) {
      assert(Number.isSafeInteger(value) && value > 0, `limits.${name} must be a positive integer, got ${value}`);
    }
    this.invalidLog = new RateLimitedLog(options.logger, { linesPerWindowMax: 20, windowMs: 10_000 });
  }

  /** The implementation to register with RaftPeerService. */
  handlers(): UntypedServiceImplementation {
    return {
      stream: (call: StreamCall, callback: sendUnaryData<StreamAck>) => this.stream(call, callback),
      forward: (call: ServerUnaryCall<WireForwardRequest | DecodeFailure, ForwardResponse>, callback: sendUnaryData<ForwardResponse>) =>
        this.forward(call, callback),
      readIndex: (call: ServerUnaryCall<ReadIndexRequest | DecodeFailure, ReadIndexResponse>, callback: sendUnaryData<ReadIndexResponse>) =>
        this.readIndex(call, callback),
    };
  }

  /** Streams open now (a closed or refused stream must not stay counted). */
  get openStreamCount(): number {
    return this.streams.size;
  }

  /** For shutdown: ends every open stream with UNAVAILABLE and refuses new ones. */
  drain(): void {
    this.draining = true;
    const refusal = { code: Status.UNAVAILABLE, details: `node ${this.options.selfId} is shutting down` };
    for (const finish of [...this.streams.values()]) finish(refusal);
  }

  private stream(call: StreamCall, callback: sendUnaryData<StreamAck>): void {
    let finished = false;
    const finish = (refusal?: Refusal) => {
      if (finished) return;
      finished = true;
      this.streams.delete(call);
      if (refusal === undefined) callback(null, {});
      else callback(refusal);
    };
    const forget = () => {
      finished = true;
      this.streams.delete(call);
    };
    call.on('cancelled', forget);
    call.on('error', forget);
    const identity = this.identify(call.metadata);
    if (!('from' in identity)) return finish(identity);
    if (this.draining) return finish({ code: Status.UNAVAILABLE, details: `node ${this.options.selfId} is shutting down` });
    this.streams.set(call, finish);
    this.admit(identity, 'stream').then(
      (refusal) => {
        if (finished) return;
        if (refusal !== undefined) return finish(refusal);
        // Headers now tell the sender the stream is accepted (it resets its reconnect backoff).
        call.sendMetadata(new Metadata());
        call.on('data', (batch: WireMessageBatch | DecodeFailure) => this.receive(batch, identity.from));
        call.on('end', () => finish());
      },
      (error: unknown) => {
        this.options.logger.error({ peer: identity.from, err: error }, 'admitting a peer stream failed');
        finish({ code: Status.INTERNAL, details: 'admitting the stream failed' });
      },
    );
  }

  /** The sender named by the call's metadata, or why the call is refused. */
  private identify(metadata: Metadata): PeerIdentity | Refusal {
    const from = firstString(metadata, PeerMetadataKey.from);
    if (!isValidNodeId(from)) {
      this.invalidLog.warn({ from }, 'peer call without a valid annal-from metadata value; refused');
      return { code: Status.INVALID_ARGUMENT, details: `missing or invalid ${PeerMetadataKey.from} metadata` };
    }
    const clusterId = firstString(metadata, PeerMetadataKey.clusterId) ?? '';
    if (clusterId.length > CLUSTER_ID_LENGTH_MAX) {
      return { code: Status.INVALID_ARGUMENT, details: `${PeerMetadataKey.clusterId} longer than ${CLUSTER_ID_LENGTH_MAX} characters` };
    }
    return { from, clusterId };
  }

  /**
   * Undefined when a call from `peer` may proceed, after adopting its cluster id if this node has
   * none and the call is a stream (see ClusterAdmission); otherwise the refusal.
   */
  private async admit(peer: PeerIdentity, kind: 'stream' | 'call'): Promise<Refusal | undefined> {
    const admission = await this.admission.admit(peer.from, peer.clusterId, kind);
    if (admission.admitted) return undefined;
    switch (admission.reason) {
      case 'otherCluster':
        return this.mismatch(peer, admission.ours);
      case 'adoptFailed':
        return { code: Status.UNAVAILABLE, details: `node ${this.options.selfId} could not adopt cluster id ${peer.clusterId}` };
      case 'noClusterId':
        return { code: Status.INTERNAL, details: `node ${this.options.selfId} has no cluster id after adopting ${peer.clusterId}` };
    }
  }

  private mismatch(peer: PeerIdentity, ours: string): Refusal {
    const details =
      `this node belongs to cluster ${ours}; the peer ${peer.from} belongs to cluster ${peer.clusterId}: ` +
      'a data dir from another cluster or two --bootstrap nodes';
    if (this.peerErrorLog.allow(`cluster-id/${peer.from}`)) {
      this.options.logger.error({ peer: peer.from, clusterId: ours, peerClusterId: peer.clusterId }, `refused a peer of another cluster: ${details}`);
    }
    return { code: Status.FAILED_PRECONDITION, details };
  }

  private receive(batch: WireMessageBatch | DecodeFailure, from: NodeId): void {
    if (batch instanceof DecodeFailure) {
      this.reject(from, InvalidReason.Malformed, batch.reason, undefined);
      return;
    }
    const context = { selfId: this.options.selfId, from, limits: this.limits };
    for (const wire of batch.messages) {
      const result = messageFromWire(wire, context);
      if (!result.ok) {
        this.reject(from, result.reason, result.detail, wire.body?.$case);
        continue;
      }
      const sizeChanged = this.snapshotSizes.check(result.message);
      if (sizeChanged !== undefined) {
        this.reject(from, sizeChanged.reason, sizeChanged.detail, result.message.type);
        continue;
      }
      this.options.metrics?.messageReceived?.(from, result.message.type);
      try {
        this.options.deliver(result.message);
      } catch (error) {
        if (this.peerErrorLog.allow(`deliver/${from}`)) {
          this.options.logger.error({ peer: from, type: result.message.type, err: error }, 'delivering a peer message failed');
        }
      }
    }
  }

  private reject(from: NodeId, reason: InvalidReason, detail: string, type: string | undefined): void {
    this.options.metrics?.messageRejected?.(from, reason);
    this.invalidLog.warn({ peer: from, reason, type, detail }, `dropped an invalid message from peer ${from}: ${detail}`);
  }

  private forward(call: ServerUnaryCall<WireForwardRequest | DecodeFailure, ForwardResponse>, callback: sendUnaryData<ForwardResponse>): void {
    const request = call.request;
    if (request instanceof DecodeFailure) {
      callback({ code: Status.INVALID_ARGUMENT, details: `malformed ${request.messageName}: ${request.reason}` });
      return;
    }
    this.unary(call.metadata, callback, 'Forward', async () => {
      const { values, subject, producerId, firstSequence } = request;
      const { firstOffset, lastOffset, duplicate } = await this.options.forward({ values, subject, producerId, firstSequence });
      return { firstOffset, lastOffset, duplicate: duplicate ?? false };
    });
  }

  private readIndex(call: ServerUnaryCall<ReadIndexRequest | DecodeFailure, ReadIndexResponse>, callback: sendUnaryData<ReadIndexResponse>): void {
    if (call.request instanceof DecodeFailure) {
      callback({ code: Status.INVALID_ARGUMENT, details: `malformed ${call.request.messageName}: ${call.request.reason}` });
      return;
    }
    this.unary(call.metadata, callback, 'ReadIndex', async () => ({ index: await this.options.readIndex() }));
  }

  /** Checks the caller like a stream (without adopting), runs `handle` and answers. */
  private unary<T>(metadata: Metadata, callback: sendUnaryData<T>, method: string, handle: () => Promise<T>): void {
    const identity = this.identify(metadata);
    if (!('from' in identity)) {
      callback(identity);
      return;
    }
    void (async () => {
      let value: T;
      try {
        const refusal = await this.admit(identity, 'call');
        if (refusal !== undefined) {
          callback(refusal);
          return;
        }
        value = await handle();
      } catch (error) {
        if (!(error instanceof AnnalError)) this.options.logger.error({ peer: identity.from, method, err: error }, `${method} failed`);
        callback(statusFromError(error));
        return;
      }
      callback(null, value);
    })();
  }
}

/** The implementation of RaftPeerService (peer-protocol.ts) for `options` (see PeerService for draining). */
export function peerServiceHandlers(options: PeerServiceOptions): UntypedServiceImplementation {
  return new PeerService(options).handlers();
}
