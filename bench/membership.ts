/**
 * Membership: annal vs real serf agents (Debian serf 0.9.4), same timings (serf `-profile=local`,
 * annal `localTimings`), in one run. Every node is its own process on 127.0.0.1.
 *
 * - join → visible everywhere: a standalone node is told to join (annal: `join` on stdin; serf:
 *   `serf join` over RPC); time until every other node knows it alive.
 * - kill -9 → failed everywhere: SIGKILL one node; time until every other node reports it failed.
 * - idle cost in a 10-node cluster: CPU per node (from /proc/<pid>/stat) and UDP datagrams sent
 *   per node per second (annal: its own counters; both: the kernel's /proc/net/snmp total / n,
 *   which also counts other tenants of the machine, so treat it as an upper bound).
 *
 * Visibility is observed differently: annal nodes report events as they happen; serf agents are
 * polled with `serf members` (every ~100 ms), which adds up to one poll round to serf's figures.
 * Usage: node dist/bench/membership.js   (about 3 minutes; ANNAL_BENCH_SCALE=0.34 for one round)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type SerfAgent, killAgent, killAllAgents, rpcMembers, startAgent, waitFor } from '../e2e/serf-agent.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { printTable, scaled, type Row } from './util.js';

const run = promisify(execFile);
const NODE_SCRIPT = fileURLToPath(new URL('./membership-node.js', import.meta.url));
const clockTicksPerSecond = 100;
const idleWindowMs = 10_000;
const waitLimitMs = 60_000;

interface Node {
  readonly name: string;
  readonly pid: number;
  readonly bindAddr: string;
  /** Time (epoch ms) this node first saw `name` reach `status`. */
  seen(name: string, status: 'alive' | 'failed'): Promise<number>;
  join(seed: string): Promise<void>;
  packetsSent(): Promise<number>;
  kill(): Promise<void>;
}

// ---- annal nodes: child processes reporting events ----

const children = new Set<ChildProcess>();

async function annalNode(name: string): Promise<Node> {
  const child = spawn(process.execPath, [NODE_SCRIPT, name], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const events: { t: number; type: string; name: string }[] = [];
  const waiters: (() => void)[] = [];
  let port = 0;
  let stats: ((sent: number) => void) | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const message = JSON.parse(line) as { ready?: number; t?: number; type?: string; name?: string; stats?: { packetsSent: number } };
    if (message.ready) port = message.ready;
    if (message.type && message.name && message.t) events.push({ t: message.t, type: message.type, name: message.name });
    if (message.stats) stats?.(message.stats.packetsSent);
    for (const wake of waiters.splice(0)) wake();
  });
  await waitFor(() => port !== 0, 10_000, `annal node ${name} to start`);
  const seen = async (target: string, status: 'alive' | 'failed'): Promise<number> => {
    if (target === name) return 0; // a node knows itself from the start (its own join precedes any subscriber)
    const type = status === 'alive' ? 'member-join' : 'member-failed';
    await waitFor(() => events.some((e) => e.type === type && e.name === target), waitLimitMs, `${name} to see ${target} ${status}`);
    return (events.find((e) => e.type === type && e.name === target) as { t: number }).t;
  };
  return {
    name,
    pid: child.pid as number,
    bindAddr: `127.0.0.1:${port}`,
    seen,
    join: async (seed) => void child.stdin!.write(`join ${seed}\n`),
    packetsSent: () => new Promise((resolve) => ((stats = resolve), child.stdin!.write('stats\n'))),
    kill: () => killChild(child),
  };
}

function killChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

// ---- serf agents: polled over RPC ----

async function serfNode(name: string): Promise<Node> {
  const agent: SerfAgent = await startAgent({ name, profile: 'local' });
  const seen = async (target: string, status: 'alive' | 'failed'): Promise<number> => {
    let at = 0;
    await waitFor(async () => {
      const members = await rpcMembers(agent).catch(() => []);
      if (members.some((m) => m.name === target && m.status === status)) at = Date.now();
      return at !== 0;
    }, waitLimitMs, `${name} to see ${target} ${status}`);
    return at;
  };
  return {
    name,
    pid: agent.process.pid as number,
    bindAddr: agent.bindAddr,
    seen,
    join: async (seed) => void (await run('serf', ['join', `-rpc-addr=${agent.rpcAddr}`, seed], { timeout: 10_000 })),
    packetsSent: async () => NaN,
    kill: () => killAgent(agent, 'SIGKILL'),
  };
}

// ---- scenarios ----

async function formCluster(make: (name: string) => Promise<Node>, prefix: string, count: number): Promise<Node[]> {
  const nodes = [await make(`${prefix}0`)];
  for (let i = 1; i < count; i++) {
    const node = await make(`${prefix}${i}`);
    await node.join((nodes[0] as Node).bindAddr);
    nodes.push(node);
  }
  await Promise.all(nodes.flatMap((observer) => nodes.map((node) => observer.seen(node.name, 'alive'))));
  return nodes;
}

/** ms from the join command until the slowest existing node knows the newcomer alive. */
async function joinVisibleMs(cluster: Node[], newcomer: Node): Promise<number> {
  const start = Date.now();
  await newcomer.join((cluster[0] as Node).bindAddr);
  const times = await Promise.all(cluster.map((node) => node.seen(newcomer.name, 'alive')));
  return Math.max(...times) - start;
}

async function failedEverywhereMs(cluster: Node[], victim: Node): Promise<number> {
  const start = Date.now();
  await victim.kill();
  const others = cluster.filter((node) => node !== victim);
  const times = await Promise.all(others.map((node) => node.seen(victim.name, 'failed')));
  return Math.max(...times) - start;
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15 of stat)
}

function udpDatagramsSent(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((line) => line.startsWith('Udp:'));
  const header = (lines[0] ?? '').split(/\s+/);
  const values = (lines[1] ?? '').split(/\s+/);
  return Number(values[header.indexOf('OutDatagrams')]);
}

async function idleCost(cluster: Node[]): Promise<{ cpuPercent: number; packetsPerSecond: number; kernelPacketsPerSecond: number }> {
  const ticksBefore = cluster.map((node) => cpuTicks(node.pid));
  const sentBefore = await Promise.all(cluster.map((node) => node.packetsSent()));
  const kernelBefore = udpDatagramsSent();
  const start = Date.now();
  await new Promise((resolve) => setTimeout(resolve, idleWindowMs));
  const seconds = (Date.now() - start) / 1000;
  const ticks = cluster.map((node, i) => cpuTicks(node.pid) - (ticksBefore[i] as number));
  const sent = await Promise.all(cluster.map((node) => node.packetsSent()));
  const kernel = udpDatagramsSent() - kernelBefore;
  const cpuPercent = (ticks.reduce((a, b) => a + b, 0) / clockTicksPerSecond / seconds / cluster.length) * 100;
  const packets = sent.reduce((sum, value, i) => sum + value - (sentBefore[i] as number), 0);
  return { cpuPercent, packetsPerSecond: packets / seconds / cluster.length, kernelPacketsPerSecond: kernel / seconds / cluster.length };
}

interface Figures {
  /** One sample per round, by cluster size. */
  joinMs: Record<number, number[]>;
  failMs: Record<number, number[]>;
  idle?: { cpuPercent: number; packetsPerSecond: number; kernelPacketsPerSecond: number };
}

/** Detection time depends on where the probe round is when the victim dies, so we take rounds. */
const rounds = scaled(3);

async function measure(make: (name: string) => Promise<Node>, prefix: string): Promise<Figures> {
  const figures: Figures = { joinMs: { 3: [], 10: [] }, failMs: { 3: [], 10: [] } };
  for (let round = 0; round < rounds; round++) {
    for (const size of [3, 10]) {
      const cluster = await formCluster(make, `${prefix}${round}-${size}-`, size - 1);
      const newcomer = await make(`${prefix}${round}-${size}-new`);
      figures.joinMs[size]?.push(await joinVisibleMs(cluster, newcomer));
      cluster.push(newcomer);
      await Promise.all(cluster.flatMap((observer) => cluster.map((node) => observer.seen(node.name, 'alive'))));
      if (size === 10 && round === 0) figures.idle = await idleCost(cluster);
      figures.failMs[size]?.push(await failedEverywhereMs(cluster, cluster[1] as Node));
      await Promise.all(cluster.map((node) => node.kill()));
    }
  }
  return figures;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] as number;
}

function summary(values: number[]): string {
  return `${median(values)} [${Math.min(...values)}..${Math.max(...values)}]`;
}

async function main(): Promise<void> {
  const serf = await measure(serfNode, 's');
  await killAllAgents();
  const annal = await measure(annalNode, 'a');
  const rows: Row[] = [];
  const ratio = (a: number, s: number): string => `${(a / s).toFixed(2)}×`;
  for (const size of [3, 10]) {
    const [annalJoin, serfJoin, annalFail, serfFail] = [annal.joinMs[size], serf.joinMs[size], annal.failMs[size], serf.failMs[size]] as number[][];
    const note = `annal vs serf, median [min..max] of ${rounds}; serf polled`;
    rows.push({ name: `join → alive everywhere, n=${size} (ms)`, value: `${summary(annalJoin as number[])} vs ${summary(serfJoin as number[])}`, ratio: ratio(median(annalJoin as number[]), median(serfJoin as number[])), note });
    rows.push({ name: `kill -9 → failed everywhere, n=${size} (ms)`, value: `${summary(annalFail as number[])} vs ${summary(serfFail as number[])}`, ratio: ratio(median(annalFail as number[]), median(serfFail as number[])), note });
  }
  if (annal.idle && serf.idle) {
    rows.push({ name: 'idle CPU per node, n=10 (%)', value: `${annal.idle.cpuPercent.toFixed(2)} vs ${serf.idle.cpuPercent.toFixed(2)}`, ratio: ratio(annal.idle.cpuPercent, serf.idle.cpuPercent), note: '/proc/<pid>/stat' });
    rows.push({ name: 'idle UDP sent per node, n=10 (/s)', value: `${annal.idle.kernelPacketsPerSecond.toFixed(1)} vs ${serf.idle.kernelPacketsPerSecond.toFixed(1)}`, ratio: ratio(annal.idle.kernelPacketsPerSecond, serf.idle.kernelPacketsPerSecond), note: `kernel totals / n; annal's own count: ${annal.idle.packetsPerSecond.toFixed(1)}/s` });
  }
  printTable('membership: annal vs serf 0.9.4, -profile=local timings', rows);
}

try {
  await main();
} finally {
  await killAllAgents();
  await Promise.all([...children].map((child) => killChild(child)));
}
