/**
 * A simulated Raft cluster on a virtual clock. Every node runs the real core (RawNode) over a
 * MemoryStorage that plays the disk; the network, the clocks and the disks are simulated and all
 * randomness comes from one seed. The safety checker sees every durable write, commit, apply and
 * election as it happens.
 *
 * A crash discards everything that was not yet durable: the Ready being written by a slow disk,
 * queued inputs, the state machine and the in-memory core. A restart rebuilds the core from
 * storage and the state machine from the latest snapshot.
 */
import {
  MemoryStorage,
  RawNode,
  Role,
  type ClusterConfig,
  type ConfigChange,
  type Entry,
  type Faults,
  type Message,
  type NodeId,
  type RaftOptions,
  type Ready,
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

interface PendingProposal {
  readonly term: number;
  readonly callback: (outcome: ProposeOutcome) => void;
}

interface PendingRead {
  readonly context: string;
  index: number | null;
  readonly callback: (stateMachine: SimStateMachine) => void;
}

type SimEvent =
  | { readonly kind: 'tick'; readonly node: SimNode; readonly incarnation: number }
  | { readonly kind: 'deliver'; readonly message: Message }
  | { readonly kind: 'diskDone'; readonly node: SimNode; readonly incarnation: number }
  | { readonly kind: 'call'; readonly label: string; readonly action: () => void };

export class SimNode {
  readonly storage: MemoryStorage;
  readonly chain = new LogChain();
  raw: RawNode | null = null;
  incarnation = 0;
  stateMachine = new SimStateMachine();
  pendingReady: Ready | null = null;
  backlog: (() => void)[] = [];
  /** Durable writes take a random time in [0, diskLatencyMsMax] (0: instantaneous). */
  diskLatencyMsMax = 0;
  proposals = new Map<number, PendingProposal>();
  reads: PendingRead[] = [];

  constructor(
    readonly id: NodeId,
    readonly tickMs: number,
    initialConfig: ClusterConfig,
  ) {
    this.storage = new MemoryStorage(initialConfig);
  }

  get up(): boolean {
    return this.raw !== null;
  }
}

const EVENT_QUEUE_SIZE_MAX = 1_000_000;
const PUMP_ITERATIONS_MAX = 100_000;

export class SimCluster {
  readonly prng: Prng;
  readonly checker = new SafetyChecker();
  readonly network: SimNetwork;
  readonly nodes = new Map<NodeId, SimNode>();
  nowMs = 0;
  traceHash = 0x12345678;
  eventCount = 0;
  private readonly queue = new EventQueue<SimEvent>(EVENT_QUEUE_SIZE_MAX);
  private nextReadContext = 0;
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
    assert(node !== undefined, `no node ${id}`);
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
        const { node } = event;
        if (!node.up || node.incarnation !== event.incarnation) return;
        this.queue.push(this.nowMs + node.tickMs, event);
        this.record(`tick ${node.id}`);
        this.input(node, (raw) => raw.tick());
        return;
      }
      case 'deliver': {
        const { message } = event;
        const node = this.nodes.get(message.to);
        if (node === undefined || !node.up || !this.network.connected(message.from, message.to)) return;
        this.record(describeMessage(message));
        this.input(node, (raw) => raw.step(message));
        return;
      }
      case 'diskDone': {
        const { node } = event;
        if (!node.up || node.incarnation !== event.incarnation || node.pendingReady === null) return;
        const ready = node.pendingReady;
        node.pendingReady = null;
        this.record(`disk ${node.id}`);
        this.complete(node, ready);
        this.pump(node);
        return;
      }
      case 'call':
        this.record(event.label);
        event.action();
        return;
    }
  }

  private record(line: string): void {
    this.traceHash = mixUint(mixString(this.traceHash, line), this.nowMs);
    this.options.trace?.(`${String(this.nowMs).padStart(7)}ms ${line}`);
  }

  /** Runs `action` on the node's core now, or after its in-progress disk write. */
  input(node: SimNode, action: (raw: RawNode) => void): void {
    if (!node.up) return;
    node.backlog.push(() => action(node.raw as RawNode));
    this.pump(node);
  }

  private pump(node: SimNode): void {
    for (let iteration = 0; iteration < PUMP_ITERATIONS_MAX; iteration++) {
      const raw = node.raw;
      if (raw === null || node.pendingReady !== null) return;
      if (raw.hasReady()) {
        const ready = raw.ready();
        const needsDisk = ready.hardState !== null || ready.entries.length > 0 || ready.snapshot !== null;
        if (needsDisk && node.diskLatencyMsMax > 0) {
          node.pendingReady = ready;
          const latencyMs = this.prng.int(0, node.diskLatencyMsMax);
          this.queue.push(this.nowMs + latencyMs, { kind: 'diskDone', node, incarnation: node.incarnation });
          return;
        }
        this.complete(node, ready);
        continue;
      }
      const next = node.backlog.shift();
      if (next === undefined) return;
      next();
      this.checkRole(node);
    }
    throw new SafetyViolation(`node ${node.id} did not settle after ${PUMP_ITERATIONS_MAX} iterations`);
  }

  private checkRole(node: SimNode): void {
    const raft = (node.raw as RawNode).raft;
    if (raft.role === Role.Leader) this.checker.onLeader(node.id, raft.term, node.chain);
  }

  /** Persists, sends, applies and advances one Ready (persist strictly before send and apply). */
  private complete(node: SimNode, ready: Ready): void {
    const raw = node.raw as RawNode;
    this.persist(node, ready, raw, ready.entries.length, true);
    for (const message of ready.messages) {
      if (this.options.manualNetwork === true) this.pendingMessages.push(message);
      else this.network.send(this.nowMs, message);
    }
    if (ready.snapshot !== null) this.restoreStateMachine(node, ready.snapshot.data, ready.snapshot.meta.index);
    for (const entry of ready.committedEntries) this.applyEntry(node, entry);
    for (const readState of ready.readStates) {
      const read = node.reads.find((pending) => pending.context === readState.context);
      if (read !== undefined) read.index = readState.index;
    }
    raw.advance(ready);
    this.serveReads(node);
    this.maybeSnapshot(node);
  }

  /**
   * Writes a Ready in the driver's order: snapshot, entries, then hard state (so a persisted
   * commit never points past the durable log). A crash may stop after any prefix of the entries.
   */
  private persist(node: SimNode, ready: Ready, raw: RawNode, entryCount: number, withHardState: boolean): void {
    if (ready.snapshot !== null) {
      node.storage.applySnapshot(ready.snapshot);
      const { index, term } = ready.snapshot.meta;
      const hash = this.checker.committedHash(index);
      assert(hash !== undefined, `snapshot at ${index} is not known committed`);
      node.chain.resetTo(index, term, hash);
    }
    if (entryCount > 0) this.persistEntries(node, ready.entries.slice(0, entryCount));
    if (!withHardState || ready.hardState === null) return;
    node.storage.setHardState(ready.hardState);
    const committedBefore = this.checker.committedIndex();
    this.checker.onCommit(node.id, node.chain, ready.hardState.commit, (index) => readEntry(node.storage, index));
    if (this.checker.committedIndex() > committedBefore) {
      const at = this.logicalTime();
      for (let index = committedBefore + 1; index <= this.checker.committedIndex(); index++) this.commitLogicalTimes[index] = at;
      this.checkCommitDurable(raw);
    }
  }

  private checkCommitDurable(raw: RawNode): void {
    const chains = new Map<NodeId, LogChain>();
    for (const [id, node] of this.nodes) chains.set(id, node.chain);
    this.checker.checkCommitDurable(raw.raft.config.voters, chains);
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

  private applyEntry(node: SimNode, entry: Entry): void {
    const stateMachine = node.stateMachine;
    if (entry.index !== stateMachine.appliedIndex + 1) {
      throw new SafetyViolation(`${node.id} applied ${entry.index} after ${stateMachine.appliedIndex}: applied must grow by one`);
    }
    const commit = (node.raw as RawNode).raft.log.committed;
    if (entry.index > commit) throw new SafetyViolation(`state machine safety: ${node.id} applied ${entry.index} beyond its commit index ${commit}`);
    const offset = stateMachine.apply(entry);
    const entryHash = node.chain.hashAt(entry.index);
    assert(entryHash !== undefined, `${node.id} applies ${entry.index} that is not in its durable log`);
    this.checker.onApply(node.id, entry.index, entryHash, stateMachine.hash);
    const proposal = node.proposals.get(entry.index);
    if (proposal === undefined) return;
    node.proposals.delete(entry.index);
    if (proposal.term === entry.term && offset !== null) {
      proposal.callback({ type: 'ok', index: entry.index, offset });
    } else {
      // Another entry took this index: ours can never commit (log matching).
      proposal.callback({ type: 'failed', reason: 'leadershipLost' });
    }
  }

  private restoreStateMachine(node: SimNode, data: Uint8Array, index: number): void {
    assert(index >= node.stateMachine.appliedIndex, 'a snapshot must not move the state machine back');
    node.stateMachine.restore(data, index);
    // Proposals the snapshot jumped over have an unknown outcome: leave them open.
    for (const proposalIndex of [...node.proposals.keys()]) if (proposalIndex <= index) node.proposals.delete(proposalIndex);
  }

  private serveReads(node: SimNode): void {
    const ready = node.reads.filter((read) => read.index !== null && read.index <= node.stateMachine.appliedIndex);
    if (ready.length === 0) return;
    node.reads = node.reads.filter((read) => !ready.includes(read));
    for (const read of ready) read.callback(node.stateMachine);
  }

  private maybeSnapshot(node: SimNode): void {
    const every = this.options.snapshotEveryEntries ?? 0;
    const applied = node.stateMachine.appliedIndex;
    if (every === 0 || applied - node.storage.snapshot().meta.index < every) return;
    this.snapshotNow(node.id);
  }

  /** Snapshots `id`'s state machine at its applied index and compacts its log. */
  snapshotNow(id: NodeId): void {
    const node = this.node(id);
    const raw = node.raw as RawNode;
    const applied = node.stateMachine.appliedIndex;
    if (applied <= node.storage.snapshot().meta.index) return;
    node.storage.createSnapshot({
      index: applied,
      config: raw.raft.configAt(applied),
      data: node.stateMachine.snapshot(),
      trailingEntryCount: this.options.trailingEntryCount ?? 0,
    });
  }

  // ---- faults ----

  crash(id: NodeId): void {
    const node = this.node(id);
    if (!node.up) return;
    this.record(`crash ${id}`);
    const pending = node.pendingReady;
    if (pending !== null && this.prng.chance(0.5)) {
      // A torn Ready: the disk got through part of it before the crash.
      const entryCount = this.prng.int(0, pending.entries.length);
      const withHardState = entryCount === pending.entries.length && this.prng.chance(0.5);
      this.persist(node, pending, node.raw as RawNode, entryCount, withHardState);
    }
    node.raw = null;
    node.pendingReady = null;
    node.backlog = [];
    node.proposals.clear();
    node.reads = [];
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
    node.raw = new RawNode({
      electionTicks: 10,
      heartbeatTicks: 2,
      ...this.options.raft,
      id: node.id,
      storage: node.storage,
      prng: new Prng(this.prng.nextUint32()),
      faults: this.options.faults ?? {},
    });
    const snapshot = node.storage.snapshot();
    node.stateMachine.restore(snapshot.data, snapshot.meta.index);
    if (this.options.manualNetwork === true) return;
    const tickOffsetMs = this.prng.int(0, node.tickMs - 1);
    this.queue.push(this.nowMs + tickOffsetMs, { kind: 'tick', node, incarnation: node.incarnation });
  }

  // ---- clients ----

  /** Proposes `value` at `id`; the callback fires once with the outcome, or never if unknown. */
  propose(id: NodeId, value: string, callback: (outcome: ProposeOutcome) => void): void {
    const node = this.node(id);
    if (!node.up) {
      callback({ type: 'failed', reason: 'down' });
      return;
    }
    this.input(node, (raw) => {
      const result = raw.propose(new TextEncoder().encode(value));
      if (!result.ok) {
        callback({ type: 'failed', reason: result.reason });
        return;
      }
      node.proposals.set(result.value.firstIndex, { term: result.value.term, callback });
    });
  }

  /** A linearizable read at `id` through ReadIndex; the callback sees the state machine. */
  read(id: NodeId, callback: (stateMachine: SimStateMachine | null) => void): void {
    const node = this.node(id);
    if (!node.up) {
      callback(null);
      return;
    }
    const context = `r${this.nextReadContext++}`;
    this.input(node, (raw) => {
      const result = raw.readIndex(context);
      if (!result.ok) {
        callback(null);
        return;
      }
      node.reads.push({ context, index: null, callback });
    });
  }

  /** Asks `id` (if leader) to change the configuration; refusals are ignored. */
  changeConfig(id: NodeId, change: ConfigChange): void {
    this.input(this.node(id), (raw) => {
      raw.proposeConfigChange(change);
    });
  }

  /** Asks `id` (if leader) to hand leadership to `target`; refusals are ignored. */
  transferLeadership(id: NodeId, target: NodeId): void {
    this.input(this.node(id), (raw) => {
      raw.transferLeadership(target);
    });
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
    let best: SimNode | null = null;
    for (const node of this.nodes.values()) {
      const raft = node.raw?.raft;
      if (raft === undefined || raft.role !== Role.Leader) continue;
      if (best === null || raft.term > (best.raw as RawNode).raft.term) best = node;
    }
    return best?.id ?? null;
  }

  /** Every up node that believes it leads (a partitioned one may lead a stale term). */
  leaders(): NodeId[] {
    return this.upNodes()
      .filter((node) => node.raw?.raft.role === Role.Leader)
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
