import type { Metadata } from '@grpc/grpc-js';
import type { RecordInput, StoredRecord, ReadLimits } from '../storage/types.js';

/**
 * The part of the commit log the gRPC service uses. storage's `CommitLog` satisfies it
 * structurally; a replicated log (Raft) can satisfy it later without touching the service.
 *
 * Offsets: the log holds [lowestOffset(), nextOffset()); only acknowledged records are readable.
 */
export interface ServedLog {
  /** Resolves with the record's offset once it is durable per the log's fsync policy. */
  append(record: RecordInput, context?: AppendContext): Promise<number>;
  /** Appends all records with one durability wait; offsets are firstOffset..lastOffset inclusive. */
  appendBatch(records: RecordInput[], context?: AppendContext): Promise<{ firstOffset: number; lastOffset: number }>;
  /**
   * An idempotent producer's batch: each (producerId, sequence) is appended once; a batch the log
   * already holds is answered with its offsets and `duplicate`. Absent: the log keeps no producer
   * state (a single commit log), and such batches are refused.
   */
  appendSequenced?(
    records: RecordInput[],
    producerId: number,
    firstSequence: number,
    context?: AppendContext,
  ): Promise<{ firstOffset: number; lastOffset: number; duplicate: boolean }>;
  /** Throws OffsetOutOfRangeError outside [lowestOffset(), nextOffset()). */
  read(offset: number): StoredRecord;
  /** Records from `offset` within the limits (at least one if any); [] when offset === nextOffset(). */
  readBatch(offset: number, limits: ReadLimits): StoredRecord[];
  lowestOffset(): number;
  nextOffset(): number;
  /** Resolves once nextOffset() > offset; rejects with the signal's reason or ClosedError. */
  waitForAppend(offset: number, signal?: AbortSignal): Promise<void>;
  /**
   * Resolves once reads here reflect every append acknowledged before the call (a replicated log
   * asks its leader). Absent: every read already is (a single log).
   */
  linearizableBarrier?(): Promise<void>;
  /**
   * Null when reads show everything this node knows committed; otherwise a promise of that moment
   * (a replica that just restarted relearns its commit index from the leader). Absent: always.
   */
  whenCaughtUp?(): Promise<void> | null;
}

/**
 * Who appends and the call's trace, for a replicated log that forwards the write to its leader.
 * Lazy: reading the certificate subject and writing trace metadata cost microseconds per call,
 * and only a forwarded write uses them.
 */
export interface AppendContext {
  /** The certificate subject the ACL authorized. */
  subject?: () => string | undefined;
  /** The call's trace (W3C traceparent metadata), to continue on the node the write goes to. */
  trace?: () => Metadata | undefined;
}
