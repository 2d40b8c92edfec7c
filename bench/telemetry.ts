/**
 * The cost of telemetry: the same workloads against a LogServer with telemetry fully off and
 * fully on, in the same run, alternating off/on rounds so drift (page cache, CPU frequency, the
 * other tenants of the machine) hits both alike; each figure is the median of its rounds.
 *
 * "On" means everything an operator would enable: the server interceptor (RPC metrics, a server
 * span per call sampled at ratio 1 and exported over OTLP/HTTP to a loopback receiver here, an
 * info access-log line per call written to a file), storage and runtime instruments, and a
 * /metrics endpoint scraped every second (Prometheus' default is 15 s, so this over-counts).
 *
 * - ProduceStream of 100 B records, pipelined (WINDOW in flight), fsync=always and fsync=never
 *   (never is CPU-bound, so per-message costs show undiluted by disk waits). Target: on ≥ 0.9 × off.
 * - Unary Produce of 100 B records from 32 concurrent callers, fsync=never: the per-call costs
 *   (two spans exported, an access-log line, a histogram record) at their worst; once with every
 *   trace recorded and once with --trace-sample-ratio 0.1.
 *
 * Besides records/s, each run charges the server process's CPU time (user + system, read through
 * SIGUSR2) to its records: on a machine shared with other work, CPU µs per record is the steadier
 * measure of what telemetry costs.
 *
 * Usage: node dist/bench/telemetry.js   ANNAL_BENCH_SCALE=0.1 for a quick pass.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AnnalClient } from '../src/client/index.js';
import { formatRate, nowMs, printTable, scaled, tempDir, type Row, pipelined } from './util.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./telemetry-server.js', import.meta.url));
const WINDOW = 1024;
const ROUNDS = 3;
const UNARY_CALLERS = 32;

type Mode = 'off' | 'on';

interface ServerProcess {
  address: string;
  metricsUrl: string | undefined;
  /** CPU time (user + system) the server process has used so far. */
  cpuMicros: () => Promise<number>;
  stop: () => Promise<void>;
}

/** A timed run: records per second (wall clock) and the server's CPU time per record. */
interface RunResult {
  rate: number;
  cpuMicrosPerRecord: number;
}

/** Accepts OTLP/HTTP export requests and discards them, counting bytes (a stand-in collector). */
async function startSink(): Promise<{ endpoint: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      requests++;
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

interface Setup {
  fsync: string;
  /** Fraction of traces recorded when telemetry is on. */
  sampleRatio: number;
  otlpEndpoint: string;
}

async function startServer(mode: Mode, setup: Setup, dataDir: string): Promise<ServerProcess> {
  const args = [SERVER_SCRIPT, join(dataDir, 'log'), setup.fsync, mode, setup.otlpEndpoint, join(dataDir, 'access.log'), String(setup.sampleRatio)];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const nextLine = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      lines.once('line', (line) => resolve(JSON.parse(line) as Record<string, unknown>));
      child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
    });
  const ready = (await nextLine()) as { address: string; metricsUrl?: string };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address: ready.address,
    metricsUrl: ready.metricsUrl,
    cpuMicros: async () => {
      const line = nextLine();
      child.kill('SIGUSR2');
      return Number((await line)['cpuMicros']);
    },
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Scrapes `url` every second until stopped, as Prometheus would (more often than it would). */
function startScraper(url: string | undefined): { stop: () => Promise<number> } {
  if (url === undefined) return { stop: async () => 0 };
  let scrapes = 0;
  let running: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    running = fetch(url)
      .then((response) => response.text())
      .then(() => scrapes++);
  }, 1000);
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
      return scrapes;
    },
  };
}


type Work = (client: AnnalClient, server: ServerProcess) => Promise<RunResult>;

/** Times `run` (which handles `count` records), charging the server's CPU time to it. */
async function timed(server: ServerProcess, count: number, run: () => Promise<void>): Promise<RunResult> {
  const cpuBefore = await server.cpuMicros();
  const start = nowMs();
  await run();
  const elapsedMs = nowMs() - start;
  const cpuAfter = await server.cpuMicros();
  return { rate: (count / elapsedMs) * 1000, cpuMicrosPerRecord: (cpuAfter - cpuBefore) / count };
}

function produceStream(count: number): Work {
  return async (client, server) => {
    const value = Buffer.alloc(100, 0x61);
    const warm = client.produceStream();
    await pipelined(WINDOW, Math.min(count, 5000), () => warm.send(value));
    await warm.close();
    return timed(server, count, async () => {
      const stream = client.produceStream();
      await pipelined(WINDOW, count, () => stream.send(value));
      await stream.close();
    });
  };
}

function unaryProduce(count: number): Work {
  return async (client, server) => {
    const value = Buffer.alloc(100, 0x61);
    const run = async (calls: number): Promise<void> => {
      let next = 0;
      const caller = async (): Promise<void> => {
        while (next < calls) {
          next++;
          await client.produce(value);
        }
      };
      await Promise.all(Array.from({ length: UNARY_CALLERS }, caller));
    };
    await run(Math.min(count, 2000));
    return timed(server, count, () => run(count));
  };
}

async function measure(mode: Mode, setup: Setup, work: Work): Promise<RunResult & { scrapes: number }> {
  const dir = tempDir('annal-bench-telemetry-');
  const server = await startServer(mode, setup, dir.path);
  const client = new AnnalClient({ address: server.address, security: { insecure: true } });
  const scraper = startScraper(server.metricsUrl);
  try {
    const result = await work(client, server);
    return { ...result, scrapes: await scraper.stop() };
  } finally {
    client.close();
    await server.stop();
    dir.remove();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function compare(name: string, setup: Setup, work: Work): Promise<Row[]> {
  const runs: Record<Mode, RunResult[]> = { off: [], on: [] };
  let scrapes = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
      const result = await measure(mode, setup, work);
      runs[mode].push(result);
      scrapes += result.scrapes;
    }
  }
  const rate = (mode: Mode) => median(runs[mode].map((run) => run.rate));
  const cpu = (mode: Mode) => median(runs[mode].map((run) => run.cpuMicrosPerRecord));
  const rounds = (mode: Mode) => `rounds: ${runs[mode].map((run) => formatRate(run.rate)).join(' / ')}`;
  const cpuNote = (mode: Mode) => `server CPU ${cpu(mode).toFixed(1)} µs/record`;
  return [
    { name: `${name}: off`, value: `${formatRate(rate('off'))} rec/s`, ratio: '1.00', note: `${cpuNote('off')}; ${rounds('off')}` },
    {
      name: `${name}: on`,
      value: `${formatRate(rate('on'))} rec/s`,
      ratio: (rate('on') / rate('off')).toFixed(2),
      note: `${cpuNote('on')} (CPU ratio ${(cpu('on') / cpu('off')).toFixed(2)}); ${rounds('on')}; ${scrapes} scrapes`,
    },
  ];
}

async function main(): Promise<void> {
  const sink = await startSink();
  const streamCount = scaled(150_000);
  const unaryCount = scaled(20_000);
  const setup = (fsync: string, sampleRatio = 1): Setup => ({ fsync, sampleRatio, otlpEndpoint: sink.endpoint });
  const unary = `Produce 100 B, ${UNARY_CALLERS} callers, fsync=never`;
  const rows: Row[] = [
    ...(await compare('ProduceStream 100 B, fsync=always', setup('always'), produceStream(streamCount))),
    ...(await compare('ProduceStream 100 B, fsync=never', setup('never'), produceStream(streamCount))),
    ...(await compare(unary, setup('never'), unaryProduce(unaryCount))),
    ...(await compare(`${unary}, 10% of traces`, setup('never', 0.1), unaryProduce(unaryCount))),
  ];
  printTable(`telemetry on vs off (median of ${ROUNDS} alternating rounds; ${sink.requests()} OTLP export requests)`, rows);
  await sink.close();
}

void main();
