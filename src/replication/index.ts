/** Public surface of the replicated log. */
export {
  RaftLogStorage,
  encodeLogSnapshot,
  decodeLogSnapshot,
  LOG_SNAPSHOT_MAX_BYTES,
  type RaftLogStorageOptions,
  type LogSnapshotDescriptor,
} from './raft-storage.js';
export { NODE_FILE_OPS, type FileOps } from './file-ops.js';
