/**
 * e2e support for clusters of real `annal agent` processes with mutual TLS: certificates made
 * once per test file, nodes started with their own data dir, RPC port 0 and gossip port 0 (their
 * addresses learnt from their logs), clients of the real client library, and waits on the
 * cluster's own answers (GetServers) rather than on time.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AnnalClient, type ClientSecurity, type ServerInfo } from '../src/client/index.js';
import { runCertsCommand, type CertificateFiles } from '../src/auth/index.js';
import { OffsetOutOfRangeError } from '../src/util/index.js';
import { spawnAgent, type AgentProcess } from './cli-harness.js';

export const CONFIG_DIR = new URL('../../config/', import.meta.url).pathname;

export interface ClusterCerts {
  files: CertificateFiles;
  root: ClientSecurity;
  nobody: ClientSecurity;
}

/** `hosts`: the addresses the node certificates are valid for (default: the config's, loopback). */
export async function makeCerts(dir: string, hosts?: string[]): Promise<ClusterCerts> {
  const { files } = await runCertsCommand({ configDir: CONFIG_DIR, outDir: dir, ...(hosts !== undefined ? { hosts } : {}) });
  const read = (path: string) => readFile(path);
  const [ca, rootCert, rootKey, nobodyCert, nobodyKey] = await Promise.all(
    [files.caCert, files.rootClientCert, files.rootClientKey, files.nobodyClientCert, files.nobodyClientKey].map(read),
  );
  return {
    files,
    root: { tls: { caPem: ca!, certPem: rootCert!, keyPem: rootKey! } },
    nobody: { tls: { caPem: ca!, certPem: nobodyCert!, keyPem: nobodyKey! } },
  };
}

export function tlsArgs(files: CertificateFiles): string[] {
  return [
    '--server-tls-cert-file', files.serverCert, '--server-tls-key-file', files.serverKey, '--server-tls-ca-file', files.caCert,
    '--peer-tls-cert-file', files.peerCert, '--peer-tls-key-file', files.peerKey, '--peer-tls-ca-file', files.caCert,
    '--acl-model-file', join(CONFIG_DIR, 'model.conf'), '--acl-policy-file', join(CONFIG_DIR, 'policy.csv'),
  ];
}

export interface ClusterNode {
  name: string;
  dataDir: string;
  process: AgentProcess;
  rpcAddr: string;
  gossipAddr: string;
}

export interface NodeOptions {
  name: string;
  dataDir: string;
  certs: ClusterCerts;
  /** Gossip addresses to join; none bootstraps (a new data dir) or restarts alone. */
  join?: string[];
  bootstrap?: boolean;
  /** Reuse these ports (a restart keeps its addresses, as an operator's would). */
  rpcPort?: number;
  gossipPort?: number;
  extra?: string[];
  /** The process's environment (default: this one's). */
  env?: NodeJS.ProcessEnv;
  /** The address to bind gossip and RPC on (default 127.0.0.1). */
  host?: string;
  /** A command prefix that execs the agent, e.g. `ip netns exec <ns>`. */
  wrap?: readonly string[];
}

export async function startNode(options: NodeOptions): Promise<ClusterNode> {
  const args = [
    'agent',
    '--node-name', options.name,
    '--data-dir', options.dataDir,
    '--rpc-port', String(options.rpcPort ?? 0),
    '--bind-addr', `${options.host ?? '127.0.0.1'}:${options.gossipPort ?? 0}`,
    '--gossip-profile', 'local',
    '--log-level', 'info',
    ...tlsArgs(options.certs.files),
    ...(options.bootstrap === true ? ['--bootstrap'] : []),
    ...(options.join !== undefined && options.join.length > 0 ? ['--start-join-addrs', options.join.join(',')] : []),
    ...(options.extra ?? []),
  ];
  const process = spawnAgent(args, { ...(options.env !== undefined ? { env: options.env } : {}), ...(options.wrap !== undefined ? { wrap: options.wrap } : {}) });
  const rpcAddr = await process.address;
  const gossipAddr = await logField(process, 'gossip membership started', 'gossipAddr');
  return { name: options.name, dataDir: options.dataDir, process, rpcAddr, gossipAddr };
}

/** Restarts a stopped node on its old ports with its data dir (an operator's restart keeps its addresses). */
export function restartNode(node: ClusterNode, certs: ClusterCerts, join: string[]): Promise<ClusterNode> {
  const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));
  return startNode({ name: node.name, dataDir: node.dataDir, certs, join, rpcPort: portOf(node.rpcAddr), gossipPort: portOf(node.gossipAddr) });
}

/** Resolves with `field` of the first log line whose msg is `message` (rejects if the process exits first). */
export function logField(process: AgentProcess, message: string, field: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      for (const line of process.stderrLines) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry.msg === message && typeof entry[field] === 'string') {
            resolve(entry[field] as string);
            return true;
          }
        } catch {
          // not JSON
        }
      }
      return false;
    };
    if (check()) return;
    process.child.stderr!.on('data', () => setImmediate(check));
    void process.exited.then(() => {
      if (!check()) reject(new Error(`process exited before logging "${message}":\n${process.stderrLines.join('\n')}`));
    });
  });
}

export function client(node: { rpcAddr: string } | string, security: ClientSecurity): AnnalClient {
  return new AnnalClient({ address: typeof node === 'string' ? node : node.rpcAddr, security });
}

/** Polls GetServers on `node` (every 50 ms, up to timeoutMs) until `done` holds; returns that answer. */
export async function waitForServers(
  node: { rpcAddr: string },
  security: ClientSecurity,
  done: (servers: ServerInfo[]) => boolean,
  timeoutMs = 30_000,
): Promise<ServerInfo[]> {
  const c = client(node, security);
  const deadline = Date.now() + timeoutMs;
  let last: ServerInfo[] | string = 'no answer';
  try {
    while (Date.now() < deadline) {
      try {
        const servers = await c.getServers();
        last = servers;
        if (done(servers)) return servers;
      } catch (error) {
        last = String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    c.close();
  }
  throw new Error(`servers on ${node.rpcAddr} never satisfied the condition; last answer: ${JSON.stringify(last)}`);
}

/** `count` voters, one leader. */
export function votersWithLeader(count: number): (servers: ServerInfo[]) => boolean {
  return (servers) => servers.filter((s) => s.isVoter).length === count && servers.filter((s) => s.isLeader).length === 1;
}

export function leaderOf(servers: ServerInfo[]): ServerInfo {
  const leader = servers.find((server) => server.isLeader);
  if (leader === undefined) throw new Error(`no leader in ${JSON.stringify(servers)}`);
  return leader;
}

/** Reads every retained record of the log from `node` (all committed records it has applied). */
export async function readAll(node: { rpcAddr: string }, security: ClientSecurity): Promise<{ offset: number; value: string }[]> {
  const c = client(node, security);
  try {
    const read = async (from: number): Promise<{ offset: number; value: string }[]> => {
      const out: { offset: number; value: string }[] = [];
      for await (const record of c.consumeStream(from, { follow: false, maxBatch: 1024 })) out.push({ offset: record.offset, value: record.value.toString() });
      return out;
    };
    let from = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        return await read(from);
      } catch (error) {
        // Retention dropped the start (maybe again while reading): read from the lowest retained offset.
        if (!(error instanceof OffsetOutOfRangeError) || error.lowestOffset <= from || attempt >= 20) throw error;
        from = error.lowestOffset;
      }
    }
  } finally {
    c.close();
  }
}

/** Waits until `node` holds at least `count` records. */
export async function waitForRecords(node: { rpcAddr: string }, security: ClientSecurity, count: number, timeoutMs = 30_000): Promise<void> {
  const c = client(node, security);
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      try {
        await c.consume(count - 1);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`${node.rpcAddr} never held ${count} records: ${String(error)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    c.close();
  }
}
