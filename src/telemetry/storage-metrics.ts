/**
 * Storage instruments (meter `annal.storage`): append and fsync latency, and the log's size,
 * segment count, offset range and the free-space ratio of its file system (saturation: a node
 * whose disk fills stops accepting writes).
 *
 * The gauges read a `StorageStats` (storage's CommitLog satisfies it structurally) at scrape time,
 * through a getter because the agent may swap the log instance (reset, snapshot install).
 */
import { statfs } from 'node:fs/promises';
import type { Histogram } from '@opentelemetry/api';
import { assert } from '../util/index.js';
import { DURATION_BUCKETS_SECONDS, type MeterSource } from './metrics.js';

/** What the gauges read from the log at scrape time. */
export interface StorageStats {
  /** The log's directory; the free-space ratio is that of its file system. */
  readonly dir: string;
  sizeBytes(): number;
  segmentCount(): number;
  lowestOffset(): number;
  /** lowestOffset() - 1 when the log is empty. */
  highestOffset(): number;
}

export class StorageMetrics {
  /**
   * From append() to its acknowledgement under the fsync policy (so it includes the group-commit
   * wait), for one append call in `appendSampleEvery` (see AppendTimer).
   */
  readonly appendDurationSeconds: Histogram;
  /** Append calls and the records they carried: exact, read by observable counters. */
  appendCalls = 0;
  appendedRecords = 0;
  /** One fdatasync round of the log (all dirty segments and, after a roll, the directory). */
  readonly fsyncDurationSeconds: Histogram;
  /** Times the log failed a write or fsync and stopped taking appends (see LogConfig.onFailure). */
  failures = 0;

  constructor(source: MeterSource, stats: () => StorageStats | undefined) {
    const meter = source.meter('storage');
    this.appendDurationSeconds = meter.createHistogram('annal_storage_append_duration_seconds', {
      description: 'Time from append to acknowledgement under the fsync policy, per append call.',
      unit: 's',
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS_SECONDS] },
    });
    this.fsyncDurationSeconds = meter.createHistogram('annal_storage_fsync_duration_seconds', {
      description: 'Duration of one fdatasync round of the log.',
      unit: 's',
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS_SECONDS] },
    });
    const appendCalls = meter.createObservableCounter('annal_storage_append_calls', {
      description: 'Append calls (one per record, or one per batch), counted exactly.',
    });
    const appendedRecords = meter.createObservableCounter('annal_storage_appended_records', {
      description: 'Records appended, counted exactly.',
    });
    const failures = meter.createObservableCounter('annal_storage_failures', {
      description: 'Write or fsync failures that stopped the log taking appends (an error line is logged for each).',
    });
    meter.addBatchObservableCallback(
      (result) => {
        result.observe(appendCalls, this.appendCalls);
        result.observe(appendedRecords, this.appendedRecords);
        result.observe(failures, this.failures);
      },
      [appendCalls, appendedRecords, failures],
    );
    const sizeBytes = meter.createObservableGauge('annal_storage_size_bytes', {
      description: 'Bytes of all store files of the log.',
      unit: 'By',
    });
    const segmentCount = meter.createObservableGauge('annal_storage_segments', {
      description: 'Segments of the log.',
    });
    const lowestOffset = meter.createObservableGauge('annal_storage_lowest_offset', {
      description: 'Lowest retained offset.',
    });
    const highestOffset = meter.createObservableGauge('annal_storage_highest_offset', {
      description: 'Highest acknowledged offset (lowest offset - 1 when the log is empty).',
    });
    const freeRatio = meter.createObservableGauge('annal_storage_disk_free_ratio', {
      description: 'Fraction (0..1) of the data directory file system available to the process.',
    });
    meter.addBatchObservableCallback(
      async (result) => {
        const log = stats();
        if (log === undefined) return;
        result.observe(sizeBytes, log.sizeBytes());
        result.observe(segmentCount, log.segmentCount());
        result.observe(lowestOffset, log.lowestOffset());
        result.observe(highestOffset, log.highestOffset());
        const ratio = await diskFreeRatio(log.dir);
        if (ratio !== undefined) result.observe(freeRatio, ratio);
      },
      [sizeBytes, segmentCount, lowestOffset, highestOffset, freeRatio],
    );
  }
}

/**
 * Times append calls for `appendDurationSeconds`, one call in `sampleEvery`: timing every append
 * (two clock reads, a promise reaction and a histogram record per record of a ProduceStream) cost
 * about 1 µs per record, a tenth of the server's whole per-record CPU. The sample is every n-th
 * call, which under steady load is as good as random; the counts beside it are exact.
 */
export class AppendTimer {
  private untilSample = 0;

  /** `sampleEvery`: 1 times every call. Default 16. */
  constructor(
    private readonly metrics: StorageMetrics,
    private readonly sampleEvery = 16,
  ) {
    assert(Number.isSafeInteger(sampleEvery) && sampleEvery >= 1, 'sampleEvery must be a positive integer');
  }

  /** Counts one append call of `records` records and runs it, timing it if it is the sampled one. */
  run<T>(records: number, append: () => Promise<T>): Promise<T> {
    this.metrics.appendCalls++;
    this.metrics.appendedRecords += records;
    if (this.untilSample > 0) {
      this.untilSample--;
      return append();
    }
    this.untilSample = this.sampleEvery - 1;
    const startedMs = performance.now();
    const histogram = this.metrics.appendDurationSeconds;
    const record = (): void => histogram.record((performance.now() - startedMs) / 1000);
    return append().then(
      (value) => {
        record();
        return value;
      },
      (error: unknown) => {
        record();
        throw error;
      },
    );
  }
}

/** Blocks available to unprivileged users over all blocks; undefined when statfs fails (dir removed). */
export async function diskFreeRatio(dir: string): Promise<number | undefined> {
  try {
    const fs = await statfs(dir);
    return fs.blocks > 0 ? fs.bavail / fs.blocks : undefined;
  } catch {
    return undefined;
  }
}
