/**
 * The driving surface of the core: feed it ticks, messages and requests; take a Ready; persist,
 * send, apply; then `advance`. A Ready must be advanced before the node is used again.
 *
 * Persist-before-send: a Ready's `hardState`, `snapshot` and `entries` must be durable before any
 * of its `messages` is sent (a vote or an acknowledgement promises durable state), and before its
 * `committedEntries` are applied. If the three are not written atomically, write them in the order
 * snapshot, entries, hard state, so that a persisted commit index never points past the log.
 *
 * A background Ready (`Ready.background`, a leader with no term, vote or snapshot to persist) is
 * the exception: a leader's entries promise nothing until it counts them, so its driver writes them
 * while the node goes on (the leader's disk in parallel with its followers', thesis §10.2.1) and
 * reports the write with `persisted`. Its messages may go at once, its committed entries are only
 * ones already durable here (so they can be read back), and while such a write is out no other
 * entries are handed to storage: the next write takes everything that accumulated meanwhile.
 */
import { assert } from '../util/index.js';
import type { RaftOptions } from './config.js';
import { Raft, type RequestResult } from './raft.js';
import {
  EntryType,
  isUserEntry,
  type AppendResponse,
  type ClusterConfig,
  type ConfigChange,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type ReadState,
  Role,
  type Snapshot,
  type SoftState,
} from './types.js';

export interface Ready {
  /** Changed role or leader, or null. Never persisted. */
  readonly softState: SoftState | null;
  /** Changed hard state to persist, or null. */
  readonly hardState: HardState | null;
  /** A snapshot from the leader to persist (replacing the log) and restore into the state machine. */
  readonly snapshot: Snapshot | null;
  /** Entries to append to storage, truncating any conflicting suffix. */
  readonly entries: readonly Entry[];
  /** Messages to send once the above is durable. */
  readonly messages: readonly Message[];
  /** Committed entries to apply, in order, after the above is durable. */
  readonly committedEntries: readonly Entry[];
  /** Completed ReadIndex requests. */
  readonly readStates: readonly ReadState[];
  /**
   * The entries may be written in the background: send the messages and apply now, `advance`, and
   * call `persisted` once the entries are durable.
   */
  readonly background: boolean;
}

export interface ReadyOptions {
  /** The driver can write a leader's entries in the background (see `Ready.background`). */
  readonly background?: boolean;
}

export interface Status {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId | null;
  readonly leaderId: NodeId | null;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly config: ClusterConfig;
  /** Where `config` comes from: the index of its entry (or of the snapshot holding it). */
  readonly configIndex: number;
}

export class RawNode {
  readonly raft: Raft;
  private previousHardState: HardState;
  private previousSoftState: SoftState;
  private readyOutstanding = false;

  constructor(options: RaftOptions) {
    this.raft = new Raft(options);
    this.previousHardState = options.storage.initialState().hardState;
    this.previousSoftState = { role: this.raft.role, leaderId: this.raft.leaderId };
  }

  tick(): void {
    this.assertIdle();
    this.raft.tick();
  }

  step(message: Message): void {
    this.assertIdle();
    this.raft.step(message);
  }

  /** Appends one user entry (leader only); its index and term identify it when it is applied. */
  propose(data: Uint8Array): RequestResult<{ firstIndex: number; term: number }> {
    return this.proposeBatch([data]);
  }

  /** Appends several user entries as one batch: one persist and one message per follower. */
  proposeBatch(datas: readonly Uint8Array[], type: EntryType = EntryType.Normal): RequestResult<{ firstIndex: number; term: number }> {
    this.assertIdle();
    assert(isUserEntry(type), `proposeBatch of entry type ${type}`);
    return this.raft.propose(datas.map((data) => ({ type, data })));
  }

  /** Appends one application control entry (EntryType.Control; leader only). */
  proposeControl(data: Uint8Array): RequestResult<{ firstIndex: number; term: number }> {
    this.assertIdle();
    return this.raft.propose([{ type: EntryType.Control, data }]);
  }

  proposeConfigChange(change: ConfigChange): RequestResult<{ index: number; term: number }> {
    this.assertIdle();
    return this.raft.proposeConfigChange(change);
  }

  /** Campaigns now instead of waiting for the election timeout (tests, operator tooling). */
  campaign(): void {
    this.assertIdle();
    this.raft.campaignNow();
  }

  transferLeadership(target: NodeId): RequestResult<null> {
    this.assertIdle();
    return this.raft.transferLeadership(target);
  }

  readIndex(context: string): RequestResult<null> {
    this.assertIdle();
    return this.raft.readIndex(context);
  }

  /**
   * Whether there is a Ready to handle. It first turns proposals made since the last Ready into
   * append messages (deferred so that they share messages), which is its only effect.
   */
  hasReady(options?: ReadyOptions): boolean {
    const raft = this.raft;
    raft.flushAppends();
    const background = this.background(options);
    const unstable = raft.log.unstable;
    return (
      raft.messages.length > 0 ||
      raft.readStates.length > 0 ||
      (unstable.inProgress < unstable.offset + unstable.entries.length && !(background && unstable.writing())) ||
      unstable.snapshot !== null ||
      this.applyUpTo(background) > raft.log.applied ||
      !sameHardState(this.hardState(background), this.previousHardState) ||
      raft.role !== this.previousSoftState.role ||
      raft.leaderId !== this.previousSoftState.leaderId
    );
  }

  ready(options?: ReadyOptions): Ready {
    this.assertIdle();
    const raft = this.raft;
    raft.flushAppends();
    const background = this.background(options);
    const unstable = raft.log.unstable;
    const softState: SoftState = { role: raft.role, leaderId: raft.leaderId };
    const snapshot = unstable.snapshot;
    // Entries after a snapshot are applied in a later Ready, once the snapshot is installed.
    const committedEntries =
      snapshot === null ? raft.log.nextEntriesToApply(this.applyUpTo(background), raft.options.maxCommittedBytesPerReady) : [];
    const take = !(background && unstable.writing());
    const entries = take ? unstable.entriesToWrite() : [];
    if (take) unstable.acceptInProgress();
    const hardState = this.hardState(background);
    const ready: Ready = {
      softState: sameSoftState(softState, this.previousSoftState) ? null : softState,
      hardState: sameHardState(hardState, this.previousHardState) ? null : hardState,
      snapshot,
      entries,
      messages: coalesceAppendResponses(raft.messages),
      committedEntries,
      readStates: raft.readStates,
      background,
    };
    raft.messages = [];
    raft.readStates = [];
    this.readyOutstanding = true;
    return ready;
  }

  /** Acknowledges that `ready` was persisted, sent and applied. */
  advance(ready: Ready): void {
    assert(this.readyOutstanding, 'advance without an outstanding Ready');
    this.readyOutstanding = false;
    const log = this.raft.log;
    if (ready.softState !== null) this.previousSoftState = ready.softState;
    if (ready.hardState !== null) this.previousHardState = ready.hardState;
    if (ready.snapshot !== null) {
      log.unstable.stableSnapshotTo(ready.snapshot.meta.index);
      log.appliedTo(ready.snapshot.meta.index);
    }
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry !== undefined && !ready.background) log.stableTo(lastEntry.index, lastEntry.term);
    const lastApplied = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastApplied !== undefined) log.appliedTo(lastApplied.index);
    this.raft.onPersisted(log.storage.lastIndex());
  }

  /**
   * A background Ready's entries, through `index` with `term`, are durable. Entries since replaced
   * (the node stepped down and took another leader's) are not marked stable by it.
   */
  persisted(index: number, term: number): void {
    this.assertIdle();
    const log = this.raft.log;
    log.stableTo(index, term);
    this.raft.onPersisted(log.storage.lastIndex());
  }

  /** The configuration in effect at `index` (for the metadata of a snapshot taken there). */
  configAt(index: number): ClusterConfig {
    return this.raft.configAt(index);
  }

  /** This node's role now (status() without building the object, for hot paths). */
  role(): Role {
    return this.raft.role;
  }

  status(): Status {
    const raft = this.raft;
    return {
      id: raft.id,
      role: raft.role,
      term: raft.term,
      vote: raft.vote,
      leaderId: raft.leaderId,
      commit: raft.log.committed,
      applied: raft.log.applied,
      lastIndex: raft.log.lastIndex(),
      config: raft.config,
      configIndex: raft.configIndex,
    };
  }

  /**
   * Whether this Ready is a background one: the driver allows it, this node leads, and nothing
   * that promises state to others (term, vote, a snapshot) waits to be persisted.
   */
  private background(options: ReadyOptions | undefined): boolean {
    const raft = this.raft;
    return (
      options?.background === true &&
      raft.role === Role.Leader &&
      raft.log.unstable.snapshot === null &&
      raft.term === this.previousHardState.term &&
      raft.vote === this.previousHardState.vote
    );
  }

  private applyUpTo(background: boolean): number {
    const log = this.raft.log;
    // Broken variant: apply whatever is in the log, committed or not.
    if (this.raft.options.faults.applyBeforeCommit === true) return log.lastIndex();
    // Only what can be read back is applied: committed entries not yet durable here (a leader's,
    // committed by its followers' acknowledgements alone) wait for their write, which a Ready
    // finishes before it applies unless it is a background one or such a write is still out.
    return background || log.unstable.writing() ? Math.min(log.committed, log.unstable.offset - 1) : log.committed;
  }

  /**
   * The hard state to persist. A background Ready's commit index is clamped to the entries handed
   * to storage, so that a persisted commit never points past the log written before it.
   */
  private hardState(background: boolean): HardState {
    const raft = this.raft;
    const unstable = raft.log.unstable;
    const written = background && unstable.inProgress < unstable.offset + unstable.entries.length ? unstable.inProgress - 1 : Infinity;
    const hardState = { term: raft.term, vote: raft.vote, commit: Math.min(raft.log.committed, written) };
    if (raft.options.faults.forgetVotePersist === true) {
      // Broken variant: the vote never reaches the disk (the term and commit still do).
      const vote = hardState.term === this.previousHardState.term ? this.previousHardState.vote : null;
      return { ...hardState, vote };
    }
    return hardState;
  }

  private assertIdle(): void {
    assert(!this.readyOutstanding, 'the previous Ready must be advanced first');
  }
}

/**
 * Of the successful append responses of one Ready to one leader in one term, only the highest
 * index is kept: the leader keeps the highest match index it hears, so the others carry nothing,
 * and a follower that handled the appends of one socket read sends one acknowledgement for all
 * of them. Rejections are kept, in order.
 */
function coalesceAppendResponses(messages: Message[]): Message[] {
  let successes = 0;
  for (const message of messages) if (message.type === 'appendResponse' && !message.reject) successes++;
  if (successes < 2) return messages;
  const highest = new Map<string, AppendResponse>();
  const keyOf = (message: AppendResponse): string => `${message.to}\u0000${message.term}`;
  for (const message of messages) {
    if (message.type !== 'appendResponse' || message.reject) continue;
    const best = highest.get(keyOf(message));
    if (best === undefined || message.index > best.index) highest.set(keyOf(message), message);
  }
  return messages.filter((message) => message.type !== 'appendResponse' || message.reject || highest.get(keyOf(message)) === message);
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.role === b.role && a.leaderId === b.leaderId;
}
