/**
 * The Raft state machine. Pure: inputs are tick(), step(message) and the request methods; outputs
 * accumulate in `messages`, the log's unstable part and `readStates`, which RawNode packs into a
 * Ready. The role is two function slots (`stepRole`, `tickRole`) swapped on each transition.
 */
import { assert } from '../util/index.js';
import { resolveRaftOptions, type RaftOptions, type ResolvedRaftOptions } from './config.js';
import { Progress, ProgressState } from './progress.js';
import { committedIndex, quorumSize, voteResult, VoteResult } from './quorum.js';
import { RaftLog } from './raft-log.js';
import { applyConfigChange } from './config-change.js';
import { ReadOnly } from './read-only.js';
import { UncommittedBytes } from './uncommitted.js';
import {
  EntryType,
  Role,
  decodeConfig,
  encodeConfig,
  entrySizeBytes,
  type AppendRequest,
  type AppendResponse,
  type ClusterConfig,
  type ConfigChange,
  type Entry,
  type Heartbeat,
  type HeartbeatResponse,
  type Message,
  type NodeId,
  type ReadState,
  type Snapshot,
  type SnapshotChunk,
  type SnapshotResponse,
  type VoteRequest,
  type VoteResponse,
} from './types.js';

/** Why a request was refused; expected outcomes are values, not exceptions. */
export type RefusalReason = 'notLeader' | 'transferring' | 'configChangePending' | 'invalidConfigChange' | 'invalidTransferTarget' | 'overloaded';
export type RequestResult<T> = { ok: true; value: T } | { ok: false; reason: RefusalReason; leaderId: NodeId | null };

type CampaignKind = 'preVote' | 'vote' | 'transfer';
type DistributiveOmit<T, K extends keyof never> = T extends unknown ? Omit<T, K> : never;
type OutgoingMessage = DistributiveOmit<Message, 'from' | 'term'> & { term?: number };

interface IncomingSnapshot {
  readonly snapshot: Snapshot['meta'];
  readonly buffer: Uint8Array;
  receivedBytes: number;
}

export class Raft {
  readonly id: NodeId;
  readonly options: ResolvedRaftOptions;
  readonly log: RaftLog;
  term = 0;
  vote: NodeId | null = null;
  leaderId: NodeId | null = null;
  role: Role = Role.Follower;
  /** The configuration in effect: the latest one in the log, committed or not. */
  config: ClusterConfig;
  // Invariant: configs is sorted by index; configs[0] comes from the snapshot; the last is `config`.
  private configs: { index: number; config: ClusterConfig }[];

  /** The log index of the entry (or snapshot) that holds `config`: it is committed once the commit index reaches it. */
  get configIndex(): number {
    return (this.configs[this.configs.length - 1] as { index: number }).index;
  }
  readonly progress = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();
  messages: Message[] = [];
  readStates: ReadState[] = [];
  electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;
  leadTransferee: NodeId | null = null;
  /** Index of this leader's no-op: reads and config changes wait until it commits. */
  private termStartIndex = 0;
  /** Index of the latest config entry appended by this leader (one change at a time). */
  private pendingConfigIndex = 0;
  private readonly readOnly = new ReadOnly();
  private pendingReadContexts: string[] = [];
  private incomingSnapshot: IncomingSnapshot | null = null;
  /** This leader's proposed bytes not yet committed, by last index (see uncommittedBytesMax). */
  private readonly uncommitted = new UncommittedBytes();
  /** Proposals appended entries that have not been broadcast yet (see flushAppends). */
  private appendsPending = false;
  /** See InitialState.repairTo; cleared once the log reaches it. */
  private repairTo: number;
  /** See InitialState.repairTerm; Infinity when unknown (no votes while repairing). */
  private readonly repairTerm: number;
  private stepRole: (message: Message) => void = (message) => this.stepFollower(message);
  private tickRole: () => void = () => this.tickElection();

  constructor(options: RaftOptions) {
    this.options = resolveRaftOptions(options);
    this.id = options.id;
    this.log = new RaftLog(options.storage, this.options.applied);
    const { hardState, snapshotMeta, repairTo, repairTerm } = options.storage.initialState();
    this.repairTo = repairTo ?? 0;
    this.repairTerm = repairTerm ?? Infinity;
    this.configs = [{ index: snapshotMeta.index, config: snapshotMeta.config }];
    for (const entry of options.storage.configEntries(snapshotMeta.index + 1)) {
      this.configs.push({ index: entry.index, config: decodeConfig(entry.data) });
    }
    this.config = (this.configs[this.configs.length - 1] as { config: ClusterConfig }).config;
    // Entries reach the disk before the hard state (driver.ts), so a crash between the two can
    // leave entries of a term the durable term never reached. A term below its own log's last
    // entry breaks currentTerm >= every entry's term (a vote request would carry a lastLogTerm
    // above its term, which peers refuse as malformed), so it is raised to that entry's term.
    // Nothing was promised in it: a vote is durable before it is sent.
    const term = Math.max(hardState.term, this.log.lastTerm());
    this.becomeFollower(term, null);
    this.vote = term === hardState.term ? hardState.vote : null;
  }

  // ---- inputs ----

  tick(): void {
    this.tickRole();
  }

  step(message: Message): void {
    if (message.term > this.term) {
      if (message.type === 'vote' || message.type === 'preVote') {
        // Leader lease (thesis §4.2.3): within an election timeout of hearing from a leader, a
        // vote request is ignored, so a server that was removed without learning it (and keeps
        // campaigning) cannot disrupt the cluster.
        const inLease = this.options.leaderLease && this.leaderId !== null && this.electionElapsed < this.options.electionTicks;
        if (inLease && !message.transfer) return;
      }
      if (message.type === 'preVote') {
        // A pre-vote does not change our term.
      } else if (message.type === 'preVoteResponse' && !message.reject) {
        // We take the term when the pre-election is won.
      } else {
        const fromLeader = message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshot';
        const electionElapsed = this.electionElapsed;
        this.becomeFollower(message.term, fromLeader ? message.from : null);
        // Only a granted vote (or a leader) restarts the election timer (§5.2): otherwise a node
        // that keeps starting elections it cannot win would keep everyone else from timing out.
        if (message.type === 'vote') this.electionElapsed = electionElapsed;
      }
    } else if (message.term < this.term) {
      this.stepStaleTerm(message);
      return;
    }
    if (message.type === 'vote' || message.type === 'preVote') {
      this.handleVoteRequest(message);
    } else {
      this.stepRole(message);
    }
  }

  private stepStaleTerm(message: Message): void {
    const fromStaleLeader = message.type === 'heartbeat' || message.type === 'append';
    if (fromStaleLeader && (this.options.leaderLease || this.options.checkQuorum || this.options.preVote)) {
      // Tell the stale leader our term so it steps down; otherwise a node whose term ran ahead
      // (while partitioned) could never rejoin: its vote requests fall inside the lease.
      this.send({ type: 'appendResponse', to: message.from, reject: true, index: 0, rejectHintIndex: 0, rejectHintTerm: 0 });
    } else if (message.type === 'preVote' || message.type === 'vote') {
      // Reject with our term (§5.1) so the candidate catches up; otherwise a candidate whose term
      // trails can keep campaigning below a term that others keep raising, and never win.
      this.send({ type: message.type === 'vote' ? 'voteResponse' : 'preVoteResponse', to: message.from, reject: true });
    }
  }

  propose(entries: readonly { type: EntryType; data: Uint8Array }[]): RequestResult<{ firstIndex: number; term: number }> {
    if (this.role !== Role.Leader) return this.refuse('notLeader');
    if (this.leadTransferee !== null) return this.refuse('transferring');
    const sizeBytes = entries.reduce((sum, entry) => sum + entry.data.length, 0);
    if (this.uncommitted.totalBytes > 0 && this.uncommitted.totalBytes + sizeBytes > this.options.uncommittedBytesMax) {
      return this.refuse('overloaded');
    }
    const firstIndex = this.log.lastIndex() + 1;
    this.appendEntries(entries);
    this.uncommitted.add(this.log.lastIndex(), sizeBytes);
    // Replication waits for the next Ready, so proposals made in between share messages.
    this.appendsPending = true;
    return { ok: true, value: { firstIndex, term: this.term } };
  }

  proposeConfigChange(change: ConfigChange): RequestResult<{ index: number; term: number }> {
    if (this.role !== Role.Leader) return this.refuse('notLeader');
    if (this.leadTransferee !== null) return this.refuse('transferring');
    // One change at a time, and only after this term's no-op committed (the single-server
    // change fix: a new leader must not reconfigure before its first commit).
    const noopCommitted = this.termStartIndex <= this.log.committed || this.options.faults.configChangeBeforeNoopCommit === true;
    if (this.pendingConfigIndex > this.log.committed || !noopCommitted) {
      return this.refuse('configChangePending');
    }
    const next = applyConfigChange(this.config, change);
    if (next === null) return this.refuse('invalidConfigChange');
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ type: EntryType.Config, data: encodeConfig(next) }]);
    this.broadcastAppend();
    return { ok: true, value: { index, term: this.term } };
  }

  transferLeadership(target: NodeId): RequestResult<null> {
    if (this.role !== Role.Leader) return this.refuse('notLeader');
    if (target === this.id || !this.config.voters.includes(target)) return this.refuse('invalidTransferTarget');
    this.leadTransferee = target;
    this.electionElapsed = 0;
    const progress = this.progress.get(target) as Progress;
    if (progress.match === this.log.lastIndex()) {
      this.send({ type: 'timeoutNow', to: target });
    } else {
      this.sendAppend(target, true);
    }
    return { ok: true, value: null };
  }

  /** Starts an election now, as if the election timeout had fired (no-op for non-voters). */
  campaignNow(): void {
    if (this.role === Role.Leader || !this.mayCampaign()) return;
    this.campaign(this.options.preVote ? 'preVote' : 'vote');
  }

  /** Requests a linearizable read point; the answer arrives as a ReadState with this context. */
  readIndex(context: string): RequestResult<null> {
    if (this.options.faults.readWithoutQuorum === true) {
      this.readStates.push({ context, index: this.log.committed });
      return { ok: true, value: null };
    }
    if (this.role !== Role.Leader) return this.refuse('notLeader');
    if (this.log.committed < this.termStartIndex) {
      this.pendingReadContexts.push(context);
    } else {
      this.startRead(context);
    }
    return { ok: true, value: null };
  }

  private startRead(context: string): void {
    if (this.config.voters.length === 1 && this.config.voters[0] === this.id) {
      this.readStates.push({ context, index: this.log.committed });
      return;
    }
    this.readOnly.add(context, this.log.committed, this.id);
    this.broadcastHeartbeat(context);
  }

  private refuse<T>(reason: RefusalReason): RequestResult<T> {
    return { ok: false, reason, leaderId: this.leaderId };
  }

  /**
   * Sends the appends deferred since the last Ready (new proposals, acknowledgements that opened a
   * follower's window or advanced the commit index): per follower, what its window lets out, in
   * as few appends as the message size allows, with the commit index; a follower already sent
   * everything, the current commit index included, gets none.
   */
  flushAppends(): void {
    if (!this.appendsPending) return;
    this.appendsPending = false;
    if (this.role !== Role.Leader) return;
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      let sent = this.sendAppend(id, progress.commitSent < this.log.committed);
      // Pipelining: keep sending while the window has room and entries remain.
      for (let count = 1; sent && count < this.options.inflightCountMax; count++) sent = this.sendAppend(id, false);
    }
  }

  /** Called by RawNode once entries through `index` are durable on this node. */
  onPersisted(index: number): void {
    if (this.role !== Role.Leader) return;
    const self = this.progress.get(this.id);
    if (self !== undefined && self.maybeUpdate(index) && this.maybeCommit()) this.appendsPending = true;
  }

  /** The configuration in effect at `index` (the latest config entry at or before it). */
  configAt(index: number): ClusterConfig {
    let result = (this.configs[0] as { config: ClusterConfig }).config;
    for (const epoch of this.configs) if (epoch.index <= index) result = epoch.config;
    return result;
  }

  // ---- role transitions ----

  becomeFollower(term: number, leaderId: NodeId | null): void {
    this.stepRole = (message) => this.stepFollower(message);
    this.tickRole = () => this.tickElection();
    this.reset(term);
    this.leaderId = leaderId;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, 'invalid transition [leader -> preCandidate]');
    // A pre-candidate keeps its term and vote: it only asks whether it could win.
    this.stepRole = (message) => this.stepCandidate(message);
    this.tickRole = () => this.tickElection();
    this.votes.clear();
    this.leaderId = null;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, 'invalid transition [leader -> candidate]');
    this.stepRole = (message) => this.stepCandidate(message);
    this.tickRole = () => this.tickElection();
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, `invalid transition [${this.role} -> leader]`);
    this.stepRole = (message) => this.stepLeader(message);
    this.tickRole = () => this.tickHeartbeat();
    this.reset(this.term);
    this.leaderId = this.id;
    this.role = Role.Leader;
    this.syncProgress();
    for (const progress of this.progress.values()) progress.recentActive = true;
    // Until it commits, any uncommitted config entry in our log counts as pending.
    this.pendingConfigIndex = this.log.lastIndex();
    // The uncommitted tail inherited from earlier terms counts against uncommittedBytesMax too,
    // or leaders that cannot commit would each add a full allowance, term after term.
    const tail = this.log.slice(this.log.committed + 1, this.log.lastIndex() + 1, Infinity);
    if (tail.length > 0) this.uncommitted.add(this.log.lastIndex(), tail.reduce((sum, entry) => sum + entry.data.length, 0));
    this.termStartIndex = this.log.lastIndex() + 1;
    this.appendEntries([{ type: EntryType.Noop, data: new Uint8Array(0) }]);
  }

  private reset(term: number): void {
    if (this.term !== term) {
      assert(term > this.term, `term went back from ${this.term} to ${term}`);
      this.term = term;
      this.vote = null;
    }
    this.leaderId = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTicks = this.options.electionTicks + this.options.prng.int(0, this.options.electionTicks - 1);
    this.leadTransferee = null;
    this.votes.clear();
    this.progress.clear();
    this.readOnly.reset();
    this.pendingReadContexts = [];
    this.termStartIndex = 0;
    this.uncommitted.reset();
  }

  /** Only voters in the current configuration may campaign. */
  promotable(): boolean {
    return this.config.voters.includes(this.id);
  }

  /** Whether this replica still lacks entries that damage cost it (see InitialState.repairTo). */
  repairing(): boolean {
    if (this.repairTo > 0 && this.log.lastIndex() >= this.repairTo) this.repairTo = 0;
    return this.repairTo > 0;
  }

  /** A voter may start an election unless it is still repairing. */
  private mayCampaign(): boolean {
    return this.promotable() && !this.repairing();
  }

  // ---- ticks ----

  private tickElection(): void {
    this.electionElapsed++;
    if (this.mayCampaign() && this.electionElapsed >= this.randomizedElectionTicks) {
      this.electionElapsed = 0;
      this.campaign(this.options.preVote ? 'preVote' : 'vote');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.options.electionTicks) {
      this.electionElapsed = 0;
      if (this.options.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, null);
        return;
      }
      // A transfer that did not finish within an election timeout is abandoned.
      this.leadTransferee = null;
    }
    if (this.heartbeatElapsed >= this.options.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat(null);
    }
  }

  /** Whether a quorum was heard from since the last check; resets the activity marks. */
  private quorumActive(): boolean {
    let active = 0;
    for (const voter of this.config.voters) {
      const progress = this.progress.get(voter);
      if (voter === this.id || progress?.recentActive === true) active++;
    }
    for (const [id, progress] of this.progress) progress.recentActive = id === this.id;
    return active >= quorumSize(this.config.voters.length);
  }

  // ---- elections ----

  private campaign(kind: CampaignKind): void {
    if (kind === 'preVote') {
      this.becomePreCandidate();
    } else {
      this.becomeCandidate();
    }
    const voteTerm = kind === 'preVote' ? this.term + 1 : this.term;
    if (this.poll(this.id, true) === VoteResult.Won) {
      this.onElectionWon();
      return;
    }
    for (const voter of this.config.voters) {
      if (voter === this.id) continue;
      this.send({
        type: kind === 'preVote' ? 'preVote' : 'vote',
        to: voter,
        term: voteTerm,
        lastLogIndex: this.log.lastIndex(),
        lastLogTerm: this.log.lastTerm(),
        transfer: kind === 'transfer',
      });
    }
  }

  private poll(from: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(from)) this.votes.set(from, granted);
    return voteResult(this.config.voters, this.votes);
  }

  private onElectionWon(): void {
    if (this.role === Role.PreCandidate) {
      this.campaign('vote');
    } else {
      this.becomeLeader();
      this.broadcastAppend();
    }
  }

  private handleVoteRequest(message: VoteRequest): void {
    const responseType = message.type === 'vote' ? 'voteResponse' : 'preVoteResponse';
    const canVote =
      this.vote === message.from ||
      (this.vote === null && this.leaderId === null) ||
      (message.type === 'preVote' && message.term > this.term);
    const upToDate = this.options.faults.voteWithoutLogCheck === true || this.log.isUpToDate(message.lastLogIndex, message.lastLogTerm);
    // A repairing replica compares the candidate with the log it held before the damage, as it
    // would have then: the candidate holds everything that log could have helped commit.
    const coversLost = !this.repairing() || message.lastLogTerm > this.repairTerm || (message.lastLogTerm === this.repairTerm && message.lastLogIndex >= this.repairTo);
    if (canVote && upToDate && coversLost) {
      // A granted pre-vote answers in the candidate's future term so it is not dropped as stale.
      this.send({ type: responseType, to: message.from, term: message.term, reject: false });
      if (message.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = message.from;
      } else if (this.options.faults.preVoteClearsVote === true) {
        this.vote = null;
      }
    } else {
      this.send({ type: responseType, to: message.from, reject: true });
    }
  }

  // ---- role step functions ----

  private stepFollower(message: Message): void {
    switch (message.type) {
      case 'append':
        this.hearFromLeader(message.from);
        this.handleAppend(message);
        return;
      case 'heartbeat':
        this.hearFromLeader(message.from);
        this.handleHeartbeat(message);
        return;
      case 'snapshot':
        this.hearFromLeader(message.from);
        this.handleSnapshotChunk(message);
        return;
      case 'timeoutNow':
        if (this.mayCampaign()) this.campaign('transfer');
        return;
      default:
        return;
    }
  }

  private hearFromLeader(leaderId: NodeId): void {
    this.electionElapsed = 0;
    this.leaderId = leaderId;
  }

  private stepCandidate(message: Message): void {
    const responseType = this.role === Role.PreCandidate ? 'preVoteResponse' : 'voteResponse';
    if (message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshot') {
      // A leader exists in our term: stand down and process its message as a follower.
      this.becomeFollower(message.term, message.from);
      this.stepFollower(message);
      return;
    }
    if (message.type !== responseType) return;
    const result = this.poll(message.from, !(message as VoteResponse).reject);
    if (result === VoteResult.Won) this.onElectionWon();
    if (result === VoteResult.Lost) this.becomeFollower(this.term, null);
  }

  private stepLeader(message: Message): void {
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    switch (message.type) {
      case 'appendResponse':
        progress.recentActive = true;
        this.handleAppendResponse(message, progress);
        return;
      case 'heartbeatResponse':
        progress.recentActive = true;
        this.handleHeartbeatResponse(message, progress);
        return;
      case 'snapshotResponse':
        progress.recentActive = true;
        this.handleSnapshotResponse(message, progress);
        return;
      default:
        // Vote responses after winning, and messages from another leader of our term, which
        // cannot exist while the protocol holds (the checkers report it if it happens).
        return;
    }
  }

  // ---- follower handlers ----

  private handleAppend(message: AppendRequest): void {
    if (message.prevLogIndex < this.log.committed) {
      this.send({ type: 'appendResponse', to: message.from, reject: false, index: this.log.committed, rejectHintIndex: 0, rejectHintTerm: 0 });
      return;
    }
    const keepSuffix = this.options.faults.keepConflictingSuffix === true;
    const result = this.log.maybeAppend(message.prevLogIndex, message.prevLogTerm, message.commit, message.entries, keepSuffix);
    if (result !== null) {
      this.onEntriesAppended(result.appended);
      this.send({ type: 'appendResponse', to: message.from, reject: false, index: result.lastNewIndex, rejectHintIndex: 0, rejectHintTerm: 0 });
      return;
    }
    const hintIndex = this.log.findConflictByTerm(Math.min(message.prevLogIndex, this.log.lastIndex()), message.prevLogTerm);
    this.send({
      type: 'appendResponse',
      to: message.from,
      reject: true,
      index: message.prevLogIndex,
      rejectHintIndex: hintIndex,
      rejectHintTerm: this.log.term(hintIndex) ?? 0,
    });
  }

  private handleHeartbeat(message: Heartbeat): void {
    if (message.commit > this.log.lastIndex()) {
      // The leader believes (from our earlier acknowledgements) that we hold entries we no longer
      // have: damage cost them (InitialState.repairTo). Tell it where our log ends so that it
      // sends them again; commit advances with those appends.
      this.send({ type: 'appendResponse', to: message.from, reject: true, index: message.commit, rejectHintIndex: this.log.lastIndex(), rejectHintTerm: 0 });
    } else {
      this.log.commitTo(message.commit);
    }
    this.send({ type: 'heartbeatResponse', to: message.from, context: message.context });
  }

  private handleSnapshotChunk(message: SnapshotChunk): void {
    let incoming = this.incomingSnapshot;
    // A chunk announcing another total size belongs to another transfer (a new leader's snapshot at
    // the same index): start over rather than write it into a buffer of the wrong size.
    const sameSnapshot =
      incoming !== null &&
      incoming.snapshot.index === message.meta.index &&
      incoming.snapshot.term === message.meta.term &&
      incoming.buffer.length === message.totalBytes;
    if (message.meta.index <= this.log.committed) {
      // We already hold everything this snapshot covers: skip the transfer.
      this.incomingSnapshot = null;
      this.send({ type: 'appendResponse', to: message.from, reject: false, index: this.log.committed, rejectHintIndex: 0, rejectHintTerm: 0 });
      return;
    }
    if (!sameSnapshot) {
      if (message.offsetBytes !== 0) {
        this.sendSnapshotResponse(message, 0);
        return;
      }
      // The whole snapshot is buffered here: refuse sizes beyond the bound rather than allocate them.
      if (message.totalBytes > this.options.snapshotBytesMax) return;
      incoming = { snapshot: message.meta, buffer: new Uint8Array(message.totalBytes), receivedBytes: 0 };
      this.incomingSnapshot = incoming;
    }
    assert(incoming !== null, 'incoming snapshot set above');
    if (message.offsetBytes !== incoming.receivedBytes) {
      this.sendSnapshotResponse(message, incoming.receivedBytes);
      return;
    }
    assert(message.offsetBytes + message.data.length <= message.totalBytes, 'snapshot chunk beyond its total size');
    incoming.buffer.set(message.data, message.offsetBytes);
    incoming.receivedBytes += message.data.length;
    if (incoming.receivedBytes < message.totalBytes) {
      this.sendSnapshotResponse(message, incoming.receivedBytes);
      return;
    }
    this.incomingSnapshot = null;
    this.restore({ meta: message.meta, data: incoming.buffer });
    // Answer like an append so the leader moves the follower's match to what it now holds.
    this.send({ type: 'appendResponse', to: message.from, reject: false, index: this.log.committed, rejectHintIndex: 0, rejectHintTerm: 0 });
  }

  private sendSnapshotResponse(message: SnapshotChunk, nextOffsetBytes: number): void {
    this.send({ type: 'snapshotResponse', to: message.from, snapshotIndex: message.meta.index, nextOffsetBytes });
  }

  private restore(snapshot: Snapshot): void {
    const { index, term } = snapshot.meta;
    if (index <= this.log.committed) return;
    if (this.log.matchTerm(index, term)) {
      // We already hold the snapshot's last entry: everything up to it is committed.
      this.log.commitTo(index);
      return;
    }
    this.log.restore(snapshot);
    this.configs = [{ index, config: snapshot.meta.config }];
    this.config = snapshot.meta.config;
  }

  // ---- leader handlers ----

  private handleAppendResponse(message: AppendResponse, progress: Progress): void {
    if (message.reject) {
      if (message.rejectHintIndex < progress.match) {
        // A follower's hint is never below what matches us unless its log now ends before what it
        // acknowledged: it lost entries to damage and is repairing. Start over from where its log
        // ends (every entry it still holds matches ours). A stale, reordered rejection would only
        // cost a resend of entries it has.
        progress.lostEntries(message.rejectHintIndex);
        this.sendAppend(message.from, true);
        return;
      }
      let hintIndex = message.rejectHintIndex;
      if (message.rejectHintTerm > 0) hintIndex = this.log.findConflictByTerm(message.rejectHintIndex, message.rejectHintTerm);
      if (progress.maybeDecrTo(message.index, hintIndex)) {
        if (progress.state === ProgressState.Replicate) progress.becomeProbe();
        this.sendAppend(message.from, true);
      }
      return;
    }
    const updated = progress.maybeUpdate(message.index);
    if (progress.state === ProgressState.Snapshot) {
      const canReplicate = progress.match + 1 >= this.log.firstIndex();
      if (canReplicate || progress.match >= (progress.snapshot?.meta.index ?? 0)) {
        // The follower installed the snapshot (or already held its entries). Stream the log
        // again, or, if we compacted past it meanwhile, start over with our latest snapshot.
        progress.becomeProbe();
        if (canReplicate) progress.becomeReplicate();
        this.sendAppend(message.from, true);
      }
    }
    if (updated) {
      if (progress.state === ProgressState.Probe) {
        progress.becomeReplicate();
      } else if (progress.state === ProgressState.Replicate) {
        progress.inflights.freeLE(message.index);
      }
      this.maybeCommit();
      // What the follower may now be sent (entries the window lets out, a new commit index) goes
      // out with the Ready, in as few appends per follower as the acknowledgements of one Ready allow.
      this.appendsPending = true;
      if (message.from === this.leadTransferee && progress.match === this.log.lastIndex()) {
        this.send({ type: 'timeoutNow', to: message.from });
      }
    }
  }

  private handleHeartbeatResponse(message: HeartbeatResponse, progress: Progress): void {
    progress.probeSent = false;
    if (progress.state === ProgressState.Replicate && progress.inflights.full()) progress.inflights.freeFirstOne();
    if (progress.state === ProgressState.Snapshot) {
      this.sendSnapshotChunk(message.from, progress);
    } else if (progress.match < this.log.lastIndex()) {
      this.sendAppend(message.from, true);
    }
    const quorum = quorumSize(this.config.voters.length);
    if (this.options.faults.readAckAnyRound === true) {
      for (const context of this.readOnly.contexts()) {
        for (const read of this.readOnly.ack(context, message.from, this.config.voters, quorum)) this.readStates.push(read);
      }
      return;
    }
    if (message.context === null) return;
    for (const read of this.readOnly.ack(message.context, message.from, this.config.voters, quorum)) this.readStates.push(read);
  }

  private handleSnapshotResponse(message: SnapshotResponse, progress: Progress): void {
    const snapshot = progress.snapshot;
    if (progress.state !== ProgressState.Snapshot || snapshot === null || snapshot.meta.index !== message.snapshotIndex) return;
    // An answer that moves nothing is a duplicate: resending on it would multiply chunks on a
    // duplicating network. A lost chunk is resent on the next heartbeat response instead.
    if (message.nextOffsetBytes === progress.snapshotOffsetBytes) return;
    progress.snapshotOffsetBytes = message.nextOffsetBytes;
    if (message.nextOffsetBytes < snapshot.data.length) this.sendSnapshotChunk(message.from, progress);
  }

  private maybeCommit(): boolean {
    const matches = this.config.voters.map((voter) => this.progress.get(voter)?.match ?? 0);
    if (matches.length === 0) return false;
    const index = committedIndex(matches);
    let committed: boolean;
    if (this.options.faults.commitPreviousTermByCount === true) {
      committed = index > this.log.committed;
      if (committed) this.log.commitTo(index);
    } else {
      committed = this.log.maybeCommit(index, this.term);
    }
    if (committed) this.onLeaderCommitted();
    return committed;
  }

  private onLeaderCommitted(): void {
    this.uncommitted.commitTo(this.log.committed);
    if (this.log.committed >= this.termStartIndex && this.pendingReadContexts.length > 0) {
      const contexts = this.pendingReadContexts;
      this.pendingReadContexts = [];
      for (const context of contexts) this.startRead(context);
    }
    // A leader removed by a now-committed configuration steps down (§4.2.2).
    const latest = this.configs[this.configs.length - 1] as { index: number };
    if (!this.config.voters.includes(this.id) && this.log.committed >= latest.index) {
      this.broadcastAppend();
      this.becomeFollower(this.term, null);
    }
  }

  // ---- sending ----

  private appendEntries(entries: readonly { type: EntryType; data: Uint8Array }[]): void {
    let index = this.log.lastIndex();
    const stamped: Entry[] = entries.map((entry) => ({ index: ++index, term: this.term, type: entry.type, data: entry.data }));
    this.log.append(stamped);
    this.onEntriesAppended(stamped);
  }

  /** Configuration entries take effect as soon as they are in the log (§4.1). */
  private onEntriesAppended(appended: readonly Entry[]): void {
    if (appended.length === 0) return;
    const first = (appended[0] as Entry).index;
    let changed = false;
    while (this.configs.length > 1 && (this.configs[this.configs.length - 1] as { index: number }).index >= first) {
      this.configs.pop();
      changed = true;
    }
    for (const entry of appended) {
      if (entry.type !== EntryType.Config) continue;
      this.configs.push({ index: entry.index, config: decodeConfig(entry.data) });
      if (this.role === Role.Leader) this.pendingConfigIndex = entry.index;
      changed = true;
    }
    if (!changed) return;
    this.config = (this.configs[this.configs.length - 1] as { config: ClusterConfig }).config;
    if (this.role === Role.Leader) {
      this.syncProgress();
      if (this.leadTransferee !== null && !this.config.voters.includes(this.leadTransferee)) this.leadTransferee = null;
    }
  }

  /** Makes the progress map hold exactly the members of the current configuration. */
  private syncProgress(): void {
    const members = new Set([...this.config.voters, ...this.config.learners, this.id]);
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      const isLearner = !this.config.voters.includes(id);
      const existing = this.progress.get(id);
      if (existing !== undefined && existing.isLearner === isLearner) continue;
      const progress = new Progress({
        next: this.log.lastIndex() + 1,
        isLearner,
        inflightCountMax: this.options.inflightCountMax,
        inflightBytesMax: this.options.inflightBytesMax,
      });
      if (existing !== undefined) progress.match = existing.match;
      progress.recentActive = true;
      this.progress.set(id, progress);
    }
  }

  broadcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, true);
  }

  private broadcastHeartbeat(context: string | null): void {
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      const commit = this.options.faults.heartbeatCommitUnclamped === true ? this.log.committed : Math.min(progress.match, this.log.committed);
      this.send({ type: 'heartbeat', to: id, commit, context });
    }
  }

  /** Sends entries (or a snapshot) to `to` if its flow control allows; returns whether it sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const prevLogIndex = progress.next - 1;
    const prevLogTerm = this.log.term(prevLogIndex);
    let entries: readonly Entry[] | null = null;
    if (prevLogTerm !== null && prevLogIndex >= this.log.firstIndex() - 1) {
      entries = progress.next < this.log.firstIndex() ? null : this.log.entriesFrom(progress.next, this.options.maxMessageBytes);
    }
    if (prevLogTerm === null || entries === null) {
      progress.becomeSnapshot(this.log.snapshot());
      this.sendSnapshotChunk(to, progress);
      return true;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({ type: 'append', to, prevLogIndex, prevLogTerm, entries, commit: this.log.committed });
    progress.commitSent = Math.max(progress.commitSent, this.log.committed);
    if (entries.length > 0 && progress.state === ProgressState.Replicate) {
      const last = (entries[entries.length - 1] as Entry).index;
      progress.next = last + 1;
      progress.inflights.add(last, entries.reduce((sum, entry) => sum + entrySizeBytes(entry), 0));
    } else if (progress.state === ProgressState.Probe) {
      progress.probeSent = true;
    }
    return true;
  }

  private sendSnapshotChunk(to: NodeId, progress: Progress): void {
    const snapshot = progress.snapshot;
    assert(snapshot !== null && snapshot.meta.index > 0, 'snapshot state needs a snapshot');
    const offsetBytes = Math.min(progress.snapshotOffsetBytes, snapshot.data.length);
    const data = snapshot.data.subarray(offsetBytes, offsetBytes + this.options.snapshotChunkBytes);
    this.send({ type: 'snapshot', to, meta: snapshot.meta, offsetBytes, totalBytes: snapshot.data.length, data });
  }

  private send(message: OutgoingMessage): void {
    // Each caller passes a fresh literal, so completing it in place saves a copy per message.
    const outgoing = message as OutgoingMessage & { from?: NodeId };
    outgoing.from = this.id;
    if (outgoing.term === undefined) outgoing.term = this.term;
    this.messages.push(outgoing as Message);
  }
}
