/**
 * The production replica on a virtual clock: each simulated node is the code a clustered agent
 * runs (RaftLogStorage on the CommitLog, on a seeded SimDisk through FileIo; the ReplicatedLog as
 * the RaftNode's state machine and the log clients are served from), with its timers on the
 * virtual clock and its Raft messages and peer calls (Forward, ReadIndex) on the simulated
 * network. Only the gRPC transport is replaced.
 *
 * That storage returns real promises, so this simulator is asynchronous: between two events it
 * lets the process settle (microtasks, and the commit log's setImmediate flushes) until nothing
 * is queued, and the disk's fsyncs complete from the event queue at a virtual time. Nothing reads
 * a wall clock or waits on real I/O, so the order of everything is a function of the seed (the
 * determinism test runs a seed twice and compares the hashes).
 *
 * A crash is a power loss: the node's process state is dropped and its disk keeps what was
 * synced plus a random prefix of the rest, the last write torn (SimDisk.crash). A restart opens
 * the storage on what the disk kept (its recovery runs) and builds a new ReplicatedLog and RaftNode.
 */
import { Prng, DeadlineExceededError, UnavailableError, AnnalError, assert } from '../util/index.js';
import { RaftNode, Role, type ClusterConfig, type Faults, type Message, type NodeId, type RaftOptions, type Timers, type Transport } from '../raft/index.js';
import { RaftLogStorage, type RaftStorageFaults } from '../replication/raft-storage.js';
import { ReplicatedLog, type LeaderCalls } from '../replication/replicated-log.js';
import { encodeControl, leaderRetainFrom, type RetentionPolicy } from '../replication/retention.js';
import type { StorageFaults } from '../storage/index.js';
import { SimDisk } from './disk.js';
import { EventQueue } from './event-queue.js';
import { faultyFileIo, type FileIoFaults } from './faulty-file-io.js';
import { mixString, mixUint } from './hash.js';
import { SimNetwork, type NetworkOptions } from './network.js';

/** Deliberately broken variants at the replica's layers, passed to the code that reads them. */
export interface ReplicaFaults {
  readonly raft?: Faults;
  readonly log?: StorageFaults;
  readonly storage?: RaftStorageFaults;
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
  readonly raft?: Partial<Omit<RaftOptions, 'id' | 'storage' | 'prng'>>;
  readonly faults?: ReplicaFaults;
  /** Commit-log segment size: small segments make rolls (and their fsync ordering) frequent. */
  readonly maxStoreBytes: number;
  /**
   * How much of the log the cluster keeps: the leader's retention pass (the one Replica runs)
   * every RETENTION_CHECK_MS proposes where the log starts, and every replica applies it.
   */
  readonly retention?: RetentionPolicy;
  /** Probability that a power loss flips one bit of one synced byte on the node's disk. Default 0. */
  readonly bitFlipProbability?: number;
  readonly trace?: (line: string) => void;
}

const DATA_DIR = '/data/raft';
const EVENT_QUEUE_SIZE_MAX = 1_000_000;
/**
 * A stopped replica is reopened in place after this long, doubling up to the maximum: the agent's
 * backoff (1 s to 30 s) scaled to runs of a few virtual seconds.
 */
const REOPEN_FIRST_DELAY_MS = 250;
const REOPEN_MAX_DELAY_MS = 2000;
/** How often a leader checks its retention policy (Replica: every second; shorter for the short runs). */
const RETENTION_CHECK_MS = 200;
/** Settling turns between two events before the simulator calls the replicas busy-looping. */
const SETTLE_TURNS_MAX = 10_000;

interface SimEvent {
  readonly label: string | null;
  readonly action: () => void;
}

export class ReplicaNode {
  disk: SimDisk;
  /** Bumped by every crash and start: callbacks of an older incarnation do nothing. */
  incarnation = 0;
  storage: RaftLogStorage | null = null;
  log: ReplicatedLog | null = null;
  raft: RaftNode<number> | null = null;
  starting = false;
  /** The stopped replica's storage closing (a reopen waits for it: it holds the directory's lock). */
  closing: Promise<void> | null = null;
  /** A retention decision of this incarnation is being committed. */
  retaining = false;
  /** The next reopen's backoff after a failed one. */
  reopenDelayMs = REOPEN_FIRST_DELAY_MS;
  receive: ((message: Message) => void) | null = null;
  /** Power losses of this node's machine. */
  crashes = 0;
  /** Process kills (the page cache survives). */
  kills = 0;
  /** Power losses that flipped a bit on this node's disk. */
  bitFlips = 0;
  /** Times Raft stopped after a failed storage write and the replica was reopened in place. */
  stops = 0;
  /** Opens of the storage that failed on a disk error (and were retried). */
  failedOpens = 0;
  /** Fsyncs failed on the disks a crash or kill replaced. */
  private pastFsyncFailures = 0;

  constructor(
    readonly id: NodeId,
    readonly tickMs: number,
    disk: SimDisk,
  ) {
    this.disk = disk;
  }

  /** Fsyncs that failed on this node's disks so far. */
  get fsyncFailures(): number {
    return this.pastFsyncFailures + this.disk.fsyncFailures;
  }

  replaceDisk(disk: SimDisk): void {
    this.pastFsyncFailures += this.disk.fsyncFailures;
    this.disk = disk;
  }

  get up(): boolean {
    return this.raft !== null;
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
  /** Retention decisions committed. */
  retentionsCommitted = 0;
  /** The highest first retained offset any replica has applied (what retention removed lies below). */
  retainedFrom = 0;
  /** The first broken property (or unexpected error) seen; the run stops at it. */
  violation: string | null = null;
  private readonly queue = new EventQueue<SimEvent>(EVENT_QUEUE_SIZE_MAX);
  private readonly initialConfig: ClusterConfig;
  /** Draws for the disk's faults only, so that seeds without them keep their schedule. */
  private readonly diskPrng: Prng;

  constructor(readonly options: ReplicaClusterOptions) {
    this.prng = new Prng(options.seed);
    this.diskPrng = new Prng(options.seed ^ 0x0d15_c0de);
    this.network = new SimNetwork(this.prng, options.network, (atMs, message) =>
      this.queue.push(atMs, { label: null, action: () => this.deliver(message) }),
    );
    this.initialConfig = { voters: [...options.nodeIds], learners: [] };
    for (const id of options.nodeIds) {
      const node = new ReplicaNode(id, this.prng.int(options.tickMsMin, options.tickMsMax), this.newDisk(this.prng.nextUint32()));
      this.nodes.set(id, node);
    }
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

  /** Opens the node's storage on its disk (recovery included) and starts its replica. */
  start(id: NodeId): void {
    const node = this.node(id);
    if (node.up || node.starting) return;
    this.record(`start ${id}`);
    node.starting = true;
    const incarnation = ++node.incarnation;
    const timers = this.timersFor(node, incarnation);
    const faults = this.options.faults ?? {};
    const disk = node.disk;
    // A reopen in place waits for the stopped replica's files to close (the agent does the same).
    const closed = node.closing ?? Promise.resolve();
    closed.then(() => RaftLogStorage.open(DATA_DIR, {
      fileIo: faultyFileIo(disk, faults.fileIo ?? {}),
      log: { maxStoreBytes: this.options.maxStoreBytes, maxIndexBytes: 12 * 64, fsync: { kind: 'always' }, ...(faults.log !== undefined ? { faults: faults.log } : {}) },
      initialConfig: this.initialConfig,
      timers,
      ...(faults.storage !== undefined ? { faults: faults.storage } : {}),
    })).then(
      (storage) => {
        if (node.incarnation !== incarnation) return; // the machine died while opening
        node.starting = false;
        node.closing = null;
        node.reopenDelayMs = REOPEN_FIRST_DELAY_MS;
        // The copy of damaged files is named by the wall clock: left out of the trace, which must depend on the seed only.
        for (const action of storage.recovery.actions) this.record(`recovery ${id}: ${action.replace(/\d{4}-\d\d-\d\dT[\d-]+Z/g, '<time>')}`);
        try {
          this.build(node, incarnation, storage, timers);
        } catch (error) {
          this.fail(`${id} could not start its replica on the recovered storage: ${describe(error)}`);
        }
      },
      (error: unknown) => {
        if (node.incarnation !== incarnation) return;
        node.starting = false;
        node.closing = null;
        if (diskErrorCode(error) === undefined) {
          this.fail(`${id} could not open its storage after ${node.crashes} power losses: ${describe(error)}`);
          return;
        }
        // The device failed again or is still full: the agent retries with backoff.
        node.failedOpens++;
        this.record(`open failed ${id}: ${diskErrorCode(error)}`);
        this.retryStart(node);
      },
    );
  }

  private retryStart(node: ReplicaNode): void {
    const incarnation = node.incarnation;
    const delayMs = node.reopenDelayMs;
    node.reopenDelayMs = Math.min(delayMs * 2, REOPEN_MAX_DELAY_MS);
    this.schedule(delayMs, null, () => {
      if (node.incarnation === incarnation) this.start(node.id);
    });
  }

  /**
   * Raft stopped after a failed storage write (an fsync's EIO, a full disk): as the agent does,
   * close the replica and reopen it in place later, in the same process (the page cache kept).
   * Anything else that stops Raft is a violation.
   */
  private stopped(node: ReplicaNode, incarnation: number, error: unknown): void {
    if (node.incarnation !== incarnation) return;
    if (diskErrorCode(error) === undefined) {
      this.fail(`${node.id} stopped: a storage write failed: ${describe(error)}`);
      return;
    }
    this.record(`raft stopped ${node.id}: ${diskErrorCode(error)}`);
    node.stops++;
    const { raft, log, storage } = node;
    node.incarnation++;
    node.raft = null;
    node.log = null;
    node.storage = null;
    raft?.close();
    log?.close();
    // A close that fails (the failed log's final flush) still releases the files, as in the agent.
    node.closing = storage === null ? null : storage.close().catch(() => undefined);
    node.reopenDelayMs = REOPEN_FIRST_DELAY_MS;
    this.retryStart(node);
  }

  private build(node: ReplicaNode, incarnation: number, storage: RaftLogStorage, timers: Timers): void {
    const log = new ReplicatedLog({
      storage,
      peers: this.peersFor(node, incarnation),
      timers,
      nowMs: () => this.nowMs,
      leaderWaitMs: 300,
      forwardTimeoutMs: 1000,
      proposeTimeoutMs: 1000,
    });
    const raft = new RaftNode<number>({
      electionTicks: 10,
      heartbeatTicks: 2,
      ...this.options.raft,
      id: node.id,
      storage,
      transport: this.transportFor(node),
      stateMachine: log,
      applied: log.appliedAtStart,
      timers,
      tickIntervalMs: node.tickMs,
      prng: new Prng(this.prng.nextUint32()),
      faults: this.options.faults?.raft ?? {},
      onStopped: (error) => this.stopped(node, incarnation, error),
    });
    log.attach(raft);
    node.storage = storage;
    node.log = log;
    node.raft = raft;
    node.retaining = false;
    raft.onApplied(() => {
      this.retainedFrom = Math.max(this.retainedFrom, log.lowestOffset());
    });
    raft.start();
    const policy = this.options.retention;
    if (policy !== undefined) timers.every(RETENTION_CHECK_MS, () => this.retentionPass(node, incarnation, policy));
  }

  /** On the leader, proposes where the log starts now under the policy, as Replica does. */
  private retentionPass(node: ReplicaNode, incarnation: number, policy: RetentionPolicy): void {
    const { raft, storage } = node;
    if (node.incarnation !== incarnation || raft === null || storage === null || node.retaining) return;
    const modifiedMs = (path: string): number => {
      try {
        return node.disk.modifiedMs(path);
      } catch {
        return this.nowMs;
      }
    };
    const firstIndex = leaderRetainFrom({ status: raft.status(), storage, modifiedMs, nowMs: this.nowMs }, policy);
    if (firstIndex === null) return;
    this.record(`retain ${node.id} from index ${firstIndex}`);
    node.retaining = true;
    const done = (committed: boolean): void => {
      if (node.incarnation !== incarnation) return;
      node.retaining = false;
      if (committed) this.retentionsCommitted++;
    };
    raft.proposeControl(encodeControl({ kind: 'retain', firstIndex })).then(() => done(true), () => done(false));
  }

  /** A power loss: the process dies and the disk keeps what was synced plus a torn prefix of the rest. */
  crash(id: NodeId): void {
    const node = this.node(id);
    if (!this.stop(node, 'power loss', (disk) => disk.crash({ bitFlipProbability: this.options.bitFlipProbability ?? 0 }))) return;
    node.crashes++;
    if (node.disk.bitFlips.length > 0) {
      node.bitFlips++;
      this.record(`bit flipped on ${id}`);
    }
  }

  /** kill -9: the process dies, the machine (and its page cache) stays up. */
  kill(id: NodeId): void {
    const node = this.node(id);
    if (this.stop(node, 'kill', (disk) => disk.restartProcess())) node.kills++;
  }

  /** Ends the node's process; false if it was not running. */
  private stop(node: ReplicaNode, label: string, survivingDisk: (disk: SimDisk) => SimDisk): boolean {
    if (!node.up && !node.starting && node.closing === null) return false;
    this.record(`${label} ${node.id}`);
    node.incarnation++;
    node.starting = false;
    node.closing = null; // the process that was closing the files is gone
    const { raft, log } = node;
    node.raft = null;
    node.log = null;
    node.storage = null;
    node.replaceDisk(survivingDisk(node.disk));
    raft?.close();
    log?.close();
    return true;
  }

  // ---- the network ----

  private deliver(message: Message): void {
    const node = this.nodes.get(message.to);
    if (node?.receive == null || !this.network.connected(message.from, message.to)) return;
    this.record(`${message.type} ${message.from}->${message.to} t${message.term}`);
    if (message.type === 'snapshot') this.snapshotsDelivered++;
    node.receive(message);
  }

  private transportFor(node: ReplicaNode): Transport {
    let closed = false;
    return {
      send: (messages) => {
        if (closed) return;
        for (const message of messages) this.network.send(this.nowMs, message);
      },
      onMessage: (handler) => {
        node.receive = handler;
      },
      close: () => {
        closed = true;
        node.receive = null;
      },
    };
  }

  /**
   * The peer calls to a leader over the simulated network, failing as the gRPC ones do: an
   * unreachable peer that is down refuses the connection (nothing was appended), a lost request
   * or answer runs into the deadline (the outcome is unknown).
   */
  private peersFor(node: ReplicaNode, incarnation: number): LeaderCalls {
    return {
      forward: (to, request, options) =>
        this.call(node, incarnation, to, options.deadlineMs, 'forward', (target) => target.appendForwarded(request)),
      readIndex: (to, options) => this.call(node, incarnation, to, options.deadlineMs, 'readIndex', (target) => target.readIndexForPeer()),
    };
  }

  private call<T>(node: ReplicaNode, incarnation: number, to: NodeId, deadlineMs: number, name: string, handle: (target: ReplicatedLog) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled || node.incarnation !== incarnation) return;
        settled = true;
        outcome();
      };
      this.schedule(Math.max(0, deadlineMs - this.nowMs), null, () =>
        finish(() => reject(new DeadlineExceededError(`${name} to ${to} passed its deadline`))),
      );
      const back = (outcome: () => void): void => {
        if (!this.network.connected(to, node.id) || this.prng.chance(this.network.options.packetLossProbability)) return;
        this.schedule(this.network.delayMs(), null, () => finish(outcome));
      };
      if (!this.network.connected(node.id, to) || this.prng.chance(this.network.options.packetLossProbability)) return;
      this.schedule(this.network.delayMs(), `${name} ${node.id}->${to}`, () => {
        const target = this.nodes.get(to)?.log;
        if (target == null) {
          back(() => reject(new UnavailableError(`No connection established to ${to}`)));
          return;
        }
        handle(target).then(
          (value) => back(() => resolve(value)),
          (error: unknown) => back(() => reject(error instanceof AnnalError ? error : new UnavailableError(describe(error)))),
        );
      });
    });
  }

  // ---- time ----

  /** The node's timers on the virtual clock; a crash silences those of its incarnation. */
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

  /** The up node that is leader in the highest term, or null. */
  leader(): ReplicaNode | null {
    let best: ReplicaNode | null = null;
    for (const node of this.nodes.values()) {
      const status = node.raft?.status();
      if (status?.role !== Role.Leader) continue;
      if (best === null || status.term > (best.raft as RaftNode<number>).status().term) best = node;
    }
    return best;
  }

  upNodes(): ReplicaNode[] {
    return [...this.nodes.values()].filter((node) => node.up);
  }

  /** Stops every replica (the end of a run); pending storage work is abandoned with its disk. */
  shutdown(): void {
    for (const node of this.nodes.values()) {
      node.incarnation++;
      node.raft?.close();
      node.log?.close();
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
