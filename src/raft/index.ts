/** Public surface of the Raft component: the pure core, its storage contract and the driver. */
export { RawNode, type Ready, type Status } from './raw-node.js';
export { type RaftOptions } from './config.js';
export { type RequestResult, type RefusalReason } from './raft.js';
export { applyConfigChange } from './config-change.js';
export { type Faults } from './faults.js';
export { MemoryStorage, CompactedError, LogUnavailableError, type Storage, type InitialState } from './storage.js';
export { RaftNode, type Outcome, type RaftNodeOptions, type RaftStorage, type StateMachine, type Written } from './driver.js';
export type { Cancel, Timers } from './timers.js';
export { InMemoryNetwork, type Transport } from './transport.js';
export { LeadershipLostError, ProposalOutcomeUnknownError, RaftBusyError } from './errors.js';
export {
  EntryType,
  isUserEntry,
  Role,
  encodeConfig,
  decodeConfig,
  type NodeId,
  type Entry,
  type HardState,
  type ClusterConfig,
  type ConfigChange,
  type SnapshotMeta,
  type Snapshot,
  type ReadState,
  type SoftState,
  type Message,
  type MessageType,
} from './types.js';
