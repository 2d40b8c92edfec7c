/**
 * The cluster under test: `annal agent` processes with mTLS, each with its own data dir, kept on
 * the ports they first took so that a restart comes back at the same addresses. Every node runs
 * with the sync-report failpoint, so that a power loss can be simulated on any of them (its
 * unsynced bytes dropped after kill -9); extra failpoints can be set per start.
 */
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServerInfo } from '../../src/client/index.js';
import { decodeStateFile } from '../../src/replication/index.js';
import { NODE_RPC_PORT, type NetnsNetwork } from './network.js';
import { client, startNode, votersWithLeader, waitForServers, type ClusterCerts, type ClusterNode } from '../cluster-harness.js';

/** A commit log segment's files (`<base offset>.store`, `.index`). */
const SEGMENT_FILE = /^\d+\.(store|index)$/;

export type NodeState = 'up' | 'down' | 'paused';

export interface NodeSlot {
  readonly name: string;
  /** 0-based position: the node's address in the test network. */
  readonly index: number;
  /** Changes when the node's data is wiped (it comes back as a new member). */
  dataDir: string;
  rpcPort: number;
  gossipPort: number;
  node: ClusterNode | undefined;
  state: NodeState;
  /** Data dirs wiped so far (a new one per replacement). */
  generation: number;
  /** Set while the node is starting. */
  booting?: Promise<void> | undefined;
}

export interface ClusterOptions {
  readonly dir: string;
  readonly certs: ClusterCerts;
  readonly size: number;
  /** Extra `annal agent` flags for every node (e.g. small segments). */
  readonly agentArgs?: readonly string[];
  /** Failpoints every node runs with, besides sync-report (e.g. unsafe-skip-fsync). */
  readonly failpoints?: string;
  /** Nodes in network namespaces whose links can be cut; default: all on 127.0.0.1. */
  readonly network?: NetnsNetwork;
  readonly log?: (line: string) => void;
}

export class NemesisCluster {
  readonly slots: NodeSlot[] = [];

  constructor(private readonly options: ClusterOptions) {}

  get certs(): ClusterCerts {
    return this.options.certs;
  }

  get network(): NetnsNetwork | undefined {
    return this.options.network;
  }

  async start(): Promise<void> {
    for (let i = 1; i <= this.options.size; i++) {
      // In the test network every node has its own address, and the RPC port is fixed so that the
      // relays' DNAT rules exist before the first connection.
      const rpcPort = this.network !== undefined ? NODE_RPC_PORT : 0;
      this.slots.push({ name: `n${i}`, index: i - 1, dataDir: join(this.options.dir, `n${i}`), rpcPort, gossipPort: 0, node: undefined, state: 'down', generation: 0 });
    }
    await this.boot(this.slots[0]!, { bootstrap: true });
    for (const slot of this.slots.slice(1)) await this.boot(slot);
    await this.waitHealthy(60_000);
  }

  up(): NodeSlot[] {
    return this.slots.filter((s) => s.state === 'up');
  }

  /** The leader's slot as some up node reports it, or undefined. */
  async leader(): Promise<NodeSlot | undefined> {
    for (const slot of this.up()) {
      const c = client(slot.node!, this.certs.root);
      try {
        const servers = await withTimeout(c.getServers(), 2000);
        const leader = servers.find((s) => s.isLeader);
        if (leader !== undefined) return this.slots.find((s) => s.node?.rpcAddr === leader.rpcAddr && s.state !== 'down');
      } catch {
        // ask the next one
      } finally {
        c.close();
      }
    }
    return undefined;
  }

  /** Starts (or restarts) a down node, with `failpoints` added for this incarnation. */
  boot(slot: NodeSlot, options: { bootstrap?: boolean; failpoints?: string } = {}): Promise<void> {
    // Composed faults may both restart one node: the second waits for the first's start.
    if (slot.booting !== undefined) return slot.booting;
    if (slot.state !== 'down') return Promise.resolve();
    slot.booting = this.launch(slot, options).finally(() => {
      slot.booting = undefined;
    });
    return slot.booting;
  }

  private async launch(slot: NodeSlot, options: { bootstrap?: boolean; failpoints?: string }): Promise<void> {
    const joinAddrs = this.slots.filter((s) => s !== slot && s.state === 'up').map((s) => s.node!.gossipAddr);
    const points = [`sync-report=${this.syncReportPath(slot)}`, this.options.failpoints, options.failpoints].filter((p) => p !== undefined && p !== '');
    const node = await startNode({
      name: slot.name,
      dataDir: slot.dataDir,
      certs: this.certs,
      join: joinAddrs,
      bootstrap: options.bootstrap === true,
      rpcPort: slot.rpcPort,
      gossipPort: slot.gossipPort,
      env: { ...process.env, ANNAL_FAILPOINTS: points.join(',') },
      ...(this.options.agentArgs !== undefined ? { extra: [...this.options.agentArgs] } : {}),
      ...(this.network !== undefined ? { host: this.network.host(slot.index), wrap: this.network.wrap(slot.index) } : {}),
    });
    // Each incarnation's log lines, kept with the run's data (a failed run keeps them).
    const logPath = join(this.options.dir, `${slot.name}.log`);
    appendFileSync(logPath, `--- start ${slot.dataDir} ${options.failpoints ?? ''}\n`);
    void node.process.exited.then(({ code, signal }) => appendFileSync(logPath, `${node.process.stderrLines.join('\n')}\n--- exit code ${code} signal ${signal}\n`));
    slot.node = node;
    slot.rpcPort = portOf(node.rpcAddr);
    slot.gossipPort = portOf(node.gossipAddr);
    slot.state = 'up';
    this.options.log?.(`${slot.name} up (${node.rpcAddr}${options.failpoints ? `, failpoints ${options.failpoints}` : ''})`);
  }

  async kill(slot: NodeSlot): Promise<void> {
    if (slot.booting !== undefined) await slot.booting.catch(() => {});
    if (slot.state === 'down' || slot.node === undefined) return;
    slot.node.process.child.kill('SIGKILL');
    await slot.node.process.exited;
    slot.state = 'down';
  }

  /** SIGTERM: a graceful stop (a leader hands over, the node leaves gossip). Kills after timeoutMs. */
  async stop(slot: NodeSlot, timeoutMs = 20_000): Promise<void> {
    if (slot.state === 'down' || slot.node === undefined) return;
    if (slot.state === 'paused') slot.node.process.child.kill('SIGCONT');
    slot.node.process.child.kill('SIGTERM');
    const timer = setTimeout(() => slot.node?.process.child.kill('SIGKILL'), timeoutMs);
    await slot.node.process.exited;
    clearTimeout(timer);
    slot.state = 'down';
  }

  pause(slot: NodeSlot): void {
    if (slot.state !== 'up') return;
    slot.node!.process.child.kill('SIGSTOP');
    slot.state = 'paused';
  }

  resume(slot: NodeSlot): void {
    if (slot.state !== 'paused') return;
    slot.node!.process.child.kill('SIGCONT');
    slot.state = 'up';
  }

  /** A fresh, empty data dir for a down node: it will join as a new member. */
  wipe(slot: NodeSlot): void {
    slot.generation += 1;
    slot.dataDir = join(this.options.dir, `${slot.name}.${slot.generation}`);
  }

  syncReportPath(slot: NodeSlot): string {
    return join(this.options.dir, `${slot.name}.durable.json`);
  }

  /**
   * Power loss on a down node: in every directory it reported, the segment files created after
   * its last fsync are removed (their entries were never durable), and every file it reported is cut to
   * the length it had when its last successful fsync began, dropping what was written but not
   * synced. Not modelled: a rename over an existing name reverting, directories never fsynced
   * through the reported I/O (left whole). Returns what was dropped.
   */
  dropUnsynced(slot: NodeSlot): { bytes: number; files: string[] } {
    const report = this.syncReportPath(slot);
    if (!existsSync(report)) return { bytes: 0, files: [] };
    const durable = JSON.parse(readFileSync(report, 'utf8')) as Record<string, number | string[]>;
    const files: string[] = [];
    for (const [dir, names] of Object.entries(durable)) {
      if (typeof names === 'number' || !existsSync(dir)) continue;
      const kept = new Set(names);
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        // Segment files only: the other files of a reported directory (the Raft state, written
        // by rename with fsyncs the report does not see) may be durable through an unreported fsync.
        if (kept.has(name) || !SEGMENT_FILE.test(name) || !statSync(path).isFile()) continue;
        rmSync(path);
        delete durable[path];
        files.push(path);
      }
    }
    let dropped = 0;
    for (const [path, lengthBytes] of Object.entries(durable)) {
      if (typeof lengthBytes !== 'number' || !existsSync(path)) continue;
      const size = statSync(path).size;
      if (size > lengthBytes) {
        truncateSync(path, lengthBytes);
        dropped += size - lengthBytes;
      } else if (size < lengthBytes) durable[path] = size;
    }
    writeFileSync(report, JSON.stringify(durable));
    return { bytes: dropped, files };
  }

  /** Brings every node up (resumes paused ones, restarts down ones) and waits for one leader. */
  async heal(timeoutMs: number): Promise<void> {
    this.network?.heal();
    for (const slot of this.slots) if (slot.state === 'paused') this.resume(slot);
    for (const slot of this.slots) if (slot.state === 'down') await this.boot(slot);
    await this.waitHealthy(timeoutMs);
  }

  /**
   * Every node's current incarnation a voter and nothing else in the configuration (a replaced
   * incarnation has been removed), one leader. GetServers names members by node name, so the
   * incarnations are checked in the configuration each node logs when it changes (raft ids).
   */
  async waitHealthy(timeoutMs: number): Promise<ServerInfo[]> {
    const deadlineMs = Date.now() + timeoutMs;
    let servers: ServerInfo[] = [];
    for (const slot of this.up()) servers = await waitForServers(slot.node!, this.certs.root, votersWithLeader(this.slots.length), Math.max(1, deadlineMs - Date.now()));
    for (;;) {
      const expected = JSON.stringify(this.slots.map((slot) => raftIdOf(slot.dataDir)).sort());
      const views = this.up().map((slot) => loggedConfiguration(slot.node!.process.stderrLines));
      if (views.every((view) => view !== undefined && view.learners.length === 0 && JSON.stringify([...view.voters].sort()) === expected)) return servers;
      if (Date.now() > deadlineMs) throw new Error(`the configuration never became ${expected}: ${JSON.stringify(views)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async killAll(): Promise<void> {
    for (const slot of this.slots) {
      if (slot.node === undefined) continue;
      slot.node.process.child.kill('SIGKILL');
      await slot.node.process.exited;
      slot.state = 'down';
    }
  }

  removeData(): void {
    rmSync(this.options.dir, { recursive: true, force: true });
  }
}

/** The last configuration a node logged ('raft configuration', with raft ids). */
function loggedConfiguration(lines: readonly string[]): { voters: string[]; learners: string[] } | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    if (!line.includes('"raft configuration"')) continue;
    const entry = JSON.parse(line) as { voters: string[]; learners: string[] };
    return { voters: entry.voters, learners: entry.learners };
  }
  return undefined;
}

/** The Raft id a node's data dir was made with (`<name>@<incarnation>`). */
function raftIdOf(dataDir: string): string {
  const path = join(dataDir, 'raft', 'member.json');
  return (decodeStateFile(readFileSync(path), path) as { raftId: string }).raftId;
}

export function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
