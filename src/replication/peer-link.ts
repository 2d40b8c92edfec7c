/**
 * One peer as the transport sees it: the grpc-js channel to its current address (shared by the
 * message stream, Forward and ReadIndex), a bounded queue of outgoing messages and the long-lived
 * Stream call that carries them.
 *
 * Writing: everything queued goes out as one MessageBatch per write (split only above
 * maxBatchBytes), and the next write waits until grpc-js has taken the previous one (its write
 * callback) and, if write() said so, for 'drain'. Messages that arrive meanwhile accumulate, so
 * batches grow exactly when the stream is the bottleneck. A peer that does not keep up only
 * fills its own queue; past maxQueuedBytes new messages are dropped (Raft resends).
 *
 * Failure: when the stream ends (refused, peer gone, keepalive timeout) its queue is dropped, one
 * line is logged for the outage (details at debug level until the stream is accepted again), and
 * the stream is reopened after a jittered, doubling backoff capped at backoffMsMax, on the next
 * message. The backoff resets once a stream has been accepted and stayed up for backoffMsMax.
 */
import { Client, Metadata, status as Status, type ChannelCredentials, type ChannelOptions, type ClientWritableStream, type ServiceError } from '@grpc/grpc-js';
import type { RateLimitedLog } from '../auth/index.js';
import type { Message, NodeId } from '../raft/index.js';
import { assert } from '../util/index.js';
import { enablePipelinedWrites } from '../wire/index.js';
import type { KeyedLogLimit } from './log-limit.js';
import { estimateMessageBytes } from './peer-codec.js';
import { SendDropReason, type PeerLogger, type PeerMetrics } from './peer-metrics.js';
import { PeerMetadataKey, RaftPeerService } from './peer-protocol.js';
import { encodeMessageBatch } from './peer-wire.js';

export interface PeerLinkSettings {
  selfId: NodeId;
  clusterId: () => string | undefined;
  credentials: ChannelCredentials;
  channelOptions: ChannelOptions;
  logger: PeerLogger;
  /** Caps warn lines across all links. */
  warnLog: RateLimitedLog;
  /** Caps error lines per peer (refusals that need an operator). */
  peerErrorLog: KeyedLogLimit;
  metrics: PeerMetrics | undefined;
  maxQueuedBytes: number;
  maxBatchBytes: number;
  backoffMsMin: number;
  backoffMsMax: number;
}

interface Queued {
  message: Message;
  sizeBytes: number;
}

/** Status codes that retrying will not fix without an operator: logged as errors. */
const REFUSALS: ReadonlySet<number> = new Set([
  Status.FAILED_PRECONDITION,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
  Status.INVALID_ARGUMENT,
  Status.UNIMPLEMENTED,
]);

export class PeerLink {
  /** Where the channel points; undefined while addressOf() knows none. */
  address: string | undefined;
  private client: Client | undefined;
  private call: ClientWritableStream<Buffer> | undefined;
  /** Bumped whenever `call` is replaced, so callbacks of an old call are ignored. */
  private generation = 0;
  // Invariant: queue[queueHead..] are the queued messages; queuedBytes is the sum of their sizes.
  private queue: Queued[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  /** A write handed to grpc-js whose callback has not come yet. */
  private writing = false;
  /** The messages of that write, lost if the stream fails before grpc-js takes them. */
  private inFlight: Message[] = [];
  private awaitingDrain = false;
  private flushScheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private acceptedAtMs: number | undefined;
  /** The last stream failed and none has been accepted since (one warn line per outage). */
  private failing = false;
  private closed = false;

  constructor(
    readonly id: NodeId,
    private readonly settings: PeerLinkSettings,
  ) {
    this.backoffMs = settings.backoffMsMin;
  }

  /** Points the link at `address`, closing the old channel (and its stream) if it changed. */
  setAddress(address: string | undefined): void {
    if (address === this.address) return;
    if (this.address !== undefined) {
      this.settings.logger.info({ peer: this.id, from: this.address, to: address ?? null }, 'peer address changed');
    }
    this.endStream(SendDropReason.StreamFailed);
    this.client?.close();
    this.client = undefined;
    this.address = address;
    this.backoffMs = this.settings.backoffMsMin;
    this.failing = false;
    if (address === undefined) this.dropQueue(SendDropReason.NoAddress);
  }

  /** The channel to the current address (created on first use). */
  channel(): Client {
    assert(this.address !== undefined, `no address for peer ${this.id}`);
    assert(!this.closed, `link to ${this.id} is closed`);
    if (this.client === undefined) {
      enablePipelinedWrites(); // queued messages leave together, not one per event-loop turn
      this.client = new Client(this.address, this.settings.credentials, this.settings.channelOptions);
    }
    return this.client;
  }

  enqueue(message: Message): void {
    const metrics = this.settings.metrics;
    if (this.closed) return void metrics?.messageDropped?.(this.id, message.type, SendDropReason.Closed);
    if (this.address === undefined) return void metrics?.messageDropped?.(this.id, message.type, SendDropReason.NoAddress);
    const sizeBytes = estimateMessageBytes(message);
    if (this.queuedBytes + sizeBytes > this.settings.maxQueuedBytes) {
      return void metrics?.messageDropped?.(this.id, message.type, SendDropReason.QueueFull);
    }
    this.queue.push({ message, sizeBytes });
    this.queuedBytes += sizeBytes;
    metrics?.queuedBytes?.(this.id, this.queuedBytes);
    this.scheduleFlush();
  }

  /** Ends the stream and the channel for good; queued messages are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.endStream(SendDropReason.Closed);
    this.dropQueue(SendDropReason.Closed);
    this.client?.close();
    this.client = undefined;
  }

  private get queueLength(): number {
    return this.queue.length - this.queueHead;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Later in this turn of the event loop: every send() of the current turn shares the write.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed || this.queueLength === 0 || this.address === undefined) return;
    if (this.call === undefined) {
      if (this.retryTimer !== undefined) return;
      this.openStream();
    }
    if (!this.writing && !this.awaitingDrain) this.writeBatch();
  }

  private openStream(): void {
    const metadata = new Metadata();
    metadata.set(PeerMetadataKey.from, this.settings.selfId);
    metadata.set(PeerMetadataKey.clusterId, this.settings.clusterId() ?? '');
    const generation = ++this.generation;
    const method = RaftPeerService.stream;
    const call = this.channel().makeClientStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, metadata, {}, (error) =>
      this.onStreamEnd(generation, error),
    );
    call.on('metadata', () => this.onStreamAccepted(generation));
    // Failures arrive through the call's callback; a listener keeps a stray 'error' harmless.
    call.on('error', () => {});
    this.call = call;
  }

  private writeBatch(): void {
    const call = this.call;
    assert(call !== undefined && !this.writing && !this.awaitingDrain, 'writeBatch needs an idle stream');
    const batch: Message[] = [];
    const first = this.queueHead;
    let batchBytes = 0;
    while (this.queueLength > 0) {
      const next = this.queue[this.queueHead]!;
      if (batch.length > 0 && batchBytes + next.sizeBytes > this.settings.maxBatchBytes) break;
      batch.push(next.message);
      batchBytes += next.sizeBytes;
      this.queueHead += 1;
    }
    const metrics = this.settings.metrics;
    const taken = metrics?.messageSent === undefined ? [] : this.queue.slice(first, this.queueHead);
    this.queuedBytes -= batchBytes;
    this.compactQueue();
    metrics?.queuedBytes?.(this.id, this.queuedBytes);
    const bytes = encodeMessageBatch(batch);
    const generation = this.generation;
    this.writing = true;
    this.inFlight = batch;
    const more = call.write(bytes, () => {
      if (generation !== this.generation) return;
      this.writing = false;
      this.inFlight = [];
      this.flush();
    });
    if (!more) {
      this.awaitingDrain = true;
      call.once('drain', () => {
        if (generation !== this.generation) return;
        this.awaitingDrain = false;
        this.flush();
      });
    }
    metrics?.batchSent?.(this.id, batch.length, bytes.length);
    if (metrics?.messageSent !== undefined) for (const { message, sizeBytes } of taken) metrics.messageSent(this.id, message.type, sizeBytes);
  }

  private compactQueue(): void {
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    assert(this.queuedBytes >= 0, `queued bytes of ${this.id} went negative`);
    if (this.queueLength === 0) assert(this.queuedBytes === 0, `queued bytes of ${this.id} are ${this.queuedBytes} with an empty queue`);
  }

  private onStreamAccepted(generation: number): void {
    if (generation !== this.generation) return;
    this.acceptedAtMs = Date.now();
    if (this.failing) this.settings.logger.info({ peer: this.id, address: this.address }, `stream to peer ${this.id} is open again`);
    this.failing = false;
    this.settings.peerErrorLog.reset(this.id);
  }

  private onStreamEnd(generation: number, error: ServiceError | null): void {
    if (generation !== this.generation || this.closed) return;
    this.call = undefined;
    this.generation += 1;
    this.writing = false;
    this.awaitingDrain = false;
    this.dropQueue(SendDropReason.StreamFailed);
    const code = error?.code ?? Status.OK;
    this.settings.metrics?.streamFailed?.(this.id, code);
    this.logStreamEnd(error);
    this.failing = true;
    const nowMs = Date.now();
    if (this.acceptedAtMs !== undefined && nowMs - this.acceptedAtMs >= this.settings.backoffMsMax) this.backoffMs = this.settings.backoffMsMin;
    this.acceptedAtMs = undefined;
    // Full jitter over the upper half, so peers that failed together do not retry together.
    const delayMs = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
    this.backoffMs = Math.min(this.backoffMs * 2, this.settings.backoffMsMax);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flush();
    }, delayMs);
    this.retryTimer.unref();
  }

  private logStreamEnd(error: ServiceError | null): void {
    const fields = { peer: this.id, address: this.address, code: error === null ? 'OK' : (Status[error.code] ?? error.code), details: error?.details ?? '' };
    const text = `stream to peer ${this.id} at ${this.address} ended: ${fields.code} ${fields.details}`;
    if (error !== null && REFUSALS.has(error.code)) {
      if (this.settings.peerErrorLog.allow(this.id)) this.settings.logger.error(fields, text);
      else this.settings.logger.debug(fields, text);
    } else if (error !== null && error.code === Status.UNAVAILABLE && / is shutting down$/.test(error.details)) {
      // The peer stopping gracefully (its service says so): expected, e.g. in a rolling restart.
      this.settings.logger.info(fields, text);
    } else if (!this.failing) {
      this.settings.warnLog.warn(fields, text);
    } else {
      this.settings.logger.debug(fields, text);
    }
  }

  /** Cancels the stream (if any); its untaken write is dropped for `reason`, the queue stays. */
  private endStream(reason: SendDropReason): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const call = this.call;
    this.call = undefined;
    this.generation += 1;
    this.writing = false;
    this.awaitingDrain = false;
    const metrics = this.settings.metrics;
    if (metrics?.messageDropped !== undefined) for (const message of this.inFlight) metrics.messageDropped(this.id, message.type, reason);
    this.inFlight = [];
    call?.cancel();
  }

  /** Drops the queue and the write grpc-js has not taken yet. */
  private dropQueue(reason: SendDropReason): void {
    const metrics = this.settings.metrics;
    if (metrics?.messageDropped !== undefined) {
      for (const message of this.inFlight) metrics.messageDropped(this.id, message.type, reason);
      for (let i = this.queueHead; i < this.queue.length; i++) metrics.messageDropped(this.id, this.queue[i]!.message.type, reason);
    }
    this.inFlight = [];
    this.queue = [];
    this.queueHead = 0;
    this.queuedBytes = 0;
    metrics?.queuedBytes?.(this.id, 0);
  }
}
