/**
 * An idempotent producer (Kafka's): a random producer id, and every record numbered in send order
 * (producer id, sequence), sent as ProduceBatch requests over one pipelined stream to the leader.
 * The leader appends each sequence once (replication/producers.ts), so when the stream fails (the
 * leader died or stepped down, the connection dropped, an answer was lost) the producer opens a
 * new stream, wherever the leader now is, and resends every unanswered batch in order with the
 * same sequences: a batch the log already holds is answered with its original offsets.
 *
 * Guarantees:
 * - Offsets follow send order, each record is appended at most once, and a send resolves only
 *   with offsets the leader acknowledged (committed).
 * - A send rejects with the server's error when the server refused it without appending it
 *   (a bad record, no permission); later batches then fail too, or continue renumbered (onRefusal).
 * - When a batch has no answer `retryDeadlineMs` after it was first sent, it rejects with
 *   OutcomeUnknownError, and so does every batch sent after it: each may or may not be in the
 *   log (a batch whose every attempt failed at the pick, before reaching any server, rejects with
 *   UnavailableError instead: it was not appended). The producer then continues under a new
 *   producer id.
 */
import { randomBytes } from 'node:crypto';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import type { ProduceBatchRequest, ProduceBatchResponse, Record as WireRecord } from '../gen/log/v1/log.js';
import { errorFromStatus } from '../wire/index.js';
import { neverSent } from './route-balancer.js';
import {
  AnnalError,
  assert,
  CorruptionError,
  InternalError,
  InvalidArgumentError,
  OutcomeUnknownError,
  OutOfOrderSequenceError,
  PermissionDeniedError,
  RecordTooLargeError,
  UnauthenticatedError,
  UnavailableError,
} from '../util/index.js';

export interface RetryOptions {
  /** How long a write may be retried before its outcome is reported unknown, in milliseconds. Default 15000. */
  retryDeadlineMs: number;
  /** First pause between attempts, doubled up to maxBackoffMs, in milliseconds. Defaults 10 and 100. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** A request unanswered this long ends the attempt (a leader that stopped answering), in milliseconds. Default 5000. */
  attemptTimeoutMs: number;
}

export const DEFAULT_RETRY: RetryOptions = { retryDeadlineMs: 15_000, initialBackoffMs: 10, maxBackoffMs: 100, attemptTimeoutMs: 5000 };

export interface IdempotentProducerOptions extends RetryOptions {
  /** Batches written and not yet answered, at most (the leader remembers 1024 per producer). Default 256. */
  maxInFlightBatches: number;
  /**
   * What a batch the server refuses for good (a bad record, no permission) does to the others:
   * `stream` fails the producer, so that every later send rejects with the same error, as a
   * ProduceStream call does (nothing after a bad record is appended); `independent` rejects that
   * batch only and the later ones take its sequences (unary produce calls).
   */
  onRefusal: 'stream' | 'independent';
}

interface Batch {
  values: readonly Uint8Array[];
  firstSequence: number;
  /** Set when first written: the batch's outcome must be known by then. */
  deadlineMs: number | undefined;
  sentAtMs: number;
  /** An attempt that carried it failed in a way that does not prove it never reached a server. */
  maybeSent: boolean;
  resolve: (offsets: { firstOffset: number; lastOffset: number }) => void;
  reject: (error: Error) => void;
}

/** A random producer id: 53 bits, so it is a safe integer on the wire and in the table. */
export function newProducerId(): number {
  const bytes = randomBytes(8);
  return (bytes.readUInt32LE(0) & 0x1f_ffff) * 0x1_0000_0000 + bytes.readUInt32LE(4) || 1;
}

/** Errors after which the server appended nothing of the batch and will not if it is sent again. */
function refusedForGood(error: AnnalError): boolean {
  return (
    error instanceof InvalidArgumentError ||
    error instanceof RecordTooLargeError ||
    error instanceof PermissionDeniedError ||
    error instanceof UnauthenticatedError ||
    error instanceof CorruptionError ||
    error instanceof InternalError
  );
}

export class IdempotentProducer {
  private producerId = newProducerId();
  private nextSequence = 0;
  // Invariant: batches[0..written) are on the current stream (or were, before it failed), in
  // sequence order; batches[written..] wait. Sequences are consecutive over the whole queue.
  private readonly batches = new Queue<Batch>();
  private written = 0;
  private stream: ClientDuplexStream<ProduceBatchRequest, ProduceBatchResponse> | undefined;
  private generation = 0;
  private backoffMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private closed = false;
  /** Set when a refusal failed the producer (onRefusal 'stream'): every send rejects with it. */
  private failure: AnnalError | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly open: () => ClientDuplexStream<ProduceBatchRequest, ProduceBatchResponse>,
    private readonly options: IdempotentProducerOptions,
    /** Called before a retry: the cluster view may be stale. */
    private readonly onRetry: () => void,
    /** Why calls that never left the client failed, when that is for good (the cluster refuses this client). */
    private readonly refusedBy: () => AnnalError | undefined = () => undefined,
  ) {
    assert(options.maxInFlightBatches >= 1 && options.maxInFlightBatches <= 1024, 'maxInFlightBatches must be in 1..1024');
    this.backoffMs = options.initialBackoffMs;
  }

  /** Batches sent or waiting, not yet answered. */
  get inFlight(): number {
    return this.batches.length;
  }

  send(values: readonly Uint8Array[]): Promise<{ firstOffset: number; lastOffset: number }> {
    assert(values.length > 0, 'a batch needs at least one record');
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new UnavailableError('the producer is closed'));
    return new Promise((resolve, reject) => {
      this.batches.push({ values, firstSequence: this.nextSequence, deadlineMs: undefined, sentAtMs: 0, maybeSent: false, resolve, reject });
      this.nextSequence += values.length;
      this.pump();
    });
  }

  /** Resolves once every batch sent so far is settled, then ends the stream. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.batches.length > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    clearTimeout(this.retryTimer);
    this.disarmWatchdog();
    const stream = this.stream;
    this.stream = undefined;
    if (stream !== undefined) {
      await new Promise<void>((resolve) => {
        stream.once('status', () => resolve());
        stream.end();
        setTimeout(resolve, 5000).unref();
      });
    }
  }

  /** Abandons the producer: unanswered batches reject (their outcome is unknown if they were sent). */
  cancel(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.disarmWatchdog();
    this.stream?.cancel();
    this.stream = undefined;
    this.failAll((batch) => (batch.maybeSent || batch.sentAtMs > 0 ? new OutcomeUnknownError('the producer was cancelled with the write unanswered') : new UnavailableError('the producer was cancelled')));
  }

  private pump(): void {
    if (this.retryTimer !== undefined) return;
    while (this.written < this.batches.length && this.written < this.options.maxInFlightBatches) {
      const stream = this.ensureStream();
      const batch = this.batches.at(this.written++)!;
      batch.sentAtMs = Date.now();
      batch.deadlineMs ??= batch.sentAtMs + this.options.retryDeadlineMs;
      stream.write({ records: batch.values.map(wireRecord), producerId: this.producerId, firstSequence: batch.firstSequence });
    }
    this.armWatchdog();
  }

  private ensureStream(): ClientDuplexStream<ProduceBatchRequest, ProduceBatchResponse> {
    if (this.stream !== undefined) return this.stream;
    const generation = ++this.generation;
    const stream = this.open();
    this.stream = stream;
    stream.on('data', (response: ProduceBatchResponse) => {
      if (generation === this.generation) this.onResponse(response);
    });
    stream.on('error', (error: ServiceError) => {
      if (generation === this.generation) this.onFailure(errorFromStatus(error, error), neverSent(error));
    });
    stream.on('end', () => {
      if (generation === this.generation && this.written > 0) this.onFailure(new UnavailableError('the server ended the stream before answering every request'));
    });
    return stream;
  }

  private onResponse(response: ProduceBatchResponse): void {
    const batch = this.batches.at(0);
    if (batch === undefined || this.written === 0) {
      this.onFailure(new UnavailableError('the server sent more responses than requests'));
      return;
    }
    if (response.lastOffset - response.firstOffset + 1 !== batch.values.length) {
      this.onFailure(new InternalError(`a batch of ${batch.values.length} records was answered with offsets ${response.firstOffset}..${response.lastOffset}`));
      return;
    }
    this.batches.shift();
    this.written--;
    this.backoffMs = this.options.initialBackoffMs;
    batch.resolve({ firstOffset: response.firstOffset, lastOffset: response.lastOffset });
    this.pump();
    this.wakeIfIdle();
  }

  /** The stream failed: everything written and unanswered is resent, after what the error says is done. */
  private onFailure(failure: AnnalError, notSent = false): void {
    if (!notSent) for (let i = 0; i < this.written; i++) this.batches.at(i)!.maybeSent = true;
    const refusal = notSent ? this.refusedBy() : undefined;
    const error = refusal ?? failure;
    this.generation++;
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
    this.disarmWatchdog();
    this.written = 0;
    const head = this.batches.at(0);
    if (head === undefined) return;
    if (error instanceof OutOfOrderSequenceError && error.producerId === this.producerId) {
      this.onOutOfOrder(head, error);
    } else if ((refusal !== undefined || refusedForGood(error)) && this.options.onRefusal === 'stream') {
      this.failure = error;
      this.failAll(() => error);
      return;
    } else if (refusal !== undefined || refusedForGood(error)) {
      // The head was refused and nothing after it was started: the later batches take its sequences.
      this.batches.shift();
      for (let i = 0; i < this.batches.length; i++) this.batches.at(i)!.firstSequence -= head.values.length;
      this.nextSequence -= head.values.length;
      head.reject(error);
    } else if (head.deadlineMs !== undefined && Date.now() >= head.deadlineMs) {
      this.giveUp(error);
      return;
    }
    this.wakeIfIdle();
    this.retryLater();
  }

  private onOutOfOrder(head: Batch, error: OutOfOrderSequenceError): void {
    const split = error.expectedSequence - head.firstSequence;
    if (split > 0 && split < head.values.length) {
      // The log holds the head's first records only (a leader change cut the batch): resend it as
      // two batches, the first answered with the offsets it has, the second appended now.
      const first: Batch = { ...head, values: head.values.slice(0, split) };
      const second: Batch = { ...head, values: head.values.slice(split), firstSequence: error.expectedSequence };
      let firstOffset: number | undefined;
      first.resolve = (offsets) => (firstOffset = offsets.firstOffset);
      first.reject = head.reject;
      second.resolve = (offsets) => head.resolve({ firstOffset: firstOffset ?? offsets.firstOffset - split, lastOffset: offsets.lastOffset });
      second.reject = head.reject;
      this.batches.replaceFirst(first, second);
      return;
    }
    if (split <= 0) {
      // The leader expected an earlier sequence when it refused the head: a batch that overtook
      // the ones before it (a follower forwards each batch as it comes, and a new leader may take
      // a producer's batches from two nodes), answered since. Nothing of the head was appended:
      // resend from it, within the head's deadline.
      if (head.deadlineMs !== undefined && Date.now() >= head.deadlineMs) this.giveUp(error);
      return;
    }
    // The log holds all of the head and more, yet refused it: this producer and the log disagree
    // about what was acknowledged, and nothing can be resent safely.
    this.giveUp(error);
  }


  /** Every unanswered batch fails (with an unknown outcome if it was sent); a new producer id starts over. */
  private giveUp(cause: AnnalError): void {
    const deadline = this.options.retryDeadlineMs;
    this.failAll((batch) =>
      batch.maybeSent
        ? new OutcomeUnknownError(`no answer within ${deadline} ms of retries; the write may or may not be in the log (last error: ${cause.message})`, { cause })
        : new UnavailableError(`not appended: no attempt reached a server within ${deadline} ms (${cause.message})`, { cause }),
    );
    this.producerId = newProducerId();
    this.nextSequence = 0;
    this.backoffMs = this.options.initialBackoffMs;
  }

  private failAll(errorFor: (batch: Batch) => Error): void {
    const batches = this.batches.takeAll();
    this.written = 0;
    for (const batch of batches) batch.reject(errorFor(batch));
    this.wakeIfIdle();
  }

  private retryLater(): void {
    if (this.batches.length === 0 || this.retryTimer !== undefined) return;
    this.onRetry();
    const delayMs = Math.round(this.backoffMs * (0.5 + Math.random() / 2));
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, delayMs);
  }

  /**
   * A written batch unanswered for attemptTimeoutMs ends the attempt: the leader may be gone
   * without a word. One timer at a time, set for the oldest unanswered batch: when it fires with
   * a newer batch at the head, it is set again for that one (re-arming on every send and answer
   * cost two timers per record).
   */
  private armWatchdog(): void {
    if (this.watchdog !== undefined) return;
    const head = this.batches.at(0);
    if (head === undefined || this.written === 0) return;
    this.watchdog = setTimeout(() => {
      this.watchdog = undefined;
      const oldest = this.batches.at(0);
      if (oldest === undefined || this.written === 0) return;
      if (oldest.sentAtMs + this.options.attemptTimeoutMs > Date.now()) this.armWatchdog();
      else this.onFailure(new UnavailableError(`no answer within ${this.options.attemptTimeoutMs} ms`));
    }, Math.max(0, head.sentAtMs + this.options.attemptTimeoutMs - Date.now()));
    this.watchdog.unref();
  }

  private disarmWatchdog(): void {
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  private wakeIfIdle(): void {
    if (this.batches.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

function wireRecord(value: Uint8Array): WireRecord {
  return { value: value as Buffer, offset: 0, term: 0, type: 0 };
}

/** A FIFO with O(1) removal at the front (a producer may queue many batches behind its window). */
class Queue<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  at(i: number): T | undefined {
    return this.items[this.head + i];
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined as T; // release it
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Replaces the first item with two. */
  replaceFirst(first: T, second: T): void {
    assert(this.length > 0, 'replaceFirst on an empty queue');
    if (this.head > 0) {
      this.items[this.head] = second;
      this.items[--this.head] = first;
    } else {
      this.items.splice(0, 1, first, second);
    }
  }

  takeAll(): T[] {
    const all = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return all;
  }
}
