/**
 * Goal: the append timer counts every append exactly and times one call in `sampleEvery`,
 * failed appends included; the storage gauges follow the log they read, even after it changes.
 * Method: a real CommitLog in a temp dir; values read back through the Prometheus exposition.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CommitLog } from '../storage/index.js';
import { AppendTimer } from './storage-metrics.js';
import { Telemetry } from './telemetry.js';
import { parseSamples, sampleValue } from './testdata/prom-text.js';

describe('storage metrics', () => {
  let dir: string;
  let log: CommitLog;
  let telemetry: Telemetry;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-storage-metrics-'));
    log = await CommitLog.open(dir, { fsync: { kind: 'never' }, maxRecordBytes: 64 });
    telemetry = await Telemetry.start({ metrics: true });
  });
  after(async () => {
    await telemetry.shutdown();
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts every append and times one call in sampleEvery, failures included', async () => {
    const storage = telemetry.storageMetrics(() => log);
    const timer = new AppendTimer(storage, 4);
    for (let i = 0; i < 9; i++) await timer.run(1, () => log.append({ value: Buffer.from(`v${i}`) }));
    await timer.run(3, () => log.appendBatch([1, 2, 3].map((i) => ({ value: Buffer.from(`b${i}`) }))));
    await assert.rejects(timer.run(1, () => log.append({ value: Buffer.alloc(65) })), { code: 'RECORD_TOO_LARGE' });
    const samples = parseSamples(await telemetry.scrape());
    assert.equal(sampleValue(samples, 'annal_storage_append_calls_total'), 11);
    assert.equal(sampleValue(samples, 'annal_storage_appended_records_total'), 13);
    // The 1st, 5th and 9th calls are timed; the batch (10th) and the refused 11th are not.
    assert.equal(sampleValue(samples, 'annal_storage_append_duration_seconds_count'), 3);
    assert.equal(sampleValue(samples, 'annal_storage_highest_offset'), 11);
    assert.equal(sampleValue(samples, 'annal_storage_segments'), 1);
  });
});
