/**
 * How gossip membership drives the Raft configuration. Only the leader acts, one single-server
 * change at a time, re-deriving the next change from the gossip view and the configuration on
 * every pass (so a change cut short by a leadership loss is simply redone, or found done, by the
 * next leader: the rules are idempotent and need no state of their own).
 *
 * Rules, in order of priority (the first that applies is the pass's one change):
 * 1. A configured member whose gossip status is `left` (a graceful leave) is removed.
 * 2. A voter or learner that a newer incarnation of the same node name has replaced (its data dir
 *    was wiped, so it is gone for good) is removed once the new incarnation is a voter and the
 *    old one has been silent for an election timeout.
 * 3. A learner that has caught up is promoted to voter: its match index reached the leader's
 *    commit index, or the commit index of an earlier pass (`earlierCommit`, at least one pass
 *    interval old): under steady writes a learner that keeps up stays a round trip behind the
 *    commit index, so it would rarely be seen at it.
 * 4. An alive gossip member that is not configured is added as a learner (it gets the log without
 *    counting towards quorums until it has caught up), unless it belongs to another cluster (its
 *    `cluster_id` tag differs: two --bootstrap nodes, or a data dir from elsewhere).
 * 5. With `removeFailedAfterMs`, a voter that gossip has reported failed for that long is removed,
 *    but never when that would leave fewer than 3 voters. A failure alone never shrinks the
 *    quorum: a failed voter stays a voter (off by default).
 * A voter is removed (rules 1, 2, 5) only while the voters left after the removal have a quorum
 * the leader hears from (itself and the recently active): otherwise the removal could not commit,
 * and once appended it is the configuration the remaining voters use, whose quorum then needs a
 * silent voter; should that one never come back (its data lost, it returns as a new member), no
 * voter could be elected. A learner counts in no quorum and is removed at once.
 * The leader never removes itself here: it hands leadership over first (on shutdown), and the
 * next leader applies rule 1.
 */
import type { ClusterConfig, ConfigChange, NodeId } from '../raft/index.js';

export type GossipStatus = 'alive' | 'leaving' | 'left' | 'failed';

export interface MemberView {
  readonly raftId: NodeId;
  /** Node name (several incarnations of one node share it). */
  readonly name: string;
  readonly status: GossipStatus;
  /** When gossip last changed the member's status (ms, the reconciler's clock). */
  readonly sinceMs: number;
  /** The cluster the member says it belongs to (none yet for a node waiting to be added). */
  readonly clusterId?: string | undefined;
}

export interface LeaderView {
  readonly selfId: NodeId;
  readonly config: ClusterConfig;
  readonly commit: number;
  /** Leader's progress per configured member. */
  readonly progress: ReadonlyMap<NodeId, { readonly match: number; readonly recentActive: boolean }>;
  readonly members: readonly MemberView[];
  readonly nowMs: number;
  readonly removeFailedAfterMs: number | undefined;
  /** A commit index seen at least one pass interval ago (undefined: none yet); a learner whose match reached it keeps up. */
  readonly earlierCommit?: number | undefined;
  /** This cluster's id: members of another cluster are never added. */
  readonly clusterId?: string | undefined;
}

/** Never removed for failure below this many voters. */
export const MIN_VOTERS_AFTER_FAILURE_REMOVAL = 3;

/** The incarnation suffix of a Raft id: `<node name>@<incarnation>`. */
export function nodeNameOf(raftId: NodeId): string {
  const at = raftId.lastIndexOf('@');
  return at < 0 ? raftId : raftId.slice(0, at);
}

/** Whether `member` says it belongs to a cluster other than `clusterId`. */
export function foreign(member: MemberView, clusterId: string | undefined): boolean {
  return member.clusterId !== undefined && clusterId !== undefined && member.clusterId !== clusterId;
}

/** Whether the voters other than `id` include a quorum of them the leader hears from now. */
function activeQuorumWithout(view: LeaderView, id: NodeId): boolean {
  const remaining = view.config.voters.filter((voter) => voter !== id);
  const active = remaining.filter((voter) => voter === view.selfId || view.progress.get(voter)?.recentActive === true).length;
  return active >= Math.floor(remaining.length / 2) + 1;
}

/** The one configuration change this pass should make, with why, or null. */
export function nextChange(view: LeaderView): { change: ConfigChange; reason: string } | null {
  const { config, selfId } = view;
  const voters = new Set(config.voters);
  const learners = new Set(config.learners);
  const configured = (id: NodeId): boolean => voters.has(id) || learners.has(id);
  const byId = new Map(view.members.map((member) => [member.raftId, member]));
  const aliveByName = new Map<string, MemberView>();
  for (const member of view.members) if (member.status === 'alive') aliveByName.set(member.name, member);

  const removable = (id: NodeId): boolean => !voters.has(id) || activeQuorumWithout(view, id);
  for (const id of [...config.voters, ...config.learners]) {
    if (id === selfId || !removable(id)) continue;
    if (byId.get(id)?.status === 'left') return { change: { type: 'remove', nodeId: id }, reason: 'left the cluster gracefully' };
  }
  for (const id of [...config.voters, ...config.learners]) {
    if (id === selfId) continue;
    const successor = aliveByName.get(nodeNameOf(id));
    if (successor === undefined || successor.raftId === id || !voters.has(successor.raftId)) continue;
    if (view.progress.get(id)?.recentActive === true || !removable(id)) continue;
    return { change: { type: 'remove', nodeId: id }, reason: `replaced by ${successor.raftId} (a new incarnation of ${successor.name})` };
  }
  for (const id of config.learners) {
    const progress = view.progress.get(id);
    const caughtUpTo = Math.min(view.commit, view.earlierCommit ?? view.commit);
    if (progress !== undefined && progress.match >= caughtUpTo && byId.get(id)?.status === 'alive') {
      return { change: { type: 'addVoter', nodeId: id }, reason: `caught up (match ${progress.match}, commit ${view.commit}, earlier ${caughtUpTo})` };
    }
  }
  for (const member of view.members) {
    if (member.status === 'alive' && !configured(member.raftId) && member.raftId !== selfId && !foreign(member, view.clusterId)) {
      return { change: { type: 'addLearner', nodeId: member.raftId }, reason: `joined (gossip member ${member.name})` };
    }
  }
  const after = view.removeFailedAfterMs;
  if (after !== undefined && config.voters.length > MIN_VOTERS_AFTER_FAILURE_REMOVAL) {
    for (const id of config.voters) {
      const member = byId.get(id);
      if (id === selfId || member?.status !== 'failed' || view.nowMs - member.sinceMs < after || !removable(id)) continue;
      return { change: { type: 'remove', nodeId: id }, reason: `failed for ${Math.round((view.nowMs - member.sinceMs) / 1000)} s (--remove-failed-after ${after} ms)` };
    }
  }
  return null;
}
