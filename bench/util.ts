/** Small helpers shared by the benchmarks: timing, percentiles, table printing, temp dirs. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommitLog } from '../src/storage/index.js';

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function percentile(sortedValues: number[], p: number): number {
  if (sortedValues.length === 0) return NaN;
  const index = Math.min(sortedValues.length - 1, Math.max(0, Math.ceil((p / 100) * sortedValues.length) - 1));
  return sortedValues[index]!;
}

export function tempDir(prefix: string): { path: string; remove: () => void } {
  const base = process.env.ANNAL_BENCH_DIR ?? tmpdir();
  const path = mkdtempSync(join(base, prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond.toFixed(0);
}

export interface Row {
  name: string;
  value: string;
  ratio?: string;
  note?: string;
}

export function printTable(title: string, rows: Row[]): void {
  const widths = [
    Math.max(4, ...rows.map((r) => r.name.length)),
    Math.max(5, ...rows.map((r) => r.value.length)),
    Math.max(5, ...rows.map((r) => (r.ratio ?? '').length)),
  ];
  console.log(`\n## ${title}\n`);
  console.log(`| ${'what'.padEnd(widths[0]!)} | ${'value'.padEnd(widths[1]!)} | ${'ratio'.padEnd(widths[2]!)} | note`);
  console.log(`|${'-'.repeat(widths[0]! + 2)}|${'-'.repeat(widths[1]! + 2)}|${'-'.repeat(widths[2]! + 2)}|------`);
  for (const r of rows) {
    console.log(`| ${r.name.padEnd(widths[0]!)} | ${r.value.padEnd(widths[1]!)} | ${(r.ratio ?? '').padEnd(widths[2]!)} | ${r.note ?? ''}`);
  }
}

/** Scale factor for counts: ANNAL_BENCH_SCALE=0.1 for a quick pass. */
export function scaled(count: number): number {
  const scale = Number(process.env.ANNAL_BENCH_SCALE ?? '1');
  return Math.max(1, Math.round(count * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/**
 * Calls `send` `count` times with at most `window` calls in flight (refilling when half have
 * completed, as a pipelining client does); returns the elapsed ms.
 */
export async function pipelined(window: number, count: number, send: () => Promise<unknown>): Promise<number> {
  const start = nowMs();
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    let done = 0;
    const onDone = (): void => {
      done++;
      if (done === count) resolve();
      else if (sent - done <= window / 2) fill();
    };
    const fill = (): void => {
      while (sent < count && sent - done < window) {
        sent++;
        send().then(onDone, reject);
      }
    };
    fill();
  });
  return nowMs() - start;
}

/** Appends `records` values of `valueBytes` directly through the log, in batches of 1024. */
export async function prefill(log: CommitLog, records: number, valueBytes: number): Promise<void> {
  if (records <= 0) return;
  const value = Buffer.alloc(valueBytes, 0x62);
  const batch = Array.from({ length: 1024 }, () => ({ value }));
  let last: Promise<unknown> = Promise.resolve();
  for (let written = 0; written < records; written += batch.length) {
    last = log.appendBatch(batch.slice(0, Math.min(batch.length, records - written)));
    if ((written / batch.length) % 64 === 63) await last;
  }
  await last;
}
