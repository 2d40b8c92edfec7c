/**
 * ReplicatedLog: the log clients are served from, on a Raft node whose log is the commit log
 * itself (RaftLogStorage). It is the ServedLog of a clustered agent and the state machine of its
 * RaftNode.
 *
 * Writes: on the leader a produce is one Raft proposal per record (a batch is one proposal of
 * consecutive entries) and resolves with the consumer offsets once the entries are committed and
 * applied here, which under `fsync always` means fdatasync'ed on a quorum. On a follower the
 * records are forwarded to the leader over the peer connection (the caller's subject travels
 * with them for the leader's audit log; authorization happened here). With no leader known
 * within `leaderWaitMs` the call fails with NotLeaderError (UNAVAILABLE with the leader hint).
 *
 * Reads: every node serves committed records only: the visible end is the last applied normal
 * entry, and applied <= commit, so no read ever shows an entry that a later leader could
 * overwrite. A plain read on a follower may lag the leader (it shows a prefix of the committed
 * log, never anything else); `linearizableBarrier()` first confirms through ReadIndex (on the
 * leader, or asked of it by a follower) an index that every write acknowledged before the call
 * is at or below, and waits until this node has applied it.
 */
import type { Metadata } from '@grpc/grpc-js';
import type { RaftNode, StateMachine, Timers } from '../raft/index.js';
import { SYSTEM_TIMERS } from '../util/system-timers.js';
import { EntryType, LeadershipLostError, RaftBusyError, Role, type ClusterConfig, type Entry, type NodeId, type Snapshot } from '../raft/index.js';
import type { ReadLimits, RecordInput, StoredRecord } from '../storage/types.js';
import { decodeControl } from './retention.js';
import { DEFAULT_PRODUCER_WINDOW, decodeProducerHeader, encodeSequenced, ProducerTable, type ProducerWindow } from './producers.js';
import {
  assert,
  ClosedError,
  CorruptionError,
  NotLeaderError,
  OffsetOutOfRangeError,
  OffsetWaiters,
  OutOfOrderSequenceError,
  OverloadedError,
  UnavailableError,
  type AnnalError,
} from '../util/index.js';

/** What the replicated log needs of its storage besides the Raft contract (RaftLogStorage). */
export interface ReplicaStorage {
  offsetOfIndex(index: number): number;
  lowestOffset(): number;
  readRecords(offset: number, maxIndex: number, limits: ReadLimits): StoredRecord[];
  snapshot(): Snapshot;
  firstIndex(): number;
  term(index: number): number;
  initialState(): { hardState: { commit: number } };
  entries(lo: number, hi: number, maxSizeBytes: number): readonly Entry[];
  controlEntries(type: EntryType, lo: number): readonly Entry[];
}

/**
 * A write a follower sends to the leader: plain values, or an idempotent producer's batch
 * (`producerId` not 0), whose sequences travel unchanged so that the leader appends each once.
 */
export interface ForwardedWrite {
  values: Uint8Array[];
  /** Who produced it (authorized at the node the client called), for the leader's audit log. */
  subject: string;
  producerId?: number;
  firstSequence?: number;
}

/** What it needs of the peer transport: calls to the leader (deadlines are absolute, on the `nowMs` clock). */
export interface LeaderCalls {
  forward(to: NodeId, request: ForwardedWrite, options: { deadlineMs: number; metadata?: Metadata }): Promise<SequencedResult>;
  readIndex(to: NodeId, options: { deadlineMs: number }): Promise<number>;
}

/** Who is asking (the certificate subject authorized at this node) and the call's trace, read only when forwarding. */
export interface AppendContext {
  subject?: () => string | undefined;
  trace?: () => Metadata | undefined;
}

export interface ReplicatedLogOptions {
  storage: ReplicaStorage;
  peers: LeaderCalls;
  /** How long a write on a node without a known leader waits for one. Default 3000 ms. */
  leaderWaitMs?: number;
  /** How long a forwarded write or ReadIndex call may take. Default 10000 ms. */
  forwardTimeoutMs?: number;
  /** Deadline of a local proposal (the outcome is then unknown). Default 10000 ms. */
  proposeTimeoutMs?: number;
  /** Called with each local proposal's outcome (`committed` or the error's class) and its record count. */
  onProposal?: (outcome: string, records: number) => void;
  /** How long idempotent producers are remembered (see producers.ts). */
  producerWindow?: Partial<ProducerWindow>;
  /** Called when a read finds a damaged record (the read still fails with the CorruptionError). */
  onDamage?: (error: CorruptionError) => void;
  /** Waits' timers (default: the system's; the simulator passes its virtual clock). */
  timers?: Pick<Timers, 'after'>;
  /** The clock forward and ReadIndex deadlines are taken from (default Date.now). */
  nowMs?: () => number;
}

/** An idempotent producer's batches proposed by this leader in its current term and not yet settled. */
interface ProducerInFlight {
  term: number;
  /** The sequence after the last one proposed. */
  nextSequence: number;
  batches: Map<number, { count: number; result: Promise<{ firstOffset: number; lastOffset: number }> }>;
}

/** A produce's offsets; `duplicate` when it repeated a batch the log already held. */
export interface SequencedResult {
  firstOffset: number;
  lastOffset: number;
  duplicate: boolean;
}

export class ReplicatedLog implements StateMachine<number> {
  private node: RaftNode<number> | undefined;
  private readonly storage: ReplicaStorage;
  /** Raft index of the last applied normal entry (the last consumer-visible record). */
  private visibleIndex: number;
  /** One past the last consumer-visible offset. */
  private visibleNext: number;
  private readonly waiters = new OffsetWaiters();
  private closed = false;
  private caughtUp = false;
  private readonly forwardQueue: {
    write: ForwardedWrite;
    trace: Metadata | undefined;
    resolve: (result: SequencedResult) => void;
    reject: (error: unknown) => void;
  }[] = [];
  private forwarding = false;
  private caughtUpWaiters: (() => void)[] = [];
  private readonly producers: ProducerTable;
  private readonly producerWindow: ProducerWindow;
  /** Where the retention decisions applied before start make the log begin (see appliedRetention). */
  private readonly retainedFromAtStart: number;
  private readonly producersInFlight = new Map<number, ProducerInFlight>();
  /** The term in which this node, as leader, has applied every entry of its predecessors. */
  private leaderReadyTerm = 0;
  private readonly timers: Pick<Timers, 'after'>;
  private readonly nowMs: () => number;
  private readonly proposeTimeoutMs: number;
  /** The options of every plain proposal, built once. */
  private readonly normalProposal: { timeoutMs: number; type: EntryType };

  constructor(private readonly options: ReplicatedLogOptions) {
    this.storage = options.storage;
    this.proposeTimeoutMs = options.proposeTimeoutMs ?? 10_000;
    this.normalProposal = { timeoutMs: this.proposeTimeoutMs, type: EntryType.Normal };
    this.timers = options.timers ?? SYSTEM_TIMERS;
    this.nowMs = options.nowMs ?? Date.now;
    // Everything committed is already in the log (the log is the state): nothing to replay.
    const commit = Math.max(this.storage.initialState().hardState.commit, this.storage.firstIndex() - 1);
    this.visibleIndex = commit;
    this.visibleNext = this.storage.offsetOfIndex(commit + 1);
    this.producerWindow = { ...DEFAULT_PRODUCER_WINDOW, ...options.producerWindow };
    this.producers = new ProducerTable(this.producerWindow);
    this.retainedFromAtStart = this.appliedRetention(commit);
    this.producers.forgetBefore(this.retainedFromAtStart);
    this.rebuildProducers(commit);
  }

  /**
   * Where the applied retention decisions make the log begin. Applying one compacts the log
   * later (a snapshot write), so a process that died in between restarts with the entries every
   * other replica removed, and no entry left to apply that would remove them: attach compacts
   * them again, and the producer table starts where the others' does.
   */
  private appliedRetention(commit: number): number {
    let retainFrom = this.storage.firstIndex();
    for (const entry of this.storage.controlEntries(EntryType.Control, retainFrom)) {
      if (entry.index > commit) break;
      let control;
      try {
        control = decodeControl(entry.data);
      } catch {
        continue; // a control entry of a newer version (see applyControl)
      }
      retainFrom = Math.max(retainFrom, Math.min(control.firstIndex, entry.index));
    }
    return retainFrom;
  }

  /**
   * The producer table of the applied log: the Sequenced entries among the last `windowEntries`
   * retained entries through `through`, read in order (the same table applying them built).
   */
  private rebuildProducers(through: number): void {
    const first = Math.max(this.retainedFromAtStart, through - this.producerWindow.windowEntries + 1);
    for (let index = first; index <= through; ) {
      const entries = this.storage.entries(index, through + 1, PRODUCER_SCAN_BYTES);
      assert(entries.length > 0, `no entries from index ${index}`);
      for (const entry of entries) {
        if (entry.type === EntryType.Sequenced) this.recordProducer(entry);
      }
      index += entries.length;
    }
  }

  private recordProducer(entry: { readonly index: number; readonly data: Uint8Array }): void {
    const { producerId, sequence } = decodeProducerHeader(entry.data);
    this.producers.record(producerId, sequence, this.storage.offsetOfIndex(entry.index), entry.index);
  }

  /** The index applied at start-up, for RaftNodeOptions.applied. */
  get appliedAtStart(): number {
    return this.visibleIndex;
  }

  /** Binds the Raft node that drives this state machine (built with this object as its state machine). */
  attach(node: RaftNode<number>): void {
    assert(this.node === undefined, 'attach once');
    this.node = node;
    if (this.retainedFromAtStart > this.storage.firstIndex()) node.compactTo(this.retainedFromAtStart - 1);
    const check = (): void => {
      if (!this.caughtUp) this.checkCaughtUp();
    };
    node.onApplied(check);
    node.subscribe(check);
  }

  /**
   * Null once this node has applied everything committed before the current leader's term (it
   * applied an entry of that term, and knows the leader); until then a promise of that moment.
   * A restarted node relearns the commit index from the leader, so right after a restart its
   * visible log can be shorter than what it holds; reads that want "the whole log" (a consume at
   * the end, stop_at_end) wait for this first, bounded by the caller.
   */
  whenCaughtUp(): Promise<void> | null {
    if (this.caughtUp || this.checkCaughtUp()) return null;
    return new Promise<void>((resolve) => this.caughtUpWaiters.push(resolve));
  }

  private checkCaughtUp(): boolean {
    const status = this.raft.status();
    if (status.leaderId === null) return false;
    let term: number;
    try {
      term = this.storage.term(status.applied);
    } catch {
      return false;
    }
    if (term !== status.term) return false;
    this.caughtUp = true;
    for (const wake of this.caughtUpWaiters.splice(0)) wake();
    return true;
  }

  private get raft(): RaftNode<number> {
    assert(this.node !== undefined, 'ReplicatedLog used before attach');
    return this.node;
  }

  // ---- StateMachine ----

  apply(entry: { readonly index: number; readonly type: EntryType; readonly data: Uint8Array }): number {
    const offset = this.storage.offsetOfIndex(entry.index);
    assert(offset === this.visibleNext, `entry ${entry.index} has offset ${offset}; expected ${this.visibleNext}`);
    if (entry.type === EntryType.Sequenced) {
      const { producerId, sequence } = decodeProducerHeader(entry.data);
      this.producers.record(producerId, sequence, offset, entry.index);
    }
    this.visibleIndex = entry.index;
    this.visibleNext = offset + 1;
    this.waiters.wake(this.visibleNext);
    return offset;
  }

  /** A retention decision: compact through the index before the new first one (whole segments go). */
  applyControl(entry: { readonly index: number; readonly data: Uint8Array }): number {
    let control;
    try {
      control = decodeControl(entry.data);
    } catch {
      // A control entry of a newer version: nothing this one knows how to do.
      return this.visibleNext;
    }
    if (control.firstIndex > this.storage.firstIndex()) this.raft.compactTo(Math.min(control.firstIndex, entry.index) - 1);
    // What retention removes is forgotten on every replica alike (a restart could not rebuild it).
    this.producers.forgetBefore(Math.min(control.firstIndex, entry.index));
    return this.visibleNext;
  }

  snapshot(): Uint8Array {
    // The log is the state: the storage's snapshot descriptor says where it begins.
    return this.storage.snapshot().data;
  }

  restore(_data: Uint8Array): void {
    // The storage already holds the installed snapshot's log begin; continue from there.
    const index = this.storage.snapshot().meta.index;
    // At start-up the driver restores the stored snapshot (where retention made the log begin),
    // which the visible log, built from the log itself, already covers: nothing to reset. An
    // installed snapshot is always beyond what was applied.
    if (index <= this.visibleIndex) return;
    // The log now begins after the snapshot: producers are what the entries after it say.
    this.producers.clear();
    this.producers.forgetBefore(index + 1);
    this.visibleIndex = index;
    this.visibleNext = this.storage.offsetOfIndex(index + 1);
    this.waiters.wake(this.visibleNext);
  }

  // ---- ServedLog ----

  append(record: RecordInput, context: AppendContext = {}): Promise<number> {
    return this.appendBatch([record], context).then(firstOffsetOf);
  }

  appendBatch(records: RecordInput[], context: AppendContext = {}): Promise<{ firstOffset: number; lastOffset: number }> {
    if (this.closed) return Promise.reject(new ClosedError('the replicated log is closed'));
    assert(records.length > 0, 'appendBatch of no records');
    const values = records.map(valueOf);
    // The common case, a write on the leader, proposes at once (a ProduceStream runs this per
    // record, so it is kept to one promise chain). Writes queued for forwarding while this node
    // followed go first: a client's writes through one node keep their order across the change.
    if (this.raft.role() === Role.Leader && !this.forwarding) {
      return this.proposeHere(values).catch((error: unknown) => {
        if (!refusedBeforeAppending(error)) throw error;
        return this.forward({ values, subject: context.subject?.() ?? '' }, context.trace?.(), this.raft.id);
      });
    }
    return this.forwardBatched({ values, subject: context.subject?.() ?? '' }, context.trace?.());
  }

  /**
   * A follower's writes go to the leader in order, one Forward call at a time, each carrying every
   * plain write that queued up while the previous one was out (with the same subject): a call per
   * record cost a few hundred microseconds of CPU on both nodes. Each write gets its own offsets
   * back; a failed call fails every write it carried, none of which was then acknowledged.
   */
  private forwardBatched(write: ForwardedWrite, trace: Metadata | undefined): Promise<SequencedResult> {
    return new Promise((resolve, reject) => {
      this.forwardQueue.push({ write, trace, resolve, reject });
      if (!this.forwarding) void this.pumpForwards();
    });
  }

  private async pumpForwards(): Promise<void> {
    this.forwarding = true;
    try {
      while (this.forwardQueue.length > 0) {
        const first = this.forwardQueue[0]!;
        let count = 0;
        let records = 0;
        let sizeBytes = 0;
        for (const { write } of this.forwardQueue) {
          const bytes = write.values.reduce((sum, value) => sum + value.length, 0);
          if (count > 0 && (write.subject !== first.write.subject || sizeBytes + bytes > FORWARD_BATCH_BYTES_MAX || records + write.values.length > FORWARD_BATCH_RECORDS_MAX)) break;
          count++;
          records += write.values.length;
          sizeBytes += bytes;
        }
        const batch = this.forwardQueue.splice(0, count);
        const write = batch.length === 1 ? first.write : { values: batch.flatMap((queued) => queued.write.values), subject: first.write.subject };
        try {
          const { firstOffset, lastOffset } = await this.forward(write, first.trace, undefined);
          assert(lastOffset - firstOffset === write.values.length - 1, `forwarded ${write.values.length} records, got offsets ${firstOffset}..${lastOffset}`);
          let next = firstOffset;
          for (const queued of batch) {
            queued.resolve({ firstOffset: next, lastOffset: next + queued.write.values.length - 1, duplicate: false });
            next += queued.write.values.length;
          }
        } catch (error) {
          for (const queued of batch) queued.reject(error);
        }
      }
    } finally {
      this.forwarding = false;
    }
  }

  /**
   * Appends forwarded records on the leader (the peer service's Forward handler), an idempotent
   * producer's batch as appendSequenced does. Never forwards again: a node that does not lead
   * answers NotLeaderError and the follower finds the leader.
   */
  async appendForwarded(write: Omit<ForwardedWrite, 'subject'>): Promise<SequencedResult> {
    if (this.closed) throw new ClosedError('the replicated log is closed');
    try {
      return await this.appendHere(write);
    } catch (error) {
      // Handing leadership over: nothing was appended, and the follower should wait for the next
      // leader, which is what it does on "not the leader" (a busy leader is a plain UNAVAILABLE).
      if (error instanceof RaftBusyError) throw new NotLeaderError(undefined, undefined);
      throw error;
    }
  }

  /**
   * An idempotent producer's batch (records `firstSequence`, `firstSequence + 1`, ...), decided
   * by the leader: a follower forwards it with its producer id and sequences, so each sequence
   * is appended once whichever node the client calls.
   */
  async appendSequenced(records: RecordInput[], producerId: number, firstSequence: number, context: AppendContext = {}): Promise<SequencedResult> {
    if (this.closed) throw new ClosedError('the replicated log is closed');
    assert(records.length > 0, 'appendSequenced of no records');
    const write = (): ForwardedWrite => ({ values: records.map((record) => record.value), subject: context.subject?.() ?? '', producerId, firstSequence });
    // Forwarded at once, not queued: a producer pipelines its batches, and one call at a time
    // would cap it at one batch per round trip to the leader. Calls on the one connection to the
    // leader arrive in order; one that overtakes an earlier batch is refused as out of order with
    // nothing appended, and the producer resends from its oldest unanswered batch.
    if (this.raft.status().role !== Role.Leader) return this.forward(write(), context.trace?.(), undefined);
    try {
      return await this.appendSequencedHere(records, producerId, firstSequence);
    } catch (error) {
      if (!refusedBeforeAppending(error)) throw error;
      return this.forward(write(), context.trace?.(), this.raft.id);
    }
  }

  /**
   * On the leader: each sequence is appended once. A batch the log holds is answered with its
   * offsets, one proposed and not yet settled waits for that outcome, and a batch that does not
   * continue the producer's sequence is refused (OutOfOrderSequenceError). A new leader first
   * applies everything its predecessors left in its log, so that the table has every sequence
   * that may commit. Not the leader: NotLeaderError (nothing was appended).
   */
  private async appendSequencedHere(records: RecordInput[], producerId: number, firstSequence: number, confirmed = false): Promise<SequencedResult> {
    const status = this.raft.status();
    const term = status.role === Role.Leader && status.term === this.leaderReadyTerm ? status.term : await this.leaderReady();
    const count = records.length;
    let flight = this.producersInFlight.get(producerId);
    if (flight !== undefined && flight.term !== term) {
      this.producersInFlight.delete(producerId);
      flight = undefined;
    }
    const pending = flight?.batches.get(firstSequence);
    if (pending !== undefined && pending.count === count) return { ...(await pending.result), duplicate: true };
    const expected = flight?.nextSequence ?? this.producers.nextSequence(producerId);
    if (expected === undefined || firstSequence === expected) return { ...(await this.proposeSequenced(records, producerId, firstSequence, term)), duplicate: false };
    if (firstSequence > expected) return this.refuseOutOfOrder(records, producerId, firstSequence, expected, term, confirmed);
    // A retry of something proposed before: once this term's proposals of it settled, the table knows.
    if (flight !== undefined) await Promise.allSettled([...flight.batches.values()].map((batch) => batch.result));
    const check = this.producers.check(producerId, firstSequence, count);
    if (check.kind === 'duplicate') return { firstOffset: check.firstOffset, lastOffset: check.firstOffset + count - 1, duplicate: true };
    const expectedNow = check.kind === 'outOfOrder' ? check.expectedSequence : this.producers.nextSequence(producerId) ?? 0;
    return this.refuseOutOfOrder(records, producerId, firstSequence, expectedNow, term, confirmed);
  }

  /**
   * "Out of order, the log expects N" speaks for the whole cluster, and a leader deposed without
   * knowing it yet would say it wrongly: a later leader may have committed sequence N already
   * (and acknowledged it; the producer then sent N + 1 here). A duplicate answer needs no such
   * care, since what this node applied is committed. So the refusal is given only once ReadIndex
   * confirms that this node still leads in `term` and has applied all that was committed, and
   * the check runs again on that state.
   */
  private async refuseOutOfOrder(
    records: RecordInput[],
    producerId: number,
    firstSequence: number,
    expected: number,
    term: number,
    confirmed: boolean,
  ): Promise<SequencedResult> {
    if (confirmed) throw new OutOfOrderSequenceError(producerId, firstSequence, expected);
    try {
      await this.raft.readBarrier();
    } catch (error) {
      // Stepped down while confirming: nothing was appended, the next leader decides.
      if (error instanceof LeadershipLostError) throw new NotLeaderError(this.raft.status().leaderId ?? undefined, undefined);
      throw error;
    }
    const now = this.raft.status();
    if (now.role !== Role.Leader || now.term !== term) throw new NotLeaderError(now.leaderId ?? undefined, undefined);
    return this.appendSequencedHere(records, producerId, firstSequence, true);
  }

  private proposeSequenced(records: RecordInput[], producerId: number, firstSequence: number, term: number): Promise<{ firstOffset: number; lastOffset: number }> {
    const datas = records.map((record, i) => encodeSequenced(producerId, firstSequence + i, record.value));
    let flight = this.producersInFlight.get(producerId);
    if (flight === undefined) {
      flight = { term, nextSequence: firstSequence, batches: new Map() };
      this.producersInFlight.set(producerId, flight);
    }
    const inFlight = flight;
    inFlight.nextSequence = firstSequence + records.length;
    const result = this.proposeHere(datas, EntryType.Sequenced);
    inFlight.batches.set(firstSequence, { count: records.length, result });
    const settle = (outcome: 'committed' | 'refused' | 'unknown'): void => {
      inFlight.batches.delete(firstSequence);
      // Refused before appending: the sequence is free again, unless a later batch already went out.
      if (outcome === 'refused' && inFlight.nextSequence === firstSequence + records.length) inFlight.nextSequence = firstSequence;
      // An unknown outcome keeps the record of what was proposed: those entries may still commit in this term.
      if (outcome !== 'unknown' && inFlight.batches.size === 0 && this.producersInFlight.get(producerId) === inFlight) this.producersInFlight.delete(producerId);
    };
    result.then(
      () => settle('committed'),
      (error: unknown) => settle(refusedBeforeAppending(error) || error instanceof OverloadedError || error instanceof LeadershipLostError ? 'refused' : 'unknown'),
    );
    return result;
  }

  /**
   * This node's term once it leads and has applied an entry of that term (its no-op): everything
   * its predecessors committed, or left in its log to commit now, is then in the producer table.
   */
  private async leaderReady(): Promise<number> {
    const raft = this.raft;
    const status = raft.status();
    if (status.role !== Role.Leader) throw new NotLeaderError(status.leaderId ?? undefined, undefined);
    if (this.leaderReadyTerm === status.term) return status.term;
    const ready = (): boolean => {
      const now = raft.status();
      if (now.role !== Role.Leader || now.term !== status.term) return true;
      try {
        return this.storage.term(now.applied) === now.term;
      } catch {
        return false;
      }
    };
    if (!ready()) {
      await new Promise<void>((resolve) => {
        const cancel = this.timers.after(this.options.leaderWaitMs ?? 3000, finish);
        const stop = raft.onApplied(() => {
          if (ready()) finish();
        });
        function finish(): void {
          cancel();
          stop();
          resolve();
        }
      });
    }
    const now = raft.status();
    if (now.role !== Role.Leader || now.term !== status.term) throw new NotLeaderError(now.leaderId ?? undefined, undefined);
    if (!ready()) throw new RaftBusyError('the new leader is still applying its predecessors\' entries');
    this.leaderReadyTerm = now.term;
    return now.term;
  }

  private proposeHere(values: Uint8Array[], type: EntryType = EntryType.Normal): Promise<{ firstOffset: number; lastOffset: number }> {
    const onProposal = this.options.onProposal;
    return new Promise((resolve, reject) => {
      this.raft.submitProposal(
        values,
        {
          resolve: ({ results }) => {
            onProposal?.('committed', values.length);
            const firstOffset = results[0]!;
            const lastOffset = results[results.length - 1]!;
            assert(lastOffset - firstOffset === values.length - 1, `batch of ${values.length} applied at offsets ${firstOffset}..${lastOffset}`);
            resolve({ firstOffset, lastOffset });
          },
          reject: (error) => {
            onProposal?.(error.name, values.length);
            reject(error);
          },
        },
        type === EntryType.Normal ? this.normalProposal : { timeoutMs: this.proposeTimeoutMs, type },
      );
    });
  }

  /**
   * Sends the write to the leader (ourselves included, once we lead), following new leaders when
   * one refuses before appending anything (not the leader, or handing leadership over: a rolling
   * restart then costs the caller a short wait, not an error). Any other failure is the caller's.
   */
  private async forward(write: ForwardedWrite, trace: Metadata | undefined, avoid: NodeId | undefined): Promise<SequencedResult> {
    const deadlineMs = this.nowMs() + (this.options.forwardTimeoutMs ?? 10_000);
    let refused = avoid;
    for (let attempt = 0; ; attempt++) {
      const leader = await this.leader(refused);
      try {
        if (leader === this.raft.id) return await this.appendHere(write);
        return await this.options.peers.forward(leader, write, { deadlineMs, ...(trace !== undefined ? { metadata: trace } : {}) });
      } catch (error) {
        if (!refusedBeforeAppending(error) || attempt >= 3) throw error;
        refused = leader;
      }
    }
  }

  /** A write on this node as the leader: no forwarding. */
  private appendHere(write: Omit<ForwardedWrite, 'subject'>): Promise<SequencedResult> {
    const producerId = write.producerId ?? 0;
    if (producerId !== 0) return this.appendSequencedHere(write.values.map((value) => ({ value })), producerId, write.firstSequence ?? 0);
    return this.proposeHere(write.values).then(({ firstOffset, lastOffset }) => ({ firstOffset, lastOffset, duplicate: false }));
  }

  /** The current leader, waiting up to leaderWaitMs for one (other than `not`) to be known. */
  private leader(not?: NodeId): Promise<NodeId> {
    const raft = this.raft;
    const usable = (id: NodeId | null): id is NodeId => id !== null && id !== not;
    const now = raft.status().leaderId;
    if (usable(now)) return Promise.resolve(now);
    const waitMs = this.options.leaderWaitMs ?? 3000;
    return new Promise<NodeId>((resolve, reject) => {
      let unsubscribe: () => void = () => {};
      const cancel = this.timers.after(waitMs, () => {
        unsubscribe();
        reject(new NotLeaderError(undefined, undefined));
      });
      unsubscribe = raft.subscribe((status) => {
        if (!usable(status.leaderId)) return;
        cancel();
        queueMicrotask(() => unsubscribe());
        resolve(status.leaderId);
      });
    });
  }

  read(offset: number): StoredRecord {
    const [record] = this.readBatch(offset, { maxCount: 1, maxBytes: 0 });
    if (record === undefined) throw this.outOfRange(offset);
    return record;
  }

  readBatch(offset: number, limits: ReadLimits): StoredRecord[] {
    if (this.closed) throw new ClosedError('the replicated log is closed');
    if (!Number.isSafeInteger(offset) || offset < this.lowestOffset() || offset > this.visibleNext) throw this.outOfRange(offset);
    if (offset === this.visibleNext) return [];
    try {
      return this.storage.readRecords(offset, this.visibleIndex, limits);
    } catch (error) {
      if (error instanceof CorruptionError) this.options.onDamage?.(error);
      throw error;
    }
  }

  /**
   * Where the served log begins. Never above nextOffset(): installing a snapshot moves the
   * storage's first offset before the state machine has restored the offsets it shows, and a
   * reader must not see a log that begins after it ends (it is empty until the restore).
   */
  lowestOffset(): number {
    return Math.min(this.storage.lowestOffset(), this.visibleNext);
  }

  nextOffset(): number {
    return this.visibleNext;
  }

  waitForAppend(offset: number, signal?: AbortSignal): Promise<void> {
    if (offset < this.visibleNext) return Promise.resolve();
    if (this.closed) return Promise.reject(new ClosedError('the replicated log is closed'));
    return this.waiters.wait(offset, signal);
  }

  /**
   * Linearizable reads: resolves once this node has applied everything committed when the call
   * began (ReadIndex on the leader; a follower asks the leader for the index).
   */
  async linearizableBarrier(): Promise<void> {
    if (this.closed) throw new ClosedError('the replicated log is closed');
    const raft = this.raft;
    if (raft.status().role === Role.Leader) {
      try {
        await raft.readBarrier();
        return;
      } catch (error) {
        if (!(error instanceof NotLeaderError)) throw error;
      }
    }
    const leader = await this.leader();
    const index = leader === raft.id ? await raft.readBarrier() : await this.options.peers.readIndex(leader, { deadlineMs: this.nowMs() + (this.options.forwardTimeoutMs ?? 10_000) });
    await this.waitForApplied(index);
  }

  /** The leader side of a follower's ReadIndex call. */
  readIndexForPeer(): Promise<number> {
    return this.raft.readBarrier();
  }

  private waitForApplied(index: number): Promise<void> {
    const raft = this.raft;
    if (raft.status().applied >= index) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const cancel = this.timers.after(this.options.forwardTimeoutMs ?? 10_000, () => {
        stop();
        reject(new NotLeaderError(undefined, undefined));
      });
      const stop = raft.onApplied((applied) => {
        if (applied < index) return;
        cancel();
        stop();
        resolve();
      });
    });
  }

  // ---- cluster view ----

  config(): ClusterConfig {
    return this.raft.status().config;
  }

  private outOfRange(offset: number): AnnalError {
    return new OffsetOutOfRangeError(offset, this.lowestOffset(), this.visibleNext);
  }

  /** Fails waiting readers; the owner closes the Raft node and the storage. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new ClosedError('the replicated log closed');
    this.waiters.rejectAll(error);
    for (const wake of this.caughtUpWaiters.splice(0)) wake();
  }
}

/** Bytes read per step when rebuilding the producer table at start-up. */
const PRODUCER_SCAN_BYTES = 4 * 1024 * 1024;

/** One forwarded call carries at most this much (the peer service takes up to 16 MiB of payload). */
const FORWARD_BATCH_BYTES_MAX = 4 * 1024 * 1024;
const FORWARD_BATCH_RECORDS_MAX = 65_536;

function valueOf(record: RecordInput): Uint8Array {
  return record.value;
}

function firstOffsetOf(range: { firstOffset: number }): number {
  return range.firstOffset;
}

/**
 * A refusal that guarantees nothing was appended: safe to send the write elsewhere. Besides the
 * leader's own refusals, two transport failures mean the call never reached the leader's handler:
 * no connection could be made (a leader that just stopped), and HTTP/2's REFUSED_STREAM (a server
 * shutting down refuses new streams unprocessed). Any other UNAVAILABLE may have committed.
 */
function refusedBeforeAppending(error: unknown): boolean {
  if (error instanceof NotLeaderError || error instanceof RaftBusyError) return true;
  return error instanceof UnavailableError && /^(No connection established|Stream refused by server)/.test(error.message);
}
