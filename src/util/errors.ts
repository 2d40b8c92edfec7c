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
