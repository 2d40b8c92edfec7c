/**
 * Callers waiting for a log to grow past an offset (tailing consumers): each waits on a promise
 * that an append wakes, never a poll, and leaves on its AbortSignal.
 */
interface Waiter {
  readonly offset: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export class OffsetWaiters {
  private readonly waiters = new Set<Waiter>();

  get size(): number {
    return this.waiters.size;
  }

  /** Resolves once `wake(next)` is called with next > offset; rejects with the signal's reason on abort. */
  wait(offset: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(waiter);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        offset,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      this.waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Wakes every waiter whose offset lies below `next` (the log now holds [.., next)). */
  wake(next: number): void {
    if (this.waiters.size === 0) return;
    for (const waiter of this.waiters) {
      if (waiter.offset < next) {
        this.waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  rejectAll(error: unknown): void {
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters.clear();
  }
}
