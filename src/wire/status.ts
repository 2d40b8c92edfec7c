/**
 * The one table between annal's typed errors (util/errors) and gRPC status codes, in both
 * directions: the server turns a thrown error into a status, the client turns a status back into
 * the same error class. The gRPC code alone is ambiguous (UNAVAILABLE covers a closed log, a failed
 * disk and "not the leader"), so the server also sends the error's stable `code` and its fields in
 * trailing metadata (`annal-*` keys); plain gRPC clients still get the right code and a message
 * that names the offset and the log's range.
 */
import { Metadata, status as Status, type StatusObject } from '@grpc/grpc-js';
import {
  AnnalError,
  ClosedError,
  CorruptionError,
  DeadlineExceededError,
  ErrorCode,
  InternalError,
  InvalidArgumentError,
  NotLeaderError,
  OffsetOutOfRangeError,
  OverloadedError,
  PermissionDeniedError,
  RecordTooLargeError,
  StorageFailedError,
  UnauthenticatedError,
  UnavailableError,
  unreachable,
} from '../util/index.js';

/** Trailing-metadata keys carrying an error's class and fields (lower case, as HTTP/2 needs). */
export const ErrorMetadataKey = {
  code: 'annal-error-code',
  offset: 'annal-offset',
  lowestOffset: 'annal-lowest-offset',
  nextOffset: 'annal-next-offset',
  sizeBytes: 'annal-size-bytes',
  maxRecordBytes: 'annal-max-record-bytes',
  file: 'annal-file',
  positionBytes: 'annal-position-bytes',
  reason: 'annal-reason',
  leaderId: 'annal-leader-id',
  leaderAddress: 'annal-leader-addr',
} as const;

/** The gRPC status for each annal error code. */
export function grpcCodeFor(code: ErrorCode): Status {
  switch (code) {
    case ErrorCode.OffsetOutOfRange:
      return Status.OUT_OF_RANGE;
    case ErrorCode.InvalidArgument:
    case ErrorCode.RecordTooLarge:
      return Status.INVALID_ARGUMENT;
    case ErrorCode.Corruption:
      return Status.DATA_LOSS;
    case ErrorCode.Closed:
    case ErrorCode.StorageFailed:
    case ErrorCode.NotLeader:
    case ErrorCode.Unavailable:
      return Status.UNAVAILABLE;
    case ErrorCode.Overloaded:
      return Status.RESOURCE_EXHAUSTED;
    case ErrorCode.PermissionDenied:
      return Status.PERMISSION_DENIED;
    case ErrorCode.Unauthenticated:
      return Status.UNAUTHENTICATED;
    case ErrorCode.DeadlineExceeded:
      return Status.DEADLINE_EXCEEDED;
    case ErrorCode.Internal:
      return Status.INTERNAL;
    default:
      return unreachable(code);
  }
}

/**
 * A gRPC status for anything a handler threw. Errors that are not AnnalErrors are bugs or
 * unexpected system failures: INTERNAL, with the message (the server logs the stack).
 */
export function statusFromError(error: unknown): StatusObject {
  const metadata = new Metadata();
  if (!(error instanceof AnnalError)) {
    const message = error instanceof Error ? error.message : String(error);
    return { code: Status.INTERNAL, details: `internal error: ${message}`, metadata };
  }
  metadata.set(ErrorMetadataKey.code, error.code);
  if (error instanceof OffsetOutOfRangeError) {
    metadata.set(ErrorMetadataKey.offset, String(error.offset));
    metadata.set(ErrorMetadataKey.lowestOffset, String(error.lowestOffset));
    metadata.set(ErrorMetadataKey.nextOffset, String(error.nextOffset));
  } else if (error instanceof RecordTooLargeError) {
    metadata.set(ErrorMetadataKey.sizeBytes, String(error.sizeBytes));
    metadata.set(ErrorMetadataKey.maxRecordBytes, String(error.maxRecordBytes));
  } else if (error instanceof CorruptionError) {
    metadata.set(ErrorMetadataKey.file, error.file);
    metadata.set(ErrorMetadataKey.positionBytes, String(error.positionBytes));
    metadata.set(ErrorMetadataKey.reason, error.reason);
  } else if (error instanceof NotLeaderError) {
    if (error.leaderId !== undefined) metadata.set(ErrorMetadataKey.leaderId, error.leaderId);
    if (error.leaderAddress !== undefined) metadata.set(ErrorMetadataKey.leaderAddress, error.leaderAddress);
  }
  return { code: grpcCodeFor(error.code), details: error.message, metadata };
}

/** The shape of a grpc-js client error (ServiceError) that errorFromStatus needs. */
export interface StatusLike {
  code: number;
  details: string;
  metadata?: Metadata | undefined;
}

/**
 * The annal error for a status received by a client. Uses the `annal-*` metadata when the server
 * sent it, otherwise the gRPC code alone (e.g. a status produced by grpc-js itself).
 */
export function errorFromStatus(status: StatusLike, cause?: unknown): AnnalError {
  const get = (key: string): string | undefined => {
    const values = status.metadata?.get(key);
    const value = values?.[0];
    return typeof value === 'string' ? value : undefined;
  };
  const num = (key: string): number => Number(get(key) ?? NaN);
  const options = { cause: cause ?? status };
  const details = status.details;
  switch (get(ErrorMetadataKey.code)) {
    case ErrorCode.OffsetOutOfRange:
      return withCause(new OffsetOutOfRangeError(wideOffset(get(ErrorMetadataKey.offset)), num(ErrorMetadataKey.lowestOffset), num(ErrorMetadataKey.nextOffset)), options.cause);
    case ErrorCode.RecordTooLarge:
      return withCause(new RecordTooLargeError(num(ErrorMetadataKey.sizeBytes), num(ErrorMetadataKey.maxRecordBytes)), options.cause);
    case ErrorCode.Corruption:
      return withCause(new CorruptionError(get(ErrorMetadataKey.file) ?? '?', num(ErrorMetadataKey.positionBytes), get(ErrorMetadataKey.reason) ?? details), options.cause);
    case ErrorCode.NotLeader:
      return withCause(new NotLeaderError(get(ErrorMetadataKey.leaderId), get(ErrorMetadataKey.leaderAddress)), options.cause);
    case ErrorCode.Closed:
      return new ClosedError(details, options);
    case ErrorCode.StorageFailed:
      return new StorageFailedError(details, options);
    case ErrorCode.InvalidArgument:
      return new InvalidArgumentError(details, options);
    case ErrorCode.Overloaded:
      return new OverloadedError(details, options);
    case ErrorCode.PermissionDenied:
      return new PermissionDeniedError(details, options);
    case ErrorCode.Unauthenticated:
      return new UnauthenticatedError(details, options);
    case ErrorCode.DeadlineExceeded:
      return new DeadlineExceededError(details, options);
    case ErrorCode.Unavailable:
      return new UnavailableError(details, options);
    case ErrorCode.Internal:
      return new InternalError(details, options);
    default:
      return errorFromGrpcCode(status.code, details, options);
  }
}

function errorFromGrpcCode(code: number, details: string, options: ErrorOptions): AnnalError {
  switch (code) {
    case Status.INVALID_ARGUMENT:
      return new InvalidArgumentError(details, options);
    case Status.OUT_OF_RANGE:
      // Without the metadata the range is unknown; keep the server's message.
      return new InvalidArgumentError(details, options);
    case Status.RESOURCE_EXHAUSTED:
      return new OverloadedError(details, options);
    case Status.UNAVAILABLE:
      return new UnavailableError(details, options);
    case Status.PERMISSION_DENIED:
      return new PermissionDeniedError(details, options);
    case Status.UNAUTHENTICATED:
      return new UnauthenticatedError(details, options);
    case Status.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(details, options);
    default:
      return new InternalError(`${Status[code] ?? code}: ${details}`, options);
  }
}

/** A decimal offset from metadata: a number when exact, a bigint above 2^53 - 1, NaN if absent. */
function wideOffset(text: string | undefined): number | bigint {
  if (text === undefined || !/^-?\d+$/.test(text)) return NaN;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : BigInt(text);
}

function withCause<E extends Error>(error: E, cause: unknown): E {
  Object.defineProperty(error, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  return error;
}
