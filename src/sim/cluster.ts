/**
 * A simulated Raft cluster on a virtual clock. Every node is the production driver (RaftNode)
 * around the real core, with its timers on the virtual clock, its transport on the simulated
 * network and its storage on a simulated disk (a MemoryStorage holding what is durable); all
 * randomness comes from one seed. The safety checker sees every durable write, commit, apply and
 * election as it happens.
 *
 * A slow disk completes each write after a random delay; a crash discards what was not yet
 * durable (the write in progress, half the time after the disk got through part of it), queued
 * input, the state machine and the in-memory core. A restart builds a new RaftNode from what the
 * disk holds.
 */
import {
  EntryType,
  LeadershipLostError,
  MemoryStorage,
  RaftNode,
  Role,
  type ClusterConfig,
  type ConfigChange,
  type Entry,
  type Faults,
  type HardState,
  type Message,
  type NodeId,
  type Outcome,
  type RaftOptions,
  type RaftStorage,
  type RefusalReason,
  type Snapshot,
  type StateMachine,
  type Timers,
  type Transport,
  type Written,
} from '../raft/index.js';
import { Prng, assert } from '../util/index.js';
import { LogChain, SafetyChecker, SafetyViolation } from './checker.js';
import { EventQueue } from './event-queue.js';
import { mixString, mixUint } from './hash.js';
import { SimNetwork, type NetworkOptions } from './network.js';
import { SimStateMachine } from './state-machine.js';

export interface ClusterOptions {
  readonly seed: number;
  /** Initial voters. */
  readonly nodeIds: readonly NodeId[];
  readonly network: NetworkOptions;
  /** Each node ticks every tickMs in [tickMsMin, tickMsMax], fixed per node (clock skew). */
  readonly tickMsMin: number;
  readonly tickMsMax: number;
  readonly raft?: Partial<Omit<RaftOptions, 'id' | 'storage' | 'prng'>>;
  readonly faults?: Faults;
  /** Take a state machine snapshot and compact the log every this many applied entries (0: never). */
  readonly snapshotEveryEntries?: number;
  readonly trailingEntryCount?: number;
  /**
   * Scripted mode: nodes do not tick on their own and sent messages wait in `pendingMessages`
   * until the script delivers or drops them.
   */
  readonly manualNetwork?: boolean;
  /** Receives one line per event when set (the CLI's --verbose). */
  readonly trace?: (line: string) => void;
}

export type ProposeOutcome =
  | { readonly type: 'ok'; readonly index: number; readonly offset: number }
  | { readonly type: 'failed'; readonly reason: string };

/** One write to a node's simulated disk. */
type DiskWrite =
  | { readonly kind: 'snapshot'; readonly snapshot: Snapshot }
  | { readonly kind: 'entries'; readonly entries: readonly Entry[] }
  | { readonly kind: 'hardState'; readonly hardState: HardState }
  | { readonly kind: 'createSnapshot'; readonly options: Parameters<MemoryStorage['createSnapshot']>[0] };

/** A write a slow disk has not finished: the driver waits on it like on a promise. */
class PendingWrite implements PromiseLike<void> {
  private onDone: (() => void) | null = null;

  constructor(readonly write: DiskWrite) {}

  then<A = void, B = never>(onDone?: ((value: void) => A | PromiseLike<A>) | null): PromiseLike<A | B> {
    assert(this.onDone === null, 'one waiter per simulated write');
    this.onDone = () => void onDone?.(undefined);
    return this as unknown as PromiseLike<A | B>;
  }

  /** Runs the waiter synchronously: the simulation has no microtask queue to wait for. */
  complete(): void {
    this.onDone?.();
  }
}

interface TickTimer {
  readonly intervalMs: number;
  readonly callback: () => void;
  cancelled: boolean;
}

type SimEvent =
  | { readonly kind: 'tick'; readonly node: SimNode; readonly timer: TickTimer }
  | { readonly kind: 'deliver'; readonly message: Message }
  | { readonly kind: 'diskDone'; readonly node: SimNode; readonly write: PendingWrite }
  | { readonly kind: 'call'; readonly label: string; readonly action: () => void };

export class SimNode {
  /** What the disk holds. */
  readonly storage: MemoryStorage;
  readonly chain = new LogChain();
  driver: RaftNode<number | null> | null = null;
  incarnation = 0;
  stateMachine = new SimStateMachine();
  /** Durable writes take a random time in [0, diskLatencyMsMax] (0: instantaneous). */
  diskLatencyMsMax = 0;
  /** Writes the disk has not finished, in order; it works on the first (a leader writing in the background queues more). */
  pendingWrites: PendingWrite[] = [];
  /** The driver's message handler for this incarnation. */
  receive: ((message: Message) => void) | null = null;
  /** The driver's tick callback (scripted mode ticks it by hand). */
  tick: (() => void) | null = null;

  constructor(
    readonly id: NodeId,
    readonly tickMs: number,
    initialConfig: ClusterConfig,
  ) {
    this.storage = new MemoryStorage(initialConfig);
  }

  get up(): boolean {
    return this.driver !== null;
  }

  /** The node's driver (it must be up). */
  get raft(): RaftNode<number | null> {
    assert(this.driver !== null, `node ${this.id} is down`);
    return this.driver;
  }
}

const EVENT_QUEUE_SIZE_MAX = 1_000_000;
const textEncoder = new TextEncoder();
const IGNORED: Outcome<unknown> = { resolve: () => {}, reject: () => {} };

export class SimCluster {
  readonly prng: Prng;
  readonly checker = new SafetyChecker();
  readonly network: SimNetwork;
  readonly nodes = new Map<NodeId, SimNode>();
  nowMs = 0;
  traceHash = 0x12345678;
  eventCount = 0;
  private readonly queue = new EventQueue<SimEvent>(EVENT_QUEUE_SIZE_MAX);
  private logicalClock = 0;
  /** The logical time at which each index was first known committed anywhere. */
  private readonly commitLogicalTimes: number[] = [];
  /** Sent messages awaiting delivery (scripted mode only). */
  pendingMessages: Message[] = [];

  constructor(readonly options: ClusterOptions) {
    this.prng = new Prng(options.seed);
    this.network = new SimNetwork(this.prng, options.network, (atMs, message) => this.queue.push(atMs, { kind: 'deliver', message }));
    const config: ClusterConfig = { voters: [...options.nodeIds], learners: [] };
    for (const id of options.nodeIds) this.addNode(id, config);
  }

  /** Creates and starts a node; nodes joining later start with an empty configuration. */
  addNode(id: NodeId, initialConfig: ClusterConfig = { voters: [], learners: [] }): SimNode {
    assert(!this.nodes.has(id), `node ${id} exists`);
    const node = new SimNode(id, this.prng.int(this.options.tickMsMin, this.options.tickMsMax), initialConfig);
    this.nodes.set(id, node);
    this.start(node);
    return node;
  }

  node(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    assert(node !== undefined, `unknown node ${id}`);
    return node;
  }

  // ---- running ----

  /** Processes events until the clock passes `untilMs` (or `stop` returns true). */
  runUntil(untilMs: number, stop: () => boolean = () => false): boolean {
    for (;;) {
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
      this.dispatch(next.event);
    }
  }

  runFor(durationMs: number, stop?: () => boolean): boolean {
    return this.runUntil(this.nowMs + durationMs, stop);
  }

  schedule(delayMs: number, label: string, action: () => void): void {
    this.queue.push(this.nowMs + delayMs, { kind: 'call', label, action });
  }

  private dispatch(event: SimEvent): void {
    switch (event.kind) {
      case 'tick': {
        const { node, timer } = event;
        if (timer.cancelled) return;
        this.queue.push(this.nowMs + timer.intervalMs, event);
        this.record(`tick ${node.id}`);
        timer.callback();
        this.checkRole(node);
        return;
      }
      case 'deliver':
        this.deliver(event.message);
        return;
      case 'diskDone': {
        const { node, write } = event;
        if (node.pendingWrites[0] !== write) return;
        node.pendingWrites.shift();
        this.record(`disk ${node.id} ${write.write.kind}`);
        this.persist(node, write.write);
        write.complete();
        this.checkRole(node);
        this.startWrite(node);
        return;
      }
      case 'call':
        this.record(event.label);
        event.action();
        return;
    }
  }

  /** Hands `message` to its destination if that node is up and the link is not cut. */
  deliver(message: Message): void {
    const node = this.nodes.get(message.to);
    if (node?.receive == null || !this.network.connected(message.from, message.to)) return;
    this.record(describeMessage(message));
    node.receive(message);
    this.checkRole(node);
  }

  private record(line: string): void {
    this.traceHash = mixUint(mixString(this.traceHash, line), this.nowMs);
    this.options.trace?.(`${String(this.nowMs).padStart(7)}ms ${line}`);
  }

  /** After any input: a node that leads must be the only leader of its term and hold every committed entry. */
  private checkRole(node: SimNode): void {
    const status = node.driver?.status();
    if (status?.role === Role.Leader) this.checker.onLeader(node.id, status.term, node.chain);
  }

  // ---- the simulated disk ----

  private storageFor(node: SimNode): RaftStorage {
    const disk = node.storage;
    return {
      initialState: () => disk.initialState(),
      entries: (lo, hi, maxSizeBytes) => disk.entries(lo, hi, maxSizeBytes),
      configEntries: (lo) => disk.configEntries(lo),
      term: (index) => disk.term(index),
      firstIndex: () => disk.firstIndex(),
      lastIndex: () => disk.lastIndex(),
      snapshot: () => disk.snapshot(),
      applySnapshot: (snapshot) => this.write(node, { kind: 'snapshot', snapshot }),
      append: (entries) => this.write(node, { kind: 'entries', entries }),
      setHardState: (hardState) => this.write(node, { kind: 'hardState', hardState }),
      createSnapshot: (options) => this.write(node, { kind: 'createSnapshot', options }),
    };
  }

  /** Writes now on a fast, idle disk; else after the writes before it and a random delay (the driver waits). */
  private write(node: SimNode, write: DiskWrite): Written {
    if (node.diskLatencyMsMax === 0 && node.pendingWrites.length === 0) {
      this.persist(node, write);
      return;
    }
    const pending = new PendingWrite(write);
    node.pendingWrites.push(pending);
    if (node.pendingWrites.length === 1) this.startWrite(node);
    return pending;
  }

  /** The disk takes the next queued write, if any (one at a time, in order). */
  private startWrite(node: SimNode): void {
    const next = node.pendingWrites[0];
    if (next !== undefined) this.queue.push(this.nowMs + this.prng.int(0, node.diskLatencyMsMax), { kind: 'diskDone', node, write: next });
  }

  /** Makes a write durable and tells the checker. */
  private persist(node: SimNode, write: DiskWrite): void {
    switch (write.kind) {
      case 'snapshot': {
        node.storage.applySnapshot(write.snapshot);
        const { index, term } = write.snapshot.meta;
        const hash = this.checker.committedHash(index);
        assert(hash !== undefined, `snapshot at ${index} is not known committed`);
        node.chain.resetTo(index, term, hash);
        return;
      }
      case 'entries':
        return this.persistEntries(node, write.entries);
      case 'hardState':
        return this.persistHardState(node, write.hardState);
      case 'createSnapshot':
        node.storage.createSnapshot(write.options);
        return;
    }
  }

  private persistHardState(node: SimNode, hardState: HardState): void {
    node.storage.setHardState(hardState);
    const committedBefore = this.checker.committedIndex();
    this.checker.onCommit(node.id, node.chain, hardState.commit, (index) => readEntry(node.storage, index));
    if (this.checker.committedIndex() > committedBefore) {
      const at = this.logicalTime();
      for (let index = committedBefore + 1; index <= this.checker.committedIndex(); index++) this.commitLogicalTimes[index] = at;
      const chains = new Map<NodeId, LogChain>();
      for (const [id, other] of this.nodes) chains.set(id, other.chain);
      this.checker.checkCommitDurable(node.raft.status().config.voters, chains);
    }
  }

  private persistEntries(node: SimNode, entries: readonly Entry[]): void {
    const first = (entries[0] as Entry).index;
    if (first <= node.chain.lastIndex()) {
      this.checker.onTruncate(node.id, first, node.chain.hashAt(first));
    }
    node.storage.append(entries);
    node.chain.append(entries);
    this.checker.onAppend(node.id, node.chain, entries);
  }

  // ---- the state machine ----

  private stateMachineFor(node: SimNode): StateMachine<number | null> {
    return {
      apply: (entry) => this.applyEntry(node, entry.index, entry.data),
      snapshot: () => node.stateMachine.snapshot(),
      restore: (data) => this.restoreStateMachine(node, data),
    };
  }

  private applyEntry(node: SimNode, index: number, data: Uint8Array): number {
    const stateMachine = node.stateMachine;
    if (index <= stateMachine.appliedIndex) throw new SafetyViolation(`${node.id} applied ${index} after ${stateMachine.appliedIndex}: applied must grow`);
    this.checkSkippedNothing(node, index - 1);
    const commit = node.raft.status().commit;
    if (index > commit) throw new SafetyViolation(`state machine safety: ${node.id} applied ${index} beyond its commit index ${commit}`);
    const offset = stateMachine.apply(index, data);
    const entryHash = node.chain.hashAt(index);
    assert(entryHash !== undefined, `${node.id} applies ${index} that is not in its durable log`);
    this.checker.onApply(node.id, index, entryHash, stateMachine.hash);
    return offset;
  }

  /** The driver applies only normal entries: between two of them, the log holds none it skipped. */
  private checkSkippedNothing(node: SimNode, throughIndex: number): void {
    const from = node.stateMachine.appliedIndex + 1;
    if (from > throughIndex) return;
    for (const entry of node.storage.entries(from, throughIndex + 1, Infinity)) {
      if (entry.type === EntryType.Normal) throw new SafetyViolation(`${node.id} skipped applying ${entry.index}: applied must grow by one`);
    }
  }

  private onApplied(node: SimNode, applied: number): void {
    this.checkSkippedNothing(node, applied);
    node.stateMachine.appliedIndex = Math.max(node.stateMachine.appliedIndex, applied);
  }

  private restoreStateMachine(node: SimNode, data: Uint8Array): void {
    const index = SimStateMachine.snapshotIndex(data);
    assert(index >= node.stateMachine.appliedIndex, 'a snapshot must not move the state machine back');
    node.stateMachine.restore(data);
  }

  /** Snapshots `id`'s state machine at its applied index and compacts its log. */
  snapshotNow(id: NodeId): void {
    const raft = this.node(id).raft;
    raft.compactTo(raft.status().applied);
  }

  // ---- faults ----

  crash(id: NodeId): void {
    const node = this.node(id);
    if (!node.up) return;
    this.record(`crash ${id}`);
    const pending = node.pendingWrites[0];
    if (pending !== undefined && this.prng.chance(0.5)) {
      // A torn write: the disk got through part of it before the crash (a prefix of the entries).
      const write = pending.write;
      if (write.kind !== 'entries') this.persist(node, write);
      else {
        const count = this.prng.int(0, write.entries.length);
        if (count > 0) this.persistEntries(node, write.entries.slice(0, count));
      }
    }
    node.pendingWrites = [];
    const driver = node.raft;
    node.driver = null;
    driver.close();
    node.stateMachine = new SimStateMachine();
  }

  restart(id: NodeId): void {
    const node = this.node(id);
    if (node.up) return;
    this.record(`restart ${id}`);
    this.start(node);
  }

  private start(node: SimNode): void {
    node.incarnation++;
    const driver = new RaftNode<number | null>({
      electionTicks: 10,
      heartbeatTicks: 2,
      ...this.options.raft,
      id: node.id,
      storage: this.storageFor(node),
      transport: this.transportFor(node),
      stateMachine: this.stateMachineFor(node),
      timers: this.timersFor(node),
      tickIntervalMs: node.tickMs,
      prng: new Prng(this.prng.nextUint32()),
      faults: this.options.faults ?? {},
      snapshotEveryEntries: this.options.snapshotEveryEntries ?? 0,
      trailingEntryCount: this.options.trailingEntryCount ?? 0,
    });
    node.stateMachine.appliedIndex = node.storage.snapshot().meta.index;
    driver.onApplied((applied) => this.onApplied(node, applied));
    node.driver = driver;
    driver.start();
  }

  private transportFor(node: SimNode): Transport {
    let closed = false;
    return {
      send: (messages) => {
        if (closed) return;
        for (const message of messages) {
          if (this.options.manualNetwork === true) this.pendingMessages.push(message);
          else this.network.send(this.nowMs, message);
        }
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

  /** The node's timers on the virtual clock; in scripted mode ticks wait for the script. */
  private timersFor(node: SimNode): Timers {
    return {
      after: (delayMs, callback) => {
        let cancelled = false;
        this.schedule(delayMs, `timer ${node.id}`, () => {
          if (!cancelled) callback();
        });
        return () => {
          cancelled = true;
        };
      },
      every: (intervalMs, callback) => {
        if (this.options.manualNetwork === true) {
          node.tick = callback;
          return () => {
            if (node.tick === callback) node.tick = null;
          };
        }
        const timer: TickTimer = { intervalMs, callback, cancelled: false };
        // Nodes start at different phases of their tick.
        this.queue.push(this.nowMs + this.prng.int(0, intervalMs - 1), { kind: 'tick', node, timer });
        return () => {
          timer.cancelled = true;
        };
      },
    };
  }

  /** Scripted mode: one tick of `id`. */
  tickNode(id: NodeId): void {
    const node = this.node(id);
    node.tick?.();
    this.checkRole(node);
  }

  // ---- clients ----

  /** Proposes `value` at `id`; the callback fires once with the outcome, or never if unknown. */
  propose(id: NodeId, value: string, callback: (outcome: ProposeOutcome) => void): void {
    const node = this.node(id);
    if (!node.up) {
      callback({ type: 'failed', reason: 'down' });
      return;
    }
    node.raft.submitProposal([textEncoder.encode(value)], {
      resolve: ({ firstIndex, results }) => callback({ type: 'ok', index: firstIndex, offset: results[0] as number }),
      // Refused, or another entry took its index: it never commits. Anything else (a crash, a
      // snapshot covering the index) leaves the outcome unknown.
      refuse: (reason) => callback({ type: 'failed', reason }),
      reject: (error) => {
        if (error instanceof LeadershipLostError) callback({ type: 'failed', reason: 'leadershipLost' });
      },
    });
    this.checkRole(node);
  }

  /** A linearizable read at `id` through ReadIndex; the callback sees the state machine, or null if it failed. */
  read(id: NodeId, callback: (stateMachine: SimStateMachine | null) => void): void {
    const node = this.node(id);
    if (!node.up) {
      callback(null);
      return;
    }
    node.raft.submitRead({ resolve: () => callback(node.stateMachine), reject: () => callback(null), refuse: () => callback(null) });
    this.checkRole(node);
  }

  /** Asks `id` (if leader) to change the configuration; returns the refusal if it refused at once. */
  changeConfig(id: NodeId, change: ConfigChange): RefusalReason | undefined {
    return this.request(id, (raft, outcome) => raft.submitConfigChange(change, outcome));
  }

  /** Asks `id` (if leader) to hand leadership to `target`; returns the refusal if it refused at once. */
  transferLeadership(id: NodeId, target: NodeId): RefusalReason | undefined {
    return this.request(id, (raft, outcome) => raft.submitTransfer(target, outcome));
  }

  /** Campaigns at `id` now. */
  campaign(id: NodeId): void {
    const node = this.node(id);
    node.driver?.campaign();
    this.checkRole(node);
  }

  private request(id: NodeId, submit: (raft: RaftNode<number | null>, outcome: Outcome<never>) => void): RefusalReason | undefined {
    const node = this.node(id);
    if (!node.up) return undefined;
    let refusal: RefusalReason | undefined;
    submit(node.raft, { resolve: IGNORED.resolve, reject: IGNORED.reject, refuse: (reason) => (refusal = reason) });
    this.checkRole(node);
    return refusal;
  }

  /** A strictly increasing clock for client histories (virtual ms do not order same-ms events). */
  logicalTime(): number {
    return ++this.logicalClock;
  }

  /** When `index` first committed on the client histories' clock (undefined if it never did). */
  commitLogicalTime(index: number): number | undefined {
    return this.commitLogicalTimes[index];
  }

  // ---- observation ----

  /** The up node that is leader in the highest term, or null. */
  leader(): NodeId | null {
    let best: { id: NodeId; term: number } | null = null;
    for (const node of this.nodes.values()) {
      const status = node.driver?.status();
      if (status === undefined || status.role !== Role.Leader) continue;
      if (best === null || status.term > best.term) best = { id: node.id, term: status.term };
    }
    return best?.id ?? null;
  }

  /** Every up node that believes it leads (a partitioned one may lead a stale term). */
  leaders(): NodeId[] {
    return this.upNodes()
      .filter((node) => node.raft.status().role === Role.Leader)
      .map((node) => node.id);
  }

  upNodes(): SimNode[] {
    return [...this.nodes.values()].filter((node) => node.up);
  }
}

function readEntry(storage: MemoryStorage, index: number): Entry | null {
  if (index < storage.firstIndex() || index > storage.lastIndex()) return null;
  return storage.entries(index, index + 1, Infinity)[0] ?? null;
}

function describeMessage(message: Message): string {
  const head = `${message.type} ${message.from}->${message.to} t${message.term}`;
  switch (message.type) {
    case 'append':
      return `${head} prev=${message.prevLogIndex}/${message.prevLogTerm} n=${message.entries.length} commit=${message.commit}`;
    case 'appendResponse':
      return `${head} ${message.reject ? 'reject' : 'ok'} index=${message.index} hint=${message.rejectHintIndex}/${message.rejectHintTerm}`;
    case 'vote':
    case 'preVote':
      return `${head} last=${message.lastLogIndex}/${message.lastLogTerm}${message.transfer ? ' transfer' : ''}`;
    case 'voteResponse':
    case 'preVoteResponse':
      return `${head} ${message.reject ? 'reject' : 'grant'}`;
    case 'heartbeat':
      return `${head} commit=${message.commit} ctx=${message.context ?? '-'}`;
    case 'heartbeatResponse':
      return `${head} ctx=${message.context ?? '-'}`;
    case 'snapshot':
      return `${head} snap=${message.meta.index}/${message.meta.term} off=${message.offsetBytes}/${message.totalBytes}`;
    case 'snapshotResponse':
      return `${head} snap=${message.snapshotIndex} next=${message.nextOffsetBytes}`;
    case 'timeoutNow':
      return head;
  }
}
