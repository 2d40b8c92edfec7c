/** The deliberately broken Raft variants the simulator must catch (see faults.ts in raft/). */
import type { Faults } from '../raft/index.js';
import type { ReplicaFaults } from './replica-cluster.js';

export const BROKEN_VARIANTS = {
  voteWithoutLogCheck: { voteWithoutLogCheck: true },
  commitPreviousTermByCount: { commitPreviousTermByCount: true },
  forgetVotePersist: { forgetVotePersist: true },
  applyBeforeCommit: { applyBeforeCommit: true },
  keepConflictingSuffix: { keepConflictingSuffix: true },
  readWithoutQuorum: { readWithoutQuorum: true },
  configChangeBeforeNoopCommit: { configChangeBeforeNoopCommit: true },
  preVoteClearsVote: { preVoteClearsVote: true },
  readAckAnyRound: { readAckAnyRound: true },
  heartbeatCommitUnclamped: { heartbeatCommitUnclamped: true },
  sendBeforePersist: { sendBeforePersist: true },
} as const satisfies Record<string, Faults>;
export type BrokenVariantName = keyof typeof BROKEN_VARIANTS;

/**
 * Broken variants of the production replica's layers (replica-cluster.ts passes them to the code
 * that reads them), for `npm run sim -- --replica --fault NAME`.
 */
export const REPLICA_VARIANTS = {
  /**
   * A produce is acknowledged before it is durable on a quorum: followers acknowledge appends
   * before their write is durable (the driver's sendBeforePersist), so the leader commits, and
   * answers the producer, with the entry durable on itself alone.
   */
  acknowledgeBeforeQuorumDurable: { raft: { sendBeforePersist: true } },
  /** Every replica's commit log acknowledges appends before their fdatasync: a produce is durable nowhere. */
  logAcknowledgeBeforeSync: { log: { acknowledgeBeforeSync: true } },
  /**
   * The file-I/O layer swallows an fsync's EIO: the commit log acknowledges writes whose pages
   * the kernel dropped, and a power loss later loses them.
   */
  acknowledgeFailedFsync: { fileIo: { ignoreFsyncErrors: true } },
  /**
   * Where the log begins (log-state.json) is replaced without fsyncs: a retention compaction or
   * an installed snapshot is not persisted, while the segments it removed are gone.
   */
  logStateUnsynced: { storage: { logStateUnsynced: true } },
  /** The file-I/O layer ignores ENOSPC: a write that stored nothing is fsynced and acknowledged. */
  ignoreNoSpace: { fileIo: { ignoreNoSpace: true } },
  /**
   * Replica.open moves damaged Raft state aside but rejoins under the member's old Raft id: an
   * empty log and a forgotten vote counted as the voter that acknowledged entries.
   */
  rejoinUnderOldIdentity: { rejoinUnderOldIdentity: true },
} as const satisfies Record<string, ReplicaFaults>;
export type ReplicaVariantName = keyof typeof REPLICA_VARIANTS;
