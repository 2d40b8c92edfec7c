/**
 * RaftNode: the driver around the pure core. It owns the tick timer, persists each Ready through
 * the storage, sends through the transport, applies committed entries to the state machine, and
 * settles the promises of proposals, configuration changes and reads.
 *
 * Promise outcomes (never both committed and failed):
 * - propose resolves with the state machine's result once the entry is applied here;
 * - NotLeaderError (with the leader hint) if this node is not the leader: nothing was appended;
 * - LeadershipLostError once another leader's entry took the proposal's index: it never commits;
 * - ProposalOutcomeUnknownError if a snapshot covered the index before the entry was seen here;
 * - DeadlineExceededError when the caller's timeoutMs passes first (the outcome is unknown);
 * - when the node shuts down (or a storage write fails) first: ProposalOutcomeUnknownError for a
 *   proposal it had appended (its entries may have left for the followers and may still commit),
 *   ClosedError for a request it had not started yet (nothing was appended).
 *
 * Each request also has a callback form (`submitProposal`, ...) that settles an `Outcome`; the
 * promise methods wrap it. With storage whose writes complete synchronously and injected timers,
 * the whole node runs synchronously, which is how the simulator drives this same code.
 */
import { randomInt } from 'node:crypto';
import {
  ClosedError,
  DeadlineExceededError,
  InvalidArgumentError,
  NotLeaderError,
  OverloadedError,
  Prng,
  AssertionError,
  assert,
  type AnnalError,
} from '../util/index.js';
import type { RaftOptions } from './config.js';
import { LeadershipLostError, ProposalOutcomeUnknownError, RaftBusyError } from './errors.js';
import type { RefusalReason, RequestResult } from './raft.js';
import { RawNode, type Ready, type ReadyOptions, type Status } from './raw-node.js';
import type { Storage } from './storage.js';
import { SYSTEM_TIMERS } from '../util/system-timers.js';
import type { Cancel, Timers } from './timers.js';
import type { Transport } from './transport.js';
import { EntryType, isUserEntry, Role, type ClusterConfig, type ConfigChange, type Entry, type HardState, type Message, type NodeId, type Snapshot } from './types.js';

/** The application's replicated state machine. */
export interface StateMachine<Result> {
  /** Applies one committed entry. Must be deterministic: every replica computes the same result. */
  apply(entry: { readonly index: number; readonly type: EntryType; readonly data: Uint8Array }): Result;
  /**
   * Applies one committed application control entry (EntryType.Control), in log order with the
   * normal ones. Optional: without it control entries are only replicated.
   */
  applyControl?(entry: { readonly index: number; readonly data: Uint8Array }): Result;
  /**
   * Serialises the state as of the last applied entry. A snapshot travels whole in a follower's
   * memory (at most RaftOptions.snapshotBytesMax), so it must be small: a state machine whose
   * state is large keeps it durable beside the log and returns a descriptor of it (annal's state
   * is the log itself, and its snapshot says where the log begins).
   */
  snapshot(): Uint8Array;
  /** Replaces the state with a snapshot's (an empty array means the initial state). */
  restore(data: Uint8Array): void;
}

/** A storage write: done when it returns nothing, else durable once the returned promise resolves. */
export type Written = void | PromiseLike<void>;

/** Storage the driver writes; each write may be asynchronous and must be durable when done. */
export interface RaftStorage extends Storage {
  setHardState(hardState: HardState): Written;
  append(entries: readonly Entry[]): Written;
  applySnapshot(snapshot: Snapshot): Written;
  createSnapshot(options: { index: number; config: ClusterConfig; data: Uint8Array; trailingEntryCount: number }): Written;
}

/** How a request made through a callback form ends (exactly one call). */
export interface Outcome<T> {
  resolve(value: T): void;
  reject(error: AnnalError): void;
  /**
   * Called instead of `reject` when the node refused the request up front (nothing was appended);
   * without it, `reject` gets the matching error (NotLeaderError, RaftBusyError, ...).
   */
  refuse?(reason: RefusalReason, leaderId: NodeId | null): void;
}

export interface RaftNodeOptions<Result> extends Omit<RaftOptions, 'storage' | 'prng'> {
  readonly storage: RaftStorage;
  readonly transport: Transport;
  readonly stateMachine: StateMachine<Result>;
  /** Wall-clock length of one tick. Default 100 ms (election after 1-2 s with 10 ticks). */
  readonly tickIntervalMs?: number;
  /** Snapshot the state machine and compact the log every this many applied entries (0: never). */
  readonly snapshotEveryEntries?: number;
  /** Entries kept behind a snapshot so slightly lagging followers need no snapshot. */
  readonly trailingEntryCount?: number;
  /** Proposals awaiting their outcome at most; more are refused with OverloadedError. */
  readonly pendingProposalsMax?: number;
  /** Maps a node id to the address clients should use, for NotLeaderError hints. */
  readonly addressOf?: (id: NodeId) => string | undefined;
  /** Called once if the node stops itself because a storage write failed (it then takes no input). */
  readonly onStopped?: (error: unknown) => void;
  /** Election jitter source; defaults to one seeded from the OS. */
  readonly prng?: Prng;
  /** Ticks and request deadlines; defaults to the system's timers. */
  readonly timers?: Timers;
  /**
   * A leader writes its entries in the background (Ready.background): it goes on taking
   * acknowledgements, committing and applying while its own write is out. Default true.
   */
  readonly writeInBackground?: boolean;
  /**
   * Runs the loop after an input arrives. By default at once (synchronously: deterministic, as the
   * simulator wants); a server passes e.g. setImmediate, so that inputs arriving together (the
   * records of one socket read, the messages of one peer batch) share one Ready: one append per
   * follower and one acknowledgement for all of them instead of one each.
   */
  readonly schedule?: (run: () => void) => void;
}

interface Waiter<T> extends Outcome<T> {
  readonly term: number;
  /** For a batch proposal: its first index, and the results of its entries applied so far. */
  readonly firstIndex?: number;
  readonly results?: unknown[];
}

interface PendingRead extends Outcome<number> {
  readonly context: string;
  index: number | null;
}

/** One storage write (or other work) of the loop; the loop waits for a pending result. */
type Step = () => Written;

export class RaftNode<Result> {
  readonly id: NodeId;
  private readonly raw: RawNode;
  private readonly options: RaftNodeOptions<Result>;
  private readonly proposals = new Map<number, Waiter<{ index: number; result: Result }>>();
  private readonly configChanges = new Map<number, Waiter<{ index: number }>>();
  private reads: PendingRead[] = [];
  private readonly inbox: (() => void)[] = [];
  /** Requests whose input has not run yet. */
  private readonly unstarted = new Set<Outcome<unknown>>();
  private readonly listeners = new Set<(status: Status) => void>();
  private readonly timers: Timers;
  private running = false;
  private closed = false;
  private cancelTicks: Cancel | null = null;
  private nextReadContext = 0;
  private snapshotIndex: number;
  /** Highest index compactTo asked for (compacted once applied). */
  private pendingCompaction = 0;
  private pendingBatch: { first: number; last: number; waiter: Waiter<unknown> } | null = null;
  /** First index -> last index of each batch proposal of several entries whose first entry is not applied yet. */
  private readonly batchStarts = new Map<number, number>();
  private readonly appliedListeners = new Set<(applied: number) => void>();

  constructor(options: RaftNodeOptions<Result>) {
    this.options = options;
    this.id = options.id;
    const prng = options.prng ?? new Prng(randomInt(0x7fff_ffff));
    this.raw = new RawNode({ ...options, prng });
    this.timers = options.timers ?? SYSTEM_TIMERS;
    this.readyOptions = { background: options.writeInBackground ?? true };
    const snapshot = options.storage.snapshot();
    this.snapshotIndex = snapshot.meta.index;
    if (snapshot.meta.index > 0) options.stateMachine.restore(snapshot.data);
    options.transport.onMessage((message) => this.enqueue(() => this.raw.step(message)));
  }

  start(): void {
    assert(this.cancelTicks === null && !this.closed, 'start once');
    const tickIntervalMs = this.options.tickIntervalMs ?? 100;
    assert(tickIntervalMs >= 1 && tickIntervalMs <= 2_147_483_647, 'tickIntervalMs must fit a timer');
    this.cancelTicks = this.timers.every(tickIntervalMs, () => this.enqueue(() => this.raw.tick()));
  }

  status(): Status {
    return this.raw.status();
  }

  /** status().role, without building the status. */
  role(): Role {
    return this.raw.role();
  }

  /**
   * Calls `listener` with the applied index after every Ready that applied entries (control
   * entries included) or installed a snapshot, once the Ready is fully handled.
   */
  onApplied(listener: (applied: number) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  /** The configuration in effect at `index` (at most the last index; not below the snapshot's). */
  configAt(index: number): ClusterConfig {
    return this.raw.configAt(index);
  }

  /** Replication progress of each member as the leader tracks it (empty on a follower). */
  progress(): ReadonlyMap<NodeId, { readonly match: number; readonly recentActive: boolean; readonly isLearner: boolean }> {
    return this.raw.raft.role === Role.Leader ? this.raw.raft.progress : new Map();
  }

  private notifyApplied(): void {
    const applied = this.raw.status().applied;
    for (const listener of this.appliedListeners) listener(applied);
  }

  /** Calls `listener` with the current status now and after every change of role or leader. */
  subscribe(listener: (status: Status) => void): () => void {
    this.listeners.add(listener);
    listener(this.status());
    return () => this.listeners.delete(listener);
  }

  /**
   * Replicates `data`; resolves with the state machine's result once it is applied here. With
   * `timeoutMs`, the promise rejects with DeadlineExceededError when no outcome is known by then
   * (the entry may still commit later: the outcome is unknown, not failed).
   */
  propose(data: Uint8Array, options: { timeoutMs?: number } = {}): Promise<{ index: number; result: Result }> {
    return this.proposeBatch([data], options).then(({ lastIndex, results }) => ({ index: lastIndex, result: results[0] as Result }));
  }

  /**
   * Replicates several entries as one batch (consecutive indexes, one persist, one message per
   * follower); resolves once the last is applied here, with every entry's result. The batch has
   * one outcome: its entries share a term and are contiguous, so the entry found at the last index
   * having the batch's term means all of them committed (log matching). Same errors as propose.
   */
  proposeBatch(
    datas: readonly Uint8Array[],
    options: { timeoutMs?: number; type?: EntryType } = {},
  ): Promise<{ firstIndex: number; lastIndex: number; results: Result[] }> {
    return promised((outcome) => this.submitProposal(datas, outcome, options));
  }

  /** proposeBatch's callback form. */
  submitProposal(
    datas: readonly Uint8Array[],
    outcome: Outcome<{ firstIndex: number; lastIndex: number; results: Result[] }>,
    options: { timeoutMs?: number; type?: EntryType } = {},
  ): void {
    assert(datas.length > 0, 'proposeBatch of no entries');
    this.request(outcome, () => {
      if (this.proposals.size >= (this.options.pendingProposalsMax ?? 10_000)) {
        if (outcome.refuse !== undefined) outcome.refuse('overloaded', null);
        else outcome.reject(new OverloadedError('too many proposals awaiting their outcome'));
        return;
      }
      const proposed = this.raw.proposeBatch(datas, options.type);
      if (!proposed.ok) {
        this.refuse(outcome, proposed);
        return;
      }
      const firstIndex = proposed.value.firstIndex;
      const lastIndex = firstIndex + datas.length - 1;
      const results: Result[] = [];
      const timeoutMs = options.timeoutMs;
      let cancelDeadline: Cancel | undefined;
      const waiter: Waiter<{ index: number; result: Result }> = {
        term: proposed.value.term,
        firstIndex,
        results,
        resolve: () => {
          cancelDeadline?.();
          outcome.resolve({ firstIndex, lastIndex, results });
        },
        reject: (error) => {
          cancelDeadline?.();
          outcome.reject(error);
        },
      };
      if (timeoutMs !== undefined) {
        assert(timeoutMs >= 0 && timeoutMs <= 2_147_483_647, 'timeoutMs must fit a timer');
        cancelDeadline = this.timers.after(timeoutMs, () => {
          if (this.proposals.get(lastIndex) !== waiter) return;
          this.proposals.delete(lastIndex);
          outcome.reject(new DeadlineExceededError(`no outcome for the proposal at log index ${lastIndex} within ${timeoutMs} ms; it may still commit`));
        });
      }
      this.proposals.set(lastIndex, waiter);
      if (lastIndex > firstIndex) this.batchStarts.set(firstIndex, lastIndex);
    });
  }

  /** Replicates an application control entry; resolves with applyControl's result once applied here. */
  proposeControl(data: Uint8Array): Promise<{ index: number; result: Result }> {
    return promised((outcome) =>
      this.request(outcome, () => {
        const proposed = this.raw.proposeControl(data);
        if (!proposed.ok) {
          this.refuse(outcome, proposed);
          return;
        }
        const index = proposed.value.firstIndex;
        this.proposals.set(index, { term: proposed.value.term, resolve: outcome.resolve, reject: outcome.reject });
      }),
    );
  }

  /**
   * Compacts the log through `index` (<= the applied index when it runs) at the next point where
   * the storage may be written: a snapshot of the state machine at `index`, with no trailing
   * entries kept. For logs whose retention the application decides (a replicated decision, so
   * every replica compacts at the same index).
   */
  compactTo(index: number): void {
    this.enqueue(() => {
      this.pendingCompaction = Math.max(this.pendingCompaction, index);
    });
  }

  /** Proposes a single-server change; resolves once the configuration entry is applied here. */
  changeConfig(change: ConfigChange): Promise<{ index: number }> {
    return promised((outcome) => this.submitConfigChange(change, outcome));
  }

  /** changeConfig's callback form. */
  submitConfigChange(change: ConfigChange, outcome: Outcome<{ index: number }>): void {
    this.request(outcome, () => {
      const result = this.raw.proposeConfigChange(change);
      if (!result.ok) {
        this.refuse(outcome, result);
        return;
      }
      this.configChanges.set(result.value.index, { term: result.value.term, resolve: outcome.resolve, reject: outcome.reject });
    });
  }

  /** Campaigns now instead of waiting for the election timeout (a lone voter at start-up). */
  campaign(): void {
    this.enqueue(() => this.raw.campaign());
  }

  /** Asks the leader to hand over to `target` (TimeoutNow once it is up to date). */
  transferLeadership(target: NodeId): Promise<void> {
    return promised((outcome) => this.submitTransfer(target, outcome));
  }

  /** transferLeadership's callback form. */
  submitTransfer(target: NodeId, outcome: Outcome<void>): void {
    this.request(outcome, () => {
      const result = this.raw.transferLeadership(target);
      if (result.ok) outcome.resolve();
      else this.refuse(outcome, result);
    });
  }

  /**
   * A linearizable read barrier (ReadIndex): resolves with an index once this leader confirmed it
   * still leads and has applied through that index, so reading local state is linearizable.
   */
  readBarrier(): Promise<number> {
    return promised((outcome) => this.submitRead(outcome));
  }

  /** readBarrier's callback form. */
  submitRead(outcome: Outcome<number>): void {
    this.request(outcome, () => {
      const context = `${this.id}:${this.nextReadContext++}`;
      const result = this.raw.readIndex(context);
      if (!result.ok) {
        this.refuse(outcome, result);
        return;
      }
      this.reads.push({ context, index: null, resolve: outcome.resolve, reject: outcome.reject });
    });
  }

  /**
   * Stops the timer and the transport and fails every pending request (the cause is the storage
   * error when a write failed). A proposal or configuration change already appended fails with
   * ProposalOutcomeUnknownError: its entries may be on the followers and commit under a later
   * leader. Reads, and requests still waiting in the inbox, fail with ClosedError: nothing of them
   * was appended. A storage write in progress is not waited for; nothing runs when it completes.
   */
  close(cause?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelTicks?.();
    this.options.transport.close();
    const options = cause === undefined ? undefined : { cause };
    const reason = cause === undefined ? 'the node stopped before it learned the outcome' : 'a storage write failed before the outcome was known';
    for (const waiters of [this.proposals, this.configChanges] as Map<number, Waiter<never>>[]) {
      for (const [index, waiter] of waiters) waiter.reject(new ProposalOutcomeUnknownError(index, reason, options));
    }
    const error = new ClosedError('raft node is shutting down', options);
    for (const read of this.reads) read.reject(error);
    for (const outcome of this.unstarted) outcome.reject(error);
    this.unstarted.clear();
    this.proposals.clear();
    this.configChanges.clear();
    this.reads = [];
    this.listeners.clear();
    this.appliedListeners.clear();
    this.batchStarts.clear();
  }

  private request<T>(outcome: Outcome<T>, start: () => void): void {
    if (this.closed) {
      outcome.reject(new ClosedError('raft node is shut down'));
      return;
    }
    // Until its input runs (a scheduled loop may run later), close() must still answer it.
    this.unstarted.add(outcome as Outcome<unknown>);
    this.enqueue(() => {
      this.unstarted.delete(outcome as Outcome<unknown>);
      start();
    });
  }

  private refuse(outcome: Outcome<never>, result: Extract<RequestResult<unknown>, { ok: false }>): void {
    if (outcome.refuse !== undefined) outcome.refuse(result.reason, result.leaderId);
    else outcome.reject(this.refusalError(result));
  }

  private refusalError(result: Extract<RequestResult<unknown>, { ok: false }>): AnnalError {
    switch (result.reason) {
      case 'notLeader':
        return new NotLeaderError(result.leaderId ?? undefined, result.leaderId === null ? undefined : this.options.addressOf?.(result.leaderId));
      case 'transferring':
        return new RaftBusyError('leadership transfer in progress');
      case 'configChangePending':
        return new RaftBusyError('a configuration change is in progress');
      case 'invalidConfigChange':
        return new InvalidArgumentError('the configuration change does not apply to the current configuration');
      case 'invalidTransferTarget':
        return new InvalidArgumentError('leadership can only be transferred to another voter');
      case 'overloaded':
        return new OverloadedError('too many uncommitted bytes at the leader; retry later');
    }
  }

  private enqueue(input: () => void): void {
    if (this.closed) return;
    this.inbox.push(input);
    if (this.running) return;
    this.running = true;
    const schedule = this.options.schedule;
    if (schedule === undefined) this.loop();
    else schedule(this.scheduledLoop);
  }

  private readonly scheduledLoop = (): void => {
    if (this.closed) this.running = false;
    else this.loop();
  };

  /**
   * Drains inputs and Readies one at a time; the core is never touched while a Ready is out. Runs
   * synchronously until idle or until a storage write is pending, whose completion resumes it.
   */
  private loop(): void {
    try {
      while (!this.closed) {
        for (let input = this.inbox.shift(); input !== undefined; input = this.inbox.shift()) input();
        if (this.raw.hasReady(this.readyOptions)) {
          const ready = this.raw.ready(this.readyOptions);
          if (ready.background) {
            this.handleInBackground(ready);
            if (this.snapshotDue() && !this.runSteps(this.snapshotSteps, 0)) return;
          } else if (!this.runSteps(this.readySteps(ready), 0)) {
            return;
          }
        } else if (this.snapshotDue()) {
          if (!this.runSteps(this.snapshotSteps, 0)) return;
        } else {
          break;
        }
      }
      this.running = false;
    } catch (error) {
      this.fail(error);
    }
  }

  /** Runs steps in order; false when one is pending (its completion runs the rest and the loop). */
  private runSteps(steps: readonly Step[], from: number): boolean {
    for (let i = from; i < steps.length && !this.closed; i++) {
      const written = (steps[i] as Step)();
      if (!isPending(written)) continue;
      written.then(
        () => {
          try {
            if (this.runSteps(steps, i + 1)) this.loop();
          } catch (error) {
            this.fail(error);
          }
        },
        (error: unknown) => this.fail(error),
      );
      return false;
    }
    return true;
  }

  /**
   * A failed write leaves the durable state unknown: stop rather than send promises we cannot
   * keep. Broken invariants propagate and crash the process.
   */
  private fail(error: unknown): void {
    this.running = false;
    if (!this.closed) this.options.onStopped?.(error);
    this.close(error);
    if (error instanceof AssertionError) throw error;
  }

  /**
   * One Ready's steps. A leader's appends and heartbeats promise nothing about its own disk, so
   * they go out before its write (thesis §10.2.1: the leader writes in parallel with its
   * followers): its own match index advances only once its entries are durable
   * (Raft.onPersisted), so nothing commits on the strength of an unwritten leader log, and its
   * term was made durable when it campaigned. Everything else waits (persist-before-send): a vote
   * or an acknowledgement promises state. Entries go before the hard state: a crash in between
   * must not leave a persisted commit index beyond the durable log. (Entries of a term whose hard
   * state was lost are harmless: only a leader's messages, which promise nothing, went out on
   * their behalf, and the restarted node takes its last entry's term, see Raft's constructor.)
   */
  private readySteps(ready: Ready): Step[] {
    const { storage, transport } = this.options;
    // Broken variant: everything goes out before the write.
    const early = this.options.faults?.sendBeforePersist === true ? ready.messages : ready.messages.filter(sendableBeforePersist);
    const late =
      early.length === 0 ? ready.messages : early.length === ready.messages.length ? [] : ready.messages.filter((message) => !sendableBeforePersist(message));
    if (early.length > 0) transport.send(early);
    const steps: Step[] = [];
    const { snapshot, entries, hardState } = ready;
    if (snapshot !== null) steps.push(() => storage.applySnapshot(snapshot));
    if (entries.length > 0) steps.push(() => storage.append(entries));
    if (hardState !== null) steps.push(() => storage.setHardState(hardState));
    steps.push(() => this.finishReady(ready, late));
    steps.push(...this.snapshotSteps);
    return steps;
  }

  /**
   * A background Ready: a leader's entries, with no term, vote or snapshot to persist. Nothing in
   * its messages promises the entries are durable here (the leader counts its own entries only
   * when `persisted` reports them), so everything goes out at once; its committed entries are
   * durable here already; the write completes on its own, and the next one waits for it (RawNode
   * hands out no entries meanwhile), taking everything proposed in between.
   */
  private handleInBackground(ready: Ready): void {
    const { storage } = this.options;
    const last = ready.entries[ready.entries.length - 1];
    const written = last === undefined ? undefined : storage.append(ready.entries);
    // Lazy (commit only) and queued behind the append: a persisted commit never passes the log.
    const hardStateWritten = ready.hardState === null ? undefined : storage.setHardState(ready.hardState);
    if (isPending(hardStateWritten)) hardStateWritten.then(undefined, (error: unknown) => this.fail(error));
    this.finishReady(ready, ready.messages);
    if (last === undefined) return;
    if (!isPending(written)) {
      this.raw.persisted(last.index, last.term);
      return;
    }
    written.then(
      () => this.enqueue(() => this.raw.persisted(last.index, last.term)),
      (error: unknown) => this.fail(error),
    );
  }

  /** After a Ready is durable: send the rest, apply, settle reads, advance. */
  private finishReady(ready: Ready, messages: readonly Message[]): void {
    if (messages.length > 0) this.options.transport.send(messages);
    if (ready.snapshot !== null) this.installSnapshot(ready.snapshot);
    for (const entry of ready.committedEntries) this.applyEntry(entry);
    for (const readState of ready.readStates) {
      const read = this.reads.find((pending) => pending.context === readState.context);
      if (read !== undefined) read.index = readState.index;
    }
    if (ready.softState !== null) this.onSoftState(ready.softState.role);
    // A listener may have closed the node: the Ready is then abandoned with the core.
    if (this.closed) return;
    this.raw.advance(ready);
    if (ready.committedEntries.length > 0 || ready.snapshot !== null) this.notifyApplied();
    this.serveReads();
  }

  private installSnapshot(snapshot: Snapshot): void {
    this.options.stateMachine.restore(snapshot.data);
    this.snapshotIndex = snapshot.meta.index;
    for (const first of this.batchStarts.keys()) if (first <= snapshot.meta.index) this.batchStarts.delete(first);
    for (const waiters of [this.proposals, this.configChanges] as Map<number, Waiter<never>>[]) {
      for (const [index, waiter] of waiters) {
        if (index > snapshot.meta.index) continue;
        waiters.delete(index);
        waiter.reject(new ProposalOutcomeUnknownError(index));
      }
    }
  }

  private applyEntry(entry: Entry): void {
    const machine = this.options.stateMachine;
    const result =
      isUserEntry(entry.type) ? machine.apply(entry) : entry.type === EntryType.Control ? machine.applyControl?.(entry) : undefined;
    if (isUserEntry(entry.type)) this.collectBatchResult(entry, result);
    const waiters = (entry.type === EntryType.Config ? this.configChanges : this.proposals) as Map<number, Waiter<unknown>>;
    const waiter = waiters.get(entry.index);
    // A proposal's outcome is decided by the entry that ends up at its index.
    const other = (entry.type === EntryType.Config ? this.proposals : this.configChanges) as Map<number, Waiter<unknown>>;
    other.get(entry.index)?.reject(new LeadershipLostError(entry.index));
    other.delete(entry.index);
    if (waiter === undefined) return;
    waiters.delete(entry.index);
    if (waiter.term !== entry.term) {
      waiter.reject(new LeadershipLostError(entry.index));
    } else if (entry.type === EntryType.Config) {
      waiter.resolve({ index: entry.index });
    } else {
      waiter.results?.push(result);
      waiter.resolve({ index: entry.index, result });
    }
  }

  /** Results of the entries of a batch proposal come before its last entry, which settles it. */
  private collectBatchResult(entry: Entry, result: unknown): void {
    let batch = this.pendingBatch;
    if (batch === null || entry.index < batch.first || entry.index >= batch.last) {
      batch = this.pendingBatch = null;
      const last = this.batchStarts.get(entry.index);
      if (last === undefined) return;
      this.batchStarts.delete(entry.index);
      const waiter = this.proposals.get(last) as Waiter<unknown> | undefined;
      if (waiter === undefined || waiter.firstIndex !== entry.index) return;
      batch = this.pendingBatch = { first: entry.index, last, waiter };
    }
    if (entry.term === batch.waiter.term) batch.waiter.results!.push(result);
  }

  private onSoftState(role: Role): void {
    if (role !== Role.Leader) {
      // Reads are confirmed by this leader's heartbeats only; they are safe to retry elsewhere.
      for (const read of this.reads) read.reject(new LeadershipLostError(0));
      this.reads = [];
    }
    const status = this.status();
    for (const listener of this.listeners) listener(status);
  }

  private serveReads(): void {
    const applied = this.raw.status().applied;
    const served = this.reads.filter((read) => read.index !== null && read.index <= applied);
    if (served.length === 0) return;
    this.reads = this.reads.filter((read) => !served.includes(read));
    for (const read of served) read.resolve(read.index as number);
  }

  /** Snapshot writes due after a Ready or a compaction request (each step checks again). */
  private readonly readyOptions: ReadyOptions;
  private readonly snapshotSteps: readonly Step[] = [() => this.compactIfDue(), () => this.snapshotIfDue()];

  private snapshotDue(): boolean {
    const applied = this.raw.raft.log.applied;
    const every = this.options.snapshotEveryEntries ?? 0;
    return Math.min(this.pendingCompaction, applied) > this.snapshotIndex || (every > 0 && applied - this.snapshotIndex >= every);
  }

  private compactIfDue(): Written {
    const compaction = Math.min(this.pendingCompaction, this.raw.raft.log.applied);
    if (compaction <= this.snapshotIndex) return;
    this.snapshotIndex = compaction;
    return this.options.storage.createSnapshot({
      index: compaction,
      config: this.raw.configAt(compaction),
      data: this.options.stateMachine.snapshot(),
      trailingEntryCount: 0,
    });
  }

  private snapshotIfDue(): Written {
    const applied = this.raw.raft.log.applied;
    const every = this.options.snapshotEveryEntries ?? 0;
    if (every === 0 || applied - this.snapshotIndex < every) return;
    this.snapshotIndex = applied;
    return this.options.storage.createSnapshot({
      index: applied,
      config: this.raw.configAt(applied),
      data: this.options.stateMachine.snapshot(),
      trailingEntryCount: this.options.trailingEntryCount ?? 0,
    });
  }
}

function isPending(written: Written): written is PromiseLike<void> {
  return typeof (written as PromiseLike<void> | undefined)?.then === 'function';
}

/** A promise settled by a callback-form request. */
function promised<T>(submit: (outcome: Outcome<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => submit({ resolve, reject }));
}

/** Messages a leader sends that depend on nothing of the Ready being durable. */
function sendableBeforePersist(message: Message): boolean {
  return message.type === 'append' || message.type === 'heartbeat';
}
