/**
 * End-to-end gRPC benchmarks over loopback, each against baselines measured in the same run.
 * The server runs in a child process (bench/grpc-server.ts), the client here: two event loops on
 * two cores, as in a deployment.
 *
 * - Baselines: a no-op grpc-js bidi server with raw-bytes codecs that echoes 1 KiB messages back
 *   (`echo`) or answers each with 8 bytes (`ack`, the shape of a ProduceResponse), pipelined with
 *   the same window as the ProduceStream runs.
 * - Durable (fsync=always) ProduceStream of 100 B and 1 KiB records, pipelined through the annal
 *   client library; records/s, MB/s and the ratio to the echo baseline (target >= 0.8).
 * - Durable ProduceBatch of 1 KiB records in batches of 256 (target >= 100k records/s).
 * - ProduceStream of 1 KiB with 256 in flight (the JetStream peer benchmark's window): records/s
 *   and ack latency p50/p99.
 * - Unary Produce of 1 KiB, one call at a time, fsync=always and fsync=never: p50/p99 latency.
 * - ConsumeStream from the start of a 1M-record log (1 KiB values, written directly into the
 *   log before the server starts), one record per message and with max_batch (target >= 200k/s).
 *
 * The produce workloads and the baselines alternate in rounds (ANNAL_BENCH_ROUNDS, default 3)
 * and the table shows medians with the spread of the runs: the machine is shared and noisy.
 *
 * Usage: node dist/bench/grpc.js   ANNAL_BENCH_SCALE=0.1 for a quick pass (counts scale).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials, makeGenericClientConstructor, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { AnnalClient } from '../src/client/index.js';
import { ECHO_SERVICE } from './grpc-echo.js';
import { formatRate, nowMs, percentile, printTable, scaled, tempDir, type Row, pipelined } from './util.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./grpc-server.js', import.meta.url));
const KIB = 1024;
const MB = 1e6;
/** Requests in flight on one stream in the pipelined runs (baselines and annal alike). */
const WINDOW = 1024;

interface ServerProcess {
  address: string;
  stop: () => Promise<void>;
}

async function startServer(args: string[]): Promise<ServerProcess> {
  const child: ChildProcess = spawn(process.execPath, [SERVER_SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { address: string }).address));
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Pipelines `count` raw messages on a bidi stream, WINDOW in flight; returns elapsed ms. */
function rawPipelined(call: ClientDuplexStream<Buffer, Buffer>, message: Buffer, count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let received = 0;
    const start = nowMs();
    const fill = (): void => {
      while (sent < count && sent - received < WINDOW) {
        call.write(message);
        sent++;
      }
    };
    call.on('data', () => {
      received++;
      if (received === count) {
        call.end();
        resolve(nowMs() - start);
      } else if (sent - received <= WINDOW / 2) fill();
    });
    call.on('error', reject);
    fill();
  });
}

/** Pipelined raw messages against the running echo server; returns messages/s. */
async function baselineRate(address: string, method: 'echo' | 'ack', valueBytes: number, count: number): Promise<number> {
  const Echo = makeGenericClientConstructor(ECHO_SERVICE, 'bench.Echo');
  const client = new Echo(address, credentials.createInsecure()) as Client & Record<string, () => ClientDuplexStream<Buffer, Buffer>>;
  const message = Buffer.alloc(valueBytes, 0x61);
  await rawPipelined(client[method]!(), message, Math.min(count, 2000)); // warm-up
  const elapsedMs = await rawPipelined(client[method]!(), message, count);
  client.close();
  return (count / elapsedMs) * 1000;
}


async function withAnnal<T>(args: string[], run: (client: AnnalClient) => Promise<T>): Promise<T> {
  const dir = tempDir('annal-bench-grpc-');
  const server = await startServer(['annal', dir.path, ...args]);
  const client = new AnnalClient({ address: server.address, security: { insecure: true } });
  try {
    return await run(client);
  } finally {
    client.close();
    await server.stop();
    dir.remove();
  }
}

async function produceStreamRate(client: AnnalClient, valueBytes: number, count: number): Promise<number> {
  const value = Buffer.alloc(valueBytes, 0x61);
  const warm = client.produceStream();
  await pipelined(WINDOW, Math.min(count, 2000), () => warm.send(value));
  await warm.close();
  const stream = client.produceStream();
  const elapsedMs = await pipelined(WINDOW, count, () => stream.send(value));
  await stream.close();
  return (count / elapsedMs) * 1000;
}

async function produceBatchRate(client: AnnalClient, valueBytes: number, batchRecords: number, batchCount: number): Promise<number> {
  const values = Array.from({ length: batchRecords }, () => Buffer.alloc(valueBytes, 0x61));
  const stream = client.produceBatchStream();
  const start = nowMs();
  const inFlight = new Set<Promise<unknown>>();
  for (let sent = 0; sent < batchCount; sent++) {
    const batch = stream.send(values);
    inFlight.add(batch);
    void batch.finally(() => inFlight.delete(batch));
    if (inFlight.size >= 8) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const elapsedMs = nowMs() - start;
  await stream.close();
  return ((batchCount * batchRecords) / elapsedMs) * 1000;
}

interface Samples {
  echo: number[];
  ack: number[];
  stream100: number[];
  stream1k: number[];
  batch: number[];
  windowed: { perSecond: number; p50Ms: number; p99Ms: number }[];
}

/**
 * The machine is shared and noisy, so baselines and workloads alternate in rounds against two
 * long-lived servers (echo and annal, fsync=always), and the table reports medians: a burst of
 * load then hits both sides of a ratio alike.
 */
async function alternatingRounds(rounds: number, counts: { baseline: number; stream100: number; stream1k: number; batches: number }): Promise<Samples> {
  const echoServer = await startServer(['echo']);
  const dir = tempDir('annal-bench-grpc-');
  const annalServer = await startServer(['annal', dir.path, 'always']);
  const client = new AnnalClient({ address: annalServer.address, security: { insecure: true } });
  const samples: Samples = { echo: [], ack: [], stream100: [], stream1k: [], batch: [], windowed: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      samples.echo.push(await baselineRate(echoServer.address, 'echo', KIB, counts.baseline));
      samples.stream1k.push(await produceStreamRate(client, KIB, counts.stream1k));
      samples.ack.push(await baselineRate(echoServer.address, 'ack', KIB, counts.baseline));
      samples.stream100.push(await produceStreamRate(client, 100, counts.stream100));
      samples.batch.push(await produceBatchRate(client, KIB, 256, counts.batches));
      samples.windowed.push(await windowedProduceLatency(client, KIB, 256, counts.stream1k));
    }
  } finally {
    client.close();
    await annalServer.stop();
    await echoServer.stop();
    dir.remove();
  }
  return samples;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The run with the median of `key` (so its latencies are reported together with its rate). */
function medianBy<T>(runs: T[], key: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor(sorted.length / 2)]!;
}

function spread(values: number[]): string {
  return values.length > 1 ? `${formatRate(Math.min(...values))}..${formatRate(Math.max(...values))}` : '';
}

async function unaryLatency(fsync: string, valueBytes: number, count: number): Promise<{ p50Ms: number; p99Ms: number; perSecond: number }> {
  return withAnnal([fsync], async (client) => {
    const value = Buffer.alloc(valueBytes, 0x61);
    for (let i = 0; i < Math.min(200, count); i++) await client.produce(value); // warm-up
    const latenciesMs: number[] = [];
    const start = nowMs();
    for (let i = 0; i < count; i++) {
      const t0 = nowMs();
      await client.produce(value);
      latenciesMs.push(nowMs() - t0);
    }
    const elapsedMs = nowMs() - start;
    latenciesMs.sort((a, b) => a - b);
    return { p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99), perSecond: (count / elapsedMs) * 1000 };
  });
}

/**
 * ProduceStream with `window` records in flight (256, as the JetStream peer benchmark publishes):
 * records/s and the time from send to acknowledgement.
 */
async function windowedProduceLatency(client: AnnalClient, valueBytes: number, window: number, count: number) {
  const value = Buffer.alloc(valueBytes, 0x61);
  const stream = client.produceStream();
  const latenciesMs: number[] = [];
  const start = nowMs();
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    let done = 0;
    const fill = (): void => {
      while (sent < count && sent - done < window) {
        sent++;
        const t0 = nowMs();
        stream.send(value).then(() => {
          latenciesMs.push(nowMs() - t0);
          done++;
          if (done === count) resolve();
          else fill();
        }, reject);
      }
    };
    fill();
  });
  const elapsedMs = nowMs() - start;
  await stream.close();
  latenciesMs.sort((a, b) => a - b);
  return { perSecond: (count / elapsedMs) * 1000, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99) };
}

async function consumeRates(logRecords: number, valueBytes: number, perRecordCount: number, maxBatch: number) {
  return withAnnal(['never', String(logRecords), String(valueBytes)], async (client) => {
    const read = async (count: number, batch: number): Promise<number> => {
      const start = nowMs();
      let seen = 0;
      for await (const records of client.consumeBatches(0, { maxBatch: batch, follow: false })) {
        seen += records.length;
        if (seen >= count) break;
      }
      return (seen / (nowMs() - start)) * 1000;
    };
    await read(Math.min(5000, perRecordCount), 0); // warm-up
    const perRecord = await read(perRecordCount, 0);
    const batched = await read(logRecords, maxBatch);
    return { perRecord, batched };
  });
}

async function main(): Promise<void> {
  const rounds = Math.max(1, Number(process.env.ANNAL_BENCH_ROUNDS ?? '3'));
  const counts = {
    baseline: scaled(40_000),
    stream100: scaled(40_000),
    stream1k: scaled(40_000),
    batches: scaled(400),
    unary: scaled(2_000),
    consumeLog: scaled(1_000_000),
    consumePerRecord: scaled(200_000),
  };
  const samples = await alternatingRounds(rounds, counts);
  const unary = await unaryLatency('always', KIB, counts.unary);
  const unaryNoSync = await unaryLatency('never', KIB, counts.unary);
  const consume = await consumeRates(counts.consumeLog, KIB, counts.consumePerRecord, 1000);

  const echo = median(samples.echo);
  const ack = median(samples.ack);
  const stream100 = median(samples.stream100);
  const stream1k = median(samples.stream1k);
  const batch = median(samples.batch);
  const windowed = medianBy(samples.windowed, (run) => run.perSecond);
  const ratio = (value: number, base: number): string => `${(value / base).toFixed(2)}x`;
  const mbps = (perSecond: number, bytes: number): string => `${((perSecond * bytes) / MB).toFixed(1)} MB/s`;
  const rows: Row[] = [
    { name: 'baseline: no-op bidi echo, 1 KiB each way', value: `${formatRate(echo)} msg/s`, note: `${mbps(echo, KIB)} in; runs ${spread(samples.echo)}` },
    { name: 'baseline: no-op bidi, 1 KiB in, 8 B ack out', value: `${formatRate(ack)} msg/s`, ratio: ratio(ack, echo), note: `runs ${spread(samples.ack)}` },
    { name: 'ProduceStream 100 B, fsync=always', value: `${formatRate(stream100)} rec/s`, ratio: ratio(stream100, echo), note: `${mbps(stream100, 100)}; vs ack ${ratio(stream100, ack)}; runs ${spread(samples.stream100)}` },
    { name: 'ProduceStream 1 KiB, fsync=always', value: `${formatRate(stream1k)} rec/s`, ratio: ratio(stream1k, echo), note: `${mbps(stream1k, KIB)}; vs ack ${ratio(stream1k, ack)}; runs ${spread(samples.stream1k)}; target >= 0.8x echo` },
    { name: 'ProduceBatch 1 KiB x 256, fsync=always', value: `${formatRate(batch)} rec/s`, ratio: ratio(batch, echo), note: `${mbps(batch, KIB)}; runs ${spread(samples.batch)}; target >= 100k rec/s` },
    { name: 'ProduceStream 1 KiB, 256 in flight, fsync=always', value: `${formatRate(windowed.perSecond)} rec/s`, ratio: ratio(windowed.perSecond, echo), note: `ack p50 ${windowed.p50Ms.toFixed(2)} ms, p99 ${windowed.p99Ms.toFixed(2)} ms (median run); runs ${spread(samples.windowed.map((run) => run.perSecond))}; JetStream R1 peer: 256 in flight, no fsync` },
    { name: 'Produce (unary) 1 KiB, fsync=always', value: `p50 ${unary.p50Ms.toFixed(2)} ms`, note: `p99 ${unary.p99Ms.toFixed(2)} ms; ${formatRate(unary.perSecond)} calls/s one at a time` },
    { name: 'Produce (unary) 1 KiB, fsync=never', value: `p50 ${unaryNoSync.p50Ms.toFixed(2)} ms`, note: `p99 ${unaryNoSync.p99Ms.toFixed(2)} ms; ${formatRate(unaryNoSync.perSecond)} calls/s one at a time` },
    { name: `ConsumeStream 1 KiB from 0 of ${formatRate(counts.consumeLog)}, 1/msg`, value: `${formatRate(consume.perRecord)} rec/s`, ratio: ratio(consume.perRecord, echo), note: `first ${formatRate(counts.consumePerRecord)} records` },
    { name: `ConsumeStream 1 KiB from 0 of ${formatRate(counts.consumeLog)}, max_batch 1000`, value: `${formatRate(consume.batched)} rec/s`, ratio: ratio(consume.batched, echo), note: `${mbps(consume.batched, KIB)}; target >= 200k rec/s` },
  ];
  printTable(`gRPC over loopback (server in a child process; medians of ${rounds} alternating rounds; ratios against the no-op echo)`, rows);
}

await main();
