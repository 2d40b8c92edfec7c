export { CommitLog, DEFAULT_LOG_CONFIG, parseFsyncPolicy, formatFsyncPolicy } from './log.js';
export type { FsyncPolicy, LogConfig, RecordInput, StoredRecord, ReadLimits, RecoveryReport, StorageFaults } from './types.js';
export { crc32 } from './checksum.js';
export { FRAME_HEADER_BYTES, INDEX_ENTRY_BYTES, segmentFileName } from './format.js';
export { lockDirectory, LOCK_FILE_NAME } from './dir-lock.js';
export { NODE_FILE_IO, type FileIo, type OpenFlags } from './file-io.js';
