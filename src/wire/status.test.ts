/**
 * Goal: the error table is one table in both directions: every annal error the server sends
 * arrives at the client as the same class with the same fields, under the documented gRPC code;
 * statuses without annal metadata (from grpc-js itself) still map to a sensible class.
 * Method: statusFromError then errorFromStatus on one instance of each class (no network).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metadata, status as Status } from '@grpc/grpc-js';
import {
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
import { errorFromStatus, statusFromError } from './status.js';

describe('error table', () => {
  it('round-trips every annal error with its gRPC code and fields', () => {
    const cases = [
      { error: new OffsetOutOfRangeError(9, 2, 5), code: Status.OUT_OF_RANGE },
      { error: new OffsetOutOfRangeError(2n ** 64n - 1n, 2, 5), code: Status.OUT_OF_RANGE },
      { error: new RecordTooLargeError(2000, 1024), code: Status.INVALID_ARGUMENT },
      { error: new InvalidArgumentError('bad'), code: Status.INVALID_ARGUMENT },
      { error: new CorruptionError('/d/0.store', 4096, 'checksum mismatch'), code: Status.DATA_LOSS },
      { error: new ClosedError('closed'), code: Status.UNAVAILABLE },
      { error: new StorageFailedError('fsync failed'), code: Status.UNAVAILABLE },
      { error: new NotLeaderError('n2', '10.0.0.2:8400'), code: Status.UNAVAILABLE },
      { error: new UnavailableError('down'), code: Status.UNAVAILABLE },
      { error: new OverloadedError('full'), code: Status.RESOURCE_EXHAUSTED },
      { error: new PermissionDeniedError('no'), code: Status.PERMISSION_DENIED },
      { error: new UnauthenticatedError('who'), code: Status.UNAUTHENTICATED },
      { error: new DeadlineExceededError('late'), code: Status.DEADLINE_EXCEEDED },
      { error: new InternalError('bug'), code: Status.INTERNAL },
      { error: new CompactedError(7, 12), code: Status.OUT_OF_RANGE },
      { error: new LogUnavailableError(40, 31), code: Status.OUT_OF_RANGE },
      { error: new LeadershipLostError(17), code: Status.UNAVAILABLE },
      { error: new RaftBusyError('leadership transfer in progress'), code: Status.UNAVAILABLE },
      { error: new ProposalOutcomeUnknownError(23, 'the node stopped before it learned the outcome'), code: Status.DEADLINE_EXCEEDED },
      { error: new OutcomeUnknownError('no answer within 10000 ms'), code: Status.DEADLINE_EXCEEDED },
      { error: new OutOfOrderSequenceError(2 ** 52 + 5, 40, 38), code: Status.FAILED_PRECONDITION },
    ];
    const classes = new Set(cases.map(({ error }) => error.constructor));
    assert.equal(classes.size, Object.keys(ErrorCode).length, 'one case per error class');
    const pairs = new Set(cases.map(({ error, code }) => `${code}/${error.code}`));
    assert.equal(pairs.size, classes.size, 'each class is its own (gRPC code, annal code) pair');
    for (const { error, code } of cases) {
      const status = statusFromError(error);
      assert.equal(status.code, code, error.name);
      assert.equal(status.details, error.message);
      const back = errorFromStatus(status);
      assert.equal(back.constructor, error.constructor, error.name);
      assert.equal(back.message, error.message);
      for (const field of ['offset', 'lowestOffset', 'nextOffset', 'sizeBytes', 'maxRecordBytes', 'file', 'positionBytes', 'reason', 'leaderId', 'leaderAddress', 'index', 'firstIndex', 'lastIndex', 'producerId', 'sequence', 'expectedSequence']) {
        assert.equal((back as unknown as Record<string, unknown>)[field], (error as unknown as Record<string, unknown>)[field], `${error.name}.${field}`);
      }
    }
  });

  it('answers INTERNAL for errors that are not annal errors', () => {
    const status = statusFromError(new TypeError('x is undefined'));
    assert.equal(status.code, Status.INTERNAL);
    assert.match(status.details, /internal error: x is undefined/);
  });

  it('maps statuses without annal metadata by their gRPC code', () => {
    const plain = (code: Status) => errorFromStatus({ code, details: 'd', metadata: new Metadata() });
    assert.ok(plain(Status.RESOURCE_EXHAUSTED) instanceof OverloadedError);
    assert.ok(plain(Status.UNAVAILABLE) instanceof UnavailableError);
    assert.ok(plain(Status.INVALID_ARGUMENT) instanceof InvalidArgumentError);
    assert.ok(plain(Status.DEADLINE_EXCEEDED) instanceof DeadlineExceededError);
    const unknown = plain(Status.UNKNOWN);
    assert.ok(unknown instanceof InternalError);
    assert.match(unknown.message, /UNKNOWN: d/);
  });
});
