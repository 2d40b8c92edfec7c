/**
 * The client side of a pipelined bidi stream (ProduceStream, ProduceBatch): requests are written
 * without waiting, and the server answers each in order, so the n-th response settles the n-th
 * pending promise. When the stream fails, every pending promise and every later request rejects
 * with the same error.
 */
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { errorFromStatus } from '../wire/index.js';
import { UnavailableError, type AnnalError } from '../util/index.js';

interface Waiter<Result> {
  resolve: (result: Result) => void;
  reject: (error: Error) => void;
}

/** Pending waiters are compacted once this many answered ones sit at the queue's front. */
const QUEUE_COMPACT_WAITERS = 1024;

export class PipelinedStream<Request, Response, Result> {
  // Invariant: waiters[head..] are the requests written and not yet answered, in write order.
  private readonly waiters: (Waiter<Result> | undefined)[] = [];
  private head = 0;
  private failure: AnnalError | undefined;
  private ended = false;
  private idleWaiters: (() => void)[] = [];
  /** Settles when the call has its final status (OK after a clean half-close, or an error). */
  private readonly finished: Promise<void>;

  constructor(
    private readonly call: ClientDuplexStream<Request, Response>,
    private readonly toResult: (response: Response) => Result,
  ) {
    this.finished = new Promise<void>((resolve) => call.once('status', () => resolve()));
    call.on('data', (response: Response) => this.onResponse(response));
    call.on('error', (error: ServiceError) => this.fail(errorFromStatus(error, error)));
    call.on('end', () => this.fail(new UnavailableError('the server ended the stream before answering every request')));
  }

  /** Requests written and not yet answered. */
  get inFlight(): number {
    return this.waiters.length - this.head;
  }

  /** Writes `request` now and returns the promise of its answer. */
  send(request: Request): Promise<Result> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new UnavailableError('the stream is closed'));
    return new Promise<Result>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.call.write(request);
    });
  }

  /**
   * Half-closes the stream after the requests already sent; resolves once all are settled and
   * the server has ended the call (so closing the channel next does not cancel it), or after
   * `closeTimeoutMs` if the server never ends it.
   */
  async close(closeTimeoutMs = 5_000): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.call.end();
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, closeTimeoutMs)))]);
    clearTimeout(timer);
  }

  /** Abandons the stream: pending promises reject. */
  cancel(): void {
    this.ended = true;
    this.call.cancel();
  }

  private onResponse(response: Response): void {
    const waiter = this.waiters[this.head];
    if (waiter === undefined) {
      this.fail(new UnavailableError('the server sent more responses than requests'));
      return;
    }
    this.waiters[this.head] = undefined; // answered: release the closures
    this.head++;
    if (this.head >= QUEUE_COMPACT_WAITERS) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
    waiter.resolve(this.toResult(response));
    if (this.inFlight === 0) this.wakeIdle();
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }

  private fail(error: AnnalError): void {
    if (this.inFlight === 0 && this.failure === undefined && this.ended) return; // a clean end
    this.failure ??= error;
    for (let i = this.head; i < this.waiters.length; i++) this.waiters[i]?.reject(this.failure);
    this.waiters.length = 0;
    this.head = 0;
    this.wakeIdle();
  }
}
