/** Public surface of the replicated log: the Raft peer transport and service, and more to come. */
export { PeerTransport, type PeerTransportOptions, type ForwardOptions, type ReadIndexOptions } from './peer-transport.js';
export { PeerService, peerServiceHandlers, type PeerServiceOptions } from './peer-service.js';
export { RaftPeerService, RAFT_METHOD_ACTIONS, RAFT_SERVICE_NAME, PeerMetadataKey } from './peer-protocol.js';
export { SendDropReason, type PeerLogger, type PeerMetrics } from './peer-metrics.js';
export { InvalidReason, DEFAULT_PEER_LIMITS, type PeerLimits } from './peer-codec.js';
