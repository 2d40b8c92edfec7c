/**
 * Storage engine benchmarks, each against a baseline measured in the same run:
 * - append throughput (fsync=never): `append()` once per record, as a user calls it, against raw
 *   fs writes of the same number of bytes to one file, both one write per record (the naive
 *   writer) and in 512 KiB chunks (the page cache's limit). The three alternate in rounds
 *   (ANNAL_BENCH_ROUNDS, default 3) and the table shows medians, the ratio of the medians and
 *   the spread of the per-round ratios: the machine is shared and noisy;
 * - fsync=always with 1 and with 64 concurrent appenders (group commit) vs fdatasync per record;
 * - RSS of one process after 100k, 1M and 5M records of 100 B, and the time to reopen that log.
 * Usage: node dist/bench/storage.js   (ANNAL_BENCH_SCALE=0.1 for a quick pass)
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommitLog, FRAME_HEADER_BYTES, parseFsyncPolicy } from '../src/storage/index.js';
import { formatRate, nowMs, printTable, scaled, tempDir, type Row } from './util.js';

async function appendThroughput(valueBytes: number, count: number, fsync: string, concurrency: number): Promise<number> {
  const dir = tempDir('annal-bench-');
  const log = await CommitLog.open(dir.path, { fsync: parseFsyncPolicy(fsync) });
  const value = Buffer.alloc(valueBytes, 0x61);
  const start = nowMs();
  if (concurrency === 0) {
    // Pipelined: no awaiting per append, a window of in-flight promises.
    let last: Promise<number> | undefined;
    for (let i = 0; i < count; i++) {
      last = log.append({ value });
      if (i % 8192 === 8191) await last;
    }
    await last;
  } else {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        next++;
        await log.append({ value });
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
  const elapsedMs = nowMs() - start;
  await log.close();
  dir.remove();
  return count / (elapsedMs / 1000);
}

function rawWrites(recordBytes: number, count: number, mode: 'per-record' | 'chunked' | 'fdatasync-per-record' | 'fdatasync-per-64'): number {
  const dir = tempDir('annal-bench-raw-');
  const fd = openSync(join(dir.path, 'raw'), 'w');
  const start = nowMs();
  if (mode === 'chunked') {
    const perChunk = Math.max(1, Math.floor((512 * 1024) / recordBytes));
    const chunk = Buffer.alloc(perChunk * recordBytes, 0x61);
    for (let written = 0; written < count; written += perChunk) {
      const n = Math.min(perChunk, count - written);
      writeSync(fd, chunk, 0, n * recordBytes);
    }
  } else if (mode === 'fdatasync-per-64') {
    const group = Buffer.alloc(64 * recordBytes, 0x61);
    for (let written = 0; written < count; written += 64) {
      writeSync(fd, group);
      fdatasyncSync(fd);
    }
  } else {
    const record = Buffer.alloc(recordBytes, 0x61);
    for (let i = 0; i < count; i++) {
      writeSync(fd, record);
      if (mode === 'fdatasync-per-record') fdatasyncSync(fd);
    }
  }
  const elapsedMs = nowMs() - start;
  closeSync(fd);
  dir.remove();
  return count / (elapsedMs / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function throughputRows(rounds: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const valueBytes of [100, 1024]) {
    const count = scaled(valueBytes === 100 ? 1_000_000 : 300_000);
    const frameBytes = FRAME_HEADER_BYTES + valueBytes;
    const runs = { perRecord: [] as number[], chunked: [] as number[], annal: [] as number[] };
    // Untimed: the first pass through the append path runs unoptimised code (JIT warm-up).
    await appendThroughput(valueBytes, Math.ceil(count / 4), 'never', 0);
    for (let round = 0; round < rounds; round++) {
      runs.perRecord.push(rawWrites(frameBytes, count, 'per-record'));
      runs.chunked.push(rawWrites(frameBytes, count, 'chunked'));
      runs.annal.push(await appendThroughput(valueBytes, count, 'never', 0));
    }
    const [rawPerRecord, rawChunked, annal] = [median(runs.perRecord), median(runs.chunked), median(runs.annal)];
    const roundRatios = runs.annal.map((rate, i) => rate / runs.perRecord[i]!);
    const mbps = (rate: number): string => `${((rate * frameBytes) / 1e6).toFixed(0)} MB/s`;
    const spread = (values: number[]): string => (values.length > 1 ? `, runs ${formatRate(Math.min(...values))}..${formatRate(Math.max(...values))}` : '');
    rows.push({ name: `raw fs.writeSync per record, ${valueBytes} B`, value: `${formatRate(rawPerRecord)} rec/s`, note: mbps(rawPerRecord) + spread(runs.perRecord) });
    rows.push({ name: `raw fs.writeSync 512 KiB chunks, ${valueBytes} B`, value: `${formatRate(rawChunked)} rec/s`, note: mbps(rawChunked) + spread(runs.chunked) });
    rows.push({
      name: `annal append fsync=never, ${valueBytes} B`,
      value: `${formatRate(annal)} rec/s`,
      ratio: `${(annal / rawPerRecord).toFixed(2)}x / ${(annal / rawChunked).toFixed(2)}x`,
      note:
        `${mbps(annal)}${spread(runs.annal)}; ratio of medians vs per-record / vs chunked raw writes; ` +
        `per-round ratios vs per-record ${Math.min(...roundRatios).toFixed(2)}x..${Math.max(...roundRatios).toFixed(2)}x`,
    });
  }
  return rows;
}

async function durableRows(): Promise<Row[]> {
  const count1 = scaled(3000);
  const count64 = scaled(200_000);
  const rawSync = rawWrites(FRAME_HEADER_BYTES + 1024, count1, 'fdatasync-per-record');
  const rawSync64 = rawWrites(FRAME_HEADER_BYTES + 1024, count64, 'fdatasync-per-64');
  const one = await appendThroughput(1024, count1, 'always', 1);
  const sixtyFour = await appendThroughput(1024, count64, 'always', 64);
  const pipelined = await appendThroughput(1024, count64, 'always', 0);
  return [
    { name: 'raw write + fdatasync per record, 1 KiB', value: `${formatRate(rawSync)} rec/s` },
    { name: 'annal fsync=always, 1 appender', value: `${formatRate(one)} rec/s`, ratio: `${(one / rawSync).toFixed(2)}x`, note: 'vs raw fdatasync per record' },
    { name: 'raw write 64 records + fdatasync, 1 KiB', value: `${formatRate(rawSync64)} rec/s`, note: 'the disk limit for groups of 64' },
    {
      name: 'annal fsync=always, 64 appenders',
      value: `${formatRate(sixtyFour)} rec/s`,
      ratio: `${(sixtyFour / one).toFixed(1)}x / ${(sixtyFour / rawSync64).toFixed(2)}x`,
      note: 'vs 1 appender (group commit) / vs raw groups of 64',
    },
    { name: 'annal fsync=always, pipelined (8192 window)', value: `${formatRate(pipelined)} rec/s`, ratio: `${(pipelined / one).toFixed(1)}x`, note: 'vs 1 appender' },
  ];
}

const MEMORY_MARKS = [100_000, 1_000_000, 5_000_000];

interface MemoryMark {
  records: number;
  rssMb: number;
  /** V8's committed heap: its young generation grows with the allocation rate, not with the log. */
  heapTotalMb: number;
  /** Live heap and native buffers after a full collection. */
  liveMb: number;
  segments: number;
}

/** Child-process mode: append 100-byte records, print the memory at each mark; then reopen and time it. */
async function memoryChild(dir: string): Promise<void> {
  const log = await CommitLog.open(dir, { fsync: parseFsyncPolicy('never') });
  const value = Buffer.alloc(100, 0x62);
  const marks: MemoryMark[] = [];
  let written = 0;
  for (const mark of MEMORY_MARKS.map(scaled)) {
    let last: Promise<number> | undefined;
    for (; written < mark; written++) {
      last = log.append({ value });
      if (written % 8192 === 8191) await last;
    }
    await last;
    // Two full collections a macrotask apart: buffers' native memory is released after the first.
    globalThis.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 20));
    globalThis.gc?.();
    const usage = process.memoryUsage();
    marks.push({
      records: mark,
      rssMb: usage.rss / 1e6,
      heapTotalMb: usage.heapTotal / 1e6,
      liveMb: (usage.heapUsed + usage.external) / 1e6,
      segments: log.segmentCount(),
    });
  }
  await log.close();
  const start = nowMs();
  const reopened = await CommitLog.open(dir, { fsync: parseFsyncPolicy('never') });
  const reopenMs = nowMs() - start;
  const probe = reopened.read(Math.floor(written / 2));
  if (probe.value.length !== 100) throw new Error('bad read after reopen');
  await reopened.close();
  console.log(JSON.stringify({ marks, reopenMs }));
}

function memoryRows(): Row[] {
  const self = fileURLToPath(import.meta.url);
  const dir = tempDir('annal-bench-mem-');
  let result: { marks: MemoryMark[]; reopenMs: number };
  try {
    const child = spawnSync(process.execPath, ['--expose-gc', self, 'memory-child', dir.path], { encoding: 'utf8' });
    if (child.status !== 0) throw new Error(`memory child failed: ${child.stderr}`);
    result = JSON.parse(child.stdout.trim().split('\n').pop()!);
  } finally {
    dir.remove();
  }
  const first = result.marks[0]!;
  const rows: Row[] = result.marks.map((mark) => ({
    name: `RSS after ${formatRate(mark.records)} x 100 B`,
    value: `${mark.rssMb.toFixed(0)} MB`,
    ratio: `${mark.rssMb >= first.rssMb ? '+' : ''}${(mark.rssMb - first.rssMb).toFixed(1)} MB`,
    note: `${mark.segments} segment(s); V8 heap ${mark.heapTotalMb.toFixed(0)} MB; live heap+buffers ${mark.liveMb.toFixed(1)} MB`,
  }));
  rows.push({ name: `reopen ${formatRate(result.marks[result.marks.length - 1]!.records)}-record log`, value: `${result.reopenMs.toFixed(1)} ms` });
  return rows;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'memory-child') return memoryChild(process.argv[3]!);
  const rounds = Math.max(1, Number(process.env.ANNAL_BENCH_ROUNDS ?? '3'));
  printTable(`storage: append throughput, fsync=never (medians of ${rounds} alternating rounds)`, await throughputRows(rounds));
  printTable('storage: durable appends, fsync=always (1 KiB)', await durableRows());
  printTable('storage: memory of one process as the log grows, and reopen (ratio: RSS change since the first mark)', memoryRows());
}

await main();
