/** The deliberately broken Raft variants the simulator must catch (see faults.ts in raft/). */
import type { Faults } from '../raft/index.js';

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
