/**
 * Deliberately broken variants of the core. They exist only so tests can prove that the simulator's
 * checkers catch each classic Raft bug; production code never sets them (all default to off).
 */
export interface Faults {
  /** Grant votes without checking that the candidate's log is at least as up to date. */
  readonly voteWithoutLogCheck?: boolean;
  /** Commit an entry from an earlier term as soon as a majority holds it (Figure 8 of the paper). */
  readonly commitPreviousTermByCount?: boolean;
  /** Leave the vote out of the hard state handed to the driver, so it is never persisted. */
  readonly forgetVotePersist?: boolean;
  /** Hand entries to the state machine as soon as they are in the log, before they commit. */
  readonly applyBeforeCommit?: boolean;
  /** On a conflict, overwrite the conflicting entries but keep the stale suffix after them. */
  readonly keepConflictingSuffix?: boolean;
  /** Answer ReadIndex from the local commit index at once, on any node, without a quorum round. */
  readonly readWithoutQuorum?: boolean;
  /** Let a new leader change the configuration before its term's no-op commits (Ongaro, 2015). */
  readonly configChangeBeforeNoopCommit?: boolean;
  /** Treat a granted pre-vote like a term change and forget the vote already cast in this term. */
  readonly preVoteClearsVote?: boolean;
  /** Count a heartbeat response of any round (any context, or none) as an ack of every pending read. */
  readonly readAckAnyRound?: boolean;
  /** Send heartbeats with the leader's commit index, not clamped to what the follower matches. */
  readonly heartbeatCommitUnclamped?: boolean;
  /** Driver: send every message of a Ready before its writes are durable (votes and acks included). */
  readonly sendBeforePersist?: boolean;
}

export const NO_FAULTS: Faults = {};
