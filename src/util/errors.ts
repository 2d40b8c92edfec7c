/**
 * annal's typed errors. Each failure has its own class with a stable `code`; callers branch on the
 * class or the code, never on the message. `wire/status.ts` maps codes to gRPC status codes and
 * `client/` maps gRPC status back into these classes.
 */
export const ErrorCode = {
  OffsetOutOfRange: 'OFFSET_OUT_OF_RANGE',
  InvalidArgument: 'INVALID_ARGUMENT',
  RecordTooLarge: 'RECORD_TOO_LARGE',
  Corruption: 'CORRUPTION',
  Closed: 'CLOSED',
  StorageFailed: 'STORAGE_FAILED',
  Overloaded: 'OVERLOADED',
  NotLeader: 'NOT_LEADER',
  PermissionDenied: 'PERMISSION_DENIED',
  Unauthenticated: 'UNAUTHENTICATED',
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  Unavailable: 'UNAVAILABLE',
  Internal: 'INTERNAL',
  LeadershipLost: 'LEADERSHIP_LOST',
  ProposalOutcomeUnknown: 'PROPOSAL_OUTCOME_UNKNOWN',
  RaftBusy: 'RAFT_BUSY',
  Compacted: 'COMPACTED',
  LogUnavailable: 'LOG_UNAVAILABLE',
  OutOfOrderSequence: 'OUT_OF_ORDER_SEQUENCE',
  OutcomeUnknown: 'OUTCOME_UNKNOWN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export abstract class AnnalError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An offset outside the log's retained range [lowest, next). */
export class OffsetOutOfRangeError extends AnnalError {
  readonly code = ErrorCode.OffsetOutOfRange;
  constructor(
    /**
     * The offset asked for: a bigint when it is above 2^53 - 1 (offsets are uint64 on the wire,
     * but no log reaches 2^53 - 1), so that the message names it exactly.
     */
    readonly offset: number | bigint,
    readonly lowestOffset: number,
    /** One past the highest readable offset: the log holds [lowestOffset, nextOffset). */
    readonly nextOffset: number,
  ) {
    super(
      nextOffset === lowestOffset
        ? `offset ${offset} is out of range: the log is empty (next offset ${nextOffset})`
        : `offset ${offset} is out of range: the log holds offsets ${lowestOffset}..${nextOffset - 1}`,
    );
  }
}

export class InvalidArgumentError extends AnnalError {
  readonly code = ErrorCode.InvalidArgument;
}

export class RecordTooLargeError extends AnnalError {
  readonly code = ErrorCode.RecordTooLarge;
  constructor(
    readonly sizeBytes: number,
    readonly maxRecordBytes: number,
  ) {
    super(`record of ${sizeBytes} bytes exceeds the maximum record size of ${maxRecordBytes} bytes`);
  }
}

/** Bytes on disk that fail their checksum or framing, with where they are. */
export class CorruptionError extends AnnalError {
  readonly code = ErrorCode.Corruption;
  constructor(
    readonly file: string,
    readonly positionBytes: number,
    readonly reason: string,
    /** For damage found in a commit log: its first damaged offset and the highest offset known to have followed it. */
    readonly damage?: { readonly firstOffset: number; readonly evidenceEndOffset: number },
  ) {
    super(`corrupt data in ${file} at byte ${positionBytes}: ${reason}`);
  }
}

/** The component was closed (or is closing) and takes no more work. */
export class ClosedError extends AnnalError {
  readonly code = ErrorCode.Closed;
}

/**
 * A write or fsync failed. After a failed fsync the kernel may have dropped the dirty pages, so
 * the log refuses all further appends until it is reopened (and recovery checks the tail).
 */
export class StorageFailedError extends AnnalError {
  readonly code = ErrorCode.StorageFailed;
}

/** A bounded queue or in-flight window is full; the caller should back off and retry. */
export class OverloadedError extends AnnalError {
  readonly code = ErrorCode.Overloaded;
}

export class NotLeaderError extends AnnalError {
  readonly code = ErrorCode.NotLeader;
  constructor(
    readonly leaderId: string | undefined,
    readonly leaderAddress: string | undefined,
  ) {
    super(leaderAddress ? `not the leader; the leader is ${leaderId ?? '?'} at ${leaderAddress}` : 'not the leader; no leader known');
  }
}

export class PermissionDeniedError extends AnnalError {
  readonly code = ErrorCode.PermissionDenied;
}

export class UnauthenticatedError extends AnnalError {
  readonly code = ErrorCode.Unauthenticated;
}

export class DeadlineExceededError extends AnnalError {
  readonly code = ErrorCode.DeadlineExceeded;
}

export class UnavailableError extends AnnalError {
  readonly code = ErrorCode.Unavailable;
}

export class InternalError extends AnnalError {
  readonly code = ErrorCode.Internal;
}

/**
 * The proposal's log position was taken by another leader's entry, so it did NOT commit and never
 * will (log matching); retrying is safe. Also used for ReadIndex requests cut short by a change of
 * leader, which are idempotent.
 */
export class LeadershipLostError extends AnnalError {
  readonly code = ErrorCode.LeadershipLost;
  constructor(readonly index: number) {
    super(index > 0 ? `leadership lost: log index ${index} was overwritten; the proposal did not commit` : 'leadership lost');
  }
}

/**
 * The outcome of a proposal cannot be known from this node: the entry was appended (and may have
 * reached other nodes) but this node installed a snapshot covering its index without seeing it,
 * or stopped before it learned the outcome. It may or may not have committed.
 */
export class ProposalOutcomeUnknownError extends AnnalError {
  readonly code = ErrorCode.ProposalOutcomeUnknown;
  constructor(
    readonly index: number,
    /** Why this node cannot tell. */
    readonly reason: string = 'covered by a snapshot',
    options?: ErrorOptions,
  ) {
    super(`the outcome of the proposal at log index ${index} is unknown (${reason}); it may still commit`, options);
  }
}

/** The leader is handing leadership over or finishing a configuration change; nothing was appended, retry shortly. */
export class RaftBusyError extends AnnalError {
  readonly code = ErrorCode.RaftBusy;
}

/** The requested Raft index lies before the first retained entry: it was compacted into a snapshot. */
export class CompactedError extends AnnalError {
  readonly code = ErrorCode.Compacted;
  constructor(
    readonly index: number,
    readonly firstIndex: number,
  ) {
    super(`raft log index ${index} is compacted (first retained index ${firstIndex})`);
  }
}

/** The requested Raft index lies beyond the last entry. */
export class LogUnavailableError extends AnnalError {
  readonly code = ErrorCode.LogUnavailable;
  constructor(
    readonly index: number,
    readonly lastIndex: number,
  ) {
    super(`raft log index ${index} is not available (last index ${lastIndex})`);
  }
}

/**
 * An idempotent producer's batch does not continue its sequence: the leader expects
 * `expectedSequence` next (a gap: an earlier batch is missing, or a retry overlaps a batch the log
 * holds only in part). Nothing was appended.
 */
export class OutOfOrderSequenceError extends AnnalError {
  readonly code = ErrorCode.OutOfOrderSequence;
  constructor(
    readonly producerId: number,
    readonly sequence: number,
    readonly expectedSequence: number,
  ) {
    super(`producer ${producerId}: sequence ${sequence} is out of order; the log expects ${expectedSequence}`);
  }
}

/**
 * A write was sent and no answer said whether it was appended before the client's retry deadline:
 * it may or may not be in the log. Raised by the client only; everything else it raises after a
 * write means "not appended".
 */
export class OutcomeUnknownError extends AnnalError {
  readonly code = ErrorCode.OutcomeUnknown;
}
