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
  CompactedError,
  CorruptionError,
  DeadlineExceededError,
  ErrorCode,
  InternalError,
  InvalidArgumentError,
  LeadershipLostError,
  LogUnavailableError,
  NotLeaderError,
  OffsetOutOfRangeError,
  OutcomeUnknownError,
  OutOfOrderSequenceError,
  OverloadedError,
  PermissionDeniedError,
  ProposalOutcomeUnknownError,
  RaftBusyError,
  RecordTooLargeError,
  StorageFailedError,
  UnauthenticatedError,
  UnavailableError,
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
  index: 'annal-index',
  firstIndex: 'annal-first-index',
  lastIndex: 'annal-last-index',
  producerId: 'annal-producer-id',
  sequence: 'annal-sequence',
  expectedSequence: 'annal-expected-sequence',
} as const;

type FieldName = Exclude<keyof typeof ErrorMetadataKey, 'code'>;

/** How the client rebuilds an error from its message and its metadata fields. */
interface Fields {
  text(field: FieldName): string | undefined;
  num(field: FieldName): number;
}

interface ErrorKind {
  grpc: Status;
  /** The instance fields that travel in metadata (numbers and strings). */
  fields: readonly FieldName[];
  make(details: string, fields: Fields, options: ErrorOptions): AnnalError;
}

/**
 * The table: one row per error class, naming its gRPC status. UNAVAILABLE means "nothing was
 * done, retrying is safe" for every class under it except that a transport-level UNAVAILABLE
 * (no annal code) says nothing about a write already sent; DEADLINE_EXCEEDED means "the outcome is
 * unknown" (gRPC's own definition: the operation may have completed). Classes that share a gRPC
 * code are told apart by `annal-error-code`, so each class is exactly one (code, annal code) pair.
 */
const KINDS: { readonly [C in ErrorCode]: ErrorKind } = {
  [ErrorCode.OffsetOutOfRange]: {
    grpc: Status.OUT_OF_RANGE,
    fields: ['offset', 'lowestOffset', 'nextOffset'],
    make: (_d, f, o) => withCause(new OffsetOutOfRangeError(wideOffset(f.text('offset')), f.num('lowestOffset'), f.num('nextOffset')), o.cause),
  },
  [ErrorCode.Compacted]: {
    grpc: Status.OUT_OF_RANGE,
    fields: ['index', 'firstIndex'],
    make: (_d, f, o) => withCause(new CompactedError(f.num('index'), f.num('firstIndex')), o.cause),
  },
  [ErrorCode.LogUnavailable]: {
    grpc: Status.OUT_OF_RANGE,
    fields: ['index', 'lastIndex'],
    make: (_d, f, o) => withCause(new LogUnavailableError(f.num('index'), f.num('lastIndex')), o.cause),
  },
  [ErrorCode.InvalidArgument]: { grpc: Status.INVALID_ARGUMENT, fields: [], make: (d, _f, o) => new InvalidArgumentError(d, o) },
  [ErrorCode.RecordTooLarge]: {
    grpc: Status.INVALID_ARGUMENT,
    fields: ['sizeBytes', 'maxRecordBytes'],
    make: (_d, f, o) => withCause(new RecordTooLargeError(f.num('sizeBytes'), f.num('maxRecordBytes')), o.cause),
  },
  [ErrorCode.Corruption]: {
    grpc: Status.DATA_LOSS,
    fields: ['file', 'positionBytes', 'reason'],
    make: (d, f, o) => withCause(new CorruptionError(f.text('file') ?? '?', f.num('positionBytes'), f.text('reason') ?? d), o.cause),
  },
  [ErrorCode.Closed]: { grpc: Status.UNAVAILABLE, fields: [], make: (d, _f, o) => new ClosedError(d, o) },
  [ErrorCode.StorageFailed]: { grpc: Status.UNAVAILABLE, fields: [], make: (d, _f, o) => new StorageFailedError(d, o) },
  [ErrorCode.NotLeader]: {
    grpc: Status.UNAVAILABLE,
    fields: ['leaderId', 'leaderAddress'],
    make: (_d, f, o) => withCause(new NotLeaderError(f.text('leaderId'), f.text('leaderAddress')), o.cause),
  },
  [ErrorCode.LeadershipLost]: {
    grpc: Status.UNAVAILABLE,
    fields: ['index'],
    make: (_d, f, o) => withCause(new LeadershipLostError(f.num('index')), o.cause),
  },
  [ErrorCode.RaftBusy]: { grpc: Status.UNAVAILABLE, fields: [], make: (d, _f, o) => new RaftBusyError(d, o) },
  [ErrorCode.Unavailable]: { grpc: Status.UNAVAILABLE, fields: [], make: (d, _f, o) => new UnavailableError(d, o) },
  [ErrorCode.ProposalOutcomeUnknown]: {
    grpc: Status.DEADLINE_EXCEEDED,
    fields: ['index', 'reason'],
    make: (_d, f, o) => withCause(new ProposalOutcomeUnknownError(f.num('index'), f.text('reason')), o.cause),
  },
  [ErrorCode.DeadlineExceeded]: { grpc: Status.DEADLINE_EXCEEDED, fields: [], make: (d, _f, o) => new DeadlineExceededError(d, o) },
  [ErrorCode.OutcomeUnknown]: { grpc: Status.DEADLINE_EXCEEDED, fields: [], make: (d, _f, o) => new OutcomeUnknownError(d, o) },
  [ErrorCode.OutOfOrderSequence]: {
    grpc: Status.FAILED_PRECONDITION,
    fields: ['producerId', 'sequence', 'expectedSequence'],
    make: (_d, f, o) => withCause(new OutOfOrderSequenceError(f.num('producerId'), f.num('sequence'), f.num('expectedSequence')), o.cause),
  },
  [ErrorCode.Overloaded]: { grpc: Status.RESOURCE_EXHAUSTED, fields: [], make: (d, _f, o) => new OverloadedError(d, o) },
  [ErrorCode.PermissionDenied]: { grpc: Status.PERMISSION_DENIED, fields: [], make: (d, _f, o) => new PermissionDeniedError(d, o) },
  [ErrorCode.Unauthenticated]: { grpc: Status.UNAUTHENTICATED, fields: [], make: (d, _f, o) => new UnauthenticatedError(d, o) },
  [ErrorCode.Internal]: { grpc: Status.INTERNAL, fields: [], make: (d, _f, o) => new InternalError(d, o) },
};

/** The gRPC status for each annal error code. */
export function grpcCodeFor(code: ErrorCode): Status {
  return KINDS[code].grpc;
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
  const fields = error as unknown as { readonly [field: string]: unknown };
  for (const field of KINDS[error.code].fields) {
    const value = fields[field];
    if (value !== undefined) metadata.set(ErrorMetadataKey[field], String(value));
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
  const fields: Fields = { text: (field) => get(ErrorMetadataKey[field]), num: (field) => Number(get(ErrorMetadataKey[field]) ?? NaN) };
  const options = { cause: cause ?? status };
  const code = get(ErrorMetadataKey.code);
  const kind = code !== undefined && Object.hasOwn(KINDS, code) ? KINDS[code as ErrorCode] : undefined;
  return kind !== undefined ? kind.make(status.details, fields, options) : errorFromGrpcCode(status.code, status.details, options);
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
