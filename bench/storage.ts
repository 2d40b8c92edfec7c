/**
 * Storage engine benchmarks, each against a baseline measured in the same run:
 * - append throughput (fsync=never) vs raw fs writes of the same framed bytes to one file,
 *   both one write per record (the naive writer) and in 512 KiB chunks (the page cache's limit);
 * - fsync=always with 1 and with 64 concurrent appenders (group commit) vs fdatasync per record;
 * - RSS after 100k and after 5M records of 100 B, and the time to reopen that log (child process).
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

async function throughputRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const valueBytes of [100, 1024]) {
    const count = scaled(valueBytes === 100 ? 1_000_000 : 300_000);
    const frameBytes = FRAME_HEADER_BYTES + valueBytes;
    const rawPerRecord = rawWrites(frameBytes, count, 'per-record');
    const rawChunked = rawWrites(frameBytes, count, 'chunked');
    const annal = await appendThroughput(valueBytes, count, 'never', 0);
    const mbps = (rate: number): string => `${((rate * frameBytes) / 1e6).toFixed(0)} MB/s`;
    rows.push({ name: `raw fs.writeSync per record, ${valueBytes} B`, value: `${formatRate(rawPerRecord)} rec/s`, note: mbps(rawPerRecord) });
    rows.push({ name: `raw fs.writeSync 512 KiB chunks, ${valueBytes} B`, value: `${formatRate(rawChunked)} rec/s`, note: mbps(rawChunked) });
    rows.push({
      name: `annal append fsync=never, ${valueBytes} B`,
      value: `${formatRate(annal)} rec/s`,
      ratio: `${(annal / rawPerRecord).toFixed(2)}x / ${(annal / rawChunked).toFixed(2)}x`,
      note: `${mbps(annal)}; ratio vs per-record / vs chunked raw writes`,
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

/** Child-process mode: append `count` 100-byte records, print RSS; then reopen and time it. */
async function memoryChild(count: number, dir: string): Promise<void> {
  const log = await CommitLog.open(dir, { fsync: parseFsyncPolicy('never') });
  const value = Buffer.alloc(100, 0x62);
  let last: Promise<number> | undefined;
  for (let i = 0; i < count; i++) {
    last = log.append({ value });
    if (i % 8192 === 8191) await last;
  }
  await last;
  globalThis.gc?.();
  const usage = process.memoryUsage();
  const rssAfterAppendMb = usage.rss / 1e6;
  const liveMb = (usage.heapUsed + usage.external + usage.arrayBuffers) / 1e6;
  const segments = log.segmentCount();
  await log.close();
  const start = nowMs();
  const reopened = await CommitLog.open(dir, { fsync: parseFsyncPolicy('never') });
  const reopenMs = nowMs() - start;
  const probe = reopened.read(Math.floor(count / 2));
  if (probe.value.length !== 100) throw new Error('bad read after reopen');
  await reopened.close();
  console.log(JSON.stringify({ rssAfterAppendMb, liveMb, reopenMs, segments }));
}

function memoryRows(): Row[] {
  const self = fileURLToPath(import.meta.url);
  const run = (count: number): { rssAfterAppendMb: number; liveMb: number; reopenMs: number; segments: number } => {
    const dir = tempDir('annal-bench-mem-');
    try {
      const result = spawnSync(process.execPath, ['--expose-gc', self, 'memory-child', String(count), dir.path], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`memory child failed: ${result.stderr}`);
      return JSON.parse(result.stdout.trim().split('\n').pop()!);
    } finally {
      dir.remove();
    }
  };
  const small = run(scaled(100_000));
  const large = run(scaled(5_000_000));
  return [
    { name: `RSS after ${formatRate(scaled(100_000))} x 100 B`, value: `${small.rssAfterAppendMb.toFixed(0)} MB`, note: `${small.segments} segment(s); live heap+buffers ${small.liveMb.toFixed(0)} MB; reopen ${small.reopenMs.toFixed(1)} ms` },
    {
      name: `RSS after ${formatRate(scaled(5_000_000))} x 100 B`,
      value: `${large.rssAfterAppendMb.toFixed(0)} MB`,
      ratio: `${(large.rssAfterAppendMb / small.rssAfterAppendMb).toFixed(2)}x`,
      note: `${large.segments} segments; live heap+buffers ${large.liveMb.toFixed(0)} MB; vs the small log`,
    },
    { name: `reopen ${formatRate(scaled(5_000_000))}-record log`, value: `${large.reopenMs.toFixed(1)} ms` },
  ];
}

async function main(): Promise<void> {
  if (process.argv[2] === 'memory-child') return memoryChild(Number(process.argv[3]), process.argv[4]!);
  printTable('storage: append throughput, fsync=never', await throughputRows());
  printTable('storage: durable appends, fsync=always (1 KiB)', await durableRows());
  printTable('storage: memory and reopen', memoryRows());
}

await main();
