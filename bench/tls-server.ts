/**
 * The server side of bench/tls.ts, a child process so client and server each have a core:
 *
 *   node dist/bench/tls-server.js insecure <dataDir> <fsync> <certsDir> [prefillRecords] [prefillValueBytes]
 *   node dist/bench/tls-server.js mtls <dataDir> <fsync> <certsDir> [prefillRecords] [prefillValueBytes]
 *   node dist/bench/tls-server.js grpc-ssl <dataDir> <fsync> <certsDir>
 *
 * annal's LogServer over a CommitLog, either plaintext (as `annal agent --insecure`) or behind
 * auth's mTLS listener with the Casbin ACL interceptor from config/ (as `annal agent` with TLS
 * files), or behind grpc-js's own TLS port (ServerCredentials.createSsl with client certificates
 * required, no ACL): the reference for what TLS itself costs in grpc-js. Telemetry is on as on an
 * agent: the server interceptor, RPC, storage and runtime metrics (a /metrics endpoint on a free
 * port) and the access log at info (into <dataDir>/access.log); no trace export. The log may be
 * prefilled directly (for the consumer runs). Prints one JSON line `{"address":"127.0.0.1:port"}`
 * when ready, one `{"memory":{...}}` line per SIGUSR2; exits on SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { AclEnforcement, PACKAGED_CONFIG_DIR, TlsServing } from '../src/auth/index.js';
import { LogServer, MeteredLog } from '../src/server/index.js';
import { CommitLog, parseFsyncPolicy } from '../src/storage/index.js';
import { createLogger, Telemetry } from '../src/telemetry/index.js';
import { prefill } from './util.js';

async function main(): Promise<void> {
  const [mode, dataDir, fsync, certsDir, prefillRecords, prefillValueBytes] = process.argv.slice(2);
  const log = await CommitLog.open(join(dataDir!, 'log'), { fsync: parseFsyncPolicy(fsync ?? 'always') });
  await prefill(log, Number(prefillRecords ?? 0), Number(prefillValueBytes ?? 1024));
  const quiet = { error: (o: object, m: string) => console.error(m, o), warn: () => {}, info: () => {} };
  const telemetry = await Telemetry.start({
    logger: createLogger({ level: 'info', destination: join(dataDir!, 'access.log') }),
    nodeName: 'bench',
    metricsAddr: '127.0.0.1:0',
    env: {},
  });
  const storage = telemetry.storageMetrics(() => log);
  let acl: AclEnforcement | undefined;
  if (mode === 'mtls') {
    acl = await AclEnforcement.start({
      files: { modelFile: join(PACKAGED_CONFIG_DIR, 'model.conf'), policyFile: join(PACKAGED_CONFIG_DIR, 'policy.csv') },
      logger: quiet,
    });
  }
  const server = new LogServer({
    log: new MeteredLog(log, storage),
    nodeName: 'bench',
    logger: quiet,
    telemetry,
    maxRecordBytes: 1024 * 1024,
    ...(acl === undefined ? {} : { interceptors: [acl.interceptor] }),
    ...(mode === 'grpc-ssl' ? { credentials: grpcSsl(certsDir!) } : {}),
  });
  let address: string;
  let tls: TlsServing | undefined;
  if (mode === 'mtls') {
    tls = await TlsServing.start({
      grpcServer: server.grpc,
      host: '127.0.0.1',
      port: 0,
      files: { certFile: join(certsDir!, 'server.pem'), keyFile: join(certsDir!, 'server-key.pem'), caFile: join(certsDir!, 'ca.pem') },
      logger: quiet,
    });
    address = `127.0.0.1:${tls.port}`;
    server.serving(address);
  } else {
    address = await server.start('127.0.0.1', 0);
  }
  process.once('SIGTERM', () => {
    tls?.close();
    acl?.close();
    void server
      .shutdown()
      .then(() => log.close())
      .then(() => telemetry.shutdown())
      .then(() => process.exit(0));
  });
  // SIGUSR2: print the memory in use (bench/memory.ts): RSS and V8's figures as they are, then
  // the live heap after a full collection when the process runs with --expose-gc.
  process.on('SIGUSR2', () => {
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
    globalThis.gc?.();
    const after = globalThis.gc === undefined ? undefined : process.memoryUsage();
    const memory = {
      rss, heapUsed, external, arrayBuffers,
      liveHeap: after?.heapUsed, rssAfterGc: after?.rss, liveExternal: after?.external, heapTotalAfterGc: after?.heapTotal,
      ...residentByKind(),
    };
    process.stdout.write(`${JSON.stringify({ memory })}\n`);
  });
  process.stdout.write(`${JSON.stringify({ address })}\n`);
}

/**
 * Resident bytes of the C allocator's main heap (`[heap]`: native buffers, OpenSSL, HTTP/2) and
 * of anonymous mappings (V8's heap pages, thread arenas, large buffers), from /proc/self/smaps;
 * empty where that file does not exist.
 */
function residentByKind(): { mallocHeapRss?: number; anonymousRss?: number } {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return {};
  }
  let kind: 'heap' | 'anon' | undefined;
  let mallocHeapRss = 0;
  let anonymousRss = 0;
  for (const line of text.split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const name = mapping[1]!;
      kind = name === '[heap]' ? 'heap' : name === '' ? 'anon' : undefined;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && kind === 'heap') mallocHeapRss += Number(rss[1]) * 1024;
    if (rss && kind === 'anon') anonymousRss += Number(rss[1]) * 1024;
  }
  return { mallocHeapRss, anonymousRss };
}

function grpcSsl(certsDir: string): ServerCredentials {
  const read = (name: string) => readFileSync(join(certsDir, name));
  return ServerCredentials.createSsl(read('ca.pem'), [{ cert_chain: read('server.pem'), private_key: read('server-key.pem') }], true);
}

void main();
