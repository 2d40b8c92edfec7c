/**
 * `annal dev` (what `npm start` runs): a local cluster on loopback for trying annal out. It starts
 * three (or `--nodes 5`) `annal agent` processes with mutual TLS (certificates made on first run in
 * `<data-dir>/certs`), node i keeping its data in `<data-dir>/n<i>`; n1 bootstraps the cluster and
 * the others join it by gossip. It prints how to connect and writes the client profile
 * `<data-dir>/client.yaml`, which the client commands read by default, so `annal produce hello`
 * needs no flags. Each node is a real process: `kill -9` one to watch the cluster fail over.
 * Ctrl-C (or SIGTERM) stops every node gracefully and exits 0; a second one kills them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { clientTlsFlags, ensureDevCertificates, PACKAGED_CONFIG_DIR, type DevCertificates } from '../auth/index.js';
import { AnnalClient } from '../client/index.js';
import { AnnalError, InvalidArgumentError } from '../util/index.js';
import { STOP_ON_STDIN_EOF } from './agent-command.js';
import { writeProfile } from './client-profile.js';
import { parseLogLevel, parseNonEmpty, parsePort } from './options.js';
import { UsageError } from './usage-error.js';

interface DevFlags {
  dataDir: string;
  nodes: number;
  rpcPort: number;
  logLevel: string;
  insecure?: boolean;
  metricsPort: number;
}

const CLI = fileURLToPath(new URL('./main.js', import.meta.url));
/** How long the cluster may take to elect a leader and promote every node to voter. */
const READY_TIMEOUT_MS = 60_000;

export function addDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run a local 3-node cluster on loopback with mutual TLS (data in ./annal-data, kept between runs)')
    .option('--data-dir <dir>', 'data directory', parseNonEmpty, 'annal-data')
    .option('--nodes <count>', 'cluster size: 3 or 5', parseNodeCount, 3)
    .option('--rpc-port <port>', "first node's RPC port; the next nodes use +10, +20, ... (or the next free ones)", parsePort, 8400)
    .option('--log-level <level>', "the nodes' log level (their lines go to stderr, prefixed with the node's name)", parseLogLevel, 'warn')
    .option('--insecure', 'plaintext, no TLS and no access control')
    .option('--metrics-port <port>', "first node's http://127.0.0.1:<port>/metrics; the next nodes use +1, +2, ...", parsePort, 9464)
    .action(async (flags: DevFlags) => runDev(flags));
}

function parseNodeCount(text: string): number {
  if (text !== '3' && text !== '5') throw new UsageError(`--nodes must be 3 or 5, not ${text}`);
  return Number(text);
}

interface DevNode {
  name: string;
  rpcAddr: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

async function runDev(flags: DevFlags): Promise<void> {
  const dataDir = resolve(flags.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const certs = flags.insecure === true ? undefined : await devCertificates(join(dataDir, 'certs'));
  const taken = new Set<number>();
  const plan: { name: string; rpcPort: number; gossipPort: number; metricsPort: number }[] = [];
  for (let i = 0; i < flags.nodes; i++) {
    const rpcPort = await firstFreePort(flags.rpcPort + 10 * i, taken);
    const gossipPort = await firstFreePort(rpcPort + 1, taken);
    const metricsPort = await firstFreePort(flags.metricsPort + i, taken);
    plan.push({ name: `n${i + 1}`, rpcPort, gossipPort, metricsPort });
  }
  const securityArgs = certs === undefined ? ['--insecure'] : nodeTlsArgs(certs);
  const seed = `127.0.0.1:${plan[0]!.gossipPort}`;
  let stopping = false;
  // The nodes log at info at least (their "serving" line tells when they are up); only lines at the
  // requested level or above are relayed.
  const relayLevel = LEVELS[flags.logLevel] ?? 40;
  const childLevel = relayLevel < 30 ? flags.logLevel : 'info';
  const nodes: DevNode[] = [];
  const startNode = (node: (typeof plan)[number], i: number): { node: DevNode; served: Promise<void> } => {
    const args = [
      CLI, 'agent',
      '--node-name', node.name,
      '--data-dir', join(dataDir, node.name),
      '--rpc-port', String(node.rpcPort),
      '--bind-addr', `127.0.0.1:${node.gossipPort}`,
      '--gossip-profile', 'local',
      '--metrics-addr', `127.0.0.1:${node.metricsPort}`,
      '--log-level', childLevel,
      ...securityArgs,
      ...(i === 0 ? ['--bootstrap'] : ['--start-join-addrs', seed]),
    ];
    // stdin stays a pipe the node watches: it closes when this process dies, however it dies. Its
    // own process group keeps a terminal's Ctrl-C to this process, which stops the nodes once.
    const child = spawn(process.execPath, args, {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { ...process.env, [STOP_ON_STDIN_EOF]: '1' },
      detached: true,
    });
    const exited = new Promise<number | null>((resolveExit) => child.on('exit', (code) => resolveExit(code)));
    void exited.then((code) => {
      if (!stopping) process.stderr.write(`[${node.name}] exited (code ${code}); the others keep running\n`);
    });
    const devNode = { name: node.name, rpcAddr: `127.0.0.1:${node.rpcPort}`, child, exited };
    nodes.push(devNode);
    return { node: devNode, served: relayLogs(devNode, relayLevel) };
  };
  const stop = stopOnSignal(nodes, () => (stopping = true));
  const stopped = stop.then(() => Promise.reject(new UsageError('stopped before the cluster started')));
  stopped.catch(() => {});
  try {
    // n1 first: the others join its gossip address, which must be listening.
    await Promise.race([startNode(plan[0]!, 0).served, stopped]);
    await Promise.race([Promise.all(plan.slice(1).map((node, i) => startNode(node, i + 1).served)), stopped]);
    const addresses = nodes.map((node) => node.rpcAddr);
    const profilePath = join(dataDir, 'client.yaml');
    writeProfile(
      profilePath,
      certs === undefined
        ? { addresses, insecure: true }
        : { addresses, caFile: certs.files.caCert, certFile: certs.files.rootClientCert, keyFile: certs.files.rootClientKey },
    );
    const ready = await Promise.race([waitForVoters(addresses, certs, flags.nodes), stop.then(() => false)]);
    if (ready) process.stdout.write(banner(nodes, dataDir, profilePath, certs, plan[0]!.metricsPort));
    await stop;
  } finally {
    // A signal already asked every node to stop (one SIGTERM each: a second one aborts a node's
    // graceful shutdown); after a failed start, ask the ones still running.
    if (!stopping) for (const node of nodes) if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
    stopping = true;
    await Promise.all(nodes.map((node) => node.exited));
  }
}

/** Relays a node's log lines to stderr (`[n1] level message {fields}`); resolves once it serves. */
const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

function relayLogs(node: DevNode, relayLevel: number): Promise<void> {
  return new Promise<void>((resolveServing, reject) => {
    createInterface({ input: node.child.stderr! }).on('line', (line) => {
      let entry: { msg?: string; level?: number; [key: string]: unknown } | undefined;
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        entry = undefined;
      }
      if (entry?.msg === 'serving log.v1.Log') resolveServing();
      if (entry !== undefined && (entry.level ?? 30) < relayLevel) return;
      process.stderr.write(`[${node.name}] ${entry === undefined ? line : formatLine(entry)}\n`);
    });
    void node.exited.then((code) => reject(new UsageError(`node ${node.name} exited (code ${code}) before it served; its log is above`)));
  });
}

function formatLine(entry: { msg?: string; level?: number; [key: string]: unknown }): string {
  const { msg, level, time: _time, pid: _pid, hostname: _host, node: _node, ...fields } = entry;
  const name = ({ 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' } as Record<number, string>)[level ?? 30] ?? 'info';
  const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  return `${name} ${msg ?? ''}${rest}`;
}

/** Resolves once every node is a voter and one is leader, as n1 reports it (false after the timeout). */
async function waitForVoters(addresses: string[], certs: DevCertificates | undefined, count: number): Promise<boolean> {
  const security = certs === undefined ? { insecure: true as const } : await clientSecurity(certs);
  const client = new AnnalClient({ address: addresses[0]!, security });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    while (Date.now() < deadline) {
      try {
        const servers = await client.getServers();
        if (servers.filter((server) => server.isVoter).length === count && servers.some((server) => server.isLeader)) return true;
      } catch {
        // not ready yet
      }
      await new Promise((resolveWait) => setTimeout(resolveWait, 100));
    }
    process.stderr.write(`annal dev: the cluster did not form within ${READY_TIMEOUT_MS / 1000} s; see the nodes' logs above\n`);
    return false;
  } finally {
    client.close();
  }
}

async function clientSecurity(certs: DevCertificates) {
  const { readFile } = await import('node:fs/promises');
  const [caPem, certPem, keyPem] = await Promise.all([certs.files.caCert, certs.files.rootClientCert, certs.files.rootClientKey].map((file) => readFile(file)));
  return { tls: { caPem: caPem!, certPem: certPem!, keyPem: keyPem! } };
}

/** Resolves when the first SIGINT/SIGTERM arrives (after `onStop`); a second one kills every node. */
function stopOnSignal(nodes: DevNode[], onStop: () => void): Promise<void> {
  return new Promise<void>((resolveStop) => {
    let received = false;
    const onSignal = (): void => {
      if (received) {
        for (const node of nodes) node.child.kill('SIGKILL');
        process.exit(130);
      }
      received = true;
      onStop();
      process.stderr.write('annal dev: stopping the nodes\n');
      for (const node of nodes) node.child.kill('SIGTERM');
      resolveStop();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

function nodeTlsArgs(certs: DevCertificates): string[] {
  const { files } = certs;
  return [
    '--server-tls-cert-file', files.serverCert, '--server-tls-key-file', files.serverKey, '--server-tls-ca-file', files.caCert,
    '--peer-tls-cert-file', files.peerCert, '--peer-tls-key-file', files.peerKey, '--peer-tls-ca-file', files.caCert,
    '--acl-model-file', join(PACKAGED_CONFIG_DIR, 'model.conf'), '--acl-policy-file', join(PACKAGED_CONFIG_DIR, 'policy.csv'),
  ];
}

async function devCertificates(certsDir: string): Promise<DevCertificates> {
  try {
    return await ensureDevCertificates(certsDir);
  } catch (error) {
    if (error instanceof AnnalError) throw error;
    throw new InvalidArgumentError(`cannot make certificates in ${certsDir}: ${(error as Error).message}`, { cause: error });
  }
}

function banner(nodes: DevNode[], dataDir: string, profilePath: string, certs: DevCertificates | undefined, metricsPort: number): string {
  const script = resolve(process.argv[1] ?? 'dist/src/cli/main.js');
  const fromHere = relative(process.cwd(), script);
  const cli = `node ${fromHere.startsWith('..') ? script : fromHere}`;
  const addresses = nodes.map((node) => node.rpcAddr).join(',');
  const first = nodes[0]!.rpcAddr;
  const flags = certs === undefined ? `--insecure --addr ${first}` : `--addr ${first} ${clientTlsFlags(certs.files)}`;
  const securityLine =
    certs === undefined
      ? '  plaintext: no TLS and no access control, for local use only'
      : `  mutual TLS: certificates in ${dirname(certs.files.caCert)}${certs.created ? ' (made now)' : ''}; clients authenticate as root (nobody-client.pem is denied)`;
  const profileNote = relative(process.cwd(), profilePath) === join('annal-data', 'client.yaml') ? '' : ` --profile ${profilePath}`;
  return [
    `annal dev: a ${nodes.length}-node cluster serving log.v1.Log on ${addresses}`,
    ...nodes.map((node) => `  ${node.name}: ${node.rpcAddr} (pid ${node.child.pid}, data in ${join(dataDir, node.name)})`),
    securityLine,
    `  metrics: http://127.0.0.1:${metricsPort}/metrics (n1; the others on the next ports)`,
    `  client profile: ${profilePath} (read by the client commands when run from ${dirname(dataDir)})`,
    '',
    `  produce:  ${cli} produce${profileNote} hello world`,
    `  consume:  ${cli} consume${profileNote} --offset 0 --follow`,
    `  servers:  ${cli} servers${profileNote}`,
    `  members:  ${cli} members${profileNote}`,
    '',
    '  with explicit flags (any node serves; writes are forwarded to the leader):',
    `  produce:  ${cli} produce ${flags} hello world`,
    `  follow:   ${cli} consume ${flags} --offset 0 --follow`,
    '',
    `  failover: kill -9 the leader's pid (see \`servers\`) and produce again`,
    'Ctrl-C stops the cluster.',
    '',
  ].join('\n');
}

/** The first port from `from` on (at most 20 tried) that 127.0.0.1 can listen on now and that is not in `taken`. */
async function firstFreePort(from: number, taken: Set<number>): Promise<number> {
  for (let port = from; port < from + 20 && port <= 65535; port++) {
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolveFree) => {
      const probe = createServer();
      probe.once('error', () => resolveFree(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolveFree(true)));
    });
    if (free) {
      taken.add(port);
      return port;
    }
  }
  throw new UsageError(`no free port in ${from}..${from + 19} on 127.0.0.1; pass --rpc-port`);
}
