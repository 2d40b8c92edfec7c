/**
 * Raft metrics on /metrics, read from the replica at scrape time (nothing on the hot path):
 * term, role, commit/applied/last index, configuration size, leader changes, elections,
 * configuration changes, and on the leader each follower's replication lag in entries.
 */
import type { Replica } from '../replication/index.js';
import type { Telemetry } from '../telemetry/index.js';

const ROLES = ['follower', 'preCandidate', 'candidate', 'leader'] as const;

export function exportRaftMetrics(telemetry: Telemetry, replica: Replica): void {
  const meter = telemetry.meter('raft');
  const term = meter.createObservableGauge('annal_raft_term', { description: 'Current Raft term.' });
  const role = meter.createObservableGauge('annal_raft_role', { description: 'Raft role of this node: 1 for the role it has, 0 for the others.' });
  const commit = meter.createObservableGauge('annal_raft_commit_index', { description: 'Highest Raft index known committed.' });
  const applied = meter.createObservableGauge('annal_raft_applied_index', { description: 'Highest Raft index applied (visible to consumers on this node).' });
  const last = meter.createObservableGauge('annal_raft_last_index', { description: 'Last Raft index in the local log.' });
  const members = meter.createObservableGauge('annal_raft_members', { description: 'Members of the Raft configuration, by suffrage (voter, learner).' });
  const lag = meter.createObservableGauge('annal_raft_follower_lag_entries', {
    description: "On the leader: entries each follower's log is behind the leader's last index.",
  });
  const leaderChanges = meter.createObservableCounter('annal_raft_leader_changes', { description: 'Times the known leader changed.' });
  const elections = meter.createObservableCounter('annal_raft_elections', { description: 'Elections this node started (became candidate).' });
  const configChanges = meter.createObservableCounter('annal_raft_config_changes', { description: 'Configuration changes this node has seen take effect.' });
  meter.addBatchObservableCallback(
    (result) => {
      const stats = replica.stats();
      result.observe(term, stats.term);
      for (const name of ROLES) result.observe(role, stats.role === name ? 1 : 0, { role: name });
      result.observe(commit, stats.commit);
      result.observe(applied, stats.applied);
      result.observe(last, stats.lastIndex);
      result.observe(members, stats.voters, { suffrage: 'voter' });
      result.observe(members, stats.learners, { suffrage: 'learner' });
      for (const [peer, entries] of stats.lagByPeer) result.observe(lag, entries, { peer });
      result.observe(leaderChanges, stats.leaderChanges);
      result.observe(elections, stats.elections);
      result.observe(configChanges, stats.configChanges);
    },
    [term, role, commit, applied, last, members, lag, leaderChanges, elections, configChanges],
  );
}
