/** Majority arithmetic over a set of voters. */
import { assert } from '../util/index.js';
import type { NodeId } from './types.js';

export function quorumSize(voterCount: number): number {
  assert(voterCount >= 1, 'a quorum needs at least one voter');
  return Math.floor(voterCount / 2) + 1;
}

/** The highest index held by a majority of voters, given each voter's match index. */
export function committedIndex(matchIndexes: readonly number[]): number {
  const sorted = [...matchIndexes].sort((a, b) => b - a);
  return sorted[quorumSize(sorted.length) - 1] as number;
}

export const VoteResult = { Pending: 'pending', Won: 'won', Lost: 'lost' } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const voter of voters) {
    const vote = votes.get(voter);
    if (vote === true) granted++;
    if (vote === false) rejected++;
  }
  const quorum = quorumSize(voters.length);
  if (granted >= quorum) return VoteResult.Won;
  if (rejected > voters.length - quorum) return VoteResult.Lost;
  return VoteResult.Pending;
}
