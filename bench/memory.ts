/**
 * Whether the server's memory grows with the log: one annal server in its own process, as an
 * agent runs by default (mutual TLS with the ACL, telemetry on; fsync=never so that millions of
 * records are written in seconds), fed 100 B records through ProduceBatch (1000 per request, 8
 * requests in flight). At each mark the server reports its RSS and V8's heap and external
 * memory, then its live heap after a full collection (it runs with --expose-gc; the collection
 * happens after RSS is read, and later marks are read as they come), and RSS again after that
 * collection (what the process keeps, without the garbage that happened to await collection).
 * Target: RSS after 5M records within 10 MB of RSS after 100k.
 *
 * Usage: node dist/bench/memory.js   (ANNAL_BENCH_SCALE scales the marks)
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PACKAGED_CONFIG_DIR, runCertsCommand } from '../src/auth/index.js';
import { AnnalClient } from '../src/client/index.js';
import { formatRate, printTable, scaled, tempDir, type Row } from './util.js';

process.noDeprecation = true;
const SERVER_SCRIPT = fileURLToPath(new URL('./tls-server.js', import.meta.url));
const MB = 1e6;

interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  liveHeap?: number;
  /** RSS right after the full collection: what the process keeps, without garbage awaiting collection. */
  rssAfterGc?: number;
  /** After the collection: V8's committed heap, and native memory V8 knows of (buffers). */
  heapTotalAfterGc?: number;
  liveExternal?: number;
  /** Resident bytes of the C allocator's main heap and of anonymous mappings (Linux). */
  mallocHeapRss?: number;
  anonymousRss?: number;
}

async function main(): Promise<void> {
  const certs = tempDir('annal-bench-certs-');
  await runCertsCommand({ configDir: PACKAGED_CONFIG_DIR, outDir: certs.path });
  const dir = tempDir('annal-bench-memory-');
  const child = spawn(process.execPath, ['--expose-gc', SERVER_SCRIPT, 'mtls', dir.path, 'never', certs.path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const nextLine = (): Promise<string> =>
    new Promise((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
    });
  const address = (JSON.parse(await nextLine()) as { address: string }).address;
  const memory = async (): Promise<Memory> => {
    const line = nextLine();
    child.kill('SIGUSR2');
    return (JSON.parse(await line) as { memory: Memory }).memory;
  };
  const client = new AnnalClient({
    address,
    security: {
      tls: {
        caPem: readFileSync(join(certs.path, 'ca.pem')),
        certPem: readFileSync(join(certs.path, 'root-client.pem')),
        keyPem: readFileSync(join(certs.path, 'root-client-key.pem')),
      },
    },
  });
  const marks = [100_000, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000].map(scaled);
  const values = Array.from({ length: 1000 }, () => Buffer.alloc(100, 0x61));
  const rows: Row[] = [];
  let first: Memory | undefined;
  try {
    const stream = client.produceBatchStream();
    const inFlight = new Set<Promise<unknown>>();
    let written = 0;
    for (const mark of marks) {
      while (written < mark) {
        const batch = stream.send(values.slice(0, Math.min(values.length, mark - written)));
        written += Math.min(values.length, mark - written);
        inFlight.add(batch);
        void batch.finally(() => inFlight.delete(batch));
        if (inFlight.size >= 8) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      const now = await memory();
      first ??= now;
      const mb = (bytes: number | undefined): string => (bytes === undefined ? '?' : `${(bytes / MB).toFixed(1)} MB`);
      const change = (a: number | undefined, b: number | undefined): string =>
        a === undefined || b === undefined ? '?' : `${a >= b ? '+' : ''}${((a - b) / MB).toFixed(1)} MB`;
      rows.push({
        name: `after ${formatRate(mark)} records of 100 B`,
        value: `RSS ${mb(now.rss)}`,
        ratio: change(now.rss, first.rss),
        note:
          `heap ${mb(now.heapUsed)} (live ${mb(now.liveHeap)}), external ${mb(now.external)}, array buffers ${mb(now.arrayBuffers)}; ` +
          `after a full collection RSS ${mb(now.rssAfterGc)} (${change(now.rssAfterGc, first.rssAfterGc)}): V8 heap ${mb(now.heapTotalAfterGc)}, ` +
          `external ${mb(now.liveExternal)}, malloc heap ${mb(now.mallocHeapRss)} (${change(now.mallocHeapRss, first.mallocHeapRss)}), ` +
          `anonymous ${mb(now.anonymousRss)} (${change(now.anonymousRss, first.anonymousRss)})`,
      });
    }
    await stream.close();
  } finally {
    client.close();
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    dir.remove();
    certs.remove();
  }
  printTable('server memory against log size (mTLS + ACL, telemetry on, fsync=never; ratio: RSS change since the first mark; target within 10 MB)', rows);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
