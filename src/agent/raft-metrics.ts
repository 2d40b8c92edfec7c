/**
 * Raft metrics on /metrics, read from the replica at scrape time (nothing on the hot path):
 * term, role, commit/applied/last index, configuration size, leader changes, elections,
 * configuration changes, and on the leader each follower's replication lag in entries.
 */
import type { PeerMetrics, Replica } from '../replication/index.js';
import type { Telemetry } from '../telemetry/index.js';

const ROLES = ['follower', 'preCandidate', 'candidate', 'leader'] as const;

export function exportRaftMetrics(telemetry: Telemetry, current: () => Replica): void {
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
  const stopped = meter.createObservableGauge('annal_raft_stopped', {
    description: '1 while Raft is stopped on this node after a failed storage write (the agent reopens the replica in place once it can).',
  });
  meter.addBatchObservableCallback(
    (result) => {
      const replica = current();
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
      result.observe(stopped, stats.stopped ? 1 : 0);
    },
    [term, role, commit, applied, last, members, lag, leaderChanges, elections, configChanges, stopped],
  );
}

/** Hooks for the replica's hot paths, counted into OpenTelemetry instruments. */
export interface ReplicaInstruments {
  peer: PeerMetrics;
  proposal(outcome: string, records: number): void;
}

/**
 * Counters for what the peer transport and service see (messages and bytes by type, drops by
 * reason, gateway rejections; InstallSnapshot chunks are the `snapshot` type) and for proposals
 * by outcome.
 */
export function replicaInstruments(telemetry: Telemetry): ReplicaInstruments {
  const meter = telemetry.meter('raft');
  const sent = meter.createCounter('annal_raft_peer_messages_sent', { description: 'Raft messages sent to peers, by type.' });
  const sentBytes = meter.createCounter('annal_raft_peer_sent_bytes', { description: 'Estimated bytes of Raft messages sent to peers, by type.', unit: 'By' });
  const batches = meter.createCounter('annal_raft_peer_batches_sent', { description: 'Message batches written to peer streams (messages per batch show batching).' });
  const dropped = meter.createCounter('annal_raft_peer_messages_dropped', { description: 'Outgoing Raft messages dropped (Raft resends), by type and reason.' });
  const received = meter.createCounter('annal_raft_peer_messages_received', { description: 'Raft messages received from peers and delivered, by type.' });
  const rejected = meter.createCounter('annal_raft_peer_messages_rejected', { description: 'Incoming peer messages dropped at the gateway as malformed or hostile, by reason.' });
  const streamFailures = meter.createCounter('annal_raft_peer_stream_failures', { description: 'Peer streams that ended other than by close, by gRPC code.' });
  const proposals = meter.createCounter('annal_raft_proposals', { description: 'Records proposed on this node as leader, by outcome.' });
  return {
    peer: {
      messageSent: (_to, type, sizeBytes) => {
        sent.add(1, { type });
        sentBytes.add(sizeBytes, { type });
      },
      batchSent: () => batches.add(1),
      messageDropped: (_to, type, reason) => dropped.add(1, { type, reason }),
      messageReceived: (_from, type) => received.add(1, { type }),
      messageRejected: (_from, reason) => rejected.add(1, { reason }),
      streamFailed: (_to, code) => streamFailures.add(1, { code: String(code) }),
    },
    proposal: (outcome, records) => proposals.add(records, { outcome }),
  };
}
