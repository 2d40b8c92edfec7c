/**
 * One nemesis run: a cluster, the workload, the seeded schedule of faults, then healing,
 * convergence, the final logs of every node, the checker and the report.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHistory, formatSchedule, makeSchedule, renderReport, type CheckResult, type FinalLog } from '../../src/nemesis/index.js';
import { AnnalClient } from '../../src/client/index.js';
import { INDEX_ENTRY_BYTES } from '../../src/storage/index.js';
import { Prng } from '../../src/util/index.js';
import { killAll } from '../cli-harness.js';
import { client, makeCerts, waitForRecords } from '../cluster-harness.js';
import { NemesisCluster, withTimeout, type NodeSlot } from './cluster.js';
import { FAULTS, type Fault } from './faults.js';
import { NetnsNetwork } from './network.js';
import { HistoryRecorder, Workload } from './workload.js';

export interface RunOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly seconds: number;
  /** Fault names; default: every CI-safe fault (composed ones unless `composed` is false). */
  readonly faults?: readonly string[];
  readonly composed?: boolean;
  /**
   * Replace a node that refuses to start on data a fault damaged with a new member, instead of
   * failing the run (default: fail).
   */
  readonly replaceRefused?: boolean;
  /** Records per segment on every node (through `--max-index-bytes`): small segments roll often, so power loss meets new ones. */
  readonly segmentRecords?: number;
  /** Failpoints every node runs with (e.g. the broken unsafe-skip-fsync). */
  readonly failpoints?: string;
  /**
   * netns: nodes in network namespaces (partition faults available; needs root); loopback: all
   * on 127.0.0.1 (no partitions); auto (default): netns where possible.
   */
  readonly network?: 'netns' | 'loopback' | 'auto';
  /** Where the history, report and node data go (default: a new temp dir). */
  readonly outDir?: string;
  /** Keep the nodes' data dirs after a passing run. */
  readonly keepData?: boolean;
  readonly holdMs?: { min: number; max: number };
  readonly quietMs?: { min: number; max: number };
  /** Generous on a loaded machine: a cluster that does not converge by then is a liveness failure. */
  readonly convergeTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface RunResult {
  readonly check: CheckResult;
  /** Set when the cluster did not heal or converge (no final logs, so nothing was checked). */
  readonly stuck: string | undefined;
  readonly faultsRun: number;
  readonly outDir: string;
  readonly historyPath: string;
  readonly reportPath: string;
  readonly verdict: string;
  readonly replay: string;
  /** Namespaces and links of the test network still present after the run: none. */
  readonly networkLeftovers?: readonly string[];
}

export function faultsByName(names: readonly string[] | undefined, network: boolean, relays: boolean, composed = true): Fault[] {
  const possible = (f: Fault): boolean => (network || f.network !== true) && (relays || f.relays !== true);
  if (names === undefined) return FAULTS.filter((f) => f.ci && possible(f) && (composed || f.composed !== true));
  return names.map((name) => {
    const fault = FAULTS.find((f) => f.name === name);
    if (fault === undefined) throw new Error(`unknown fault "${name}" (known: ${FAULTS.map((f) => f.name).join(', ')})`);
    if (fault.network === true && !network) throw new Error(`fault "${name}" needs the namespaced network (root, iproute2)`);
    if (fault.relays === true && !relays) throw new Error(`fault "${name}" needs the link relays (nftables)`);
    return fault;
  });
}

export function replayCommand(options: RunOptions): string {
  const parts = ['npm run nemesis --', '--seed', String(options.seed), '--nodes', String(options.nodes), '--seconds', String(options.seconds)];
  if (options.faults !== undefined) parts.push('--faults', options.faults.join(','));
  else if (options.composed === false) parts.push('--no-composed');
  if (options.failpoints !== undefined) parts.push('--failpoints', options.failpoints);
  if (options.replaceRefused === true) parts.push('--replace-refused');
  if (options.segmentRecords !== undefined) parts.push('--segment-records', String(options.segmentRecords));
  if (options.network !== undefined && options.network !== 'auto') parts.push('--network', options.network);
  return parts.join(' ');
}

export async function runNemesis(options: RunOptions): Promise<RunResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  let network: NetnsNetwork | undefined;
  if (options.network !== 'loopback') {
    const made = NetnsNetwork.create(options.nodes);
    if (made instanceof NetnsNetwork) network = made;
    else if (options.network === 'netns') throw new Error(made.skip);
    else log(`no partitions in this run: ${made.skip}`);
  }
  try {
    if (network !== undefined) {
      const noRelays = await network.startRelays();
      if (noRelays !== undefined) log(`no link faults in this run: ${noRelays}`);
    }
    const result = await runWith(options, log, network);
    await network?.close();
    return { ...result, networkLeftovers: network?.leftovers() ?? [] };
  } finally {
    await network?.close();
  }
}

async function runWith(options: RunOptions, log: (line: string) => void, network: NetnsNetwork | undefined): Promise<RunResult> {
  const faults = faultsByName(options.faults, network !== undefined, network?.relays !== undefined, options.composed ?? true);
  const outDir = options.outDir ?? mkdtempSync(join(tmpdir(), 'annal-nemesis-'));
  mkdirSync(outDir, { recursive: true });
  const dataDir = mkdtempSync(join(outDir, 'data-'));
  const historyPath = join(outDir, 'history.jsonl');
  const reportPath = join(outDir, 'report.html');
  const replay = replayCommand(options);
  const schedule = makeSchedule({
    seed: options.seed,
    faults: faults.map((f) => f.name),
    durationMs: options.seconds * 1000,
    ...(options.holdMs !== undefined ? { holdMs: options.holdMs } : {}),
    ...(options.quietMs !== undefined ? { quietMs: options.quietMs } : {}),
  });
  log(`nemesis seed ${options.seed}, ${options.nodes} nodes, ${options.seconds} s; replay: ${replay}`);
  log(formatSchedule(schedule));

  const hosts = network === undefined ? undefined : ['localhost', '127.0.0.1', ...Array.from({ length: options.nodes }, (_, i) => network.host(i))];
  const certs = await makeCerts(join(dataDir, 'certs'), hosts);
  const cluster = new NemesisCluster({
    dir: dataDir,
    certs,
    size: options.nodes,
    ...(options.failpoints !== undefined ? { failpoints: options.failpoints } : {}),
    ...(options.segmentRecords !== undefined ? { agentArgs: ['--max-index-bytes', String(options.segmentRecords * INDEX_ENTRY_BYTES)] } : {}),
    ...(network !== undefined ? { network } : {}),
    log,
  });
  const history = new HistoryRecorder(historyPath);
  const convergeTimeoutMs = options.convergeTimeoutMs ?? 120_000;
  let stuck: string | undefined;
  let faultsRun = 0;
  let finalLogs: FinalLog[] = [];
  try {
    await cluster.start();
    const workload = new Workload(cluster, history, { producers: 3, readers: 1, linearizableReaders: 2, tailers: 2, callTimeoutMs: 5000, retryDeadlineMs: 10_000, seed: options.seed ^ 0x5bd1e995 });
    workload.start();
    const startMs = performance.now();
    try {
      for (const step of schedule) {
        const waitMs = step.atMs - (performance.now() - startMs);
        if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
        const fault = faults.find((f) => f.name === step.fault)!;
        await fault.run({ cluster, history, prng: new Prng(step.seed), holdMs: step.holdMs, log, replaceRefused: options.replaceRefused === true });
        faultsRun++;
        // A fault must heal into a working cluster before the next one starts.
        await cluster.heal(convergeTimeoutMs);
        await new Promise((resolve) => setTimeout(resolve, step.quietMs));
      }
    } catch (error) {
      stuck = `the cluster did not recover: ${(error as Error).message.slice(0, 2000)}`;
      log(stuck);
    } finally {
      await workload.stop();
    }
    if (stuck === undefined) {
      try {
        await cluster.heal(convergeTimeoutMs);
        finalLogs = await readFinalLogs(cluster, convergeTimeoutMs);
      } catch (error) {
        stuck = `the cluster did not converge: ${(error as Error).message.slice(0, 2000)}`;
        log(stuck);
      }
    }
    if (stuck !== undefined) finalLogs = await readAvailableLogs(cluster);
  } finally {
    await cluster.killAll();
    killAll();
    await history.close();
  }
  const check = checkHistory(history.events, finalLogs);
  const valid = check.valid && stuck === undefined;
  const produce = check.counts.produce;
  const reads = check.counts.read.ok + check.counts['lin-read'].ok;
  const recoveries = check.faults.map((f) => f.recoveryMs).filter((ms): ms is number => ms !== undefined).sort((a, b) => a - b);
  const recovery = recoveries.length === 0 ? 'no recoveries' : `recovery median ${recoveries[Math.floor(recoveries.length / 2)]!.toFixed(0)} ms, max ${recoveries[recoveries.length - 1]!.toFixed(0)} ms`;
  const verdict =
    `${valid ? 'PASS' : 'FAIL'}: seed ${options.seed}, ${faultsRun} faults, ` +
    `${produce.ok} produces acknowledged (${produce.fail} failed, ${produce.unknown} unknown; ${check.exactlyOnce} idempotent, checked exactly once), ${reads} reads, ${check.counts.tail.ok} records tailed, ` +
    `log ${check.logLength} records on ${finalLogs.length} nodes, linearizability ${check.linearizability}, ` +
    `availability ${(check.availability * 100).toFixed(1)}%, ${recovery}, ${check.violations.length === 0 ? 'no violations' : `violations ${JSON.stringify(check.violationCounts)}`}` +
    (stuck !== undefined ? `; ${stuck.split('\n')[0]}` : '');
  writeFileSync(reportPath, renderReport({ title: `annal nemesis, seed ${options.seed}`, verdict, replay, events: history.events, check }));
  writeFileSync(join(outDir, 'result.json'), JSON.stringify({ verdict, replay, stuck, faultsRun, check }, null, 2));
  if (valid && options.keepData !== true) cluster.removeData();
  return { check, stuck, faultsRun, outDir, historyPath, reportPath, verdict, replay };
}

/**
 * Waits until every node holds a marker written after the workload stopped (so each has applied
 * everything before it), then reads each node's whole log.
 */
async function readFinalLogs(cluster: NemesisCluster, timeoutMs: number): Promise<FinalLog[]> {
  // A cluster client: on a loaded machine the leadership may still move (an election timeout is
  // 300-600 ms), and its idempotent producer resends the marker to the next leader.
  const writer = new AnnalClient({
    address: `annal://${cluster.slots.map((slot) => slot.node!.rpcAddr).join(',')}`,
    security: cluster.certs.root,
    retry: { retryDeadlineMs: timeoutMs },
  });
  let marker: number;
  try {
    marker = await withTimeout(writer.produce(Buffer.from('final-marker')), timeoutMs);
  } finally {
    writer.close();
  }
  const logs: FinalLog[] = [];
  for (const slot of cluster.slots) {
    await waitForRecords(slot.node!, cluster.certs.root, marker + 1, timeoutMs);
    logs.push({ node: slot.name, records: (await readLog(cluster, slot)).slice(0, marker) });
  }
  return logs;
}

/** A stuck cluster's logs, from whichever nodes still answer: acknowledged records it lost still show. */
async function readAvailableLogs(cluster: NemesisCluster): Promise<FinalLog[]> {
  await cluster.heal(1).catch(() => {});
  const logs: FinalLog[] = [];
  for (const slot of cluster.up()) {
    try {
      logs.push({ node: slot.name, records: await withTimeout(readLog(cluster, slot), 10_000) });
    } catch {
      // not answering: nothing to check on it
    }
  }
  return logs;
}

async function readLog(cluster: NemesisCluster, slot: NodeSlot): Promise<{ value: string; term: number }[]> {
  const c = client(slot.node!, cluster.certs.root);
  try {
    const out: { value: string; term: number }[] = [];
    for await (const batch of c.consumeBatches(0, { follow: false, maxBatch: 4096 })) {
      for (const record of batch) {
        if (record.offset !== out.length) throw new Error(`${slot.name} skipped from offset ${out.length - 1} to ${record.offset}`);
        out.push({ value: record.value.toString('latin1'), term: record.term });
      }
    }
    return out;
  } finally {
    c.close();
  }
}
