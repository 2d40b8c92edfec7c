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
  /** From append() to its acknowledgement under the fsync policy (so it includes the group-commit wait). */
  readonly appendDurationSeconds: Histogram;
  /** One fdatasync round of the log (all dirty segments and, after a roll, the directory). */
  readonly fsyncDurationSeconds: Histogram;

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
 * Runs an append and records its duration into `appendDurationSeconds` (failed appends too: a
 * slow failing disk is what an operator needs to see).
 */
export async function timeAppend<T>(metrics: StorageMetrics, append: () => Promise<T>): Promise<T> {
  const startedMs = performance.now();
  try {
    return await append();
  } finally {
    metrics.appendDurationSeconds.record((performance.now() - startedMs) / 1000);
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
