/** Errors the Raft node reports to callers (besides util's NotLeaderError and ClosedError). */
import { AnnalError, ErrorCode } from '../util/index.js';

/**
 * The proposal's log position was taken by another leader's entry, so it did NOT commit and never
 * will (log matching); retrying is safe. Also used for ReadIndex requests cut short by a change of
 * leader, which are idempotent.
 */
export class LeadershipLostError extends AnnalError {
  readonly code = ErrorCode.Unavailable;
  constructor(readonly index: number) {
    super(index > 0 ? `leadership lost: log index ${index} was overwritten; the proposal did not commit` : 'leadership lost');
  }
}

/**
 * The outcome of a proposal cannot be known from this node: it installed a snapshot covering the
 * proposal's index without seeing the entry. It may or may not have committed.
 */
export class ProposalOutcomeUnknownError extends AnnalError {
  readonly code = ErrorCode.Unavailable;
  constructor(readonly index: number) {
    super(`the outcome of the proposal at log index ${index} is unknown (covered by a snapshot)`);
  }
}

/** The leader is handing leadership over or finishing a configuration change; retry shortly. */
export class RaftBusyError extends AnnalError {
  readonly code = ErrorCode.Unavailable;
}
