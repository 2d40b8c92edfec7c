/**
 * Groups single records into ProduceBatch requests, as Kafka's producer does: a batch is sent when
 * it holds `maxBatchRecords` records or `maxBatchBytes` value bytes, or `lingerMs` after its first
 * record, whichever comes first. Each `send` resolves with its record's own offset (the batch's
 * first offset plus its position). At most `maxInFlightBatches` batches await their answer; full
 * batches beyond that wait in order, so offsets follow the order of `send` calls. Waiting
 * batches are held in memory: a caller producing without bound should await older sends.
 */
import { assert } from '../util/index.js';
import type { ProduceBatchHandle } from './client.js';

export interface BatchingProducerOptions {
  /** Records per batch. Default 256. */
  maxBatchRecords: number;
  /** Value bytes per batch (a single larger record goes alone). Default 1 MiB. */
  maxBatchBytes: number;
  /** How long a batch waits for more records after its first, in milliseconds. Default 2. */
  lingerMs: number;
  /** Batches sent and not yet answered. Default 8. */
  maxInFlightBatches: number;
}

interface Batch {
  values: Uint8Array[];
  sizeBytes: number;
  resolves: ((offset: number) => void)[];
  rejects: ((error: Error) => void)[];
}

export class BatchingProducer {
  private readonly options: BatchingProducerOptions;
  private open: Batch = emptyBatch();
  // Invariant: ready batches are full or lingered, in send order, waiting for an in-flight slot.
  private readonly ready: Batch[] = [];
  private inFlightBatches = 0;
  private lingerTimer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly stream: ProduceBatchHandle,
    options: Partial<BatchingProducerOptions>,
  ) {
    this.options = { maxBatchRecords: 256, maxBatchBytes: 1024 * 1024, lingerMs: 2, maxInFlightBatches: 8, ...options };
    assert(this.options.maxBatchRecords >= 1, 'maxBatchRecords must be at least 1');
    assert(this.options.maxInFlightBatches >= 1, 'maxInFlightBatches must be at least 1');
  }

  /** Queues one record; resolves with its offset once its batch is acknowledged. */
  send(value: Uint8Array): Promise<number> {
    assert(!this.closed, 'BatchingProducer.send after close');
    if (this.open.values.length > 0 && this.open.sizeBytes + value.length > this.options.maxBatchBytes) this.seal();
    return new Promise<number>((resolve, reject) => {
      const batch = this.open;
      batch.values.push(value);
      batch.sizeBytes += value.length;
      batch.resolves.push(resolve);
      batch.rejects.push(reject);
      if (batch.values.length >= this.options.maxBatchRecords) this.seal();
      else if (batch.values.length === 1) this.lingerTimer = setTimeout(() => this.seal(), this.options.lingerMs);
    });
  }

  /** Sends the open batch now and resolves once every record sent so far is answered. */
  async flush(): Promise<void> {
    this.seal();
    if (this.inFlightBatches === 0 && this.ready.length === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Flushes, then closes the underlying stream. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    await this.stream.close();
  }

  /** Moves the open batch to the ready queue and sends what the in-flight window allows. */
  private seal(): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (this.open.values.length > 0) {
      this.ready.push(this.open);
      this.open = emptyBatch();
    }
    this.sendReady();
  }

  private sendReady(): void {
    while (this.inFlightBatches < this.options.maxInFlightBatches && this.ready.length > 0) {
      const batch = this.ready.shift()!;
      this.inFlightBatches++;
      this.stream.send(batch.values).then(
        ({ firstOffset }) => {
          for (let i = 0; i < batch.resolves.length; i++) batch.resolves[i]!(firstOffset + i);
          this.batchDone();
        },
        (error: Error) => {
          for (const reject of batch.rejects) reject(error);
          this.batchDone();
        },
      );
    }
  }

  private batchDone(): void {
    this.inFlightBatches--;
    this.sendReady();
    if (this.inFlightBatches === 0 && this.ready.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }
}

function emptyBatch(): Batch {
  return { values: [], sizeBytes: 0, resolves: [], rejects: [] };
}
