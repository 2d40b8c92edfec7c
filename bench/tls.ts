/**
 * What mutual TLS and the ACL cost: the same workloads against annal servers in the same run, one
 * plaintext (`--insecure`, the baseline) and one behind auth's mTLS listener with the Casbin ACL
 * interceptor, each in its own process with telemetry on (metrics and the access log, as an
 * agent runs). Rounds alternate between the servers and the table reports medians, so load from
 * other processes on this shared machine hits both alike.
 * - ProduceStream, 1 KiB records, fsync=always (the durable default), 1024 in flight; and with
 *   256 in flight (the JetStream peer benchmark's window) with ack latency p50/p99.
 * - Unary Produce, 1 KiB, fsync=always, one call at a time after a warm-up: p50/p99, against a floor measured
 *   in the same rounds: a no-op unary call under mTLS (GetServers through the same interceptors)
 *   followed by one 1 KiB write and fdatasync round trip on the same file system (from this
 *   process), timed together. Timed together because a sync issued after a network round trip
 *   costs more than one issued back to back with the last (measured here: 0.43 against 0.33 ms,
 *   the virtual disk idles in between), and a produce's sync always follows its request's trip;
 *   the back-to-back figure is shown too.
 * - ProduceStream, 100 B records, fsync=never: CPU-bound, where encryption and the per-stream
 *   ACL check weigh most; unary Produce 100 B, fsync=never.
 * - ConsumeStream from the start of a prefilled log of 1 KiB records, one record per message
 *   (what proglog clients use) and with max_batch 1000.
 * A third server, grpc-js's own TLS port (createSsl, client certificates required, no ACL), shows
 * how much of the cost is TLS in grpc-js/Node itself rather than annal's listener or ACL.
 * - New connections: open a channel, one GetServers call, close; the TLS handshake's cost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fdatasync, openSync, readFileSync, write } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runCertsCommand, PACKAGED_CONFIG_DIR } from '../src/auth/index.js';
import { AnnalClient, type ClientSecurity } from '../src/client/index.js';
import { formatRate, nowMs, percentile, printTable, scaled, tempDir, pipelined } from './util.js';

// grpc-js passes the IP target as the TLS server name; Node's DEP0123 warning about it is noise here.
process.noDeprecation = true;

const SERVER_SCRIPT = fileURLToPath(new URL('./tls-server.js', import.meta.url));
const WINDOW = 1024;

interface Target {
  address: string;
  security: ClientSecurity;
  stop: () => Promise<void>;
}

async function startTarget(
  mode: 'insecure' | 'mtls' | 'grpc-ssl',
  fsync: string,
  certsDir: string,
  security: ClientSecurity,
  prefillRecords = 0,
): Promise<Target & { dir: { remove: () => void } }> {
  const dir = tempDir(`annal-bench-tls-${mode}-`);
  const args = [SERVER_SCRIPT, mode, dir.path, fsync, certsDir, String(prefillRecords), '1024'];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { address: string }).address));
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address,
    security,
    dir,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      dir.remove();
    },
  };
}


async function produceStreamRate(target: Target, valueBytes: number, count: number): Promise<number> {
  const client = new AnnalClient({ address: target.address, security: target.security });
  try {
    const value = Buffer.alloc(valueBytes, 0x61);
    const warm = client.produceStream();
    await pipelined(WINDOW, Math.min(count, 2000), () => warm.send(value));
    await warm.close();
    const stream = client.produceStream();
    const elapsedMs = await pipelined(WINDOW, count, () => stream.send(value));
    await stream.close();
    return (count / elapsedMs) * 1000;
  } finally {
    client.close();
  }
}

/**
 * Latencies (ms) of one-at-a-time calls of several kinds over the same minutes. Each kind is
 * warmed up first with `warmCalls` calls: V8 optimizes a function after thousands of calls, and
 * at about one call per millisecond a few hundred leave the per-call code of grpc-js, Node's
 * HTTP/2 and annal's interceptors in the interpreter and baseline tiers on both sides, about
 * twice as slow as what a long-running agent and client run. Then `blocks` rounds of
 * `blockCalls` calls of each kind in turn, so the machine's slow moments hit every kind alike.
 */
async function interleavedLatencies<K extends string>(
  calls: Record<K, () => Promise<unknown>>,
  options: { warmCalls: number; blockCalls: number; blocks: number },
): Promise<Record<K, number[]>> {
  const kinds = Object.keys(calls) as K[];
  const latencies = Object.fromEntries(kinds.map((kind) => [kind, [] as number[]])) as Record<K, number[]>;
  for (const kind of kinds) for (let i = 0; i < options.warmCalls; i++) await calls[kind]();
  for (let block = 0; block < options.blocks; block++) {
    for (const kind of kinds) {
      const call = calls[kind];
      const samples = latencies[kind];
      for (let i = 0; i < options.blockCalls; i++) {
        const start = nowMs();
        await call();
        samples.push(nowMs() - start);
      }
    }
  }
  return latencies;
}

/** One 1 KiB write and fdatasync per call, appending to a file under the benchmarks' temp dir. */
function durableWriter(): { call: () => Promise<void>; close: () => void } {
  const dir = tempDir('annal-bench-fdatasync-');
  const fd = openSync(join(dir.path, 'floor'), 'w');
  const block = Buffer.alloc(1024, 0x61);
  let position = 0;
  const call = (): Promise<void> =>
    new Promise((resolve, reject) => {
      write(fd, block, 0, block.length, position, (error) => {
        if (error) return reject(error);
        position += block.length;
        fdatasync(fd, (syncError) => (syncError ? reject(syncError) : resolve()));
      });
    });
  return {
    call,
    close: () => {
      closeSync(fd);
      dir.remove();
    },
  };
}

/**
 * Unary Produce of `valueBytes` one at a time against each target, and the floor of the durable
 * one (a no-op GetServers on the first target and one write + fdatasync round trip) when
 * `withFloor`, interleaved (see interleavedLatencies).
 */
async function unaryLatencies(
  targets: { insecure: Target; mtls: Target },
  valueBytes: number,
  count: number,
  withFloor: boolean,
): Promise<{ insecure: number[]; mtls: number[]; noop?: number[]; durableWrite?: number[]; floor?: number[]; writeAfterCall: number[] }> {
  const insecure = new AnnalClient({ address: targets.insecure.address, security: targets.insecure.security });
  const mtls = new AnnalClient({ address: targets.mtls.address, security: targets.mtls.security });
  const writer = withFloor ? durableWriter() : undefined;
  const value = Buffer.alloc(valueBytes, 0x61);
  const blockCalls = 50;
  const options = { warmCalls: Math.max(1_000, scaled(5_000)), blockCalls, blocks: Math.max(1, Math.ceil(count / blockCalls)) };
  try {
    const produce = { insecure: () => insecure.produce(value), mtls: () => mtls.produce(value) };
    const writeAfterCall: number[] = [];
    if (writer === undefined) return { ...(await interleavedLatencies(produce, options)), writeAfterCall };
    const floor = async (): Promise<void> => {
      await mtls.getServers();
      const start = nowMs();
      await writer.call();
      writeAfterCall.push(nowMs() - start);
    };
    const latencies = await interleavedLatencies({ ...produce, noop: () => mtls.getServers(), durableWrite: writer.call, floor }, options);
    return { ...latencies, writeAfterCall: writeAfterCall.slice(-latencies.floor.length) };
  } finally {
    insecure.close();
    mtls.close();
    writer?.close();
  }
}

/** ProduceStream with `window` records in flight: records/s and send-to-ack latencies. */
async function windowedProduce(target: Target, valueBytes: number, window: number, count: number) {
  const client = new AnnalClient({ address: target.address, security: target.security });
  try {
    const value = Buffer.alloc(valueBytes, 0x61);
    const stream = client.produceStream();
    await pipelined(window, Math.min(count, 2000), () => stream.send(value));
    const latencies: number[] = [];
    const elapsedMs = await pipelined(window, count, () => {
      const sent = nowMs();
      return stream.send(value).then(() => latencies.push(nowMs() - sent));
    });
    await stream.close();
    latencies.sort((a, b) => a - b);
    return { perSecond: (count / elapsedMs) * 1000, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
  } finally {
    client.close();
  }
}

/** Reads `count` records from offset 0 (one per message when maxBatch is 0); records/s. */
async function consumeRate(target: Target, count: number, maxBatch: number): Promise<number> {
  const client = new AnnalClient({ address: target.address, security: target.security });
  try {
    const start = nowMs();
    let seen = 0;
    for await (const records of client.consumeBatches(0, { maxBatch, follow: false })) {
      seen += records.length;
      if (seen >= count) break;
    }
    return (seen / (nowMs() - start)) * 1000;
  } finally {
    client.close();
  }
}

/** Sequential new connections, each doing one GetServers; returns connections/s. */
async function connectionRate(target: Target, count: number): Promise<number> {
  const start = nowMs();
  for (let i = 0; i < count; i++) {
    const client = new AnnalClient({
      address: target.address,
      security: target.security,
      channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
    });
    await client.getServers();
    client.close();
  }
  return (count / (nowMs() - start)) * 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function ratio(value: number, baseline: number): string {
  return `${(value / baseline).toFixed(2)}x`;
}

type Row = { name: string; value: string; ratio?: string; note?: string };

const p50 = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 50);
const p99 = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 99);
const ms = (value: number): string => `${value.toFixed(3)} ms`;
const runs = (values: number[]): string => `runs ${values.map(formatRate).join(' ')}`;

/** Durable produce, 1 KiB, fsync=always: streams at two windows, and unary calls against their floor. */
async function durableRows(rounds: number, certsDir: string, mtlsSecurity: ClientSecurity): Promise<Row[]> {
  const insecure = await startTarget('insecure', 'always', certsDir, { insecure: true });
  const mtls = await startTarget('mtls', 'always', certsDir, mtlsSecurity);
  const grpcSsl = await startTarget('grpc-ssl', 'always', certsDir, mtlsSecurity);
  const stream = { insecure: [] as number[], mtls: [] as number[], grpcSsl: [] as number[] };
  const windowed = { insecure: [] as { perSecond: number; p50Ms: number; p99Ms: number }[], mtls: [] as { perSecond: number; p50Ms: number; p99Ms: number }[] };
  let unary: { insecure: number[]; mtls: number[]; noop: number[]; durableWrite: number[]; floor: number[]; writeAfterCall: number[] };
  const streamCount = scaled(60_000);
  const unaryCount = scaled(1_000);
  try {
    for (let round = 0; round < rounds; round++) {
      stream.insecure.push(await produceStreamRate(insecure, 1024, streamCount));
      stream.mtls.push(await produceStreamRate(mtls, 1024, streamCount));
      stream.grpcSsl.push(await produceStreamRate(grpcSsl, 1024, streamCount));
      windowed.insecure.push(await windowedProduce(insecure, 1024, 256, streamCount));
      windowed.mtls.push(await windowedProduce(mtls, 1024, 256, streamCount));
    }
    const latencies = await unaryLatencies({ insecure, mtls }, 1024, rounds * unaryCount, true);
    unary = { insecure: latencies.insecure, mtls: latencies.mtls, noop: latencies.noop!, durableWrite: latencies.durableWrite!, floor: latencies.floor!, writeAfterCall: latencies.writeAfterCall };
  } finally {
    await insecure.stop();
    await mtls.stop();
    await grpcSsl.stop();
  }
  const label = 'ProduceStream 1 KiB, fsync=always';
  const base = median(stream.insecure);
  const medianRun = (samples: { perSecond: number; p50Ms: number; p99Ms: number }[]) =>
    [...samples].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(samples.length / 2)]!;
  const windowedBase = medianRun(windowed.insecure);
  const windowedMtls = medianRun(windowed.mtls);
  const floorMs = p50(unary.floor);
  const mtlsP50 = p50(unary.mtls);
  return [
    { name: `${label}, --insecure`, value: `${formatRate(base)} rec/s`, ratio: '1.00x', note: runs(stream.insecure) },
    { name: `${label}, mTLS + ACL`, value: `${formatRate(median(stream.mtls))} rec/s`, ratio: ratio(median(stream.mtls), base), note: `target >= 0.85x; ${runs(stream.mtls)}` },
    {
      name: `${label}, grpc-js createSsl, no ACL`,
      value: `${formatRate(median(stream.grpcSsl))} rec/s`,
      ratio: ratio(median(stream.grpcSsl), base),
      note: `reference: grpc-js's own TLS port; ${runs(stream.grpcSsl)}`,
    },
    {
      name: `${label}, 256 in flight, --insecure`,
      value: `${formatRate(windowedBase.perSecond)} rec/s`,
      ratio: '1.00x',
      note: `ack p50 ${ms(windowedBase.p50Ms)}, p99 ${ms(windowedBase.p99Ms)} (median run); ${runs(windowed.insecure.map((run) => run.perSecond))}`,
    },
    {
      name: `${label}, 256 in flight, mTLS + ACL`,
      value: `${formatRate(windowedMtls.perSecond)} rec/s`,
      ratio: ratio(windowedMtls.perSecond, windowedBase.perSecond),
      note: `ack p50 ${ms(windowedMtls.p50Ms)}, p99 ${ms(windowedMtls.p99Ms)}; ${runs(windowed.mtls.map((run) => run.perSecond))}; JetStream R1 peer: 256 in flight, no fsync`,
    },
    { name: 'unary Produce 1 KiB, fsync=always, --insecure', value: `p50 ${ms(p50(unary.insecure))}`, ratio: '1.00x', note: `p99 ${ms(p99(unary.insecure))}` },
    {
      name: 'unary Produce 1 KiB, fsync=always, mTLS + ACL',
      value: `p50 ${ms(mtlsP50)}`,
      ratio: ratio(mtlsP50, p50(unary.insecure)),
      note: `p99 ${ms(p99(unary.mtls))} (${(p99(unary.mtls) / mtlsP50).toFixed(2)}x p50; target <= 3x); ${(mtlsP50 / floorMs).toFixed(2)}x the floor (target <= 1.15x); ratio: of p50 latency vs --insecure, target <= 1.15x`,
    },
    {
      name: 'floor: no-op unary (GetServers) under mTLS + ACL, then one 1 KiB write + fdatasync',
      value: `p50 ${ms(floorMs)}`,
      note: `p99 ${ms(p99(unary.floor))}; the write + fdatasync in it: p50 ${ms(p50(unary.writeAfterCall))}`,
    },
    {
      name: 'breakdown: no-op unary (GetServers) under mTLS + ACL, alone',
      value: `p50 ${ms(p50(unary.noop))}`,
      note: `p99 ${ms(p99(unary.noop))}`,
    },
    {
      name: 'breakdown: one 1 KiB write + fdatasync, back to back',
      value: `p50 ${ms(p50(unary.durableWrite))}`,
      note: `p99 ${ms(p99(unary.durableWrite))}; the two p50s alone sum to ${ms(p50(unary.noop) + p50(unary.durableWrite))}`,
    },
  ];
}

/** CPU-bound produce, 100 B, fsync=never; unary latency; new connections. */
async function cpuBoundRows(rounds: number, certsDir: string, mtlsSecurity: ClientSecurity): Promise<Row[]> {
  const insecure = await startTarget('insecure', 'never', certsDir, { insecure: true });
  const mtls = await startTarget('mtls', 'never', certsDir, mtlsSecurity);
  const grpcSsl = await startTarget('grpc-ssl', 'never', certsDir, mtlsSecurity);
  const samples = { insecure: [] as number[], mtls: [] as number[], grpcSsl: [] as number[] };
  const rows: Row[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      samples.insecure.push(await produceStreamRate(insecure, 100, scaled(100_000)));
      samples.mtls.push(await produceStreamRate(mtls, 100, scaled(100_000)));
      samples.grpcSsl.push(await produceStreamRate(grpcSsl, 100, scaled(100_000)));
    }
    const label = 'ProduceStream 100 B, fsync=never';
    const base = median(samples.insecure);
    rows.push({ name: `${label}, --insecure`, value: `${formatRate(base)} rec/s`, ratio: '1.00x', note: runs(samples.insecure) });
    rows.push({ name: `${label}, mTLS + ACL`, value: `${formatRate(median(samples.mtls))} rec/s`, ratio: ratio(median(samples.mtls), base), note: runs(samples.mtls) });
    rows.push({
      name: `${label}, grpc-js createSsl, no ACL`,
      value: `${formatRate(median(samples.grpcSsl))} rec/s`,
      ratio: ratio(median(samples.grpcSsl), base),
      note: `reference: grpc-js's own TLS port; ${runs(samples.grpcSsl)}`,
    });
    const { insecure: insecureLatency, mtls: mtlsLatency } = await unaryLatencies({ insecure, mtls }, 100, scaled(3_000), false);
    rows.push({ name: 'unary Produce 100 B, fsync=never, --insecure', value: `p50 ${ms(p50(insecureLatency))}`, ratio: '1.00x', note: `p99 ${ms(p99(insecureLatency))}` });
    rows.push({
      name: 'unary Produce 100 B, fsync=never, mTLS + ACL',
      value: `p50 ${ms(p50(mtlsLatency))}`,
      ratio: ratio(p50(mtlsLatency), p50(insecureLatency)),
      note: `p99 ${ms(p99(mtlsLatency))} (ratio of p50 latency: higher is slower)`,
    });
    const insecureConnections = await connectionRate(insecure, scaled(300));
    const mtlsConnections = await connectionRate(mtls, scaled(300));
    rows.push({ name: 'new connection + GetServers, --insecure', value: `${formatRate(insecureConnections)} conn/s`, ratio: '1.00x' });
    rows.push({ name: 'new connection + GetServers, mTLS + ACL', value: `${formatRate(mtlsConnections)} conn/s`, ratio: ratio(mtlsConnections, insecureConnections), note: 'ECDSA P-256 certificates, TLS 1.3' });
  } finally {
    await insecure.stop();
    await mtls.stop();
    await grpcSsl.stop();
  }
  return rows;
}

/** ConsumeStream from 0 of a prefilled log of 1 KiB records, per record and batched. */
async function consumeRows(rounds: number, certsDir: string, mtlsSecurity: ClientSecurity): Promise<Row[]> {
  const logRecords = scaled(200_000);
  const insecure = await startTarget('insecure', 'never', certsDir, { insecure: true }, logRecords);
  const mtls = await startTarget('mtls', 'never', certsDir, mtlsSecurity, logRecords);
  const perRecord = { insecure: [] as number[], mtls: [] as number[] };
  const batched = { insecure: [] as number[], mtls: [] as number[] };
  try {
    // Warm-up of both read paths on both servers, so neither round one measures unoptimized code.
    for (const target of [insecure, mtls]) {
      await consumeRate(target, Math.min(20_000, logRecords), 0);
      await consumeRate(target, logRecords, 1000);
    }
    for (let round = 0; round < rounds; round++) {
      perRecord.insecure.push(await consumeRate(insecure, logRecords, 0));
      perRecord.mtls.push(await consumeRate(mtls, logRecords, 0));
      batched.insecure.push(await consumeRate(insecure, logRecords, 1000));
      batched.mtls.push(await consumeRate(mtls, logRecords, 1000));
    }
  } finally {
    await insecure.stop();
    await mtls.stop();
  }
  const label = `ConsumeStream 1 KiB from 0 of ${formatRate(logRecords)}`;
  return [
    { name: `${label}, 1/msg, --insecure`, value: `${formatRate(median(perRecord.insecure))} rec/s`, ratio: '1.00x', note: runs(perRecord.insecure) },
    {
      name: `${label}, 1/msg, mTLS + ACL`,
      value: `${formatRate(median(perRecord.mtls))} rec/s`,
      ratio: ratio(median(perRecord.mtls), median(perRecord.insecure)),
      note: `target >= 0.85x and >= 52k rec/s; ${runs(perRecord.mtls)}`,
    },
    { name: `${label}, max_batch 1000, --insecure`, value: `${formatRate(median(batched.insecure))} rec/s`, ratio: '1.00x', note: runs(batched.insecure) },
    {
      name: `${label}, max_batch 1000, mTLS + ACL`,
      value: `${formatRate(median(batched.mtls))} rec/s`,
      ratio: ratio(median(batched.mtls), median(batched.insecure)),
      note: `target >= 0.85x and >= 2x JetStream's ordered consumer; ${runs(batched.mtls)}`,
    },
  ];
}

async function main(): Promise<void> {
  const certs = tempDir('annal-bench-certs-');
  await runCertsCommand({ configDir: PACKAGED_CONFIG_DIR, outDir: certs.path });
  const mtlsSecurity: ClientSecurity = {
    tls: {
      caPem: readFileSync(join(certs.path, 'ca.pem')),
      certPem: readFileSync(join(certs.path, 'root-client.pem')),
      keyPem: readFileSync(join(certs.path, 'root-client-key.pem')),
    },
  };
  const rounds = Math.max(1, Number(process.env.ANNAL_BENCH_ROUNDS ?? '3'));
  // ANNAL_BENCH_TLS_PARTS=durable,cpu,consume (default all) runs some of the tables.
  const parts = new Set((process.env.ANNAL_BENCH_TLS_PARTS ?? 'durable,cpu,consume').split(','));
  const rows = [
    ...(parts.has('durable') ? await durableRows(rounds, certs.path, mtlsSecurity) : []),
    ...(parts.has('cpu') ? await cpuBoundRows(rounds, certs.path, mtlsSecurity) : []),
    ...(parts.has('consume') ? await consumeRows(rounds, certs.path, mtlsSecurity) : []),
  ];
  certs.remove();
  printTable('mTLS + ACL against --insecure, telemetry on (medians of alternating rounds; ratio vs --insecure)', rows);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
