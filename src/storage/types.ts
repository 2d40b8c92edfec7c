/**
 * Public types of the segmented commit log. See `log.ts` for the implementation and the on-disk
 * format in `format.ts`.
 */
import type { FileIo } from './file-io.js';

/**
 * When an append is acknowledged:
 * - `always` (default): after its bytes are fdatasync'ed. Concurrent appends share one fsync
 *   (group commit), so throughput grows with concurrency. Survives kill -9 and power loss.
 * - `interval`: after its bytes are written to the OS; an fsync runs every `intervalMs`.
 *   Survives kill -9; a power loss can lose up to `intervalMs` of acknowledged appends.
 * - `never`: after its bytes are written to the OS; fsync only at segment roll (of the sealed
 *   segment, on the thread pool, so that its files can be closed) and at close.
 */
export type FsyncPolicy = { kind: 'always' } | { kind: 'interval'; intervalMs: number } | { kind: 'never' };

export interface LogConfig {
  /** A segment's store file rolls over before it would exceed this many bytes. */
  maxStoreBytes: number;
  /** A segment's index file rolls over at this many bytes (a multiple of the 12-byte entry). */
  maxIndexBytes: number;
  /** Offset of the first record of a new, empty log. */
  initialOffset: number;
  fsync: FsyncPolicy;
  /** Largest value accepted by append, in bytes (the server enforces its own, smaller limit). */
  maxRecordBytes: number;
  /**
   * Sealed segments whose two files stay open; the least recently read beyond this are closed
   * and reopened on demand, so a long log holds a bounded number of file descriptors.
   */
  maxOpenSegments: number;
  /**
   * Size of the buffer appends encode frames into; it is written with one pwrite whenever it
   * fills and at the end of each event-loop turn (a larger frame gets a buffer of its own).
   * Default 256 KiB. Tests set it small so that bursts fill it.
   */
  writeArenaBytes: number;
  /**
   * Called after each successful fdatasync round (every dirty segment, plus the directory after
   * a roll) with its duration and the number of files synced; for metrics. Must not throw.
   * Default: none.
   */
  onSync?: (event: { durationMs: number; fileCount: number }) => void;
  /**
   * Called once when a write or fsync fails and the log stops taking appends (until recover()),
   * with the error; for an error log line and a metric. Must not throw. Default: none.
   */
  onFailure?: (error: Error) => void;
  /**
   * Open a log even when damage makes acknowledged records undelimitable (a flipped length field
   * with valid records after it, several indexed records lost at the tail): the damaged range is
   * kept, its offsets read as DATA_LOSS, and each such range is reported in recovery.actions.
   * Without it such a log refuses to open. Default false; see docs/storage.md.
   */
  quarantineDamaged?: boolean;
  /**
   * For a replica, which can fetch records again from the others: instead of refusing to open or
   * quarantining, recovery cuts the log just before its first damaged record (that segment is
   * truncated there and every later segment removed) and says so in `recovery.cut`. Overrides
   * `quarantineDamaged`. Default false.
   */
  cutAtDamage?: boolean;
  /** The file system (default node:fs; the simulator passes its disk). */
  io?: FileIo;
  /** Deliberately broken variants for the simulator's tests; never set in production. */
  faults?: StorageFaults;
}

/** Bugs the simulated disk must catch, each read at the one place it lives (all off by default). */
export interface StorageFaults {
  /** Do not fsync the directory after a roll created a segment's files. */
  readonly skipDirSyncAfterRoll?: boolean;
  /** Under fsync=always, acknowledge appends once written, before their fdatasync. */
  readonly acknowledgeBeforeSync?: boolean;
}

/** What a caller appends: the log assigns the offset. */
export interface RecordInput {
  value: Uint8Array;
  /** Raft term; 0 outside Raft. */
  term?: number;
  /** Record type; 0 is a user record. */
  type?: number;
}

export interface StoredRecord {
  value: Buffer;
  offset: number;
  term: number;
  type: number;
}

export interface ReadLimits {
  /** At most this many records (at least one is returned when any is available). */
  maxCount: number;
  /** Stop before exceeding this many value bytes, but always return at least one record. */
  maxBytes: number;
}

/** What recovery found and did when the log was opened. */
export interface RecoveryReport {
  segmentCount: number;
  /** Records in the tail that were cut because they were torn or failed their checksum. */
  droppedTailRecords: number;
  /** Bytes cut from the end of the last store file. */
  droppedTailBytes: number;
  /** Index entries rebuilt from the store because the index file lacked them. */
  rebuiltIndexEntries: number;
  /** One human-readable line per action taken, naming the file and byte position. */
  actions: string[];
  /** First offset of each damaged record that was kept in place (reads of it fail with DATA_LOSS). */
  damagedOffsets: number[];
  /** First offset of each undelimitable damaged range kept under `quarantineDamaged`. */
  quarantinedOffsets: number[];
  /**
   * Set when `cutAtDamage` cut the log: the first offset dropped, and the highest offset the
   * damaged log showed evidence of holding (records after the damage, a later segment).
   */
  cut?: { fromOffset: number; evidenceEndOffset: number };
}
