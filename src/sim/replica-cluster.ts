/**
 * The production replica on a virtual clock: each simulated node runs what a clustered agent runs,
 * the `Replica` (its identity and address-book files, its membership rules and reconcile passes,
 * damaged state moved aside, the leader's retention pass) kept running by the `ReplicaKeeper`
 * (the reopen in place after a failed write), over RaftLogStorage on the CommitLog on a seeded
 * SimDisk (its FileIo), the ReplicatedLog and the RaftNode. Its environment is the simulator's:
 * the disk for every file call, the virtual clock for timers and clocks, seeded randomness, and
 * the simulated network for Raft messages and peer calls (Forward, ReadIndex) instead of gRPC.
 * Gossip is simulated too: a member view (alive, failed after a detection delay, left) that the
 * schedule drives and every replica receives, from which the leader's rules change the
 * configuration.
 *
 * That storage returns real promises, so this simulator is asynchronous: between two events it
 * lets the process settle (microtasks, and setImmediate callbacks) until nothing
 * is queued, and the disk's fsyncs complete from the event queue at a virtual time. Nothing reads
 * a wall clock or waits on real I/O, so the order of everything is a function of the seed (the
 * determinism test runs a seed twice and compares the hashes).
 *
 * A crash is a power loss: the node's process state is dropped and its disk keeps what was
 * synced plus a random prefix of the rest, the last write torn (SimDisk.crash). A start opens
 * the replica on what the disk kept (the storage's recovery runs), as a restarted agent does.
 */
import { Prng, DeadlineExceededError, UnavailableError, AnnalError, assert } from '../util/index.js';
import { Role, type Message, type NodeId, type Status, type Timers } from '../raft/index.js';
import { nodeNameOf } from '../replication/cluster-membership.js';
import type { Admission } from '../replication/cluster-admission.js';
import { decodeBatch, DEFAULT_PEER_LIMITS, SnapshotSizes } from '../replication/peer-codec.js';
import { DecodeFailure, decodeForwardRequest, encodeForwardRequest, encodeMessageBatch } from '../replication/peer-wire.js';
import { CLUSTER_ID_TAG, RAFT_ID_TAG, Replica, STATE_FILES, type GossipMember, type ReplicaFaults as ReplicaLayerFaults, type ReplicaLogger, type ReplicaTransport, type ReplicaTransportContext } from '../replication/replica.js';
import { ReplicaKeeper } from '../replication/replica-keeper.js';
import type { ReplicatedLog } from '../replication/replicated-log.js';
import type { RetentionPolicy } from '../replication/retention.js';
import type { StorageFaults } from '../storage/index.js';
import { SimDisk } from './disk.js';
import { EventQueue } from './event-queue.js';
import { faultyFileIo, type FileIoFaults } from './faulty-file-io.js';
import { mixString, mixUint } from './hash.js';
import { SimNetwork, type NetworkOptions } from './network.js';

/** Deliberately broken variants at the replica's layers, passed to the code that reads them. */
export interface ReplicaFaults extends ReplicaLayerFaults {
  readonly log?: StorageFaults;
  /** A file-I/O layer that mishandles the disk's errors (faulty-file-io.ts). */
  readonly fileIo?: FileIoFaults;
}

/** The disk's own faults (the device, not the code): failing and slow fsyncs. */
export interface DiskFaultOptions {
  /** Probability that one fsync fails with EIO (its pages are then never written). Default 0. */
  readonly fsyncFailureProbability?: number;
  /** Probability that one fsync is slow: it takes [slowFsyncMsMin, slowFsyncMsMax] ms instead. Default 0. */
  readonly slowFsyncProbability?: number;
  readonly slowFsyncMsMin?: number;
  readonly slowFsyncMsMax?: number;
}

export interface ReplicaClusterOptions {
  readonly seed: number;
  readonly nodeIds: readonly NodeId[];
  readonly network: NetworkOptions;
  readonly tickMsMin: number;
  readonly tickMsMax: number;
  /** An fsync completes after a virtual delay in [0, fsyncMsMax]. */
  readonly fsyncMsMax: number;
  readonly disk?: DiskFaultOptions;
  readonly faults?: ReplicaFaults;
  /** Commit-log segment size: small segments make rolls (and their fsync ordering) frequent. */
  readonly maxStoreBytes: number;
  /** How much of the log the cluster keeps (the leader's retention pass, every RETENTION_CHECK_MS). */
  readonly retention?: RetentionPolicy;
  /** Replica's removeFailedAfterMs (a voter gossip reports failed that long is removed, never below 3 voters). */
  readonly removeFailedAfterMs?: number;
  /** Gossip reports a member whose process died failed after a delay in this range. */
  readonly failureDetectionMs: readonly [number, number];
  /** Network partitions reach the gossip views: each side reports the other failed (after failureDetectionMs). */
  readonly gossipPartitions?: boolean;
  /**
   * Per gossip delivery, the probability that the receiving member's failure detector wrongly
   * declares a reachable member failed for a while (a slow or lossy member that did not refute
   * the suspicion in time), so views diverge without a partition. Default 0.
   */
  readonly falseSuspicionProbability?: number;
  /** Probability that a power loss of one node also loses a sector of one of its Raft state files. Default 0. */
  readonly stateDamageProbability?: number;
  /** Probability that a power loss flips one bit of one synced byte on the node's disk. Default 0. */
  readonly bitFlipProbability?: number;
  /** Probability that a power loss leaves a sector of one of the node's Raft files unreadable (EIO). Default 0. */
  readonly readFailureProbability?: number;
  readonly trace?: (line: string) => void;
}

const DATA_DIR = '/data';
const RAFT_DIR = '/data/raft';
const EVENT_QUEUE_SIZE_MAX = 1_000_000;
/** The agent's reopen backoff (1 s to 30 s), scaled to runs of a few virtual seconds. */
const REOPEN_DELAY_MS_MIN = 250;
const REOPEN_DELAY_MS_MAX = 2000;
/** How often a leader checks its retention policy (Replica: every second; shorter for the short runs). */
const RETENTION_CHECK_MS = 200;
const ELECTION_TICKS = 10;
const HEARTBEAT_TICKS = 2;
/** Settling turns between two events before the simulator calls the replicas busy-looping. */
const SETTLE_TURNS_MAX = 10_000;

interface SimEvent {
  readonly label: string | null;
  readonly action: () => void;
}

export class ReplicaNode {
  disk: SimDisk;
  /** Bumped by every crash, kill and start: callbacks of an older process do nothing. */
  incarnation = 0;
  /** The agent process: its keeper (and so its replica), or null while the process is not running. */
  keeper: ReplicaKeeper | null = null;
  /** The process is opening its replica (no keeper yet). */
  starting = false;
  /** Handing over, leaving gossip and closing (a graceful leave). */
  leaving = false;
  /** Gossip: left gracefully (the leader removes it); it comes back by rejoining. */
  left = false;
  /** What gossip says of the node. */
  gossipStatus: 'alive' | 'failed' | 'left' = 'alive';
  /** The Raft id of the node's newest replica (undefined before its first open). */
  raftId: string | undefined;
  /**
   * Its data is gone (a wiped disk, damaged state) or cut (a flipped bit): until its new member is
   * a voter, or its log again reaches `repairThroughIndex`, no other may be lost.
   */
  lost = false;
  /** For a log cut at a flipped bit: the last index it held before the power loss. */
  repairThroughIndex: number | undefined;
  /** The next start bootstraps a new cluster (the first node's first start only). */
  bootstrap: boolean;
  /** The next failed first open's backoff. */
  openDelayMs = REOPEN_DELAY_MS_MIN;
  /** Power losses of this node's machine. */
  crashes = 0;
  /** Process kills (the page cache survives). */
  kills = 0;
  /** Power losses that flipped a bit on this node's disk. */
  bitFlips = 0;
  /** Power losses that left a sector of this node's Raft files unreadable. */
  readFailures = 0;
  /** Times Raft stopped (a failed storage write, damage found) and the keeper reopened the replica in place. */
  stops = 0;
  /** Opens of the replica that failed on a disk error (and were retried). */
  failedOpens = 0;
  /** Fsyncs failed on the disks a crash or kill replaced. */
  private pastFsyncFailures = 0;

  constructor(
    readonly id: NodeId,
    readonly tickMs: number,
    disk: SimDisk,
    bootstrap: boolean,
  ) {
    this.disk = disk;
    this.bootstrap = bootstrap;
  }

  /** Fsyncs that failed on this node's disks so far. */
  get fsyncFailures(): number {
    return this.pastFsyncFailures + this.disk.fsyncFailures;
  }

  replaceDisk(disk: SimDisk): void {
    this.pastFsyncFailures += this.disk.fsyncFailures;
    this.disk = disk;
  }

  /** The process runs (its replica may be stopped and waiting to be reopened). */
  get running(): boolean {
    return this.keeper !== null || this.starting;
  }

  /** The replica the node serves, or null while the process is down. */
  get replica(): Replica | null {
    return this.keeper?.current ?? null;
  }

  /** The process runs and its Raft has not stopped. */
  get up(): boolean {
    const replica = this.replica;
    return replica !== null && !replica.stopped && !this.leaving;
  }

  /** The served log (of an up node). */
  get log(): ReplicatedLog {
    assert(this.replica !== null, `${this.id} is down`);
    return this.replica.log;
  }

  status(): Status {
    assert(this.replica !== null, `${this.id} is down`);
    return this.replica.status();
  }
}

export class ReplicaCluster {
  readonly prng: Prng;
  readonly network: SimNetwork;
  readonly nodes = new Map<NodeId, ReplicaNode>();
  nowMs = 0;
  traceHash = 0x2468ace0;
  eventCount = 0;
  /** Snapshot messages delivered: followers catching up from the leader's lowest retained index. */
  snapshotsDelivered = 0;
  /** What the replicas logged that the run reports (retention decisions, configuration changes, state moved aside). */
  readonly counts = { retentions: 0, configChanges: 0, movedAside: 0, leaves: 0, rejoins: 0, wipes: 0, stateDamages: 0, partitionedViews: 0, falseSuspicions: 0 };
  /** The first broken property (or unexpected error) seen; the run stops at it. */
  violation: string | null = null;
  private highestRetainedFrom = 0;
  /** The durable term and vote seen per Raft id: a member never forgets them (checked after every event). */
  private readonly promised = new Map<NodeId, { term: number; vote: NodeId | null }>();
  /** What gossip says now. */
  private gossipView: readonly GossipMember[] = [];
  private readonly queue = new EventQueue<SimEvent>(EVENT_QUEUE_SIZE_MAX);
  /** Draws for the disk's faults only, so that seeds without them keep their schedule. */
  private readonly diskPrng: Prng;
  /** Draws for false suspicions only, so that the rest of a seed's schedule keeps its draws. */
  private readonly gossipPrng: Prng;
  /** Members each node wrongly holds failed, until the given virtual time. */
  private readonly suspicions = new Map<NodeId, Map<NodeId, number>>();
  /** Off once the chaos is over: the heal must converge. */
  falseSuspicions = true;
  /** Where each live replica's transport takes messages, by Raft id. */
  private readonly endpoints = new Map<NodeId, (message: Message) => void>();
  /** The cluster id each message's sender had when it sent it ('' for none). */
  private readonly senderClusterIds = new WeakMap<Message, string>();
  /** Each message as the peer transport encodes it (a MessageBatch of one). */
  private readonly wireBytes = new WeakMap<Message, Uint8Array>();
  /** Per receiving Raft id, the peer service's check of snapshot chunk totals. */
  private readonly snapshotSizes = new Map<NodeId, SnapshotSizes>();

  constructor(readonly options: ReplicaClusterOptions) {
    this.prng = new Prng(options.seed);
    this.diskPrng = new Prng(options.seed ^ 0x0d15_c0de);
    this.gossipPrng = new Prng(options.seed ^ 0x5e5_7ec7);
    this.network = new SimNetwork(
      this.prng,
      options.network,
      (atMs, message) => this.queue.push(atMs, { label: null, action: () => this.deliver(message) }),
      nodeNameOf,
    );
    options.nodeIds.forEach((id, i) => {
      this.nodes.set(id, new ReplicaNode(id, this.prng.int(options.tickMsMin, options.tickMsMax), this.newDisk(this.prng.nextUint32()), i === 0));
    });
  }

  private newDisk(seed: number): SimDisk {
    const faults = this.options.disk ?? {};
    const syncMs = (): number =>
      this.diskPrng.chance(faults.slowFsyncProbability ?? 0)
        ? this.diskPrng.int(faults.slowFsyncMsMin ?? 0, faults.slowFsyncMsMax ?? 0)
        : this.prng.int(0, this.options.fsyncMsMax);
    return new SimDisk({
      seed,
      nowMs: () => this.nowMs,
      fsyncFailureProbability: faults.fsyncFailureProbability ?? 0,
      scheduleSync: (complete) => this.schedule(syncMs(), null, complete),
    });
  }

  node(id: NodeId): ReplicaNode {
    const node = this.nodes.get(id);
    assert(node !== undefined, `unknown node ${id}`);
    return node;
  }

  fail(message: string): void {
    if (this.violation === null) {
      this.violation = message;
      this.record(`VIOLATION ${message}`);
    }
  }

  // ---- running ----

  schedule(delayMs: number, label: string | null, action: () => void): void {
    this.queue.push(this.nowMs + delayMs, { label, action });
  }

  /**
   * Processes events until the clock passes `untilMs`, `stop` returns true or a violation is
   * seen; the replicas settle completely before each event.
   */
  async runUntil(untilMs: number, stop: () => boolean = () => false): Promise<boolean> {
    for (;;) {
      await settle();
      this.checkPromises();
      if (this.violation !== null) return false;
      if (stop()) return true;
      const next = this.queue.pop();
      if (next === null) return false;
      if (next.timeMs > untilMs) {
        this.queue.push(next.timeMs, next.event);
        this.nowMs = untilMs;
        return stop();
      }
      this.nowMs = next.timeMs;
      this.eventCount++;
      if (next.event.label !== null) this.record(next.event.label);
      try {
        next.event.action();
      } catch (error) {
        this.fail(`event ${next.event.label ?? 'delivery'} threw: ${describe(error)}`);
      }
    }
  }

  runFor(durationMs: number, stop?: () => boolean): Promise<boolean> {
    return this.runUntil(this.nowMs + durationMs, stop);
  }

  record(line: string): void {
    this.traceHash = mixUint(mixString(this.traceHash, line), this.nowMs);
    this.options.trace?.(`${String(this.nowMs).padStart(7)}ms ${line}`);
  }

  // ---- nodes ----

  /** Starts the node's agent process: it opens its replica on what its disk holds (recovery included), as a restart does. */
  start(id: NodeId): void {
    const node = this.node(id);
    if (node.running) return;
    this.record(`start ${id}`);
    node.starting = true;
    const incarnation = ++node.incarnation;
    if (node.left) {
      node.left = false;
      this.counts.rejoins++;
    }
    const open = (): Promise<Replica> => Replica.open(this.replicaOptions(node, incarnation));
    open().then(
      (replica) => {
        if (node.incarnation !== incarnation) return void replica.close().catch(() => undefined); // the machine died while opening
        node.starting = false;
        node.openDelayMs = REOPEN_DELAY_MS_MIN;
        node.bootstrap = false;
        const keeper = new ReplicaKeeper(replica, {
          open,
          logger: this.loggerFor(node, incarnation),
          timers: this.timersFor(node, incarnation),
          reopenDelayMsMin: REOPEN_DELAY_MS_MIN,
          reopenDelayMsMax: REOPEN_DELAY_MS_MAX,
          onStopped: (error) => this.stopped(node, incarnation, error),
          onOpenFailed: (error) => this.openFailed(node, incarnation, error),
          onReopened: (next) => {
            if (node.incarnation === incarnation) this.joined(node, next);
          },
        });
        // As the agent does: a node that adopted a cluster id gossips it.
        keeper.onClusterId = () => {
          if (node.incarnation === incarnation) this.publishGossip();
        };
        node.keeper = keeper;
        keeper.start(id);
        this.joined(node, replica);
      },
      (error: unknown) => {
        if (node.incarnation !== incarnation) return;
        node.starting = false;
        this.openFailed(node, incarnation, error);
        if (this.violation !== null) return;
        // The supervisor (systemd) starts the agent again after a backoff.
        const delayMs = node.openDelayMs;
        node.openDelayMs = Math.min(delayMs * 2, REOPEN_DELAY_MS_MAX);
        this.schedule(delayMs, null, () => {
          if (node.incarnation === incarnation) this.start(id);
        });
      },
    );
  }

  /** The replica runs: gossip shows the node alive under its Raft id, and the replica gets the view. */
  private joined(node: ReplicaNode, replica: Replica): void {
    node.raftId = replica.raftId;
    node.gossipStatus = 'alive';
    this.publishGossip();
  }

  private openFailed(node: ReplicaNode, incarnation: number, error: unknown): void {
    if (node.incarnation !== incarnation) return;
    if (diskErrorCode(error) === undefined) {
      this.fail(`${node.id} could not open its replica after ${node.crashes} power losses: ${describe(error)}`);
      return;
    }
    // The device failed again or is still full: retried with backoff.
    node.failedOpens++;
    this.record(`open failed ${node.id}: ${diskErrorCode(error)}`);
  }

  /** Raft stopped on a failed storage write (an fsync's EIO, a full disk) or on damage it repairs; anything else is a violation. */
  private stopped(node: ReplicaNode, incarnation: number, error: unknown): void {
    if (node.incarnation !== incarnation) return;
    const code = diskErrorCode(error) ?? (error instanceof AnnalError && error.name === 'CorruptionError' ? 'damage' : undefined);
    if (code === undefined) {
      this.fail(`${node.id} stopped: ${describe(error)}`);
      return;
    }
    this.record(`raft stopped ${node.id}: ${code}`);
    this.noteRetained(node);
    node.stops++;
  }

  /** What a replica of `node` is opened with: the agent's options on the simulator's environment. */
  private replicaOptions(node: ReplicaNode, incarnation: number): Parameters<typeof Replica.open>[0] {
    const faults = this.options.faults ?? {};
    const disk = node.disk;
    const live = (): boolean => node.incarnation === incarnation;
    const { log, fileIo, ...replicaFaults } = faults;
    return {
      dataDir: DATA_DIR,
      nodeName: node.id,
      bootstrap: node.bootstrap,
      log: { maxStoreBytes: this.options.maxStoreBytes, maxIndexBytes: 12 * 64, fsync: { kind: 'always' }, ...(log !== undefined ? { faults: log } : {}) },
      timing: { tickIntervalMs: node.tickMs, electionTicks: ELECTION_TICKS, heartbeatTicks: HEARTBEAT_TICKS },
      requestTimeouts: { leaderWaitMs: 300, forwardTimeoutMs: 1000, proposeTimeoutMs: 1000 },
      retentionCheckIntervalMs: RETENTION_CHECK_MS,
      ...(this.options.retention !== undefined ? { retention: this.options.retention } : {}),
      ...(this.options.removeFailedAfterMs !== undefined ? { removeFailedAfterMs: this.options.removeFailedAfterMs } : {}),
      faults: replicaFaults,
      logger: this.loggerFor(node, incarnation),
      environment: {
        fileIo: faultyFileIo(disk, fileIo ?? {}),
        timers: this.timersFor(node, incarnation),
        monotonicMs: () => this.nowMs,
        wallClockMs: () => this.nowMs,
        randomBytes: (count) => {
          const bytes = new Uint8Array(count);
          for (let i = 0; i < count; i++) bytes[i] = this.prng.int(0, 255);
          return bytes;
        },
        raftPrng: () => new Prng(this.prng.nextUint32()),
        transport: (context) => this.transportFor(node, context, live),
      },
    };
  }

  /** The replica's log lines go into the trace (messages only: the same seed, the same text); some are counted. */
  private loggerFor(node: ReplicaNode, incarnation: number): ReplicaLogger {
    const line = (level: string) => (_object: object, message: string): void => {
      if (node.incarnation !== incarnation) return;
      if (message.startsWith('retention: the log now starts')) this.counts.retentions++;
      else if (message === 'configuration change committed') this.counts.configChanges++;
      else if (message.startsWith('raft state damaged: moved it aside')) this.counts.movedAside++;
      // The storage names the copy of damaged files it keeps by the wall clock: left out, the trace depends on the seed only.
      const detail = message.startsWith('proposing a configuration change') || message === 'raft storage recovery' ? ` ${JSON.stringify(_object).replace(/\d{4}-\d\d-\d\dT[\d-]+Z/g, '<time>')}` : '';
      this.record(`${node.id} ${level}: ${message.length > 80 ? `${message.slice(0, 80)}...` : message}${detail}`);
    };
    return { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error') };
  }

  /** The highest first retained offset any replica has applied (records below it are legitimately gone). */
  get retainedFrom(): number {
    for (const node of this.nodes.values()) this.noteRetained(node);
    return this.highestRetainedFrom;
  }

  private noteRetained(node: ReplicaNode): void {
    const replica = node.replica;
    if (replica !== null && !replica.stopped) this.highestRetainedFrom = Math.max(this.highestRetainedFrom, replica.log.lowestOffset());
  }

  /** A power loss: the process dies and the disk keeps what was synced plus a torn prefix of the rest. */
  crash(id: NodeId, options: { damageState?: boolean } = {}): void {
    const node = this.node(id);
    // A flipped bit in a record cuts the member's log there, as lost data would: like a damaged
    // state file, only while the cluster can lose the member (a 3-voter cluster tolerates one).
    const canLose = this.canLoseMember(node);
    const mayLose = options.damageState === true && canLose;
    const mayFlip = canLose && node.up;
    const heldThrough = mayFlip ? node.status().lastIndex : 0;
    if (!this.stop(node, 'power loss', (disk) => disk.crash({ bitFlipProbability: mayFlip ? (this.options.bitFlipProbability ?? 0) : 0 }))) return;
    node.crashes++;
    if (node.disk.bitFlips.length > 0) {
      node.bitFlips++;
      node.lost = true;
      node.repairThroughIndex = heldThrough;
      this.record(`bit flipped on ${id}`);
    }
    // No draw when off, so that seeds replay as before the fault existed.
    const readFailure = this.options.readFailureProbability ?? 0;
    if (mayFlip && readFailure > 0 && this.prng.chance(readFailure)) {
      const failed = node.disk.failSector((path) => path.startsWith(`${RAFT_DIR}/`));
      if (failed !== undefined) {
        node.readFailures++;
        node.lost = true;
        node.repairThroughIndex = heldThrough;
        this.record(`sector ${failed.sector} of ${id}'s ${failed.path} unreadable`);
      }
    }
    if (mayLose && this.prng.chance(this.options.stateDamageProbability ?? 0)) {
      const present = [...STATE_FILES].filter((name) => node.disk.kind(`${RAFT_DIR}/${name}`) === 'file');
      if (present.length === 0) return;
      const name = this.prng.pick(present);
      const path = `${RAFT_DIR}/${name}`;
      node.disk.damage(path, this.prng.int(0, Math.max(0, node.disk.fileSizeBytes(path) - 2)));
      node.lost = true;
      this.counts.stateDamages++;
      this.record(`lost a sector of ${id}'s ${name}`);
    }
  }

  /** kill -9: the process dies, the machine (and its page cache) stays up. */
  kill(id: NodeId): void {
    const node = this.node(id);
    if (this.stop(node, 'kill', (disk) => disk.restartProcess())) node.kills++;
  }

  /** The down node's disk is replaced by an empty one (its data is gone): it comes back as a new member (see canLoseMember). */
  wipe(id: NodeId): boolean {
    const node = this.node(id);
    if (node.running || node.left) return false;
    this.record(`disk of ${id} replaced: its data is gone`);
    node.replaceDisk(this.newDisk(this.prng.nextUint32()));
    node.lost = true;
    this.counts.wipes++;
    return true;
  }

  /**
   * Whether `node` may lose its data now and the cluster still hold every committed entry on a
   * majority of live members: the leader's configuration has at least 3 voters, no learner, each
   * voter the newest member of its node, no other node's data is lost and no node is leaving (an
   * operator never takes two members of three away at once).
   */
  canLoseMember(node: ReplicaNode): boolean {
    const leader = this.leader();
    if (leader === null) return false;
    const config = leader.status().config;
    const current = new Map([...this.nodes.values()].map((n) => [n.raftId, n]));
    if (config.voters.length < 3 || config.learners.length > 0) return false;
    if ([...this.nodes.values()].some((other) => other.leaving || (other.left && other.raftId !== undefined && config.voters.includes(other.raftId)))) return false;
    if (!config.voters.every((id) => current.has(id))) return false;
    // The leader's configuration takes effect when appended: a change not yet committed may go
    // with the member's data (seed 10223741: a leader appended "add n2 as a voter" and lost its
    // disk, leaving {n1, n3} with n1 gone; seed 10607531: the followers had appended such a change
    // too, but not durably, and lost it to a failed fsync). Only a committed one counts.
    const status = leader.status();
    if (status.configIndex > status.commit) return false;
    for (const other of this.nodes.values()) {
      if (!other.lost || other.raftId === undefined || !config.voters.includes(other.raftId) || !other.up) continue;
      // Its new member votes now; a log cut at a flipped bit must also hold again what it held.
      if (other.repairThroughIndex !== undefined && other.status().lastIndex < other.repairThroughIndex) continue;
      other.lost = false;
      other.repairThroughIndex = undefined;
    }
    return node.raftId !== undefined && config.voters.includes(node.raftId) && ![...this.nodes.values()].some((other) => other.lost);
  }

  /**
   * A graceful leave, as the agent's shutdown: a leader hands leadership over, the node leaves
   * gossip (the leader then removes it), and its replica closes.
   */
  leave(id: NodeId): void {
    const node = this.node(id);
    const replica = node.replica;
    if (!node.up || replica === null) return;
    this.record(`leave ${id}`);
    node.leaving = true;
    const incarnation = node.incarnation;
    this.counts.leaves++;
    void replica.handOffLeadership(500).then(async () => {
      if (node.incarnation !== incarnation) return;
      node.left = true;
      node.gossipStatus = 'left';
      this.publishGossip();
      await node.keeper?.close().catch(() => undefined);
      if (node.incarnation !== incarnation) return;
      node.incarnation++;
      node.keeper = null;
      node.leaving = false;
      this.record(`left ${id}`);
    });
  }

  /** Ends the node's process; false if it was not running. */
  private stop(node: ReplicaNode, label: string, survivingDisk: (disk: SimDisk) => SimDisk): boolean {
    if (!node.running) return false;
    this.record(`${label} ${node.id}`);
    this.noteRetained(node);
    const replica = node.replica;
    node.incarnation++;
    node.starting = false;
    node.leaving = false;
    node.keeper = null;
    node.replaceDisk(survivingDisk(node.disk));
    // The process is gone: its timers and messages are silenced by the incarnation, and its
    // waiting clients fail; what the close would still write goes to the dead disk.
    replica?.close().catch(() => undefined);
    if (!node.left) {
      const incarnation = node.incarnation;
      const [minMs, maxMs] = this.options.failureDetectionMs;
      this.schedule(this.prng.int(minMs, maxMs), null, () => {
        if (node.incarnation !== incarnation || node.running || node.left) return;
        node.gossipStatus = 'failed';
        this.publishGossip();
      });
    }
    return true;
  }

  // ---- gossip ----

  /**
   * Every running replica gets the member view after its own gossip delay. Gossip never goes
   * back in time (each member's newest status wins), so a delivery carries the view as it is then.
   */
  private publishGossip(): void {
    const members: GossipMember[] = [];
    for (const node of this.nodes.values()) {
      if (node.raftId === undefined) continue;
      const clusterId = node.replica?.clusterId;
      const tags: Record<string, string> = { [RAFT_ID_TAG]: node.raftId, rpc_addr: node.id };
      if (clusterId !== undefined) tags[CLUSTER_ID_TAG] = clusterId;
      members.push({ name: node.id, status: node.gossipStatus, gossipAddr: node.id, tags });
    }
    this.gossipView = members;
    this.record(`gossip ${members.map((member) => `${member.tags[RAFT_ID_TAG]}:${member.status}`).join(' ')}`);
    for (const node of this.nodes.values()) {
      const incarnation = node.incarnation;
      this.schedule(this.prng.int(1, 50), null, () => {
        if (node.incarnation !== incarnation || node.keeper === null) return;
        this.maybeSuspect(node);
        const view = this.viewOf(node);
        if (view !== this.gossipView && view.some((member, i) => member.status !== this.gossipView[i]!.status)) this.counts.partitionedViews++;
        node.keeper.updateMembers(view);
      });
    }
  }

  /**
   * The member view as `node` sees it: a running member it cannot reach, directly or through one
   * other member (SWIM's indirect probe), is failed to it (a partition makes each side report the
   * other failed, though every process runs).
   */
  private viewOf(node: ReplicaNode): readonly GossipMember[] {
    const suspected = this.suspicions.get(node.id);
    if (this.options.gossipPartitions !== true && suspected === undefined) return this.gossipView;
    const reachable = (a: NodeId, b: NodeId): boolean =>
      this.options.gossipPartitions !== true || (this.network.connected(a, b) && this.network.connected(b, a));
    return this.gossipView.map((member) => {
      if (member.status !== 'alive' || member.name === node.id) return member;
      if ((suspected?.get(member.name) ?? -1) > this.nowMs) return { ...member, status: 'failed' };
      if (reachable(node.id, member.name)) return member;
      for (const via of this.nodes.values()) {
        if (via.running && reachable(node.id, via.id) && reachable(via.id, member.name)) return member;
      }
      return { ...member, status: 'failed' };
    });
  }

  /**
   * Sometimes `node`'s failure detector declares another alive member failed for 0.2-3 s; the
   * view is published again when that ends (the member refuted, or was heard from again).
   */
  private maybeSuspect(node: ReplicaNode): void {
    const suspected = this.suspicions.get(node.id);
    if (suspected !== undefined) {
      for (const [name, untilMs] of suspected) if (untilMs <= this.nowMs) suspected.delete(name);
      if (suspected.size === 0) this.suspicions.delete(node.id);
    }
    if (!this.falseSuspicions || !this.gossipPrng.chance(this.options.falseSuspicionProbability ?? 0)) return;
    const others = this.gossipView.filter((member) => member.status === 'alive' && member.name !== node.id);
    if (others.length === 0) return;
    const subject = this.gossipPrng.pick(others).name;
    const durationMs = this.gossipPrng.int(200, 3000);
    let map = this.suspicions.get(node.id);
    if (map === undefined) this.suspicions.set(node.id, (map = new Map()));
    map.set(subject, this.nowMs + durationMs);
    this.counts.falseSuspicions++;
    this.record(`${node.id} wrongly holds ${subject} failed for ${durationMs} ms`);
    this.schedule(durationMs, null, () => this.publishGossip());
  }

  /** The chaos is over: no new false suspicions, and those held end now. */
  endSuspicions(): void {
    this.falseSuspicions = false;
    if (this.suspicions.size === 0) return;
    this.suspicions.clear();
    this.publishGossip();
  }

  /**
   * The network was partitioned or healed: each member's failure detector notices after a delay
   * in failureDetectionMs (suspicion, then failed; or a member heard from again).
   */
  networkChanged(): void {
    if (this.options.gossipPartitions !== true) return;
    const [minMs, maxMs] = this.options.failureDetectionMs;
    this.schedule(this.prng.int(minMs, maxMs), null, () => this.publishGossip());
  }

  // ---- the network ----

  private deliver(message: Message): void {
    const endpoint = this.endpoints.get(message.to);
    if (endpoint === undefined || !this.network.connected(message.from, message.to)) return;
    this.record(`${message.type} ${message.from}->${message.to} t${message.term}`);
    if (message.type === 'snapshot') this.snapshotsDelivered++;
    // The peer service's admission by cluster id: a node without one adopts the sender's first.
    const replica = this.replicaById(message.to);
    if (replica === null) return;
    const received = this.decoded(message);
    if (received === null) return;
    const admission = replica.admission.admit(message.from, this.senderClusterIds.get(message) ?? '', 'stream');
    if (!(admission instanceof Promise)) return this.admitted(admission, received, endpoint);
    void admission.then((settled) => {
      const now = this.endpoints.get(message.to);
      if (now !== undefined) this.admitted(settled, received, now);
    });
  }

  /**
   * The message as the peer service hands it to Raft: decoded from its wire bytes and through
   * the gateway's checks. Nothing here is hostile, so a message they refuse fails the run.
   */
  private decoded(message: Message): Message | null {
    const bytes = this.wireBytes.get(message);
    assert(bytes !== undefined, 'a message delivered that no transport sent');
    const batch = decodeBatch(bytes, { selfId: message.to, from: message.from, limits: DEFAULT_PEER_LIMITS });
    if (!batch.ok || batch.rejected.length > 0 || batch.messages.length !== 1) {
      const why = batch.ok ? batch.rejected.map((invalid) => `${invalid.reason}: ${invalid.detail}`).join('; ') : `${batch.reason}: ${batch.detail}`;
      this.fail(`${message.to} refused a ${message.type} from ${message.from} that the simulation sent: ${why}`);
      return null;
    }
    const received = batch.messages[0]!;
    if (canonical(received) !== canonical(message)) {
      this.fail(`the peer codec changed a ${message.type} from ${message.from}: ${canonical(message).slice(0, 300)} arrived as ${canonical(received).slice(0, 300)}`);
      return null;
    }
    let sizes = this.snapshotSizes.get(message.to);
    if (sizes === undefined) this.snapshotSizes.set(message.to, (sizes = new SnapshotSizes()));
    const sizeChanged = sizes.check(received);
    if (sizeChanged !== undefined) {
      this.fail(`${message.to} refused a snapshot chunk from ${message.from}: ${sizeChanged.reason}: ${sizeChanged.detail}`);
      return null;
    }
    return received;
  }

  private admitted(admission: Admission, message: Message, endpoint: (message: Message) => void): void {
    if (admission.admitted) return endpoint(message);
    // One cluster is ever bootstrapped here: a refusal as another cluster's is a bug.
    if (admission.reason === 'otherCluster') this.fail(`${message.to} refused ${message.from} as a peer of another cluster (ours ${admission.ours})`);
    else this.record(`${message.to} dropped a message from ${message.from}: ${admission.reason}`);
  }

  /** Raft messages over the simulated network, and the peer calls to a leader as simulated RPCs. */
  private transportFor(node: ReplicaNode, context: ReplicaTransportContext, live: () => boolean): ReplicaTransport {
    const selfId = context.selfId;
    let closed = false;
    let handler: ((message: Message) => void) | undefined;
    const active = (): boolean => !closed && live();
    return {
      send: (messages) => {
        if (!active()) return;
        // The stream's metadata carries the sender's cluster id as it is when the batch goes out;
        // the message travels as the peer transport's wire bytes.
        const clusterId = context.clusterId() ?? '';
        for (const message of messages) {
          this.senderClusterIds.set(message, clusterId);
          this.wireBytes.set(message, encodeMessageBatch([message]));
          this.network.send(this.nowMs, message);
        }
      },
      onMessage: (next) => {
        if (!active()) return;
        handler = next;
        this.endpoints.set(selfId, (message) => {
          if (active()) handler?.(message);
        });
      },
      deliver: (message) => {
        if (active()) handler?.(message);
      },
      close: () => {
        closed = true;
        this.endpoints.delete(selfId);
      },
      forward: (to, request, options) =>
        this.call(node, selfId, live, to, options.deadlineMs, 'forward', (target) => {
          // As the peer service receives it: decoded from the transport's wire bytes.
          const received = decodeForwardRequest(encodeForwardRequest(request));
          if (received instanceof DecodeFailure) {
            this.fail(`a forwarded write did not decode: ${received.reason}`);
            return Promise.reject(new UnavailableError('malformed forward'));
          }
          return target.appendForwarded(received);
        }),
      readIndex: (to, options) => this.call(node, selfId, live, to, options.deadlineMs, 'readIndex', (target) => target.readIndexForPeer()),
    };
  }

  /** The replica whose Raft id is `id`, if its process runs. */
  private replicaById(id: NodeId): Replica | null {
    const replica = this.nodes.get(nodeNameOf(id))?.replica ?? null;
    return replica !== null && replica.raftId === id ? replica : null;
  }

  /**
   * A peer call over the simulated network, failing as the gRPC ones do: an unreachable peer that
   * is down refuses the connection (nothing was appended), a lost request or answer runs into the
   * deadline (the outcome is unknown).
   */
  private call<T>(node: ReplicaNode, from: NodeId, live: () => boolean, to: NodeId, deadlineMs: number, name: string, handle: (target: ReplicatedLog) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled || !live()) return;
        settled = true;
        outcome();
      };
      this.schedule(Math.max(0, deadlineMs - this.nowMs), null, () =>
        finish(() => reject(new DeadlineExceededError(`${name} to ${to} passed its deadline`))),
      );
      const back = (outcome: () => void): void => {
        if (!this.network.connected(to, from) || this.prng.chance(this.network.options.packetLossProbability)) return;
        this.schedule(this.network.delayMs(), null, () => finish(outcome));
      };
      if (!this.network.connected(from, to) || this.prng.chance(this.network.options.packetLossProbability)) return;
      const callerClusterId = node.replica?.clusterId ?? '';
      this.schedule(this.network.delayMs(), `${name} ${node.id}->${nodeNameOf(to)}`, () => {
        const target = this.replicaById(to);
        if (target === null || target.stopped) {
          back(() => reject(new UnavailableError(`No connection established to ${to}`)));
          return;
        }
        // The peer service checks a call's cluster id too (a call never makes a node adopt one).
        const admission = target.admission.admit(from, callerClusterId, 'call');
        assert(!(admission instanceof Promise), 'a call is admitted or refused at once');
        if (!admission.admitted) {
          this.fail(`${to} refused a ${name} call from ${from}: ${admission.reason}`);
          return;
        }
        handle(target.log).then(
          (value) => back(() => resolve(value)),
          (error: unknown) => back(() => reject(error instanceof AnnalError ? error : new UnavailableError(describe(error)))),
        );
      });
    });
  }

  // ---- time ----

  /** The node's timers on the virtual clock; a crash silences those of its process. */
  private timersFor(node: ReplicaNode, incarnation: number): Timers {
    const live = (): boolean => node.incarnation === incarnation;
    return {
      after: (delayMs, callback) => {
        let cancelled = false;
        this.schedule(delayMs, null, () => {
          if (!cancelled && live()) callback();
        });
        return () => {
          cancelled = true;
        };
      },
      every: (intervalMs, callback) => {
        let cancelled = false;
        const tick = (): void => {
          if (cancelled || !live()) return;
          this.schedule(intervalMs, null, tick);
          callback();
        };
        // Nodes start at different phases of their tick.
        this.schedule(this.prng.int(1, intervalMs), null, tick);
        return () => {
          cancelled = true;
        };
      },
    };
  }

  // ---- observation ----

  /**
   * A member's durable term never goes back, nor its vote within a term: what Raft's safety
   * rests on, and what a member whose state is lost must not break (it rejoins as a new one).
   */
  private checkPromises(): void {
    for (const node of this.nodes.values()) {
      const replica = node.replica;
      if (replica === null) continue;
      const { term, vote } = replica.storage.initialState().hardState;
      const before = this.promised.get(replica.raftId);
      if (before !== undefined && (term < before.term || (term === before.term && before.vote !== null && vote !== before.vote))) {
        this.fail(`${replica.raftId} forgot what it promised: term ${before.term} vote ${before.vote} became term ${term} vote ${vote}`);
        return;
      }
      if (before === undefined || term !== before.term || vote !== before.vote) this.promised.set(replica.raftId, { term, vote });
    }
  }

  /** The up node that is leader in the highest term, or null. */
  leader(): ReplicaNode | null {
    let best: ReplicaNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes.values()) {
      if (!node.up) continue;
      const status = node.status();
      if (status.role !== Role.Leader || status.term <= bestTerm) continue;
      best = node;
      bestTerm = status.term;
    }
    return best;
  }

  upNodes(): ReplicaNode[] {
    return [...this.nodes.values()].filter((node) => node.up);
  }

  /** Stops every replica (the end of a run); pending storage work is abandoned with its disk. */
  shutdown(): void {
    for (const node of this.nodes.values()) {
      const replica = node.replica;
      node.incarnation++;
      node.keeper = null;
      replica?.close().catch(() => undefined);
    }
  }
}

/**
 * Lets the process run until nothing is queued: every microtask drained and no setImmediate
 * callback pending (the commit log flushes from one), so the next event sees the replicas quiet.
 */
async function settle(): Promise<void> {
  for (let turn = 0; turn < SETTLE_TURNS_MAX; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!process.getActiveResourcesInfo().includes('Immediate')) return;
  }
  throw new Error(`the replicas did not settle within ${SETTLE_TURNS_MAX} event-loop turns`);
}

/** The I/O error code (EIO, ENOSPC) behind a storage failure, or undefined for any other error. */
export function diskErrorCode(error: unknown): string | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++) {
    const code = (cause as { code?: unknown }).code;
    if (code === 'EIO' || code === 'ENOSPC') return code;
  }
  return undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** A value as text with object keys sorted and bytes as hex, whatever their class: what a message says, not how it is built. */
function canonical(value: unknown): string {
  if (value instanceof Uint8Array) return `0x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${k}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}
