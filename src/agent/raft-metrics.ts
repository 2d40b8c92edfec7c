/**
 * Raft metrics on /metrics, read from the replica at scrape time (nothing on the hot path):
 * term, role, commit/applied/last index, configuration size, leader changes, elections,
 * configuration changes, and on the leader each follower's replication lag in entries.
 */
import type { PeerMetrics, Replica } from '../replication/index.js';
import type { BatchObservableResult, Observable } from '@opentelemetry/api';
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
 * Counts by attribute value, read by an observable counter at collection time. A synchronous
 * OpenTelemetry counter hashes its attributes on every add (a few microseconds and a few hundred
 * bytes of garbage); these hooks run per record and per peer message, so they only add to a map.
 */
class Tally {
  private readonly counts = new Map<string, number>();

  add(key: string, amount: number): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + amount);
  }

  observe(result: BatchObservableResult, counter: Observable, attribute: string, split?: string): void {
    for (const [key, count] of this.counts) {
      if (split === undefined) {
        result.observe(counter, count, attribute === '' ? {} : { [attribute]: key });
        continue;
      }
      const cut = key.indexOf('\u0000');
      result.observe(counter, count, { [attribute]: key.slice(0, cut), [split]: key.slice(cut + 1) });
    }
  }
}

/**
 * Counters for what the peer transport and service see (messages and bytes by type, drops by
 * reason, gateway rejections; InstallSnapshot chunks are the `snapshot` type) and for proposals
 * by outcome, all exact and read at collection time.
 */
export function replicaInstruments(telemetry: Telemetry): ReplicaInstruments {
  const meter = telemetry.meter('raft');
  const counter = (name: string, description: string, unit?: string) =>
    meter.createObservableCounter(name, unit === undefined ? { description } : { description, unit });
  const instruments = {
    sent: counter('annal_raft_peer_messages_sent', 'Raft messages sent to peers, by type.'),
    sentBytes: counter('annal_raft_peer_sent_bytes', 'Estimated bytes of Raft messages sent to peers, by type.', 'By'),
    batches: counter('annal_raft_peer_batches_sent', 'Message batches written to peer streams (messages per batch show batching).'),
    dropped: counter('annal_raft_peer_messages_dropped', 'Outgoing Raft messages dropped (Raft resends), by type and reason.'),
    received: counter('annal_raft_peer_messages_received', 'Raft messages received from peers and delivered, by type.'),
    rejected: counter('annal_raft_peer_messages_rejected', 'Incoming peer messages dropped at the gateway as malformed or hostile, by reason.'),
    streamFailures: counter('annal_raft_peer_stream_failures', 'Peer streams that ended other than by close, by gRPC code.'),
    proposals: counter('annal_raft_proposals', 'Records proposed on this node as leader, by outcome.'),
  };
  const sent = new Tally();
  const sentBytes = new Tally();
  const batches = new Tally();
  const dropped = new Tally();
  const received = new Tally();
  const rejected = new Tally();
  const streamFailures = new Tally();
  const proposals = new Tally();
  meter.addBatchObservableCallback((result) => {
    sent.observe(result, instruments.sent, 'type');
    sentBytes.observe(result, instruments.sentBytes, 'type');
    batches.observe(result, instruments.batches, '');
    dropped.observe(result, instruments.dropped, 'type', 'reason');
    received.observe(result, instruments.received, 'type');
    rejected.observe(result, instruments.rejected, 'reason');
    streamFailures.observe(result, instruments.streamFailures, 'code');
    proposals.observe(result, instruments.proposals, 'outcome');
  }, Object.values(instruments));
  return {
    peer: {
      messageSent: (_to, type, sizeBytes) => {
        sent.add(type, 1);
        sentBytes.add(type, sizeBytes);
      },
      batchSent: () => batches.add('', 1),
      messageDropped: (_to, type, reason) => dropped.add(`${type}\u0000${reason}`, 1),
      messageReceived: (_from, type) => received.add(type, 1),
      messageRejected: (_from, reason) => rejected.add(reason, 1),
      streamFailed: (_to, code) => streamFailures.add(String(code), 1),
    },
    proposal: (outcome, records) => proposals.add(outcome, records),
  };
}
