export { assert, assertUint, unreachable, AssertionError } from './assert.js';
export { Prng } from './prng.js';
export {
  AnnalError,
  ErrorCode,
  OffsetOutOfRangeError,
  InvalidArgumentError,
  RecordTooLargeError,
  CorruptionError,
  ClosedError,
  StorageFailedError,
  OverloadedError,
  NotLeaderError,
  PermissionDeniedError,
  UnauthenticatedError,
  DeadlineExceededError,
  UnavailableError,
  InternalError,
  LeadershipLostError,
  ProposalOutcomeUnknownError,
  RaftBusyError,
  CompactedError,
  LogUnavailableError,
  OutOfOrderSequenceError,
  OutcomeUnknownError,
} from './errors.js';
export { OffsetWaiters } from './offset-waiters.js';
