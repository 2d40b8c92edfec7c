/**
 * The replicated log as users run it: real `annal agent` processes (dist/src/cli/main.js) with
 * mutual TLS, `--fsync always`, gossip on loopback (`--gossip-profile local`), 1 KiB records,
 * and the real client library connected to the leader (found with GetServers). Baselines are
 * measured in the same run: a single bootstrapped agent (1-node) for the throughput tables.
 *
 * - ProduceStream, 256 records in flight (bench/util.ts `pipelined`): records/s, p50/p99 from
 *   send to acknowledgement; 1-node, 3-node on the leader, 3-node on a follower (forwarded).
 * - ProduceBatch of 256 records, 4 batches in flight: records/s, p99 per batch; 1-node, 3-node.
 *   The two clusters run side by side and the workloads alternate in rounds
 *   (ANNAL_BENCH_ROUNDS, default 2) with medians reported: the machine is shared and noisy.
 * - Failover: kill -9 of the 3-node leader while a client produces continuously on a survivor
 *   (unary produce, 100 ms per attempt, retried, as the JetStream and etcd peer benchmarks do);
 *   the time from the kill to the first acknowledgement of a produce sent after it. 5 trials;
 *   the killed node restarts (same ports and data) and catches up between trials.
 * - Catch-up: a new node joins a log of 1M 1 KiB records; records/s from its start until it
 *   holds the leader's last offset.
 * - Cluster client (`client`): the ProduceStream run through an `annal://` client (discovery,
 *   routing, idempotent producer: ProduceBatch of one sequenced record per send) against the same
 *   run straight to the leader's address, alternating in the same rounds; the ratio.
 * - Cluster client failover (`clientfailover`): kill -9 of the leader while an `annal://` client
 *   produces continuously (unary produce, its own retries, no per-call deadline); the time from
 *   the kill to the first acknowledgement of a produce sent after it. 5 trials.
 *
 * Every run also says how many cores each agent, the client and the rest of the machine used
 * (/proc), and how many elections it saw (the agents' 'raft role' log lines). An agent that
 * exits without being asked to is a crash: its output is printed and the bench exits non-zero,
 * as it does when a run or the catch-up fails.
 *
 * Usage: node dist/bench/cluster.js   ANNAL_BENCH_SCALE=0.1 for a quick pass (counts scale).
 * ANNAL_BENCH_CLUSTER_PARTS=stream,forwarded,batch,client,failover,clientfailover,catchup runs some parts only.
 * ANNAL_BENCH_LOG_DIR=<dir> keeps every agent's log there (<node name>.log, appended).
 * ANNAL_BENCH_CPU_PROF=<dir> runs every agent with `node --cpu-prof --cpu-prof-dir=<dir>` (a
 * profile per agent that exits gracefully; kill -9'd agents write none).
 * ANNAL_BENCH_NODE_ARGS="<flags>" adds node flags to every agent (e.g. `--perf-basic-prof` for `perf`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runCertsCommand, type CertificateFiles } from '../src/auth/index.js';
import { AnnalClient, type ClientSecurity, type ServerInfo } from '../src/client/index.js';
import { formatRate, nowMs, percentile, pipelined, printTable, scaled, tempDir, type Row } from './util.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const CONFIG_DIR = fileURLToPath(new URL('../../config/', import.meta.url));
const KIB = 1024;
const STREAM_WINDOW = 256;
const BATCH_RECORDS = 256;
const BATCHES_IN_FLIGHT = 4;
/** Per-attempt deadline while measuring failover (the peers' benchmarks use 100 ms too). */
const FAILOVER_ATTEMPT_MS = 100;
const VALUE = Buffer.alloc(KIB, 0x61);

// ---------------------------------------------------------------- agent processes

interface Agent {
  name: string;
  dataDir: string;
  child: ChildProcess;
  rpcAddr: string;
  gossipAddr: string;
  exited: Promise<void>;
  /** The last log lines, for error messages. */
  tail: string[];
  /** Raft role changes from the log ('raft role' lines): epoch ms, role, leader id. */
  roles: { timeMs: number; role: string; leader: string | null }[];
  /** Set before the bench stops or kills it; an exit without it is a crash. */
  stopping: boolean;
}

/** Agents that exited without being asked to, with what they printed that was not a log line. */
const crashes: { name: string; atEpochMs: number; exit: string; output: string[] }[] = [];

const running = new Set<ChildProcess>();

function alive(agent: Agent): boolean {
  return agent.child.exitCode === null && agent.child.signalCode === null;
}

interface StartOptions {
  name: string;
  dataDir: string;
  bootstrap?: boolean;
  join?: string[];
  rpcPort?: number;
  gossipPort?: number;
}

function startAgent(files: CertificateFiles, options: StartOptions): Promise<Agent> {
  const profileDir = process.env.ANNAL_BENCH_CPU_PROF;
  const nodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${options.name}-${Date.now()}.cpuprofile`] : [];
  const extraArgs = process.env.ANNAL_BENCH_NODE_ARGS;
  if (extraArgs !== undefined && extraArgs !== '') nodeArgs.push(...extraArgs.split(' '));
  const args = [
    CLI, 'agent',
    '--node-name', options.name,
    '--data-dir', options.dataDir,
    '--rpc-port', String(options.rpcPort ?? 0),
    '--bind-addr', `127.0.0.1:${options.gossipPort ?? 0}`,
    '--gossip-profile', 'local',
    '--fsync', 'always',
    '--log-level', 'info',
    '--server-tls-cert-file', files.serverCert, '--server-tls-key-file', files.serverKey, '--server-tls-ca-file', files.caCert,
    '--peer-tls-cert-file', files.peerCert, '--peer-tls-key-file', files.peerKey, '--peer-tls-ca-file', files.caCert,
    '--acl-model-file', join(CONFIG_DIR, 'model.conf'), '--acl-policy-file', join(CONFIG_DIR, 'policy.csv'),
    ...(options.bootstrap === true ? ['--bootstrap'] : []),
    ...(options.join !== undefined && options.join.length > 0 ? ['--start-join-addrs', options.join.join(',')] : []),
  ];
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  const tail: string[] = [];
  const output: string[] = [];
  let agent: Agent | undefined;
  const exited = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
    running.delete(child);
    if (agent === undefined || !agent.stopping) crashes.push({ name: options.name, atEpochMs: Date.now(), exit: signal ?? `code ${code}`, output });
    resolve();
  }));
  const roles: Agent['roles'] = [];
  const logDir = process.env.ANNAL_BENCH_LOG_DIR;
  if (logDir) mkdirSync(logDir, { recursive: true });
  const logFile = logDir ? join(logDir, `${options.name}.log`) : undefined;
  return new Promise<Agent>((resolve, reject) => {
    let rpcAddr: string | undefined;
    let gossipAddr: string | undefined;
    let resolved = false;
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (logFile !== undefined) appendFileSync(logFile, line + '\n');
      if (!line.startsWith('{') && output.length < 40) output.push(line);
      tail.push(line);
      if (tail.length > 50) tail.shift();
      if (resolved && !line.includes('"raft role"')) return;
      try {
        const entry = JSON.parse(line) as { msg?: string; time?: number; role?: string; leader?: string | null; rpcAddress?: string; gossipAddr?: string };
        if (entry.msg === 'raft role' && typeof entry.time === 'number') roles.push({ timeMs: entry.time, role: String(entry.role), leader: entry.leader ?? null });
        if (entry.msg === 'serving log.v1.Log' && entry.rpcAddress) rpcAddr = entry.rpcAddress;
        if (entry.msg === 'gossip membership started' && entry.gossipAddr) gossipAddr = entry.gossipAddr;
      } catch {
        return; // not a log line
      }
      if (!resolved && rpcAddr !== undefined && gossipAddr !== undefined) {
        resolved = true;
        agent = { name: options.name, dataDir: options.dataDir, child, rpcAddr, gossipAddr, exited, tail, roles, stopping: false };
        resolve(agent);
      }
    });
    void exited.then(() => reject(new Error(`agent ${options.name} exited before serving:\n${tail.join('\n')}`)));
  });
}

/** SIGTERM (a graceful shutdown, which writes a CPU profile if asked), SIGKILL after 15 s. */
async function stop(agent: Agent): Promise<void> {
  agent.stopping = true;
  if (!alive(agent)) return agent.exited;
  agent.child.kill('SIGTERM');
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), 15_000);
  await agent.exited;
  clearTimeout(timer);
}

function killEverything(): void {
  for (const child of running) child.kill('SIGKILL');
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

// ---------------------------------------------------------------- cluster views

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls GetServers on `address` every 50 ms until `done` holds (up to timeoutMs). */
async function waitForServers(address: string, security: ClientSecurity, done: (servers: ServerInfo[]) => boolean, timeoutMs = 30_000): Promise<ServerInfo[]> {
  const client = new AnnalClient({ address, security, callTimeoutMs: 2000 });
  const deadline = Date.now() + timeoutMs;
  let last: unknown = 'no answer';
  try {
    while (Date.now() < deadline) {
      try {
        const servers = await client.getServers();
        last = servers;
        if (done(servers)) return servers;
      } catch (error) {
        last = String(error);
      }
      await sleep(50);
    }
  } finally {
    client.close();
  }
  throw new Error(`GetServers on ${address} never satisfied the condition; last answer: ${JSON.stringify(last)}`);
}

const votersWithLeader = (count: number) => (servers: ServerInfo[]): boolean =>
  servers.filter((s) => s.isVoter).length === count && servers.filter((s) => s.isLeader).length === 1;

/** `count` voters, one leader, and every member's log matching the leader's (asked of the leader). */
async function waitForInSync(agents: Agent[], security: ClientSecurity, count: number, timeoutMs = 60_000): Promise<ServerInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const servers = await waitForServers(agents.find(alive)!.rpcAddr, security, votersWithLeader(count), Math.max(1000, deadline - Date.now()));
    const leader = servers.find((s) => s.isLeader)!;
    const fromLeader = await waitForServers(leader.rpcAddr, security, () => true, 5000).catch(() => []);
    const top = fromLeader.find((s) => s.isLeader);
    if (top !== undefined && votersWithLeader(count)(fromLeader) && fromLeader.every((s) => s.matchIndex === top.matchIndex)) return fromLeader;
    if (Date.now() > deadline) throw new Error(`cluster never in sync: ${JSON.stringify(fromLeader)}`);
    await sleep(100);
  }
}

function leaderOf(servers: ServerInfo[]): ServerInfo {
  const leader = servers.find((s) => s.isLeader);
  if (leader === undefined) throw new Error(`no leader in ${JSON.stringify(servers)}`);
  return leader;
}

class Cluster {
  agents: Agent[] = [];
  constructor(
    readonly prefix: string,
    private readonly root: string,
    private readonly files: CertificateFiles,
    readonly security: ClientSecurity,
  ) {}

  async start(size: number): Promise<void> {
    const first = await startAgent(this.files, { name: `${this.prefix}1`, dataDir: join(this.root, `${this.prefix}1`), bootstrap: true });
    this.agents.push(first);
    for (let i = 2; i <= size; i++) this.agents.push(await startAgent(this.files, { name: `${this.prefix}${i}`, dataDir: join(this.root, `${this.prefix}${i}`), join: [first.gossipAddr] }));
    await waitForInSync(this.agents, this.security, size);
  }

  async servers(): Promise<ServerInfo[]> {
    return waitForServers(this.agents.find(alive)!.rpcAddr, this.security, votersWithLeader(this.agents.length));
  }

  async leaderAddr(): Promise<string> {
    return leaderOf(await this.servers()).rpcAddr;
  }

  async followerAddr(): Promise<string> {
    const follower = (await this.servers()).find((s) => !s.isLeader && s.isVoter);
    if (follower === undefined) throw new Error('no follower');
    return follower.rpcAddr;
  }

  /** The cluster as an `annal://` address naming every member. */
  clusterAddr(): string {
    return `annal://${this.agents.map((a) => a.rpcAddr).join(',')}`;
  }

  agentAt(rpcAddr: string): Agent {
    const agent = this.agents.find((a) => a.rpcAddr === rpcAddr);
    if (agent === undefined) throw new Error(`no agent serves ${rpcAddr}`);
    return agent;
  }

  /** Restarts a stopped agent on its old ports with its data dir. */
  async restart(agent: Agent): Promise<Agent> {
    const join = this.agents.filter((a) => a !== agent && alive(a)).map((a) => a.gossipAddr);
    const next = await startAgent(this.files, { name: agent.name, dataDir: agent.dataDir, join, rpcPort: portOf(agent.rpcAddr), gossipPort: portOf(agent.gossipAddr) });
    this.agents[this.agents.indexOf(agent)] = next;
    return next;
  }

  async add(name: string): Promise<Agent> {
    const agent = await startAgent(this.files, { name, dataDir: join(this.root, name), join: this.agents.filter(alive).map((a) => a.gossipAddr) });
    this.agents.push(agent);
    return agent;
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map(stop));
  }
}

// ---------------------------------------------------------------- CPU accounting

/** CPU seconds used so far by a process (utime + stime from /proc; 0 once it is gone). */
function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Busy and total CPU seconds of the whole machine (all processes, ours and others'). */
function machineCpuSeconds(): { busy: number; total: number } {
  try {
    const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    const ticks = values.slice(0, 8).map(Number);
    const total = ticks.reduce((a, b) => a + b, 0);
    return { busy: (total - ticks[3]! - ticks[4]!) / 100, total: total / 100 };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/**
 * Runs `work` and says how many cores each party used meanwhile: the agents by role (as
 * GetServers reported before the run), this client process, and the whole machine (which other
 * users of the machine share).
 */
async function withCpu<T>(cluster: Cluster, work: () => Promise<T>): Promise<{ result: T; cpu: string }> {
  const servers = await cluster.servers();
  const agents = cluster.agents.filter(alive);
  const before = agents.map((a) => processCpuSeconds(a.child.pid));
  const selfBefore = process.cpuUsage();
  const machineBefore = machineCpuSeconds();
  const startMs = nowMs();
  const startEpochMs = Date.now();
  const result = await work();
  const wallS = (nowMs() - startMs) / 1000;
  const elections = cluster.agents.flatMap((a) => a.roles).filter((r) => r.role === 'candidate' && r.timeMs >= startEpochMs).length;
  const cores = (seconds: number) => (seconds / wallS).toFixed(2);
  const used = agents.map((a, i) => ({ agent: a, seconds: processCpuSeconds(a.child.pid) - before[i]! }));
  const roleOf = (a: Agent) => (servers.find((s) => s.rpcAddr === a.rpcAddr)?.isLeader === true ? 'leader' : 'follower');
  const leader = used.filter((u) => roleOf(u.agent) === 'leader').map((u) => cores(u.seconds));
  const followers = used.filter((u) => roleOf(u.agent) !== 'leader').map((u) => cores(u.seconds));
  const self = process.cpuUsage(selfBefore);
  const machine = machineCpuSeconds();
  const parts = [`leader ${leader.join('/')}`, ...(followers.length > 0 ? [`followers ${followers.join('/')}`] : []), `client ${cores((self.user + self.system) / 1e6)}`];
  const ours = used.reduce((sum, u) => sum + u.seconds, 0) + (self.user + self.system) / 1e6;
  const machineBusy = machine.busy - machineBefore.busy;
  const machineCores = (machine.total - machineBefore.total) / wallS;
  return {
    result,
    cpu: `cores: ${parts.join(', ')}; machine ${cores(machineBusy)} of ${machineCores.toFixed(1)} busy (others ${cores(Math.max(0, machineBusy - ours))})${elections > 0 ? `; ${elections} election(s) during the run` : ''}`,
  };
}

// ---------------------------------------------------------------- workloads

interface StreamRun {
  cpu?: string;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

async function streamRun(address: string, security: ClientSecurity, count: number): Promise<StreamRun> {
  const client = new AnnalClient({ address, security });
  try {
    const warm = client.produceStream();
    await pipelined(STREAM_WINDOW, Math.min(count, 2000), () => warm.send(VALUE));
    await warm.close();
    const stream = client.produceStream();
    const latenciesMs: number[] = [];
    const elapsedMs = await pipelined(STREAM_WINDOW, count, () => {
      const t0 = nowMs();
      return stream.send(VALUE).then(() => latenciesMs.push(nowMs() - t0));
    });
    await stream.close();
    latenciesMs.sort((a, b) => a - b);
    return { perSecond: (count / elapsedMs) * 1000, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99) };
  } finally {
    client.close();
  }
}

interface BatchRun {
  cpu?: string;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  lastOffset: number;
}

/** `batchCount` ProduceBatch requests of BATCH_RECORDS records, `inFlight` at a time. */
async function batchRun(address: string, security: ClientSecurity, batchCount: number, inFlight = BATCHES_IN_FLIGHT, warmUp = true): Promise<BatchRun> {
  const client = new AnnalClient({ address, security });
  const values = Array.from({ length: BATCH_RECORDS }, () => VALUE);
  try {
    const stream = client.produceBatchStream();
    if (warmUp) for (let i = 0; i < Math.min(8, batchCount); i++) await stream.send(values);
    const latenciesMs: number[] = [];
    let lastOffset = -1;
    const elapsedMs = await pipelined(inFlight, batchCount, () => {
      const t0 = nowMs();
      return stream.send(values).then((result) => {
        latenciesMs.push(nowMs() - t0);
        lastOffset = Math.max(lastOffset, result.lastOffset);
      });
    });
    await stream.close();
    latenciesMs.sort((a, b) => a - b);
    return { perSecond: ((batchCount * BATCH_RECORDS) / elapsedMs) * 1000, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99), lastOffset };
  } finally {
    client.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function medianBy<T>(runs: T[], key: (run: T) => number): T {
  return [...runs].sort((a, b) => key(a) - key(b))[Math.floor(runs.length / 2)]!;
}

function spread(values: number[]): string {
  return values.length > 1 ? `runs ${formatRate(Math.min(...values))}..${formatRate(Math.max(...values))}` : '';
}

const ratio = (value: number, base: number): string => `${(value / base).toFixed(2)}x`;
const ms = (value: number): string => `${value.toFixed(value < 10 ? 2 : 1)} ms`;

async function throughput(single: Cluster, triple: Cluster, rounds: number, parts: Set<string>): Promise<void> {
  const streamCount = scaled(30_000);
  // Forwarding runs at a fraction of the leader's rate: fewer records keep the bench short.
  const forwardedCount = scaled(10_000);
  const batchCount = scaled(400);
  const runs = { stream1: [] as StreamRun[], stream3: [] as StreamRun[], streamFwd: [] as StreamRun[], batch1: [] as BatchRun[], batch3: [] as BatchRun[], leaderDirect: [] as StreamRun[], cluster: [] as StreamRun[] };
  const failures: Row[] = [];
  // A run that fails (e.g. a leader change under load ends the stream) is reported, not retried.
  const measured = async <T extends { cpu?: string }>(name: string, list: T[], cluster: Cluster, work: () => Promise<T>): Promise<void> => {
    const startEpochMs = Date.now();
    try {
      const { result, cpu } = await withCpu(cluster, work);
      result.cpu = cpu;
      list.push(result);
    } catch (error) {
      const roles = cluster.agents.flatMap((a) => a.roles.filter((r) => r.timeMs >= startEpochMs).map((r) => `${a.name} ${r.role} +${r.timeMs - startEpochMs} ms`));
      failures.push({ name, value: 'FAILED', note: `${String(error).split('\n')[0]}; role changes since the run began: ${roles.join(', ') || 'none'}` });
      console.error(`run ${name} failed: ${String(error)}`);
      await cluster.servers(); // a leader again before the next run
    }
  };
  for (let round = 0; round < rounds; round++) {
    if (parts.has('stream')) {
      const one = await single.leaderAddr();
      await measured('ProduceStream, 1-node', runs.stream1, single, () => streamRun(one, single.security, streamCount));
      const three = await triple.leaderAddr();
      await measured('ProduceStream, 3-node', runs.stream3, triple, () => streamRun(three, triple.security, streamCount));
    }
    if (parts.has('forwarded')) {
      const follower = await triple.followerAddr();
      await measured('ProduceStream, 3-node forwarded', runs.streamFwd, triple, () => streamRun(follower, triple.security, forwardedCount));
    }
    if (parts.has('client')) {
      const three = await triple.leaderAddr();
      await measured('ProduceStream, 3-node, straight to the leader', runs.leaderDirect, triple, () => streamRun(three, triple.security, streamCount));
      await measured('ProduceStream, 3-node, annal://', runs.cluster, triple, () => streamRun(triple.clusterAddr(), triple.security, streamCount));
    }
    if (parts.has('batch')) {
      const one = await single.leaderAddr();
      await measured('ProduceBatch, 1-node', runs.batch1, single, () => batchRun(one, single.security, batchCount));
      const three = await triple.leaderAddr();
      await measured('ProduceBatch, 3-node', runs.batch3, triple, () => batchRun(three, triple.security, batchCount));
    }
  }
  const rate = (list: { perSecond: number }[]) => median(list.map((r) => r.perSecond));
  if (failures.length > 0) {
    printTable('Failed runs (not in the medians)', failures);
    process.exitCode = 1;
  }
  if (runs.stream1.length > 0 || runs.streamFwd.length > 0 || runs.stream3.length > 0) {
    const rows: Row[] = [];
    const s1 = runs.stream1.length > 0 ? medianBy(runs.stream1, (r) => r.perSecond) : undefined;
    const row = (name: string, list: StreamRun[]): Row => {
      if (list.length === 0) return { name, value: 'no run finished' };
      const run = medianBy(list, (r) => r.perSecond);
      const vs = (value: number, base: number | undefined) => (base === undefined ? '' : ` (${ratio(value, base)})`);
      return {
        name,
        value: `${formatRate(rate(list))} rec/s`,
        ...(s1 !== undefined && list !== runs.stream1 ? { ratio: ratio(rate(list), s1.perSecond) } : {}),
        note: `p50 ${ms(run.p50Ms)}${list === runs.stream1 ? '' : vs(run.p50Ms, s1?.p50Ms)}, p99 ${ms(run.p99Ms)}${list === runs.stream1 ? '' : vs(run.p99Ms, s1?.p99Ms)}; ${spread(list.map((r) => r.perSecond))}`,
      };
    };
    if (parts.has('stream')) rows.push(row('1-node (baseline)', runs.stream1), row('3-node, client on the leader', runs.stream3));
    if (parts.has('forwarded')) rows.push(row('3-node, client on a follower (forwarded)', runs.streamFwd));
    printTable(`ProduceStream 1 KiB, ${STREAM_WINDOW} in flight, fsync=always, mTLS (${formatRate(streamCount)} records, forwarded ${formatRate(forwardedCount)}; medians of ${rounds} alternating rounds; ratios against 1-node)`, rows);
  }
  if (runs.batch1.length > 0 && runs.batch3.length > 0) {
    const b1 = medianBy(runs.batch1, (r) => r.perSecond);
    const b3 = medianBy(runs.batch3, (r) => r.perSecond);
    const batchRows: Row[] = [
      { name: '1-node (baseline)', value: `${formatRate(rate(runs.batch1))} rec/s`, note: `${((rate(runs.batch1) * KIB) / 1e6).toFixed(1)} MB/s; per batch p50 ${ms(b1.p50Ms)}, p99 ${ms(b1.p99Ms)}; ${spread(runs.batch1.map((r) => r.perSecond))}` },
      { name: '3-node, client on the leader', value: `${formatRate(rate(runs.batch3))} rec/s`, ratio: ratio(rate(runs.batch3), rate(runs.batch1)), note: `${((rate(runs.batch3) * KIB) / 1e6).toFixed(1)} MB/s; per batch p50 ${ms(b3.p50Ms)}, p99 ${ms(b3.p99Ms)} (${ratio(b3.p99Ms, b1.p99Ms)}); ${spread(runs.batch3.map((r) => r.perSecond))}` },
    ];
    printTable(`ProduceBatch 1 KiB x ${BATCH_RECORDS}, ${BATCHES_IN_FLIGHT} batches in flight, fsync=always, mTLS (${batchCount} batches; medians of ${rounds} alternating rounds; ratios against 1-node)`, batchRows);
  }
  if (runs.leaderDirect.length > 0 && runs.cluster.length > 0) {
    const direct = medianBy(runs.leaderDirect, (r) => r.perSecond);
    const cluster = medianBy(runs.cluster, (r) => r.perSecond);
    printTable(`ProduceStream 1 KiB, ${STREAM_WINDOW} in flight, 3-node, fsync=always, mTLS: annal:// client (idempotent, routed) vs straight to the leader (${formatRate(streamCount)} records; medians of ${rounds} alternating rounds)`, [
      { name: 'straight to the leader (host:port)', value: `${formatRate(direct.perSecond)} rec/s`, note: `p50 ${ms(direct.p50Ms)}, p99 ${ms(direct.p99Ms)}; ${spread(runs.leaderDirect.map((r) => r.perSecond))}` },
      { name: 'annal://all three members', value: `${formatRate(cluster.perSecond)} rec/s`, ratio: ratio(cluster.perSecond, direct.perSecond), note: `p50 ${ms(cluster.p50Ms)}, p99 ${ms(cluster.p99Ms)}; ${spread(runs.cluster.map((r) => r.perSecond))}` },
    ]);
  }
  const cpuRows: Row[] = [];
  const cpuRow = (name: string, list: { perSecond: number; cpu?: string }[]) => {
    if (list.length > 0) cpuRows.push({ name, value: formatRate(medianBy(list, (r) => r.perSecond).perSecond), note: medianBy(list, (r) => r.perSecond).cpu ?? '' });
  };
  cpuRow('ProduceStream, 1-node', runs.stream1);
  cpuRow('ProduceStream, 3-node', runs.stream3);
  cpuRow('ProduceStream, 3-node forwarded', runs.streamFwd);
  cpuRow('ProduceBatch, 1-node', runs.batch1);
  cpuRow('ProduceBatch, 3-node', runs.batch3);
  printTable('CPU during the median runs (cores used on average; /proc); the value is that run\'s rec/s', cpuRows);
}

interface FailoverTrial {
  ms: number;
  /** From the kill to the first survivor's log line saying it became leader. */
  electedMs: number;
  killed: string;
  newLeader: string;
  failedAttempts: number;
}

/**
 * A client on `address` producing one record at a time, each attempt with a 100 ms deadline
 * (none with `callTimeoutMs` undefined: an `annal://` client retries by itself) and retried after an error; `mark()` notes the kill, `firstAckAfterMark` resolves with the time
 * of the first acknowledgement of an attempt begun after it.
 */
function continuousProducer(address: string, security: ClientSecurity, callTimeoutMs: number | undefined = FAILOVER_ATTEMPT_MS) {
  const client = new AnnalClient({ address, security, ...(callTimeoutMs !== undefined ? { callTimeoutMs } : {}) });
  let stopped = false;
  let markMs = 0;
  let acked = 0;
  let failedAfterMark = 0;
  let resolveFirst: (ms: number) => void = () => {};
  const firstAckAfterMark = new Promise<number>((resolve) => (resolveFirst = resolve));
  const loop = (async () => {
    while (!stopped) {
      const startMs = nowMs();
      try {
        await client.produce(VALUE);
        acked++;
        if (markMs > 0 && startMs >= markMs) resolveFirst(nowMs() - markMs);
      } catch {
        if (markMs > 0) failedAfterMark++;
        if (nowMs() - startMs < 10) await sleep(5);
      }
    }
  })();
  return {
    get acked() {
      return acked;
    },
    get failedAfterMark() {
      return failedAfterMark;
    },
    mark: () => (markMs = nowMs()),
    firstAckAfterMark,
    stop: async () => {
      stopped = true;
      await loop;
      client.close();
    },
  };
}

async function clientFailover(triple: Cluster, trials: number): Promise<{ ms: number; killed: string; failedAttempts: number }[]> {
  const results: { ms: number; killed: string; failedAttempts: number }[] = [];
  for (let trial = 0; trial < trials; trial++) {
    const servers = await waitForInSync(triple.agents, triple.security, 3);
    const leader = triple.agentAt(leaderOf(servers).rpcAddr);
    const producer = continuousProducer(triple.clusterAddr(), triple.security, undefined);
    try {
      while (producer.acked < 50) await sleep(5);
      producer.mark();
      leader.stopping = true;
      leader.child.kill('SIGKILL');
      let timer: NodeJS.Timeout | undefined;
      const elapsedMs = await Promise.race([producer.firstAckAfterMark, new Promise<number>((resolve) => (timer = setTimeout(() => resolve(NaN), 30_000)))]);
      clearTimeout(timer);
      await leader.exited;
      results.push({ ms: elapsedMs, killed: leader.name, failedAttempts: producer.failedAfterMark });
      console.error(`client failover trial ${trial + 1}/${trials}: killed ${leader.name}, first ack through annal:// after ${elapsedMs.toFixed(0)} ms (${producer.failedAfterMark} calls failed)`);
    } finally {
      await producer.stop();
    }
    await triple.restart(leader);
  }
  await waitForInSync(triple.agents, triple.security, 3);
  return results;
}

async function failover(triple: Cluster, trials: number): Promise<FailoverTrial[]> {
  const results: FailoverTrial[] = [];
  for (let trial = 0; trial < trials; trial++) {
    const servers = await waitForInSync(triple.agents, triple.security, 3);
    const leader = triple.agentAt(leaderOf(servers).rpcAddr);
    const survivor = triple.agents.find((a) => a !== leader)!;
    const producer = continuousProducer(survivor.rpcAddr, triple.security);
    try {
      while (producer.acked < 50) await sleep(5);
      producer.mark();
      const killedAtEpochMs = Date.now();
      leader.stopping = true;
      leader.child.kill('SIGKILL');
      let timer: NodeJS.Timeout | undefined;
      const elapsedMs = await Promise.race([producer.firstAckAfterMark, new Promise<number>((resolve) => (timer = setTimeout(() => resolve(NaN), 30_000)))]);
      clearTimeout(timer);
      await leader.exited;
      const after = await waitForServers(survivor.rpcAddr, triple.security, (list) => list.some((s) => s.isLeader && s.rpcAddr !== leader.rpcAddr), 30_000);
      const elected = triple.agents
        .filter((a) => a !== leader)
        .flatMap((a) => a.roles)
        .filter((r) => r.role === 'leader' && r.timeMs >= killedAtEpochMs)
        .map((r) => r.timeMs - killedAtEpochMs);
      const electedMs = elected.length > 0 ? Math.min(...elected) : NaN;
      results.push({ ms: elapsedMs, electedMs, killed: leader.name, newLeader: leaderOf(after).id, failedAttempts: producer.failedAfterMark });
      console.error(`failover trial ${trial + 1}/${trials}: killed ${leader.name}, ${leaderOf(after).id} leader after ${electedMs} ms, first ack after ${elapsedMs.toFixed(0)} ms (${producer.failedAfterMark} failed attempts)`);
    } finally {
      await producer.stop();
    }
    await triple.restart(leader);
  }
  await waitForInSync(triple.agents, triple.security, 3);
  return results;
}

async function fill(triple: Cluster, records: number): Promise<{ perSecond: number; lastOffset: number }> {
  const leader = await triple.leaderAddr();
  const probe = new AnnalClient({ address: leader, security: triple.security });
  // The log's current end: a batch appended now lands there.
  const { firstOffset } = await probe.produceBatch([VALUE]);
  probe.close();
  const batches = Math.max(1, Math.ceil((records - firstOffset - 1) / BATCH_RECORDS));
  const run = await batchRun(leader, triple.security, batches, 8, false);
  return { perSecond: run.perSecond, lastOffset: run.lastOffset };
}

/**
 * Polls `consume(offset)` on `address` every 20 ms until it answers; false once `timeoutMs` passed
 * or `givenUp()` holds first. `last` says what the node answered last.
 */
async function waitForOffset(address: string, security: ClientSecurity, offset: number, timeoutMs: number, givenUp: () => boolean): Promise<{ ok: boolean; last: string }> {
  const client = new AnnalClient({ address, security, callTimeoutMs: 2000 });
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    while (Date.now() < deadline && !givenUp()) {
      try {
        await client.consume(offset);
        return { ok: true, last: 'ok' };
      } catch (error) {
        last = String(error);
      }
      await sleep(20);
    }
    return { ok: false, last };
  } finally {
    client.close();
  }
}

async function catchUp(triple: Cluster, records: number): Promise<Row[]> {
  const fillStartEpochMs = Date.now();
  let filled: { perSecond: number; lastOffset: number };
  try {
    filled = await fill(triple, records);
  } catch (error) {
    process.exitCode = 1;
    const elections = triple.agents.flatMap((a) => a.roles).filter((r) => r.role === 'candidate' && r.timeMs >= fillStartEpochMs).length;
    return [{ name: `fill: ProduceBatch 1 KiB x ${BATCH_RECORDS}, 8 in flight, 3-node`, value: 'FAILED', note: `${String(error).split('\n')[0]}; ${elections} election(s) during the fill` }];
  }
  const held = filled.lastOffset + 1;
  const fillElections = triple.agents.flatMap((a) => a.roles).filter((r) => r.role === 'candidate' && r.timeMs >= fillStartEpochMs).length;
  const fillRow: Row = { name: `fill: ProduceBatch 1 KiB x ${BATCH_RECORDS}, 8 in flight, 3-node`, value: `${formatRate(filled.perSecond)} rec/s`, note: `${((filled.perSecond * KIB) / 1e6).toFixed(1)} MB/s, sustained, to ${formatRate(held)} records; ${fillElections} election(s) meanwhile` };
  await waitForInSync(triple.agents, triple.security, 3, 120_000);
  const members = [...triple.agents];
  const startMs = nowMs();
  const startEpochMs = Date.now();
  const crashesBefore = crashes.length;
  const joiner = await triple.add(`${triple.prefix}new`);
  const servingMs = nowMs() - startMs;
  // A healthy catch-up runs at tens of MB/s; give up well before the bench's time budget.
  const timeoutMs = 30_000 + records / 10;
  const quorumLost = () => members.filter(alive).length < 2 || !alive(joiner);
  const outcome = await waitForOffset(joiner.rpcAddr, triple.security, filled.lastOffset, timeoutMs, quorumLost);
  const elapsedMs = nowMs() - startMs;
  const elections = triple.agents.flatMap((a) => a.roles).filter((r) => r.role === 'candidate' && r.timeMs >= startEpochMs).length;
  const crashed = crashes.slice(crashesBefore).map((c) => `${c.name} (${c.exit}) +${c.atEpochMs - startEpochMs} ms`);
  const trouble = `${elections} election(s) meanwhile${crashed.length > 0 ? `; crashed: ${crashed.join(', ')}` : ''}`;
  if (!outcome.ok) {
    const why = quorumLost() ? 'the cluster lost its quorum or the new node died' : `not done after ${(timeoutMs / 1000).toFixed(0)} s`;
    process.exitCode = 1;
    return [fillRow, { name: `a new node catches up on ${formatRate(held)} records`, value: 'FAILED', note: `${why}; ${trouble}; the new node last answered: ${outcome.last.split('\n')[0]}` }];
  }
  const perSecond = (held / elapsedMs) * 1000;
  return [
    fillRow,
    { name: `a new node catches up on ${formatRate(held)} records`, value: `${formatRate(perSecond)} rec/s`, ratio: ratio(perSecond, filled.perSecond), note: `${((perSecond * KIB) / 1e6).toFixed(1)} MB/s; ${(elapsedMs / 1000).toFixed(1)} s from its start (serving after ${servingMs.toFixed(0)} ms) to the leader's last offset; ${trouble}; ratio against the fill rate` },
  ];
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const rounds = Math.max(1, Number(process.env.ANNAL_BENCH_ROUNDS ?? '2'));
  const parts = new Set((process.env.ANNAL_BENCH_CLUSTER_PARTS ?? 'stream,forwarded,batch,client,failover,clientfailover,catchup').split(','));
  const dir = tempDir('annal-bench-cluster-');
  const removeDir = (): void => {
    killEverything();
    dir.remove();
  };
  process.once('exit', removeDir);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const clusters: Cluster[] = [];
  const load = (): string => loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(`\n${cpus().length} cores; load average at start ${load()} (1/5/15 min)`);
  try {
    const { files } = await runCertsCommand({ configDir: CONFIG_DIR, outDir: join(dir.path, 'certs') });
    const security: ClientSecurity = { tls: { caPem: readFileSync(files.caCert), certPem: readFileSync(files.rootClientCert), keyPem: readFileSync(files.rootClientKey) } };
    const triple = new Cluster('t', dir.path, files, security);
    clusters.push(triple);
    await triple.start(3);
    if (parts.has('stream') || parts.has('forwarded') || parts.has('batch') || parts.has('client')) {
      const single = new Cluster('s', dir.path, files, security);
      clusters.push(single);
      await single.start(1);
      await throughput(single, triple, rounds, parts);
      await single.stop();
    }
    if (parts.has('failover')) {
      const trials = Math.max(1, Number(process.env.ANNAL_BENCH_FAILOVER_TRIALS ?? '5'));
      const title = `Failover: kill -9 of the 3-node leader until a produce on a survivor is acknowledged (${trials} trials; ${FAILOVER_ATTEMPT_MS} ms per attempt)`;
      try {
        const results = await failover(triple, trials);
        // A trial with no acknowledgement within 30 s counts as 30 s (and says so).
        const times = results.map((r) => (Number.isFinite(r.ms) ? r.ms : 30_000));
        const timedOut = results.filter((r) => !Number.isFinite(r.ms)).length;
        printTable(title, [
          { name: 'median', value: ms(median(times)), note: `target <= 1 s; a survivor logged itself leader after ${ms(median(results.map((r) => r.electedMs)))} (median)${timedOut > 0 ? `; ${timedOut} trial(s) saw no ack within 30 s` : ''}` },
          { name: 'worst', value: ms(Math.max(...times)), note: `trials (ms to first ack / to leader elected): ${results.map((r) => `${r.ms.toFixed(0)}/${r.electedMs.toFixed(0)} (${r.killed} -> ${r.newLeader}, ${r.failedAttempts} failed attempts)`).join(', ')}` },
        ]);
        if (timedOut > 0) process.exitCode = 1;
      } catch (error) {
        process.exitCode = 1;
        printTable(title, [{ name: 'failover', value: 'FAILED', note: String(error).split('\n')[0] }]);
      }
    }
    if (parts.has('clientfailover')) {
      const trials = Math.max(1, Number(process.env.ANNAL_BENCH_FAILOVER_TRIALS ?? '5'));
      const title = `Failover through the annal:// client: kill -9 of the 3-node leader until a produce sent after it is acknowledged (${trials} trials; client retries, no per-call deadline)`;
      try {
        const results = await clientFailover(triple, trials);
        const times = results.map((r) => r.ms);
        printTable(title, [
          { name: 'median', value: ms(median(times)), note: 'target <= 1.5 s' },
          { name: 'worst', value: ms(Math.max(...times)), note: `trials: ${results.map((r) => `${r.ms.toFixed(0)} ms (${r.killed}, ${r.failedAttempts} calls failed)`).join(', ')}` },
        ]);
      } catch (error) {
        process.exitCode = 1;
        printTable(title, [{ name: 'client failover', value: 'FAILED', note: String(error).split('\n')[0] }]);
      }
    }
    if (parts.has('catchup')) {
      const records = scaled(1_000_000);
      printTable(`Catch-up: a new node joins a 3-node log of ${formatRate(records)} x 1 KiB records (fsync=always, mTLS)`, await catchUp(triple, records));
    }
    if (crashes.length > 0) {
      process.exitCode = 1;
      printTable('Agents that exited unexpectedly (crashes)', crashes.map((c) => ({ name: c.name, value: c.exit, note: c.output.filter((line) => /Error|at /.test(line)).slice(0, 4).join(' | ') })));
    }
    console.log(`\nload average at the end ${load()}`);
  } finally {
    await Promise.all(clusters.map((c) => c.stop()));
    process.off('exit', removeDir);
    removeDir();
  }
}

await main();
