/**
 * Serves a bidi stream whose requests each start an asynchronous operation (an append), without
 * waiting for one operation before starting the next: that is what lets many appends share one
 * fsync (group commit). Guarantees:
 *
 * - Responses go out in request order, one per request.
 * - At most `maxInFlight` operations, holding at most about `maxInFlightBytes` of requests, are
 *   pending; beyond that the call's reading is paused, so HTTP/2 flow control pushes back on the
 *   client. Reading also pauses while the response stream
 *   is over its high-water mark (a client that does not read its responses).
 * - On the first error (a bad request or a failed append), the requests before it are still
 *   answered, no later request is started, and the call ends with the error's status.
 * - `drain()` (server shutdown) stops starting requests, answers those in flight, and ends the
 *   call with UNAVAILABLE, so a client knows that any unanswered request was not processed.
 */
import { Metadata, status as Status, type ServerDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { assert } from '../util/index.js';
import { statusFromError } from '../wire/index.js';

export interface PipelineOptions<Request, Response> {
  /** Upper bound on operations started but not yet answered (>= 1). */
  maxInFlight: number;
  /** Reading pauses once the pending requests' sizes add up to this many bytes (>= 1). */
  maxInFlightBytes: number;
  /** The size of a request that counts against maxInFlightBytes (a record's value bytes). */
  sizeBytes: (request: Request) => number;
  /**
   * Starts the operation for one request. May throw synchronously (validation): that counts as the
   * request's error and stops the stream after earlier requests are answered.
   */
  start: (request: Request) => Promise<Response>;
  /** Called with errors that are not annal errors (bugs, unexpected failures) before answering. */
  onUnexpectedError: (error: unknown) => void;
}

interface Slot<Response> {
  sizeBytes: number;
  settled: boolean;
  response: Response | undefined;
  /** Set when the request failed: the status that ends the call when its turn comes. */
  failure: StatusObject | undefined;
}

/** Slots are compacted out of the queue once this many answered ones sit at its front. */
const QUEUE_COMPACT_SLOTS = 1024;

export class Pipeline<Request, Response> {
  // Invariant: queue[head..] are the requests started and not yet answered, in request order.
  private readonly queue: Slot<Response>[] = [];
  private head = 0;
  // Invariant: inFlightBytes is the sum of sizeBytes over queue[head..].
  private inFlightBytes = 0;
  private stopped = false; // no request is started after this is set
  private finished = false; // the call's status has been sent (or the client cancelled)
  private inputEnded = false;
  private writeBlocked = false;
  private paused = false;
  private stopStatus: StatusObject | undefined; // set by drain(): ends the call once idle
  private onFinished: () => void = () => {};

  constructor(
    private readonly call: ServerDuplexStream<Request, Response>,
    private readonly options: PipelineOptions<Request, Response>,
  ) {
    assert(options.maxInFlight >= 1, 'maxInFlight must be at least 1');
    assert(options.maxInFlightBytes >= 1, 'maxInFlightBytes must be at least 1');
  }

  /** Starts serving; resolves once the call has ended (status sent or cancelled). */
  run(): Promise<void> {
    return new Promise((resolve) => {
      this.onFinished = resolve;
      this.call.on('data', (request: Request) => this.onRequest(request));
      this.call.on('end', () => {
        this.inputEnded = true;
        this.flush();
      });
      this.call.on('drain', () => {
        this.writeBlocked = false;
        this.flush();
      });
      this.call.on('cancelled', () => this.finish());
      this.call.on('error', () => this.finish());
    });
  }

  /** Server shutdown: answer what is in flight, start nothing more, end with UNAVAILABLE. */
  drain(): void {
    this.stopped = true;
    this.stopStatus = {
      code: Status.UNAVAILABLE,
      details: 'server is shutting down; requests after the last answer were not processed',
      metadata: new Metadata(),
    };
    this.flush();
  }

  private onRequest(request: Request): void {
    if (this.stopped) return;
    const slot: Slot<Response> = { sizeBytes: 0, settled: false, response: undefined, failure: undefined };
    this.queue.push(slot);
    const failed = (error: unknown): void => {
      // Nothing after a failed request starts; the requests before it are still answered.
      this.stopped = true;
      slot.settled = true;
      slot.failure = this.errorStatus(error);
      this.flush();
    };
    let operation: Promise<Response>;
    try {
      slot.sizeBytes = this.options.sizeBytes(request);
      this.inFlightBytes += slot.sizeBytes;
      operation = this.options.start(request);
    } catch (error) {
      failed(error); // validation
      return;
    }
    operation.then((response) => {
      slot.settled = true;
      slot.response = response;
      this.flush();
    }, failed);
    this.updateFlow();
  }

  /** Writes every answer at the front of the queue that is ready, then ends the call if done. */
  private flush(): void {
    if (this.finished) return;
    // Corked, the answers ready now reach the call as one write (see coalesced-writes.ts).
    this.call.cork();
    try {
      this.writeReady();
    } finally {
      this.call.uncork();
    }
  }

  private writeReady(): void {
    const queue = this.queue;
    while (this.head < queue.length) {
      const slot = queue[this.head]!;
      if (!slot.settled) break;
      this.head++;
      this.inFlightBytes -= slot.sizeBytes;
      if (slot.failure !== undefined) {
        this.endWith(slot.failure);
        return;
      }
      if (!this.call.write(slot.response as Response)) this.writeBlocked = true;
    }
    if (this.head >= QUEUE_COMPACT_SLOTS) {
      queue.splice(0, this.head);
      this.head = 0;
    }
    const idle = this.head === queue.length;
    if (idle && this.stopped && this.stopStatus !== undefined) {
      this.endWith(this.stopStatus);
    } else if (idle && this.inputEnded) {
      this.endWith(undefined);
    } else {
      this.updateFlow();
    }
  }

  private updateFlow(): void {
    const inFlight = this.queue.length - this.head;
    const shouldPause =
      this.stopped || this.writeBlocked || inFlight >= this.options.maxInFlight || this.inFlightBytes >= this.options.maxInFlightBytes;
    if (shouldPause && !this.paused) {
      this.paused = true;
      this.call.pause();
    } else if (!shouldPause && this.paused) {
      this.paused = false;
      this.call.resume();
    }
  }

  private errorStatus(error: unknown): StatusObject {
    const status = statusFromError(error);
    if (status.code === Status.INTERNAL) this.options.onUnexpectedError(error);
    return status;
  }

  /** Sends the final status after the answers already written: OK when `status` is undefined. */
  private endWith(status: StatusObject | undefined): void {
    if (this.finished) return;
    this.finished = true;
    if (status === undefined) this.call.end();
    else this.call.emit('error', status);
    this.onFinished();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.stopped = true;
    this.onFinished();
  }
}
