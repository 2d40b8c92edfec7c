/**
 * What mutual TLS and the ACL cost: the same workloads against two annal servers in the same
 * run, one plaintext (`--insecure`, the baseline) and one behind auth's mTLS listener with the
 * Casbin ACL interceptor, each in its own process. Rounds alternate between the two and the
 * table reports medians, so load from other processes on this shared machine hits both alike.
 * - ProduceStream, 1 KiB records, fsync=always: the durable default.
 * - ProduceStream, 100 B records, fsync=never: CPU-bound, where encryption and the per-stream
 *   ACL check weigh most.
 * - Unary Produce, 100 B, fsync=never, one at a time: p50/p99 latency (one ACL check per call).
 * A third server, grpc-js's own TLS port (createSsl, client certificates required, no ACL), shows
 * how much of the cost is TLS in grpc-js/Node itself rather than annal's listener or ACL.
 * - New connections: open a channel, one GetServers call, close; the TLS handshake's cost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

async function startTarget(mode: 'insecure' | 'mtls' | 'grpc-ssl', fsync: string, certsDir: string, security: ClientSecurity): Promise<Target & { dir: { remove: () => void } }> {
  const dir = tempDir(`annal-bench-tls-${mode}-`);
  const child: ChildProcess = spawn(process.execPath, [SERVER_SCRIPT, mode, dir.path, fsync, certsDir], { stdio: ['ignore', 'pipe', 'inherit'] });
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

async function unaryLatencies(target: Target, count: number): Promise<number[]> {
  const client = new AnnalClient({ address: target.address, security: target.security });
  try {
    const value = Buffer.alloc(100, 0x61);
    for (let i = 0; i < 200; i++) await client.produce(value);
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      const start = nowMs();
      await client.produce(value);
      latencies.push(nowMs() - start);
    }
    return latencies.sort((a, b) => a - b);
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
  const rounds = 3;
  const rows = [];
  for (const [fsync, valueBytes, count] of [
    ['always', 1024, scaled(60_000)],
    ['never', 100, scaled(100_000)],
  ] as const) {
    const insecure = await startTarget('insecure', fsync, certs.path, { insecure: true });
    const mtls = await startTarget('mtls', fsync, certs.path, mtlsSecurity);
    const grpcSsl = await startTarget('grpc-ssl', fsync, certs.path, mtlsSecurity);
    const samples = { insecure: [] as number[], mtls: [] as number[], grpcSsl: [] as number[] };
    try {
      for (let round = 0; round < rounds; round++) {
        samples.insecure.push(await produceStreamRate(insecure, valueBytes, count));
        samples.mtls.push(await produceStreamRate(mtls, valueBytes, count));
        samples.grpcSsl.push(await produceStreamRate(grpcSsl, valueBytes, count));
      }
      const label = `ProduceStream ${valueBytes === 1024 ? '1 KiB' : '100 B'}, fsync=${fsync}`;
      const base = median(samples.insecure);
      const secured = median(samples.mtls);
      rows.push({ name: `${label}, --insecure`, value: `${formatRate(base)} rec/s`, ratio: '1.00x', note: `runs ${samples.insecure.map(formatRate).join(' ')}` });
      rows.push({ name: `${label}, mTLS + ACL`, value: `${formatRate(secured)} rec/s`, ratio: ratio(secured, base), note: `runs ${samples.mtls.map(formatRate).join(' ')}` });
      const reference = median(samples.grpcSsl);
      rows.push({
        name: `${label}, grpc-js createSsl, no ACL`,
        value: `${formatRate(reference)} rec/s`,
        ratio: ratio(reference, base),
        note: `reference: grpc-js's own TLS port; runs ${samples.grpcSsl.map(formatRate).join(' ')}`,
      });
      if (fsync === 'never') {
        const insecureLatency = await unaryLatencies(insecure, scaled(3_000));
        const mtlsLatency = await unaryLatencies(mtls, scaled(3_000));
        const p = (values: number[], q: number) => percentile(values, q).toFixed(3);
        rows.push({ name: 'unary Produce 100 B, --insecure', value: `p50 ${p(insecureLatency, 50)} ms`, ratio: '1.00x', note: `p99 ${p(insecureLatency, 99)} ms` });
        rows.push({
          name: 'unary Produce 100 B, mTLS + ACL',
          value: `p50 ${p(mtlsLatency, 50)} ms`,
          ratio: ratio(percentile(mtlsLatency, 50), percentile(insecureLatency, 50)),
          note: `p99 ${p(mtlsLatency, 99)} ms (ratio of p50 latency: higher is slower)`,
        });
        const insecureConnections = await connectionRate(insecure, scaled(300));
        const mtlsConnections = await connectionRate(mtls, scaled(300));
        rows.push({ name: 'new connection + GetServers, --insecure', value: `${formatRate(insecureConnections)} conn/s`, ratio: '1.00x' });
        rows.push({ name: 'new connection + GetServers, mTLS + ACL', value: `${formatRate(mtlsConnections)} conn/s`, ratio: ratio(mtlsConnections, insecureConnections), note: 'ECDSA P-256 certificates, TLS 1.3' });
      }
    } finally {
      await insecure.stop();
      await mtls.stop();
      await grpcSsl.stop();
    }
  }
  certs.remove();
  printTable('mTLS + ACL against --insecure (medians of alternating rounds; ratio vs --insecure)', rows);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
