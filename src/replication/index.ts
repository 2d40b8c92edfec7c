/** Public surface of the replicated log. */
export { Replica, DEFAULT_RAFT_TIMING, RAFT_ID_TAG, CLUSTER_ID_TAG } from './replica.js';
export type {
  ReplicaOptions, ReplicaLogger, RaftTiming, GossipMember, ServerView, ReplicaStats, ReplicaEnvironment, ReplicaTransport, ReplicaTransportContext, ReplicaFaults,
} from './replica.js';
export { ReplicaKeeper, REOPEN_DELAY_MS_MIN, REOPEN_DELAY_MS_MAX, type ReplicaKeeperOptions } from './replica-keeper.js';
export { ReplicatedLog } from './replicated-log.js';
export { nextChange, nodeNameOf, MIN_VOTERS_AFTER_FAILURE_REMOVAL } from './cluster-membership.js';
export type { GossipStatus, MemberView, LeaderView } from './cluster-membership.js';
export {
  RaftLogStorage,
  encodeLogSnapshot,
  decodeLogSnapshot,
  LOG_SNAPSHOT_MAX_BYTES,
  type RaftLogStorageOptions,
  type LogSnapshotDescriptor,
} from './raft-storage.js';
export { NODE_FILE_OPS, type FileOps } from './file-ops.js';
export { PeerTransport, type PeerTransportOptions, type ForwardOptions, type ReadIndexOptions } from './peer-transport.js';
export { PeerService, peerServiceHandlers, type PeerServiceOptions } from './peer-service.js';
export { RaftPeerService, RAFT_METHOD_ACTIONS, RAFT_SERVICE_NAME, PeerMetadataKey } from './peer-protocol.js';
export { SendDropReason, type PeerLogger, type PeerMetrics } from './peer-metrics.js';
export { InvalidReason, DEFAULT_PEER_LIMITS, type PeerLimits } from './peer-codec.js';
export { retainFrom, encodeControl, decodeControl, type RetentionPolicy, type SegmentView, type RetainEntry } from './retention.js';
export { decodeStateFile } from './durable-file.js';
