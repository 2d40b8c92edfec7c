/**
 * One randomized run of the production replica (replica-cluster.ts) from a seed. Chaos: power
 * losses (one node, often the leader, two at once, or all of them), process kills (the page
 * cache survives), leadership transfers, restarts, symmetric and one-way
 * partitions, message loss, duplication and delay (a share of messages held for several
 * election timeouts), slow fsyncs; clients produce (plain, and as idempotent producers that retry
 * a batch until it is acknowledged and sometimes resend an acknowledged one), consume at any
 * replica and read linearizably. Heal: network healed, every node started; the cluster must
 * elect a leader, take a produce and bring every replica to the same log, and the
 * produce/consume checker (replica-checker.ts) then runs on the history and the healed logs.
 */
import { Prng, CorruptionError, NotLeaderError, OverloadedError, OutOfOrderSequenceError, UnavailableError } from '../util/index.js';
import { LeadershipLostError, RaftBusyError, Role, type NodeId } from '../raft/index.js';
import type { ReplicatedLog } from '../replication/replicated-log.js';
import { mixString, mixUint } from './hash.js';
import { ReplicaCluster, type ReplicaFaults, type ReplicaNode } from './replica-cluster.js';
import { shuffle } from './run.js';
import { checkReplicaHistory, type ProduceOp, type ReplicaHistory } from './replica-checker.js';
import type { RetentionPolicy } from '../replication/retention.js';

export interface ReplicaRunOptions {
  readonly seed: number;
  readonly nodeCount: number;
  /** Length of the chaos phase in ticks of 10 virtual ms. */
  readonly steps: number;
  readonly faults?: ReplicaFaults;
  /** The broken variant's name, for the reproduction command. */
  readonly faultName?: string;
  /**
   * Disk faults in a share of the seeds (default true): fsyncs failing with EIO, disks filling up
   * (ENOSPC) and being freed, slow fsyncs. Drawn apart from the rest, so a seed without them runs
   * the same schedule either way.
   */
  readonly diskFaults?: boolean;
  /** Every seed's fsyncs fail with this probability instead of the seed's own draw (`--fsync-failures P`). */
  readonly fsyncFailureProbability?: number;
  /** Every seed fills up (or frees) one disk every so often (ms range), instead of the seed's own draw. */
  readonly diskFullEveryMs?: readonly [number, number];
  /**
   * Every seed's power losses of one node lose a sector of a Raft state file with this
   * probability (when the cluster can lose that member), instead of the seed's own draw (`--state-damage P`).
   */
  readonly stateDamageProbability?: number;
  /**
   * Retention in a share of the seeds with small segments (default true): by bytes, by age, or
   * both, drawn apart from the rest like the disk faults.
   */
  readonly retention?: boolean;
  /** Probability that a power loss flips a bit of a synced byte on the node's disk (default 0: off in CI, see README). */
  readonly bitFlipProbability?: number;
  /** Probability that a power loss leaves a sector of the node's Raft files unreadable (default 0, `--read-failures P`). */
  readonly readFailureProbability?: number;
  /** Network partitions reach the gossip views, so each side reports the other failed (default true). */
  readonly gossipPartitions?: boolean;
  /** Per gossip delivery, the chance of a false failure report about a reachable member (default 0.05). */
  readonly falseSuspicionProbability?: number;
  readonly trace?: (line: string) => void;
}

export interface ReplicaRunResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly failure: string | null;
  readonly reproduce: string;
  readonly traceHash: number;
  readonly historyHash: number;
  readonly eventCount: number;
  readonly virtualMs: number;
  readonly acknowledged: number;
  readonly sequencedAcknowledged: number;
  readonly duplicatesAnswered: number;
  readonly observations: number;
  readonly powerLosses: number;
  /** Processes killed with their machine (page cache) up. */
  readonly kills: number;
  /** Power losses that flipped a bit of a synced byte. */
  readonly bitFlips: number;
  /** Power losses that left a sector unreadable. */
  readonly readFailures: number;
  readonly logLength: number;
  /** Fsyncs that failed with EIO, over every disk. */
  readonly fsyncFailures: number;
  /** Times a disk was made full. */
  readonly diskFulls: number;
  /** Times Raft stopped on a failed storage write and the replica was reopened in place. */
  readonly stops: number;
  /** Retention decisions committed, and the first retained offset after healing. */
  readonly retentions: number;
  readonly lowestOffset: number;
  /** Snapshots delivered (followers catching up from the leader's first retained index). */
  readonly snapshots: number;
  /** Configuration changes the leaders' membership rules committed. */
  readonly configChanges: number;
  /** Graceful leaves, and rejoins of nodes that had left. */
  readonly leaves: number;
  readonly rejoins: number;
  /** Disks replaced by empty ones (the node rejoins as a new member). */
  readonly wipes: number;
  /** Raft state files that lost a sector, and replicas that moved damaged state aside and rejoined as new members. */
  readonly stateDamages: number;
  readonly movedAside: number;
  /** Gossip views delivered with a running member reported failed because a partition hid it. */
  readonly partitionedViews: number;
  /** Gossip deliveries that wrongly held a reachable member failed. */
  readonly falseSuspicions: number;
}

/** Membership for a seed: how often the schedule changes it, and the failure detector. */
interface MembershipSchedule {
  /** Share of nemesis actions that are a membership change (a leave, a rejoin, a wiped disk). */
  readonly share: number;
  readonly failureDetectionMs: readonly [number, number];
  readonly removeFailedAfterMs: number | undefined;
  readonly stateDamageProbability: number;
}

function membershipSchedule(seed: number, nodeCount: number): MembershipSchedule {
  const prng = new Prng(seed ^ 0x3e3b_0001);
  const detectMin = prng.int(100, 500);
  return {
    share: prng.chance(0.8) ? 0.1 + prng.next() * 0.25 : 0,
    failureDetectionMs: [detectMin, detectMin + prng.int(50, 500)],
    // Removing failed voters only acts above 3 voters.
    removeFailedAfterMs: nodeCount > 3 && prng.chance(0.5) ? prng.int(300, 2000) : undefined,
    stateDamageProbability: prng.chance(0.5) ? prng.next() * 0.3 : 0,
  };
}

/** Retention for a seed: only with small segments (whole segments go, so big ones never would). */
function retentionPolicy(seed: number, enabled: boolean, maxStoreBytes: number): RetentionPolicy | undefined {
  const prng = new Prng(seed ^ 0x7e7e_0001);
  if (!enabled || maxStoreBytes > 1024 || !prng.chance(0.5)) return undefined;
  const roll = prng.next();
  const bytes = maxStoreBytes * prng.int(1, 4);
  const ageMs = prng.int(300, 2000);
  return roll < 0.4 ? { bytes } : roll < 0.7 ? { ageMs } : { bytes, ageMs };
}

interface DiskSchedule {
  readonly fsyncFailureProbability: number;
  readonly slowFsyncProbability: number;
  /** A disk fills up (or is freed) every so often; null: never. */
  readonly fullEveryMs: readonly [number, number] | null;
}

function diskSchedule(seed: number, enabled: boolean): DiskSchedule {
  const prng = new Prng(seed ^ 0x0d15_4a17);
  if (!enabled || !prng.chance(0.6)) return { fsyncFailureProbability: 0, slowFsyncProbability: 0, fullEveryMs: null };
  const fullMin = prng.int(200, 800);
  return {
    fsyncFailureProbability: prng.chance(0.6) ? prng.next() * 0.01 : 0,
    slowFsyncProbability: prng.chance(0.5) ? prng.next() * 0.05 : 0,
    fullEveryMs: prng.chance(0.6) ? [fullMin, fullMin + prng.int(100, 1500)] : null,
  };
}

const TICK_MS = 10;
/**
 * A healed cluster converges within a few thousand events; this many means a message storm (a
 * leader and a follower exchanging appends and rejections without progress), reported as such
 * instead of simulated for the rest of the heal bound.
 */
const HEAL_EVENTS_MAX = 100_000;
/** The nemesis waits at most this long for the cluster to form. */
const FORMATION_MS_MAX = 1500;
/** After healing, the replicas must agree and take a produce within this long. */
const HEAL_BOUND_MS = 30_000;
/** A client gives up waiting for an answer after this long (the outcome stays unknown). */
const CLIENT_TIMEOUT_MS = 1500;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Settled<T> = { readonly type: 'ok'; readonly value: T } | { readonly type: 'error'; readonly error: unknown } | { readonly type: 'timeout' };

export async function runReplicaSeed(options: ReplicaRunOptions): Promise<ReplicaRunResult> {
  const prng = new Prng(options.seed ^ 0x5eed_1234);
  const ids = Array.from({ length: options.nodeCount }, (_, i) => `n${i + 1}`);
  const lateProbability = prng.chance(0.8) ? prng.next() * 0.05 : 0;
  const drawn = diskSchedule(options.seed, options.diskFaults ?? true);
  const disk = {
    ...drawn,
    ...(options.fsyncFailureProbability !== undefined ? { fsyncFailureProbability: options.fsyncFailureProbability } : {}),
    ...(options.diskFullEveryMs !== undefined ? { fullEveryMs: options.diskFullEveryMs } : {}),
  };
  const fsyncMsMax = prng.pick([0, 2, 10, 30]);
  const maxStoreBytes = prng.pick([256, 1024, 64 * 1024]);
  const retention = retentionPolicy(options.seed, options.retention ?? true, maxStoreBytes);
  const membership = membershipSchedule(options.seed, options.nodeCount);
  const cluster = new ReplicaCluster({
    seed: options.seed,
    nodeIds: ids,
    network: {
      oneWayDelayMsMin: 1,
      oneWayDelayMsMax: prng.int(2, 30),
      packetLossProbability: prng.chance(0.5) ? prng.next() * 0.1 : 0,
      packetDuplicateProbability: prng.chance(0.3) ? prng.next() * 0.05 : 0,
      lateProbability,
      lateDelayMsMin: 250,
      lateDelayMsMax: 800,
    },
    tickMsMin: TICK_MS - 2,
    tickMsMax: TICK_MS + 2,
    fsyncMsMax,
    disk: { fsyncFailureProbability: disk.fsyncFailureProbability, slowFsyncProbability: disk.slowFsyncProbability, slowFsyncMsMin: 60, slowFsyncMsMax: 240 },
    maxStoreBytes,
    bitFlipProbability: options.bitFlipProbability ?? 0,
    readFailureProbability: options.readFailureProbability ?? 0,
    ...(retention !== undefined ? { retention } : {}),
    failureDetectionMs: membership.failureDetectionMs,
    gossipPartitions: options.gossipPartitions ?? true,
    falseSuspicionProbability: options.falseSuspicionProbability ?? 0.05,
    stateDamageProbability: options.stateDamageProbability ?? membership.stateDamageProbability,
    ...(membership.removeFailedAfterMs !== undefined ? { removeFailedAfterMs: membership.removeFailedAfterMs } : {}),
    ...(options.faults !== undefined ? { faults: options.faults } : {}),
    ...(options.trace !== undefined ? { trace: options.trace } : {}),
  });
  const run = new Run(cluster, prng, options, disk, membership);
  const onUnhandled = (reason: unknown): void => cluster.fail(`unhandled rejection: ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`);
  const onUncaught = (error: unknown): void => cluster.fail(`uncaught exception: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  process.on('unhandledRejection', onUnhandled);
  process.on('uncaughtException', onUncaught);
  let failure: string | null = null;
  let logLength = 0;
  let lowestOffset = 0;
  try {
    ({ failure, logLength, lowestOffset } = await run.execute());
  } finally {
    cluster.shutdown();
    process.off('unhandledRejection', onUnhandled);
    process.off('uncaughtException', onUncaught);
  }
  const history = run.history;
  return {
    ok: failure === null,
    seed: options.seed,
    failure,
    reproduce: `npm run sim -- --replica --seed ${options.seed} --nodes ${options.nodeCount} --steps ${options.steps}${options.faultName !== undefined ? ` --fault ${options.faultName}` : ''}${options.bitFlipProbability ? ` --bit-flips ${options.bitFlipProbability}` : ''}${options.readFailureProbability ? ` --read-failures ${options.readFailureProbability}` : ''}${options.fsyncFailureProbability !== undefined ? ` --fsync-failures ${options.fsyncFailureProbability}` : ''}${options.stateDamageProbability !== undefined ? ` --state-damage ${options.stateDamageProbability}` : ''}${options.diskFullEveryMs !== undefined ? ` --disk-full-every ${options.diskFullEveryMs.join('-')}` : ''}`,
    traceHash: cluster.traceHash,
    historyHash: run.historyHash,
    eventCount: cluster.eventCount,
    virtualMs: cluster.nowMs,
    acknowledged: history.produces.filter((op) => op.outcome.type === 'ok').length,
    sequencedAcknowledged: history.sequenced.filter((ack) => !ack.duplicate).length,
    duplicatesAnswered: history.sequenced.filter((ack) => ack.duplicate).length,
    observations: history.observations.length,
    powerLosses: [...cluster.nodes.values()].reduce((sum, node) => sum + node.crashes, 0),
    bitFlips: [...cluster.nodes.values()].reduce((sum, node) => sum + node.bitFlips, 0),
    readFailures: [...cluster.nodes.values()].reduce((sum, node) => sum + node.readFailures, 0),
    kills: [...cluster.nodes.values()].reduce((sum, node) => sum + node.kills, 0),
    logLength,
    fsyncFailures: run.fsyncFailures,
    diskFulls: run.diskFulls,
    stops: [...cluster.nodes.values()].reduce((sum, node) => sum + node.stops, 0),
    retentions: cluster.counts.retentions,
    lowestOffset,
    snapshots: cluster.snapshotsDelivered,
    configChanges: cluster.counts.configChanges,
    leaves: cluster.counts.leaves,
    rejoins: cluster.counts.rejoins,
    wipes: cluster.counts.wipes,
    stateDamages: cluster.counts.stateDamages,
    movedAside: cluster.counts.movedAside,
    partitionedViews: cluster.counts.partitionedViews,
    falseSuspicions: cluster.counts.falseSuspicions,
  };
}

/** An idempotent producer: one batch (of one record) in flight, retried until acknowledged. */
interface Producer {
  readonly id: number;
  nextSequence: number;
  attempts: number;
  /** The last acknowledged sequence, to resend as a duplicate. */
  lastAcked: number | null;
}

class Run {
  readonly history: ReplicaHistory = { produces: [], sequenced: [], observations: [], barriers: [] };
  historyHash = 0x13572468;
  private clock = 0;
  private chaosOver = false;
  private readonly producers: Producer[] = [];
  private openProducers = 0;
  private valueCount = 0;
  /** Cut the power of every machine just after the next acknowledgement (set by the nemesis). */
  private cutAfterNextAck = false;
  diskFulls = 0;
  private readonly diskPrng: Prng;

  constructor(
    private readonly cluster: ReplicaCluster,
    private readonly prng: Prng,
    private readonly options: ReplicaRunOptions,
    private readonly disk: DiskSchedule,
    private readonly membership: MembershipSchedule,
  ) {
    this.diskPrng = new Prng(options.seed ^ 0x0f11_d15c);
  }

  get fsyncFailures(): number {
    return [...this.cluster.nodes.values()].reduce((sum, node) => sum + node.fsyncFailures, 0);
  }

  async execute(): Promise<{ failure: string | null; logLength: number; lowestOffset: number }> {
    const { cluster, prng } = this;
    for (const id of cluster.nodes.keys()) cluster.start(id);
    const clientCount = prng.int(1, 4);
    for (let c = 0; c < clientCount; c++) void this.client(c);
    const producerCount = prng.int(1, 3);
    for (let p = 0; p < producerCount; p++) {
      const producer: Producer = { id: p + 1, nextSequence: 0, attempts: 0, lastAcked: null };
      this.producers.push(producer);
      void this.produceSequenced(producer);
    }
    const nemesisMsMin = prng.int(50, 200);
    const nemesisMsMax = prng.int(nemesisMsMin + 50, 600);
    // The faults begin once the cluster has formed (the first node bootstrapped, the others joined
    // and were promoted by the membership rules), or after FORMATION_MS_MAX.
    const formed = (): boolean => {
      const leader = cluster.leader();
      return leader !== null && leader.status().config.voters.length === cluster.nodes.size;
    };
    const startNemesis = (): void => {
      if (formed() || cluster.nowMs >= FORMATION_MS_MAX) this.scheduleNemesis(nemesisMsMin, nemesisMsMax);
      else cluster.schedule(20, null, startNemesis);
    };
    startNemesis();
    if (this.disk.fullEveryMs !== null) this.scheduleDiskFull(...this.disk.fullEveryMs);
    const chaosMs = this.options.steps * TICK_MS;
    await cluster.runFor(chaosMs);
    if (cluster.violation !== null) return { failure: cluster.violation, logLength: 0, lowestOffset: 0 };

    // Heal: no more faults; every producer finishes its batch; the replicas must converge.
    this.chaosOver = true;
    cluster.network.heal();
    cluster.networkChanged();
    cluster.endSuspicions();
    cluster.network.options = { ...cluster.network.options, packetLossProbability: 0, packetDuplicateProbability: 0, lateProbability: 0 };
    // The devices are mended and space is freed: every replica must come back from what its disk holds.
    for (const node of cluster.nodes.values()) node.disk.configure({ fsyncFailureProbability: 0, capacityBytes: undefined });
    for (const id of cluster.nodes.keys()) cluster.start(id);
    const healedBy = cluster.nowMs + HEAL_BOUND_MS;
    let probe: ProduceOp | null = null;
    const healEvents = cluster.eventCount;
    let storm = false;
    const converged = (): boolean => {
      if (cluster.eventCount - healEvents > HEAL_EVENTS_MAX) return (storm = true);
      for (const node of cluster.nodes.values()) if (node.left && !node.running) cluster.start(node.id); // a leave that was still closing
      if (this.openProducers > 0) return false;
      const leader = cluster.leader();
      if (leader === null || !this.caughtUp(leader)) return false;
      if (probe === null) {
        probe = this.produce(leader).op;
        return false;
      }
      if (probe.outcome.type !== 'ok') {
        if (probe.end !== 0) probe = null; // failed or timed out: try again
        return false;
      }
      const last = probe.outcome.offset;
      const nodes = [...cluster.nodes.values()];
      if (!nodes.every((node) => node.up && node.log.nextOffset() > last && this.caughtUp(node))) return false;
      // The membership rules made every node's newest member a voter and removed the rest.
      const { voters, learners } = leader.status().config;
      const members = new Set(nodes.map((node) => node.raftId));
      if (learners.length > 0 || voters.length !== members.size || !voters.every((id) => members.has(id))) return false;
      // Every member adopted the cluster's id (its first peer stream carried it).
      const clusterId = leader.replica!.clusterId;
      if (clusterId === undefined || !nodes.every((node) => node.replica!.clusterId === clusterId)) return false;
      // Retention applied everywhere (each replica compacts after applying the decision).
      return nodes.every((node) => node.log.lowestOffset() === leader.log.lowestOffset());
    };
    const done = await cluster.runUntil(healedBy, converged);
    if (cluster.violation !== null) return { failure: cluster.violation, logLength: 0, lowestOffset: 0 };
    if (storm) return { failure: `liveness: ${HEAL_EVENTS_MAX} events after healing (a message storm) and ${this.describeState()}`, logLength: 0, lowestOffset: 0 };
    if (!done) return { failure: `liveness: ${this.describeState()} ${HEAL_BOUND_MS} ms after healing`, logLength: 0, lowestOffset: 0 };

    const logs = new Map<NodeId, string[]>();
    const lowestOffsets = new Map<NodeId, number>();
    for (const node of cluster.nodes.values()) {
      try {
        logs.set(node.id, readAll(node.log!));
        lowestOffsets.set(node.id, node.log!.lowestOffset());
      } catch (error) {
        return { failure: `${node.id} cannot serve its healed log: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`, logLength: 0, lowestOffset: 0 };
      }
    }
    const failure = checkReplicaHistory(this.history, logs, lowestOffsets);
    const first = cluster.nodes.keys().next().value as NodeId;
    return { failure, logLength: logs.get(first)!.length, lowestOffset: lowestOffsets.get(first)! };
  }

  /** The node applied everything its leader committed, and an entry of the leader's term. */
  private caughtUp(node: ReplicaNode): boolean {
    const leader = this.cluster.leader();
    if (!node.up || leader === null) return false;
    const mine = node.status();
    const theirs = leader.status();
    return mine.leaderId === leader.raftId && mine.term === theirs.term && mine.applied === theirs.commit && node.replica!.storage.term(mine.applied) === theirs.term;
  }

  private describeState(): string {
    const parts = [...this.cluster.nodes.values()].map((node) => {
      if (!node.up) return `${node.id} down`;
      const status = node.status();
      return `${node.raftId} ${status.role} t${status.term} commit ${status.commit} applied ${status.applied} lowest ${node.log.lowestOffset()} next ${node.log.nextOffset()} voters ${status.config.voters.join(',')} learners ${status.config.learners.join(',')} cluster ${node.replica!.clusterId?.slice(0, 8) ?? 'none'}`;
    });
    return `not converged (${parts.join('; ')}; ${this.openProducers} producers open)`;
  }

  private now(): number {
    return ++this.clock;
  }

  private note(line: string): void {
    this.historyHash = mixUint(mixString(this.historyHash, line), this.cluster.nowMs);
    this.cluster.record(line);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.cluster.schedule(ms, null, resolve));
  }

  /** The call's outcome, or a timeout after CLIENT_TIMEOUT_MS of virtual time (the call may still take effect). */
  private settled<T>(call: () => Promise<T>): Promise<Settled<T>> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (outcome: Settled<T>): void => {
        if (done) return;
        done = true;
        resolve(outcome);
      };
      this.cluster.schedule(CLIENT_TIMEOUT_MS, null, () => finish({ type: 'timeout' }));
      let promise: Promise<T>;
      try {
        promise = call();
      } catch (error) {
        finish({ type: 'error', error });
        return;
      }
      promise.then(
        (value) => finish({ type: 'ok', value }),
        (error: unknown) => finish({ type: 'error', error }),
      );
    });
  }

  /** A node to send to: usually the leader, else any node that is up. */
  private target(): ReplicaNode | null {
    const up = this.cluster.upNodes();
    if (up.length === 0) return null;
    const leaders = up.filter((node) => node.status().role === Role.Leader);
    if (leaders.length > 0 && this.prng.chance(0.7)) return this.prng.pick(leaders);
    return this.prng.pick(up);
  }

  // ---- clients ----

  private async client(index: number): Promise<void> {
    const { cluster, prng } = this;
    while (!this.chaosOver && cluster.violation === null) {
      await this.sleep(prng.int(0, 40));
      if (this.chaosOver) return;
      const node = this.target();
      if (node === null) continue;
      const roll = prng.next();
      if (roll < 0.55) {
        await this.produce(node).settled;
      } else if (roll < 0.85) {
        this.consume(node);
      } else {
        await this.barrier(node, index);
      }
    }
  }

  /** A plain produce at `node` (forwarded to the leader by a follower); `end` is set once settled. */
  private produce(node: ReplicaNode): { op: ProduceOp; settled: Promise<void> } {
    const value = `v${this.valueCount++}`;
    const op: ProduceOp = { value, start: this.now(), end: 0, outcome: { type: 'unknown' } };
    this.history.produces.push(op);
    const log = node.log!;
    const settled = this.settled(() => log.append({ value: encoder.encode(value) })).then((result) => {
      op.end = this.now();
      if (result.type === 'ok') {
        op.outcome = { type: 'ok', offset: result.value };
        this.acknowledged();
      }
      else if (result.type === 'error' && refusedBeforeAppending(result.error)) op.outcome = { type: 'failed', reason: (result.error as Error).name };
      this.note(`produce ${value} at ${node.id}: ${op.outcome.type === 'ok' ? op.outcome.offset : op.outcome.type}`);
    });
    return { op, settled };
  }

  /** Reads a few records from a random offset of the node's visible log. */
  private consume(node: ReplicaNode): void {
    const log = node.log!;
    const offset = this.prng.int(log.lowestOffset(), log.nextOffset());
    let records;
    try {
      records = log.readBatch(offset, { maxCount: this.prng.int(1, 16), maxBytes: 1 << 20 });
    } catch (error) {
      // Damage is reported, never served as other bytes; the healed replica must have repaired it (checked at the end).
      if (error instanceof CorruptionError) return this.note(`consume ${node.id} ${offset}: ${error.name}`);
      // Anything else (a short read of a record the index names) is a broken replica.
      this.cluster.fail(`${node.id} could not serve a read at offset ${offset}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      return;
    }
    for (const record of records) this.history.observations.push({ node: node.id, offset: record.offset, value: decoder.decode(record.value) });
    this.note(`consume ${node.id} ${offset}+${records.length}`);
  }

  private async barrier(node: ReplicaNode, client: number): Promise<void> {
    const log = node.log!;
    const start = this.now();
    const result = await this.settled(() => log.linearizableBarrier().then(() => log.nextOffset()));
    const end = this.now();
    if (result.type === 'ok') this.history.barriers.push({ node: node.id, start, end, next: result.value });
    this.note(`barrier c${client} ${node.id}: ${result.type === 'ok' ? result.value : result.type}`);
  }

  /** An idempotent producer: each batch is retried (at any node) until acknowledged, through the heal. */
  private async produceSequenced(producer: Producer): Promise<void> {
    const { cluster, prng } = this;
    for (;;) {
      await this.sleep(prng.int(0, 60));
      if (cluster.violation !== null) return;
      if (this.chaosOver && producer.attempts === 0) return;
      const node = this.target();
      if (node === null) continue;
      const resend = producer.attempts === 0 && producer.lastAcked !== null && prng.chance(0.2);
      const sequence = resend ? (producer.lastAcked as number) : producer.nextSequence;
      if (!resend && producer.attempts++ === 0) this.openProducers++;
      const value = `p${producer.id}s${sequence}`;
      const log = node.log!;
      const start = this.now();
      const result = await this.settled(() => log.appendSequenced([{ value: encoder.encode(value) }], producer.id, sequence));
      const end = this.now();
      this.note(`sequenced ${value} at ${node.id}: ${result.type === 'ok' ? `${result.value.firstOffset}${result.value.duplicate ? ' duplicate' : ''}` : result.type === 'error' ? (result.error as Error).name : 'timeout'}`);
      if (result.type === 'ok') {
        const { firstOffset, duplicate } = result.value;
        // A resend of a batch that retention removed (its producer forgotten with it) may be appended again.
        const retainedFrom = cluster.retainedFrom;
        const original = resend ? this.history.sequenced.findLast((ack) => ack.producerId === producer.id && ack.sequence === sequence) : undefined;
        const reappended = resend && !duplicate && original !== undefined && original.offset < retainedFrom;
        this.history.sequenced.push({ producerId: producer.id, sequence, value, offset: firstOffset, duplicate: duplicate || (resend && !reappended), start, end, retainedFrom });
        this.acknowledged();
        if (resend && !duplicate && !reappended) cluster.fail(`producer ${producer.id} resent acknowledged sequence ${sequence} and it was appended again at offset ${firstOffset}`);
        if (!resend) {
          producer.lastAcked = sequence;
          producer.nextSequence++;
          producer.attempts = 0;
          this.openProducers--;
        }
      } else if (result.type === 'error' && result.error instanceof OutOfOrderSequenceError) {
        cluster.fail(`producer ${producer.id} ${resend ? 'resent acknowledged' : 'retried its next'} sequence ${sequence} and was refused: ${result.error.message}`);
      }
    }
  }

  // ---- faults ----

  /**
   * A produce was just acknowledged: if asked, every machine loses power within a few ms. What a
   * quorum acknowledged is durable there, so nothing acknowledged may be lost; a replica that
   * acknowledges before its write is durable is caught here.
   */
  private acknowledged(): void {
    if (!this.cutAfterNextAck || this.chaosOver) return;
    this.cutAfterNextAck = false;
    this.cluster.schedule(this.prng.int(0, 3), 'power cut after an acknowledgement', () => {
      if (this.chaosOver) return;
      for (const node of this.cluster.upNodes()) this.cluster.crash(node.id);
    });
  }

  /** Every so often one disk fills up (to a little above what it holds) or is freed. */
  private scheduleDiskFull(minMs: number, maxMs: number): void {
    const { cluster, diskPrng } = this;
    cluster.schedule(diskPrng.int(minMs, maxMs), null, () => {
      if (this.chaosOver) return;
      const node = diskPrng.pick([...cluster.nodes.values()]);
      if (diskPrng.chance(0.5)) {
        const capacityBytes = node.disk.usedBytes() + diskPrng.int(0, 4096);
        node.disk.configure({ capacityBytes });
        this.diskFulls++;
        cluster.record(`disk of ${node.id} full at ${capacityBytes} bytes`);
      } else {
        node.disk.configure({ capacityBytes: undefined });
        cluster.record(`disk of ${node.id} freed`);
      }
      this.scheduleDiskFull(minMs, maxMs);
    });
  }

  private scheduleNemesis(minMs: number, maxMs: number): void {
    const { cluster, prng } = this;
    cluster.schedule(prng.int(minMs, maxMs), null, () => {
      if (this.chaosOver) return;
      this.nemesis();
      this.scheduleNemesis(minMs, maxMs);
    });
  }

  /**
   * A membership change through gossip: a node leaves gracefully (often the leader, which hands
   * over first), a node that left rejoins, or a disk is replaced by an empty one (the node comes
   * back as a new member and the leader's rules replace the old one).
   */
  private membershipChange(): void {
    const { cluster, prng } = this;
    const nodes = [...cluster.nodes.values()];
    const up = cluster.upNodes();
    const left = nodes.filter((node) => node.left && !node.running);
    const roll = prng.next();
    if (roll < 0.4) {
      // Keep a majority of the nodes in the cluster.
      if (nodes.filter((node) => node.left || node.leaving).length + 1 > Math.floor((nodes.length - 1) / 2) || up.length === 0) return;
      if (nodes.some((node) => node.lost)) return; // never two members of three away at once
      const leader = cluster.leader();
      cluster.leave(leader !== null && prng.chance(0.4) ? leader.id : prng.pick(up).id);
    } else if (roll < 0.75) {
      if (left.length > 0) cluster.start(prng.pick(left).id);
    } else {
      const down = nodes.filter((node) => !node.running && !node.left);
      const victim = down.length > 0 ? prng.pick(down) : up.length > 0 ? prng.pick(up) : null;
      if (victim === null || !cluster.canLoseMember(victim)) return;
      cluster.crash(victim.id);
      if (cluster.wipe(victim.id)) this.cluster.schedule(prng.int(0, 300), null, () => this.chaosOver || cluster.start(victim.id));
    }
  }

  private nemesis(): void {
    const { cluster, prng } = this;
    const ids = [...cluster.nodes.keys()];
    const up = cluster.upNodes();
    const down = [...cluster.nodes.values()].filter((node) => !node.running && !node.left);
    if (this.membership.share > 0 && prng.chance(this.membership.share)) return this.membershipChange();
    const roll = prng.next();
    if (roll < 0.3 && up.length > 0) {
      const leader = cluster.leader();
      const victim = leader !== null && prng.chance(0.4) ? leader.id : prng.pick(up).id;
      if (prng.chance(0.75)) cluster.crash(victim, { damageState: true });
      else cluster.kill(victim);
    } else if (roll < 0.34) {
      this.cutAfterNextAck = true;
    } else if (roll < 0.38 && up.length > 1) {
      // A correlated power loss: two machines at once, or the whole cluster (a site power cut).
      for (const node of prng.chance(0.3) ? up : shuffle(prng, up).slice(0, 2)) cluster.crash(node.id);
    } else if (roll < 0.66 && down.length > 0) {
      cluster.start(prng.pick(down).id);
    } else if (roll < 0.7) {
      // A graceful hand-over (the agent's shutdown does one).
      const leader = cluster.leader();
      const others = up.filter((node) => node !== leader);
      if (leader !== null && others.length > 0) {
        cluster.record(`hand over from ${leader.id}`);
        void leader.replica!.handOffLeadership(300);
      }
    } else if (roll < 0.85) {
      const isolated = shuffle(prng, ids).slice(0, prng.int(1, Math.floor((ids.length - 1) / 2) || 1));
      const rest = ids.filter((id) => !isolated.includes(id));
      const oneWay = prng.chance(0.3);
      cluster.network.partition(isolated, rest, oneWay);
      cluster.record(`partition ${isolated.join(',')} | ${rest.join(',')}${oneWay ? ' one-way' : ''}`);
      cluster.networkChanged();
    } else {
      cluster.network.heal();
      cluster.record('heal');
      cluster.networkChanged();
    }
  }
}

/** Nothing was appended: the same errors the replicated log itself treats as safe to redirect, and its definite refusals. */
function refusedBeforeAppending(error: unknown): boolean {
  if (error instanceof NotLeaderError || error instanceof RaftBusyError || error instanceof OverloadedError || error instanceof LeadershipLostError) return true;
  return error instanceof UnavailableError && /^No connection established/.test(error.message);
}

function readAll(log: ReplicatedLog): string[] {
  const values: string[] = [];
  for (let offset = log.lowestOffset(); offset < log.nextOffset(); ) {
    const records = log.readBatch(offset, { maxCount: 4096, maxBytes: 1 << 24 });
    for (const record of records) values[record.offset] = decoder.decode(record.value);
    offset += records.length;
  }
  return values;
}
