/**
 * One randomized simulation from a seed: a chaos phase (message loss, duplication, delay and
 * reordering, symmetric and asymmetric partitions, crashes and restarts, slow disks, clock skew,
 * client traffic), then a heal phase that checks liveness: with the network healed and every node
 * up, a leader must emerge and a proposal must commit within a bounded time, and every node must
 * catch up. Safety is checked after every step by the cluster's SafetyChecker; client outcomes
 * are checked at the end (each acknowledged append committed exactly once at its index, each
 * failed one never committed).
 */
import type { ConfigChange, Faults, NodeId } from '../raft/index.js';
import { Prng } from '../util/index.js';
import { SafetyViolation } from './checker.js';
import { SimCluster, type SimNode } from './cluster.js';
import { Workload } from './workload.js';

export interface RunOptions {
  readonly seed: number;
  readonly nodeCount: number;
  /** Length of the chaos phase in nominal ticks (10 virtual ms each). */
  readonly steps: number;
  readonly faults?: Faults;
  /** Name of the broken variant, only for the reproduction command. */
  readonly faultName?: string;
  readonly trace?: (line: string) => void;
  /** Check the client history for linearizability (default true). */
  readonly checkLinearizability?: boolean;
}

export interface RunResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly failure: string | null;
  readonly reproduce: string;
  readonly traceHash: number;
  readonly eventCount: number;
  readonly committedCount: number;
  readonly virtualMs: number;
  /** Client operations recorded, and linearizability checks that ran out of search budget. */
  readonly operationCount: number;
  readonly linearizabilityUnknown: number;
  /** Whether the log-model and the register-model checks ran out of search budget. */
  readonly logUnknown: boolean;
  readonly registerUnknown: boolean;
  /** Virtual time from healing to the first committed probe (0 if the run failed before). */
  readonly healToCommitMs: number;
}

const TICK_MS = 10;
const ELECTION_TICKS = 10;
/** After healing, a proposal must commit within this long (many election timeouts). */
const LIVENESS_BOUND_MS = 60 * ELECTION_TICKS * TICK_MS;
/**
 * Raft without PreVote only promises progress eventually: nodes with stale logs keep starting
 * elections they cannot win, and each raises the term the others must catch up with.
 */
const PLAIN_LIVENESS_BOUND_MS = 5 * LIVENESS_BOUND_MS;

export function reproduceCommand(options: RunOptions): string {
  const fault = options.faultName === undefined ? '' : ` --fault ${options.faultName}`;
  return `npm run sim -- --seed ${options.seed} --nodes ${options.nodeCount} --steps ${options.steps}${fault}`;
}

export function runSeed(options: RunOptions): RunResult {
  const scenario = new Prng(options.seed ^ 0x5eed5eed);
  const leaseOn = scenario.chance(0.85);
  const ids: NodeId[] = Array.from({ length: options.nodeCount }, (_, i) => `n${i + 1}`);
  const oneWayDelayMsMin = scenario.int(1, 5);
  const cluster = new SimCluster({
    seed: options.seed,
    nodeIds: ids,
    network: {
      oneWayDelayMsMin,
      oneWayDelayMsMax: oneWayDelayMsMin + scenario.int(0, 30),
      packetLossProbability: scenario.pick([0, 0.01, 0.05, 0.15]),
      packetDuplicateProbability: scenario.pick([0, 0.02, 0.1]),
      // A few messages held for 2.5-8 shortest election timeouts (100 ms): old-term votes,
      // responses and appends then arrive after elections, removals and new ReadIndex rounds.
      lateProbability: scenario.pick([0, 0.02, 0.03, 0.05]),
      lateDelayMsMin: LATE_DELAY_MS_MIN,
      lateDelayMsMax: LATE_DELAY_MS_MAX,
    },
    tickMsMin: 8,
    tickMsMax: 12,
    raft: {
      electionTicks: ELECTION_TICKS,
      heartbeatTicks: 2,
      // Mostly the production defaults, but the paths without them must stay safe too.
      preVote: scenario.chance(0.75),
      checkQuorum: scenario.chance(0.75),
      // Plain Raft in some seeds; those never remove servers (see the README).
      leaderLease: leaseOn,
      maxMessageBytes: scenario.pick([64, 256, 4096]),
      inflightCountMax: scenario.int(1, 8),
      snapshotChunkBytes: scenario.pick([256, 1024, 8192]),
      uncommittedBytesMax: scenario.pick([256, 1024, 4096]),
    },
    faults: options.faults ?? {},
    snapshotEveryEntries: scenario.pick([0, 5, 20]),
    trailingEntryCount: scenario.int(0, 4),
    ...(options.trace === undefined ? {} : { trace: options.trace }),
  });
  const workload = new Workload(cluster);
  let failure: string | null = null;
  let logUnknown = false;
  let registerUnknown = false;
  let healToCommitMs = 0;
  try {
    runChaos(cluster, scenario, ids, options.steps * TICK_MS, workload, leaseOn);
    // Without PreVote nothing stops a node that cannot win from raising terms while no leader
    // exists (the lease only helps once one does): with two voters, one holding a stale
    // configuration, the two duelled through 37 terms (seed 423, 5 nodes, steps 500).
    const plain = !(cluster.options.raft?.preVote ?? true);
    healToCommitMs = runHeal(cluster, ids, workload, (plain ? PLAIN_LIVENESS_BOUND_MS : LIVENESS_BOUND_MS) + catchUpAllowanceMs(cluster));
    workload.checkOutcomes(committedValues(cluster));
    if (options.checkLinearizability ?? true) {
      ({ logUnknown, registerUnknown } = workload.checkLinearizability(LINEARIZABILITY_STEPS_MAX, committedValues(cluster)));
    }
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    failure = `${error.name}: ${error.message}`;
  }
  return {
    ok: failure === null,
    seed: options.seed,
    failure,
    reproduce: reproduceCommand(options),
    traceHash: cluster.traceHash,
    eventCount: cluster.eventCount,
    committedCount: cluster.checker.committedIndex(),
    virtualMs: cluster.nowMs,
    operationCount: workload.appends.length + workload.reads.length,
    linearizabilityUnknown: Number(logUnknown) + Number(registerUnknown),
    logUnknown,
    registerUnknown,
    healToCommitMs,
  };
}

const LINEARIZABILITY_STEPS_MAX = 200_000;
const CLIENT_COUNT_MAX = 8;
/** A client stops waiting for an answer after this long and issues its next operation. */
const CLIENT_ABANDON_MS = 300;
const LATE_DELAY_MS_MIN = 250;
const LATE_DELAY_MS_MAX = 800;

/**
 * Time allowed on top of the liveness bound for shipping the uncommitted backlog: a new leader
 * must replicate it to a quorum before anything commits. With 64-byte messages (two entries),
 * two appends in flight, loss, and a datagram network that reorders pipelined appends (each
 * out-of-order arrival is rejected and drops the follower back to probing), catch-up runs at
 * about 100-200 entries/s, so a backlog of ~760 entries took 9.5 s. That is flow control
 * working as configured, not a stall; the bound scales with the work.
 */
function catchUpAllowanceMs(cluster: SimCluster): number {
  let lastIndexMax = 0;
  for (const node of cluster.nodes.values()) lastIndexMax = Math.max(lastIndexMax, node.storage.lastIndex());
  return Math.max(0, lastIndexMax - cluster.checker.committedIndex()) * CATCH_UP_MS_PER_ENTRY;
}

const CATCH_UP_MS_PER_ENTRY = 10;

function runChaos(
  cluster: SimCluster,
  scenario: Prng,
  ids: readonly NodeId[],
  durationMs: number,
  workload: Workload,
  removalsAllowed: boolean,
): void {
  const nemesisMs = scenario.int(10, 400);
  const clientMs = scenario.int(5, 40);
  // A few clients, each with one operation in flight (Jepsen's processes): unbounded concurrency
  // makes the register model's search blow up, so its verdict would often be "unknown".
  const clientCount = scenario.int(1, CLIENT_COUNT_MAX);
  const endMs = cluster.nowMs + durationMs;
  const nemesis = (): void => {
    if (cluster.nowMs >= endMs) return;
    nemesisAction(cluster, scenario, ids, removalsAllowed);
    cluster.schedule(scenario.int(1, nemesisMs), 'nemesis', nemesis);
  };
  const client = (): void => {
    if (cluster.nowMs >= endMs) return;
    if (workload.inFlight(CLIENT_ABANDON_MS) < clientCount) clientAction(cluster, scenario, ids, workload);
    cluster.schedule(scenario.int(1, clientMs), 'client', client);
  };
  cluster.schedule(scenario.int(1, nemesisMs), 'nemesis', nemesis);
  cluster.schedule(1, 'client', client);
  cluster.runFor(durationMs);
}

function nemesisAction(cluster: SimCluster, scenario: Prng, ids: readonly NodeId[], removalsAllowed: boolean): void {
  const up = cluster.upNodes().map((node) => node.id);
  const down = ids.filter((id) => !cluster.node(id).up);
  const leader = cluster.leader();
  // Configuration changes are about a third of the actions: they are where single-server
  // change bugs, removed leaders and learners that never catch up live.
  const roll = scenario.int(0, 16);
  if (roll <= 1 && up.length > 0) {
    // Crash the leader half of the time: that is where the interesting bugs live.
    cluster.crash(leader !== null && scenario.chance(0.5) ? leader : scenario.pick(up));
  } else if (roll <= 3 && down.length > 0) {
    cluster.restart(scenario.pick(down));
  } else if (roll <= 5) {
    const shuffled = shuffle(scenario, ids);
    const cut = scenario.int(1, ids.length - 1);
    cluster.network.heal();
    cluster.network.partition(shuffled.slice(0, cut), shuffled.slice(cut), scenario.chance(0.3));
  } else if (roll <= 7) {
    cluster.network.heal();
  } else if (roll <= 9) {
    cluster.node(scenario.pick(ids)).diskLatencyMsMax = scenario.pick([0, 0, 5, 30]);
  } else if (roll === 10 && leader !== null) {
    cluster.transferLeadership(leader, scenario.pick(ids));
  } else if (leader !== null) {
    changeMembership(cluster, scenario, ids, leader, removalsAllowed);
  }
}

/**
 * One single-server change at the leader: add a missing node as voter or learner, promote a
 * learner, remove a learner or a voter, or remove the leader itself.
 */
function changeMembership(cluster: SimCluster, scenario: Prng, ids: readonly NodeId[], leader: NodeId, removalsAllowed: boolean): void {
  const config = cluster.node(leader).raft.status().config;
  const missing = ids.filter((id) => !config.voters.includes(id) && !config.learners.includes(id));
  const changes: ConfigChange[] = [];
  for (const id of missing) changes.push({ type: 'addVoter', nodeId: id }, { type: 'addLearner', nodeId: id });
  for (const id of config.learners) changes.push({ type: 'addVoter', nodeId: id }, { type: 'addVoter', nodeId: id }, { type: 'remove', nodeId: id });
  if (removalsAllowed && config.voters.length > 2) {
    for (const id of config.voters) changes.push({ type: 'remove', nodeId: id });
    // The leader removing itself: it keeps leading until the change commits, then steps down.
    for (let i = 0; i < config.voters.length; i++) changes.push({ type: 'remove', nodeId: leader });
  }
  if (changes.length > 0) cluster.changeConfig(leader, scenario.pick(changes));
}

function clientAction(cluster: SimCluster, scenario: Prng, ids: readonly NodeId[], workload: Workload): void {
  // Clients talk to some node that believes it leads, stale or not (like a client with an old
  // leader hint), and sometimes to any node.
  const leaders = cluster.leaders();
  const target = leaders.length > 0 && scenario.chance(0.8) ? scenario.pick(leaders) : scenario.pick(ids);
  if (scenario.chance(0.3)) {
    workload.read(target, scenario.int(0, workload.knownOffsetCount()));
  } else {
    workload.append(target, 'v');
  }
}

/** Heals everything and checks liveness; returns the virtual ms until a proposal committed. */
function runHeal(cluster: SimCluster, ids: readonly NodeId[], workload: Workload, boundMs: number): number {
  cluster.network.heal();
  for (const id of ids) {
    cluster.restart(id);
    cluster.node(id).diskLatencyMsMax = 0;
  }
  const healedAtMs = cluster.nowMs;
  let probeIndex = 0;
  // A new probe every 5 ticks until one commits: a probe sent to a leader that is mid-transfer
  // or about to lose its term may never be answered.
  const probe = (): void => {
    const leader = cluster.leader();
    if (leader !== null) workload.append(leader, 'probe', (index) => (probeIndex = probeIndex === 0 ? index : probeIndex));
    if (probeIndex === 0) cluster.schedule(5 * TICK_MS, 'probe', probe);
  };
  probe();
  if (!cluster.runFor(boundMs, () => probeIndex > 0)) {
    throw new SafetyViolation(`liveness: no proposal committed within ${boundMs}ms of healing (at ${healedAtMs}ms)`);
  }
  const healToCommitMs = cluster.nowMs - healedAtMs;
  const members = memberIds(cluster);
  const caughtUp = (): boolean => members.every((id) => cluster.node(id).stateMachine.appliedIndex >= probeIndex);
  if (!cluster.runFor(boundMs, caughtUp)) {
    const applied = members.map((id) => `${id}=${cluster.node(id).stateMachine.appliedIndex}`).join(' ');
    throw new SafetyViolation(`liveness: members did not catch up to ${probeIndex} within ${boundMs}ms (${applied})`);
  }
  let finalReadDone = false;
  const finalRead = (): void => {
    const current = cluster.leader();
    if (current !== null) workload.finalRead(current, () => (finalReadDone = true));
    if (!finalReadDone) cluster.schedule(5 * TICK_MS, 'final read', finalRead);
  };
  finalRead();
  if (!cluster.runFor(boundMs, () => finalReadDone)) {
    throw new SafetyViolation(`liveness: no ReadIndex read completed within ${boundMs}ms after healing`);
  }
  return healToCommitMs;
}

/**
 * Nodes that must catch up: members of both the committed and the latest configuration as seen
 * by the node with the highest commit index (a node removed by either is not replicated to).
 */
function memberIds(cluster: SimCluster): NodeId[] {
  let best: SimNode['raft'] | null = null;
  for (const node of cluster.upNodes()) {
    if (best === null || node.raft.status().commit > best.status().commit) best = node.raft;
  }
  if (best === null) return [];
  const latest = best.status().config;
  const committed = best.configAt(best.status().commit);
  const all = (config: typeof latest): NodeId[] => [...config.voters, ...config.learners];
  return all(latest).filter((id) => all(committed).includes(id));
}

function committedValues(cluster: SimCluster): Map<string, number> {
  const committedAt = new Map<string, number>();
  for (const entry of cluster.checker.committedNormalEntries()) {
    const value = new TextDecoder().decode(entry.data);
    if (committedAt.has(value)) throw new SafetyViolation(`value ${value} committed twice`);
    committedAt.set(value, entry.index);
  }
  return committedAt;
}

/** The items in a random order. */
export function shuffle<T>(prng: Prng, items: readonly T[]): T[] {
  const result = [...items];
  for (let i = result.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [result[i], result[j]] = [result[j] as T, result[i] as T];
  }
  return result;
}
