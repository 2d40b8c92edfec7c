/**
 * RaftLogStorage: Raft's durable storage on annal's commit log. The replicated log is the log:
 * each Raft entry is one commit-log record (Raft index i at commit-log offset i - 1, record term =
 * entry term, record type = entry type), written once per replica; there is no second Raft log
 * and no state-machine copy. Consumers see only user entries, numbered densely: Normal (type 0)
 * and Sequenced (type 4, an idempotent producer's record: its value starts with the producer
 * header, see producers.ts, which consumers do not see; they get type 0 and the value produced).
 *
 * Files in `dir` (docs/replication.md has the full scheme and the crash argument):
 *   hard-state.json       term, vote, commit (atomic replace)
 *   cluster.json          the cluster id (atomic replace, set once)
 *   log-state.json        generation, snapshot meta + descriptor, and where the log begins
 *   log.<generation>/     the CommitLog
 *   control.<generation>.idx  the sorted list of control entries (types other than 0 and 4) of that log
 *   repair.json           while repairing damage: the index to reach before voting again
 *
 * Damage (a record that fails its checksum, a truncated segment, a commit index beyond the log)
 * is repaired from the other replicas: the log is cut before the first damaged record (the
 * damaged files are kept aside, see CommitLog's cutAtDamage), and until the log again reaches the
 * highest index it showed evidence of holding, the replica never campaigns and votes only for
 * candidates whose log covers what it held (InitialState.repairTo, repairTerm): it may have
 * acknowledged what it lost.
 *
 * Applying a leader's snapshot starts a new generation: an empty CommitLog whose first offset is
 * the snapshot index, made durable before log-state.json names it, so a crash leaves either the
 * old log and state or the new ones. Term boundaries are kept in memory (every term starts with
 * its leader's no-op, which the control list holds), so term(index) needs no read.
 */
import { join } from 'node:path';
import {
  CompactedError, decodeConfig, EntryType, isUserEntry, LogUnavailableError, type ClusterConfig, type Entry, type HardState, type InitialState, type RaftStorage,
  type NodeId, type Snapshot, type Cancel, type Timers,
} from '../raft/index.js';
import { entrySizeBytes } from '../raft/types.js';
import { CommitLog, NODE_FILE_IO, type FileIo, type LogConfig, type ReadLimits, type StoredRecord } from '../storage/index.js';
import {
  assert, assertUint, ClosedError, CorruptionError, InvalidArgumentError, OffsetOutOfRangeError, StorageFailedError,
} from '../util/index.js';
import { BACKGROUND_TIMERS } from '../util/system-timers.js';
import { SEQUENCED_HEADER_BYTES } from './producers.js';
import { CONTROL_RECORD_BYTES, ControlList, decodeControlFile, encodeControlRecords, type ControlRecord } from './control-index.js';
import { TEMP_SUFFIX, writeFileAtomic, type FileOps } from './file-ops.js';
import { encodeStateFile, readJsonFile as readStateFile } from './durable-file.js';

export type { FileOps } from './file-ops.js';

const HARD_STATE_FILE = 'hard-state.json';
/** How long a commit-only hard-state change may wait before it is written. */
const COMMIT_PERSIST_DELAY_MS = 1000;
const CLUSTER_FILE = 'cluster.json';
const LOG_STATE_FILE = 'log-state.json';
/** Present while the replica is repairing damage: the index its log must reach before it votes again. */
const REPAIR_FILE = 'repair.json';
const logDirName = (generation: number): string => `log.${generation}`;
const controlFileName = (generation: number): string => `control.${generation}.idx`;
const GENERATION_PATTERN = /^(?:log\.(\d+)|control\.(\d+)\.idx)$/;

/** The snapshot descriptor's size limit: the log is the state, so a snapshot is a few bytes. */
export const LOG_SNAPSHOT_MAX_BYTES = 4096;
const SNAPSHOT_FORMAT = 'annal-log-snapshot';
/** Stale control records (below the first retained index) tolerated before the file is rewritten. */
const CONTROL_STALE_REWRITE = 1024;

const EMPTY_CONFIG: ClusterConfig = Object.freeze({ voters: [], learners: [] });
const EMPTY_BYTES = new Uint8Array(0);
/** What entrySizeBytes counts for an entry besides its data. */
const ENTRY_OVERHEAD_BYTES = entrySizeBytes({ index: 0, term: 0, type: EntryType.Normal, data: EMPTY_BYTES });
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * The snapshot `data` this storage produces and accepts: the consumer offset that the first
 * normal entry after the snapshot index has. A follower that installs the snapshot restarts its
 * log there, so consumer offsets continue without a gap.
 */
export interface LogSnapshotDescriptor {
  readonly nextOffset: number;
}

export function encodeLogSnapshot(descriptor: LogSnapshotDescriptor): Uint8Array {
  assertUint(descriptor.nextOffset, 'snapshot nextOffset');
  const data = textEncoder.encode(JSON.stringify({ format: SNAPSHOT_FORMAT, version: 1, nextOffset: descriptor.nextOffset }));
  assert(data.length <= LOG_SNAPSHOT_MAX_BYTES, 'snapshot descriptor exceeds its size limit');
  return data;
}

/** Throws InvalidArgumentError for data that is not such a descriptor. */
export function decodeLogSnapshot(data: Uint8Array): LogSnapshotDescriptor {
  const fail = (reason: string): never => {
    throw new InvalidArgumentError(`not an annal log snapshot (${data.length} bytes): ${reason}`);
  };
  if (data.length > LOG_SNAPSHOT_MAX_BYTES) fail(`larger than ${LOG_SNAPSHOT_MAX_BYTES} bytes`);
  let parsed: unknown = undefined;
  try {
    parsed = JSON.parse(textDecoder.decode(data));
  } catch (error) {
    fail((error as Error).message);
  }
  const value = parsed as { format?: unknown; version?: unknown; nextOffset?: unknown } | null;
  if (value === null || typeof value !== 'object' || value.format !== SNAPSHOT_FORMAT) fail('wrong format');
  if (value!.version !== 1) fail(`unknown version ${String(value!.version)}`);
  if (!isUint(value!.nextOffset)) fail('nextOffset is not a non-negative integer');
  return { nextOffset: value!.nextOffset as number };
}

/** Bugs the simulated disk must catch, each read at the one place it lives (all off by default). */
export interface RaftStorageFaults {
  /** Replace log-state.json without fsyncs: a snapshot applied or taken is not persisted. */
  readonly logStateUnsynced?: boolean;
}

export interface RaftLogStorageOptions {
  /** Commit-log settings (fsync policy, segment sizes, onSync). `initialOffset` is managed here. */
  readonly log?: Partial<LogConfig>;
  /** The file system for everything, the commit log included (default node:fs; the simulator passes its disk). */
  readonly fileIo?: FileIo;
  /** File calls for the state files and the side file (default fileIo); tests inject failures (crashes) here. */
  readonly fileOps?: FileOps;
  /** Deliberately broken variants for the simulator's tests; never set in production. */
  readonly faults?: RaftStorageFaults;
  /**
   * The configuration of a new node's empty log, like MemoryStorage's constructor argument. Used
   * (and recorded durably) only when the directory holds no Raft state (`isNew`); ignored after.
   */
  readonly initialConfig?: ClusterConfig;
  /** Schedules the lazy commit-index write (default: an unref'ed system timer; the simulator passes its virtual clock). */
  readonly timers?: Pick<Timers, 'after'>;
  /**
   * This member's Raft id, when it has one. Damage is kept in place (nobody could repair it) only
   * on a member alone in its configuration: with the id, one whose latest configuration's voters
   * are exactly this member; without it, any configuration of one voter is taken for this member's.
   */
  readonly selfId?: NodeId;
}

interface LogBegin {
  /** Raft's firstIndex(): the first retained entry (entries below it are compacted). */
  readonly firstIndex: number;
  /** Term of firstIndex - 1. */
  readonly prevTerm: number;
  /** Consumer offset of the first normal entry at index >= firstIndex. */
  readonly firstOffset: number;
}

interface SnapshotRecord {
  readonly index: number;
  readonly term: number;
  readonly config: ClusterConfig;
  /** The descriptor: consumer offset of the first normal entry after `index`. */
  readonly nextOffset: number;
}

interface LogState {
  readonly generation: number;
  readonly snapshot: SnapshotRecord;
  readonly begin: LogBegin;
}

interface PooledRecord {
  value: Uint8Array;
  term: number;
  type: number;
}

const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: null, commit: 0 });

export class RaftLogStorage implements RaftStorage {
  /** True when the dir held no Raft state at open (a new node). */
  readonly isNew: boolean;
  /** What recovery did (the commit log's report plus side-file and state repairs), for logging. */
  readonly recovery: { actions: string[] };

  private readonly faults: RaftStorageFaults;
  private log: CommitLog;
  private state: LogState;
  private snapshotValue: Snapshot;
  private hardState: HardState;
  /** The commit index hard-state.json holds (commit-only changes are written lazily). */
  private persistedCommit: number;
  private commitTimer: Cancel | undefined;
  private readonly timers: Pick<Timers, 'after'>;
  private cluster: string | undefined;
  /** InitialState.repairTo, durable in repair.json while > lastIdx; 0 once reached. */
  private repairTarget = 0;
  /** InitialState.repairTerm, durable in repair.json with repairTarget (absent in files written before it). */
  private repairTerm: number | undefined;
  // Invariant: lastIdx >= state.begin.firstIndex - 1, and commit-log offsets [firstIndex - 1,
  // lastIdx) hold the retained entries (the commit log may hold more: older whole segments, and
  // while an append is being acknowledged, the new records).
  private lastIdx = 0;
  /** Control entries with index in [firstIndex, lastIdx]. */
  private readonly control = new ControlList();
  private controlFd = -1;
  /** Records at the head of the side file below firstIndex, ignored until the file is rewritten. */
  private controlStale = 0;
  // Term boundaries of [firstIndex, lastIdx]: termStarts[k] is the first index of term termValues[k].
  // Invariant: termStarts[0] === firstIndex when the log holds entries, both strictly increase.
  private termStarts: number[] = [];
  private termValues: number[] = [];
  private readonly recordPool: PooledRecord[] = [];
  private writes: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  private closed = false;
  /** Logs and descriptors opened by a replacement that did not finish; closed by close(). */
  private readonly strayLogs = new Set<CommitLog>();
  private readonly strayFds = new Set<number>();

  private constructor(
    private readonly dir: string,
    private readonly ops: FileOps,
    private readonly logConfig: Partial<LogConfig>,
    private readonly dirFd: number,
    private readonly unlock: () => void,
    private readonly selfId: NodeId | undefined,
    init: {
      log: CommitLog; state: LogState; hardState: HardState; clusterId: string | undefined; isNew: boolean; actions: string[]; faults: RaftStorageFaults;
      timers: Pick<Timers, 'after'>;
    },
  ) {
    this.faults = init.faults;
    this.timers = init.timers;
    this.log = init.log;
    this.state = init.state;
    this.snapshotValue = snapshotOf(init.state.snapshot);
    this.hardState = init.hardState;
    this.persistedCommit = init.hardState.commit;
    this.cluster = init.clusterId;
    this.isNew = init.isNew;
    this.recovery = { actions: init.actions };
  }

  /**
   * Opens (creating if needed) the storage in `dir` and recovers it: finishes or discards an
   * interrupted snapshot installation, drops side-file records of entries that never reached the
   * log, checks the side file against the log (rebuilding it by a scan if they disagree).
   */
  static async open(dir: string, options: RaftLogStorageOptions = {}): Promise<RaftLogStorage> {
    const io = options.fileIo ?? NODE_FILE_IO;
    const ops = options.fileOps ?? io;
    const logConfig: Partial<LogConfig> = { ...options.log, io: options.log?.io ?? io };
    prepareDirectory(io, dir);
    const unlock = io.lock(dir);
    let dirFd = -1;
    let log: CommitLog | undefined;
    let storage: RaftLogStorage | undefined;
    try {
      const actions: string[] = [];
      for (const name of io.readdir(dir)) {
        if (!name.endsWith(TEMP_SUFFIX)) continue;
        ops.remove(join(dir, name));
        actions.push(`removed ${join(dir, name)}: an atomic replace that did not finish`);
      }
      const hardState = readJsonFile(io, join(dir, HARD_STATE_FILE), parseHardState);
      const clusterId = readJsonFile(io, join(dir, CLUSTER_FILE), parseCluster);
      const logState = readJsonFile(io, join(dir, LOG_STATE_FILE), parseLogState);
      const state: LogState = logState ?? {
        generation: 0,
        snapshot: { index: 0, term: 0, config: EMPTY_CONFIG, nextOffset: 0 },
        begin: { firstIndex: 1, prevTerm: 0, firstOffset: 0 },
      };
      for (const name of io.readdir(dir)) {
        const match = GENERATION_PATTERN.exec(name);
        if (match === null || Number(match[1] ?? match[2]) === state.generation) continue;
        ops.remove(join(dir, name));
        actions.push(`removed ${join(dir, name)}: left by a log replacement that did not finish or was not cleaned up`);
      }
      dirFd = ops.open(dir, 'r');
      const logDir = join(dir, logDirName(state.generation));
      log = await openReplicaLog(logDir, { ...logConfig, initialOffset: state.begin.firstIndex - 1 }, async (heldThroughIndex) => {
        // Recorded before the open cuts the log: once the files are set aside, nothing here shows
        // what this replica held, and a crash before recover() writes the target would forget it.
        const recorded = readJsonFile(io, join(dir, REPAIR_FILE), parseRepair);
        const target = Math.max(heldThroughIndex, hardState?.commit ?? 0);
        if (target <= (recorded?.repairTo ?? 0)) return;
        const repairTerm = hardState === undefined ? {} : { repairTerm: hardState.term };
        await writeFileAtomic(ops, dir, dirFd, REPAIR_FILE, encodeStateFile({ version: 1, repairTo: target, ...repairTerm }));
      });
      // The state files are replaced by rename after their contents were fsynced, so what a process
      // killed before its directory fsync leaves in the page cache is a rename: made durable before
      // this process acts on what it read, or a power loss could take back a term or vote it used.
      // (It also makes a log directory just created durable.)
      await ops.fsync(dirFd);
      const isNew = hardState === undefined && logState === undefined && log.nextOffset() === 0;
      storage = new RaftLogStorage(dir, ops, logConfig, dirFd, unlock, options.selfId, {
        log, state, hardState: hardState ?? EMPTY_HARD_STATE, clusterId, isNew, actions: [...log.recovery.actions, ...actions], faults: options.faults ?? {},
        timers: options.timers ?? BACKGROUND_TIMERS, // a pending lazy commit write must not keep the process alive
      });
    } catch (error) {
      // The open's error is the one to report; a close that fails too (its fsync) still releases the files.
      await log?.close().catch(() => undefined);
      if (dirFd >= 0) ops.close(dirFd);
      unlock();
      throw error;
    }
    try {
      await storage.recover(storage.isNew ? options.initialConfig : undefined);
    } catch (error) {
      await storage.close().catch(() => undefined);
      throw error;
    }
    return storage;
  }

  // ---- raft Storage (reads are synchronous) ----

  initialState(): InitialState {
    return {
      hardState: this.hardState,
      snapshotMeta: this.snapshotValue.meta,
      ...(this.repairTarget > 0 ? { repairTo: this.repairTarget, ...(this.repairTerm !== undefined ? { repairTerm: this.repairTerm } : {}) } : {}),
    };
  }

  /** The index this replica must hold again before it votes (0: not repairing). */
  repairTo(): number {
    return this.repairTarget;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): readonly Entry[] {
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    const firstIndex = this.state.begin.firstIndex;
    if (lo < firstIndex) throw new CompactedError(lo, firstIndex);
    if (hi > this.lastIdx + 1) throw new LogUnavailableError(hi - 1, this.lastIdx);
    const result: Entry[] = [];
    let sizeBytes = 0;
    let index = lo;
    while (index < hi) {
      // Each entry counts at least its fixed overhead, so this many more can fit at most.
      const budgetBytes = maxSizeBytes - sizeBytes;
      const countMax = budgetBytes === Infinity ? hi - index : Math.min(hi - index, Math.floor(budgetBytes / ENTRY_OVERHEAD_BYTES) + 1);
      const batch = this.log.readBatch(index - 1, { maxCount: Math.max(1, countMax), maxBytes: Math.max(0, budgetBytes) });
      for (const record of batch) {
        const entry: Entry = { index, term: record.term, type: record.type as EntryType, data: record.value };
        sizeBytes += entrySizeBytes(entry);
        if (result.length > 0 && sizeBytes > maxSizeBytes) return result;
        result.push(entry);
        index++;
      }
    }
    return result;
  }

  configEntries(lo: number): readonly Entry[] {
    return this.controlEntries(EntryType.Config, lo);
  }

  /** The retained entries of a control type (not Normal or Sequenced) from index `lo` on, found through the side file. */
  controlEntries(type: EntryType, lo: number): readonly Entry[] {
    assert(!isUserEntry(type), `entries of type ${type} are not listed in the side file`);
    const result: Entry[] = [];
    for (let j = this.control.countBelow(lo); j < this.control.length; j++) {
      if (this.control.typeAt(j) !== type) continue;
      const index = this.control.indexAt(j);
      const record = this.log.read(index - 1);
      result.push({ index, term: record.term, type, data: record.value });
    }
    return result;
  }

  term(index: number): number {
    const { firstIndex, prevTerm } = this.state.begin;
    if (index < firstIndex - 1) throw new CompactedError(index, firstIndex);
    if (index > this.lastIdx) throw new LogUnavailableError(index, this.lastIdx);
    if (index === firstIndex - 1) return prevTerm;
    const starts = this.termStarts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.termValues[lo]!;
  }

  firstIndex(): number {
    return this.state.begin.firstIndex;
  }

  lastIndex(): number {
    return this.lastIdx;
  }

  /** meta.index 0 and empty data if none; otherwise `data` is the descriptor (encodeLogSnapshot). */
  snapshot(): Snapshot {
    return this.snapshotValue;
  }

  // ---- consumer view ----

  /**
   * Consumer offset that the first normal entry at raft index >= `index` has
   * (offsetOfIndex(lastIndex() + 1) is one past the last normal entry's offset). `index` must be
   * in [firstIndex(), lastIndex() + 1].
   */
  offsetOfIndex(index: number): number {
    const { firstIndex, firstOffset } = this.state.begin;
    if (index < firstIndex) throw new CompactedError(index, firstIndex);
    if (index > this.lastIdx + 1) throw new LogUnavailableError(index, this.lastIdx);
    return firstOffset + (index - firstIndex) - this.control.countBelow(index);
  }

  /** Raft index of the normal entry with consumer offset `offset` (in [lowestOffset(), next)). */
  indexOfOffset(offset: number): number {
    const { firstIndex, firstOffset } = this.state.begin;
    const next = this.offsetOfIndex(this.lastIdx + 1);
    if (!Number.isSafeInteger(offset) || offset < firstOffset || offset >= next) throw new OffsetOutOfRangeError(offset, firstOffset, next);
    return this.control.indexOfNormal(firstIndex, offset - firstOffset);
  }

  /** Lowest consumer offset still stored. */
  lowestOffset(): number {
    return this.state.begin.firstOffset;
  }

  /**
   * Normal records from consumer `offset` on, only of entries with raft index <= maxIndex, within
   * `limits` (at least one if any), each with its consumer offset, its term and type 0. [] when
   * there are none; OffsetOutOfRangeError below lowestOffset().
   */
  readRecords(offset: number, maxIndex: number, limits: ReadLimits): StoredRecord[] {
    const lowest = this.state.begin.firstOffset;
    if (!Number.isSafeInteger(offset) || offset < lowest) throw new OffsetOutOfRangeError(offset, lowest, this.offsetOfIndex(this.lastIdx + 1));
    assert(limits.maxCount >= 1, 'readRecords maxCount must be at least 1');
    const lastIndex = Math.min(maxIndex, this.lastIdx);
    if (lastIndex < this.state.begin.firstIndex || offset >= this.offsetOfIndex(lastIndex + 1)) return [];
    let index = this.control.indexOfNormal(this.state.begin.firstIndex, offset - lowest);
    let nextOffset = offset;
    const out: StoredRecord[] = [];
    let valueBytes = 0;
    const controlsToEnd = this.control.countBelow(lastIndex + 1);
    while (index <= lastIndex) {
      const wanted = limits.maxCount - out.length + (controlsToEnd - this.control.countBelow(index));
      const batch = this.log.readBatch(index - 1, {
        maxCount: Math.min(lastIndex - index + 1, wanted),
        maxBytes: Math.max(0, limits.maxBytes - valueBytes),
      });
      for (const record of batch) {
        index++;
        if (record.type !== EntryType.Normal) {
          if (record.type !== EntryType.Sequenced) continue;
          // The producer header is the log's, not the record's: consumers see the value produced.
          record.value = record.value.subarray(SEQUENCED_HEADER_BYTES);
          record.type = EntryType.Normal;
        }
        if (out.length > 0 && valueBytes + record.value.length > limits.maxBytes) return out;
        valueBytes += record.value.length;
        record.offset = nextOffset++; // a fresh object from readBatch: renumber it in place
        out.push(record);
        if (out.length >= limits.maxCount) return out;
      }
    }
    return out;
  }

  clusterId(): string | undefined {
    return this.cluster;
  }

  /** Records the cluster id durably; InvalidArgumentError if a different one is already set. */
  setClusterId(id: string): Promise<void> {
    return this.write(async () => {
      if (typeof id !== 'string' || id.length === 0) throw new InvalidArgumentError('the cluster id must be a non-empty string');
      if (this.cluster === id) return;
      if (this.cluster !== undefined) {
        throw new InvalidArgumentError(`this node belongs to cluster ${this.cluster}; refusing to change it to ${id}`);
      }
      await this.io(() => this.writeState(CLUSTER_FILE, { version: 1, clusterId: id }));
      this.cluster = id;
    });
  }

  sizeBytes(): number {
    return this.log.sizeBytes();
  }

  /**
   * The current log's segments as Raft index ranges [firstIndex, nextIndex), oldest first, with
   * their store file (whose modification time is that of its newest record) and size.
   */
  segments(): { firstIndex: number; nextIndex: number; sizeBytes: number; storePath: string; active: boolean }[] {
    return this.log.segmentSummaries().map((segment) => ({
      firstIndex: segment.baseOffset + 1,
      nextIndex: segment.nextOffset + 1,
      sizeBytes: segment.storeSizeBytes,
      storePath: segment.storePath,
      active: segment.active,
    }));
  }

  /** Segments of the current log. */
  segmentCount(): number {
    return this.log.segmentCount();
  }

  // ---- RaftStorage writes (durable when they resolve; serialised) ----

  setHardState(hardState: HardState): Promise<void> {
    return this.write(async () => {
      assertUint(hardState.term, 'hard state term');
      assertUint(hardState.commit, 'hard state commit');
      assert(hardState.term >= this.hardState.term, `hard state term went back from ${this.hardState.term} to ${hardState.term}`);
      assert(hardState.commit <= this.lastIdx, `hard state commit ${hardState.commit} is beyond the last index ${this.lastIdx}`);
      const current = this.hardState;
      if (current.term === hardState.term && current.vote === hardState.vote && current.commit === hardState.commit) return;
      const next: HardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
      if (current.term === next.term && current.vote === next.vote) {
        // The commit index is volatile in Raft (a restarted node relearns it from the leader), so a
        // commit-only change is written lazily rather than costing two fsyncs per Ready; a lagging
        // persisted commit only makes a restarted node serve a shorter committed prefix at first.
        this.hardState = next;
        this.scheduleCommitPersist();
        return;
      }
      await this.io(() => this.writeState(HARD_STATE_FILE, { version: 1, ...next }));
      this.hardState = next;
      this.persistedCommit = next.commit;
    });
  }

  /** Writes the in-memory hard state once the commit index has been lagging for COMMIT_PERSIST_DELAY_MS. */
  private scheduleCommitPersist(): void {
    if (this.commitTimer !== undefined || this.closed) return;
    this.commitTimer = this.timers.after(COMMIT_PERSIST_DELAY_MS, () => {
      this.commitTimer = undefined;
      void this.persistCommit().catch(() => undefined);
    });
  }

  private persistCommit(): Promise<void> {
    return this.write(async () => {
      const state = this.hardState;
      if (state.commit === this.persistedCommit) return;
      await this.io(() => this.writeState(HARD_STATE_FILE, { version: 1, ...state }));
      this.persistedCommit = state.commit;
    });
  }

  /**
   * Appends contiguous entries, first removing any suffix they replace. A batch of normal entries
   * is one commit-log appendBatch (one group-commit fsync); control entries are recorded in the
   * side file, fsynced, before the log append.
   */
  append(entries: readonly Entry[]): Promise<void> {
    return this.write(async () => {
      if (entries.length === 0) return;
      const { firstIndex } = this.state.begin;
      const first = entries[0]!.index;
      assert(first >= firstIndex, `append at ${first} would overwrite compacted entries (first ${firstIndex})`);
      assert(first <= this.lastIdx + 1, `append at ${first} leaves a gap after ${this.lastIdx}`);
      // Every term starts with its leader's no-op (Raft.becomeLeader appends it before anything
      // else, and a follower takes a term's entries only after the entry before them matches), so
      // a term change elsewhere than at the start of the retained log is a bug. The term
      // boundaries in memory and their rebuild at open rely on it.
      let previousTerm = this.term(first - 1);
      let controlCount = 0;
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        assert(entry.index === first + i, 'appended entries must be contiguous');
        assertUint(entry.term, 'entry term');
        assert(Number.isInteger(entry.type) && entry.type >= 0, `invalid entry type ${entry.type}`);
        assert(entry.term >= previousTerm, `entry ${entry.index} has term ${entry.term} below the previous entry's ${previousTerm}`);
        assert(
          entry.term === previousTerm || entry.type === EntryType.Noop || entry.index === firstIndex,
          `entry ${entry.index} starts term ${entry.term} but is not a no-op`,
        );
        if (!isUserEntry(entry.type)) controlCount++;
        previousTerm = entry.term;
      }
      await this.io(async () => {
        let cutControl = false;
        if (first <= this.lastIdx) {
          // The log first: control records beyond the log's end are dropped at open, while a
          // record missing for an entry still in the log would shift consumer offsets.
          await this.log.removeFrom(first - 1);
          this.lastIdx = first - 1;
          cutControl = this.control.removeFrom(first) > 0;
          this.removeTermsFrom(first);
        }
        if (cutControl || controlCount > 0) await this.writeControl(entries, controlCount, cutControl);
        const pool = this.recordPool;
        const records = new Array<PooledRecord>(entries.length);
        for (let i = 0; i < entries.length; i++) {
          const entry = entries[i]!;
          const record = pool[i] ?? (pool[i] = { value: EMPTY_BYTES, term: 0, type: 0 });
          record.value = entry.data;
          record.term = entry.term;
          record.type = entry.type;
          records[i] = record;
        }
        // appendBatch encodes every record before it returns, so the pooled objects are free
        // again at once (drop the references to the entries' data).
        const appended = this.log.appendBatch(records);
        for (let i = 0; i < entries.length; i++) pool[i]!.value = EMPTY_BYTES;
        const { firstOffset } = await appended;
        assert(firstOffset === first - 1, `entry ${first} landed at commit-log offset ${firstOffset}`);
        for (const entry of entries) {
          if (!isUserEntry(entry.type)) this.control.push(entry.index, entry.term, entry.type);
          if (this.termValues.length === 0 || this.termValues[this.termValues.length - 1] !== entry.term) {
            this.termStarts.push(entry.index);
            this.termValues.push(entry.term);
          }
        }
        this.lastIdx = entries[entries.length - 1]!.index;
        if (this.repairTarget > 0 && this.lastIdx >= this.repairTarget) await this.clearRepair();
      });
    });
  }

  /** The log holds what damage cost it again: voting is safe, repair.json goes. */
  private async clearRepair(): Promise<void> {
    this.ops.remove(join(this.dir, REPAIR_FILE));
    await this.ops.fsync(this.dirFd);
    this.repairTarget = 0;
    this.repairTerm = undefined;
  }

  /**
   * Replaces the whole log with a snapshot from the leader: the log restarts empty so that the
   * next entry is meta.index + 1, with consumer offsets continuing at the descriptor's nextOffset.
   * `data` must be this storage's descriptor (or empty at index 0, a bootstrap configuration).
   */
  applySnapshot(snapshot: Snapshot): Promise<void> {
    return this.write(async () => {
      const { index, term, config } = snapshot.meta;
      assertUint(index, 'snapshot index');
      assertUint(term, 'snapshot term');
      const previousIndex = this.state.begin.firstIndex - 1;
      assert(index >= previousIndex, `snapshot ${index} is older than ${previousIndex}`);
      const { nextOffset } = index === 0 && snapshot.data.length === 0 ? { nextOffset: 0 } : decodeLogSnapshot(snapshot.data);
      await this.io(() =>
        this.replaceLog({
          generation: this.state.generation + 1,
          snapshot: { index, term, config: copyConfig(config), nextOffset },
          begin: { firstIndex: index + 1, prevTerm: term, firstOffset: nextOffset },
        }),
      );
    });
  }

  /**
   * Records a snapshot at `index` (<= lastIndex) and compacts: the log begins after
   * max(firstIndex - 1, index - trailingEntryCount), and whole segments below that are removed.
   * `data` (the state machine's) is ignored: the log is the state, and snapshot() returns the
   * descriptor of where the log continues.
   */
  createSnapshot(options: { index: number; config: ClusterConfig; data: Uint8Array; trailingEntryCount: number }): Promise<void> {
    return this.write(async () => {
      const { index, config, trailingEntryCount } = options;
      assertUint(trailingEntryCount, 'trailingEntryCount');
      const current = this.state;
      assert(index > current.snapshot.index, `snapshot at ${index} is not newer than ${current.snapshot.index}`);
      assert(index <= this.lastIdx, `snapshot at ${index} is beyond the last index ${this.lastIdx}`);
      const prevIndex = Math.max(current.begin.firstIndex - 1, index - trailingEntryCount);
      const firstIndex = prevIndex + 1;
      const next: LogState = {
        generation: current.generation,
        snapshot: { index, term: this.term(index), config: copyConfig(config), nextOffset: this.offsetOfIndex(index + 1) },
        begin: { firstIndex, prevTerm: this.term(prevIndex), firstOffset: this.offsetOfIndex(firstIndex) },
      };
      const firstTerm = firstIndex <= this.lastIdx ? this.term(firstIndex) : 0;
      await this.io(async () => {
        await this.writeLogState(next);
        this.state = next;
        this.snapshotValue = snapshotOf(next.snapshot);
        this.controlStale += this.control.removeBelow(firstIndex);
        this.removeTermsBelow(firstIndex, firstTerm);
        await this.log.truncate(firstIndex - 1);
        if (this.controlStale >= CONTROL_STALE_REWRITE && this.controlStale >= this.control.length) await this.rewriteControl();
      });
    });
  }

  /** Waits for the write in progress, then closes every file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.commitTimer?.();
    this.commitTimer = undefined;
    if (this.failure === undefined) await this.persistCommit().catch(() => undefined);
    this.closed = true;
    await this.writes;
    try {
      // Every log is closed (each releases its lock even when its final fsync fails), so that a
      // reopen in place finds none held; the first failure is rethrown.
      const errors: unknown[] = [];
      for (const log of [...this.strayLogs, this.log]) await log.close().catch((error: unknown) => errors.push(error));
      if (errors.length > 0) throw errors[0];
    } finally {
      for (const fd of this.strayFds) this.ops.close(fd);
      if (this.controlFd >= 0) this.ops.close(this.controlFd);
      this.ops.close(this.dirFd);
      this.unlock();
    }
  }

  // ---- internals ----

  /** Serialises writes, and refuses them once closed or after a failed one. */
  private write<T>(body: () => Promise<T>): Promise<T> {
    const run = (): Promise<T> => {
      if (this.closed) return Promise.reject(new ClosedError('the raft storage is closed'));
      if (this.failure !== undefined) {
        return Promise.reject(
          new StorageFailedError(`the raft storage failed earlier and takes no writes until reopened: ${this.failure.message}`, { cause: this.failure }),
        );
      }
      return body();
    };
    const result = this.writes.then(run, run);
    this.writes = result.catch(() => undefined);
    return result;
  }

  /** File work whose failure leaves the durable state unknown: refuse writes after it. */
  private async io<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      this.failure ??= error as Error;
      throw error;
    }
  }

  private writeState(name: string, value: object): Promise<void> {
    return writeFileAtomic(this.ops, this.dir, this.dirFd, name, encodeStateFile(value));
  }

  private writeLogState(state: LogState): Promise<void> {
    if (this.faults.logStateUnsynced === true) {
      // Broken variant: the new file is renamed into place, but nothing is fsynced.
      const temp = join(this.dir, LOG_STATE_FILE + TEMP_SUFFIX);
      const fd = this.ops.open(temp, 'w');
      this.ops.write(fd, encodeStateFile({ version: 1, ...state }), 0);
      this.ops.close(fd);
      this.ops.rename(temp, join(this.dir, LOG_STATE_FILE));
      return Promise.resolve();
    }
    return this.writeState(LOG_STATE_FILE, { version: 1, ...state });
  }

  private controlPath(generation = this.state.generation): string {
    return join(this.dir, controlFileName(generation));
  }

  /**
   * Makes the side file match the in-memory list (cut after a removed suffix) plus the control
   * entries of `entries`, and fsyncs it: before the log append, so the log never holds a control
   * entry the file lacks.
   */
  private async writeControl(entries: readonly Entry[], controlCount: number, cut: boolean): Promise<void> {
    const keptRecords = this.controlStale + this.control.length;
    if (cut) this.ops.truncate(this.controlFd, keptRecords * CONTROL_RECORD_BYTES);
    if (controlCount > 0) {
      const records: ControlRecord[] = [];
      for (const entry of entries) if (!isUserEntry(entry.type)) records.push({ index: entry.index, term: entry.term, type: entry.type });
      this.ops.write(this.controlFd, encodeControlRecords(records), keptRecords * CONTROL_RECORD_BYTES);
    }
    await this.ops.fsync(this.controlFd);
  }

  /** Replaces the side file with the retained records only (atomically). */
  private async rewriteControl(): Promise<void> {
    await writeFileAtomic(this.ops, this.dir, this.dirFd, controlFileName(this.state.generation), encodeControlRecords(this.control.records()));
    this.ops.close(this.controlFd);
    this.controlFd = -1;
    this.controlFd = this.ops.open(this.controlPath(), 'r+');
    this.controlStale = 0;
  }

  /**
   * Switches to a new, empty log generation described by `next`. The new log and side file are
   * made durable first; writing log-state.json is the switch; the old generation is removed
   * after (open removes it too if a crash came first).
   */
  private async replaceLog(next: LogState): Promise<void> {
    const logDir = join(this.dir, logDirName(next.generation));
    this.ops.remove(logDir);
    this.ops.remove(this.controlPath(next.generation));
    const log = await CommitLog.open(logDir, { ...this.logConfig, initialOffset: next.begin.firstIndex - 1 });
    this.strayLogs.add(log);
    const controlFd = this.ops.open(this.controlPath(next.generation), 'w');
    this.strayFds.add(controlFd);
    await this.ops.fsync(this.dirFd);
    await this.writeLogState(next);
    const old = { log: this.log, controlFd: this.controlFd, generation: this.state.generation };
    this.strayLogs.delete(log);
    this.strayFds.delete(controlFd);
    this.log = log;
    this.controlFd = controlFd;
    this.state = next;
    this.snapshotValue = snapshotOf(next.snapshot);
    this.lastIdx = next.begin.firstIndex - 1;
    if (this.repairTarget > 0 && this.lastIdx >= this.repairTarget) await this.clearRepair();
    this.control.clear();
    this.controlStale = 0;
    this.termStarts = [];
    this.termValues = [];
    if (old.controlFd >= 0) this.ops.close(old.controlFd);
    this.strayLogs.add(old.log); // closed by close() too if closing it here fails
    await old.log.close();
    this.strayLogs.delete(old.log);
    this.ops.remove(join(this.dir, logDirName(old.generation)));
    this.ops.remove(this.controlPath(old.generation));
  }

  private removeTermsFrom(index: number): void {
    while (this.termStarts.length > 0 && this.termStarts[this.termStarts.length - 1]! >= index) {
      this.termStarts.pop();
      this.termValues.pop();
    }
  }

  /** Drops the boundaries below a new first index, whose term is `firstTerm`. */
  private removeTermsBelow(firstIndex: number, firstTerm: number): void {
    if (firstIndex > this.lastIdx) {
      this.termStarts = [];
      this.termValues = [];
      return;
    }
    let keep = 0;
    while (keep + 1 < this.termStarts.length && this.termStarts[keep + 1]! <= firstIndex) keep++;
    this.termStarts.splice(0, keep);
    this.termValues.splice(0, keep);
    this.termStarts[0] = firstIndex;
    assert(this.termValues[0] === firstTerm, 'term boundary at the new first index');
  }

  // ---- recovery ----

  private async recover(initialConfig: ClusterConfig | undefined): Promise<void> {
    const actions = this.recovery.actions;
    const repair = readJsonFile(this.logConfig.io ?? NODE_FILE_IO, join(this.dir, REPAIR_FILE), parseRepair);
    let recorded = repair?.repairTo ?? 0;
    let recordedTerm = repair?.repairTerm;
    let evidenceEnd = this.log.recovery.cut?.evidenceEndOffset ?? -1;
    // Only a replica with others to fetch from cuts a damaged record away; a lone voter keeps it
    // in place, served as DATA_LOSS, as a single log does (and refuses undelimitable damage
    // unless the operator asked for quarantine). First, before anything reads the log.
    if (!this.knownAlone()) {
      const damaged = await this.cutAtFirstDamagedRecord(actions, async (heldThroughIndex) => {
        // Recorded before the cut: once the files are set aside, nothing here shows what this
        // replica held, and an open that fails after the cut (a full disk) would forget it.
        const target = Math.max(recorded, heldThroughIndex, this.hardState.commit);
        if (target <= recorded) return;
        recordedTerm = this.hardState.term;
        await this.writeRepair(target, recordedTerm);
        recorded = target;
      });
      if (damaged !== undefined) evidenceEnd = Math.max(evidenceEnd, damaged.evidenceEndOffset);
    } else if (this.log.recovery.quarantinedOffsets.length > 0 && this.logConfig.quarantineDamaged !== true) {
      const logDir = join(this.dir, logDirName(this.state.generation));
      await this.log.close();
      this.log = await CommitLog.open(logDir, { ...this.logConfig, initialOffset: this.state.begin.firstIndex - 1 }); // throws the refusal
    }
    await this.reconcileLog(actions);
    await this.loadControl(actions);
    const target = Math.max(recorded, evidenceEnd + 1, this.hardState.commit);
    if (target > this.lastIdx) {
      // Recorded before the commit index is lowered, so a crash in between cannot forget it. The
      // current term bounds the term of every entry the replica held (see InitialState.repairTerm);
      // a recorded one stays, as it was taken when the entries were held.
      const repairTerm = target === recorded ? recordedTerm : this.hardState.term;
      if (target !== recorded || repairTerm !== recordedTerm) await this.writeRepair(target, repairTerm);
      this.repairTarget = target;
      this.repairTerm = repairTerm;
      actions.push(
        `this replica lost entries it may have acknowledged (its log ends at index ${this.lastIdx}, it held up to ${target}): ` +
          'it never campaigns, and votes only for a candidate holding them, until a leader has sent them again',
      );
    } else if (recorded > 0) {
      await this.clearRepair();
    }
    if (this.hardState.commit > this.lastIdx) {
      // Only an fsync policy other than `always` (or a lost disk) can lose entries it covered.
      actions.push(`the persisted commit index ${this.hardState.commit} is beyond the last index ${this.lastIdx}: lowered to it (committed entries were lost here and come back from the leader)`);
      const lowered: HardState = { ...this.hardState, commit: this.lastIdx };
      await this.writeState(HARD_STATE_FILE, { version: 1, ...lowered });
      this.hardState = lowered;
      this.persistedCommit = lowered.commit;
    }
    if (initialConfig !== undefined) {
      const next: LogState = { ...this.state, snapshot: { ...this.state.snapshot, config: copyConfig(initialConfig) } };
      await this.writeLogState(next);
      this.state = next;
      this.snapshotValue = snapshotOf(next.snapshot);
    }
  }

  /**
   * Whether the latest configuration in the log lists this member as its one voter, read from
   * the side file as it is on disk (before open checks it). False when that cannot be known (the
   * entry or the side file unreadable, valid side-file records after a damaged one, or no
   * configuration at all): only a replica known to be alone keeps damage in place.
   */
  private knownAlone(): boolean {
    let bytes: Buffer;
    try {
      bytes = (this.logConfig.io ?? NODE_FILE_IO).readFile(this.controlPath());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EIO') return false;
      bytes = Buffer.alloc(0);
    }
    const { firstIndex } = this.state.begin;
    const decoded = decodeControlFile(bytes);
    if (decoded.strandedRecords.length > 0) return false;
    const configs = decoded.records.filter(
      (record) => record.type === EntryType.Config && record.index >= firstIndex && record.index - 1 < this.log.nextOffset(),
    );
    const last = configs[configs.length - 1];
    let voters: readonly NodeId[];
    if (last === undefined) {
      voters = this.state.snapshot.config.voters;
    } else {
      try {
        voters = decodeConfig(this.log.read(last.index - 1).value).voters;
      } catch {
        return false;
      }
    }
    return voters.length === 1 && (this.selfId === undefined || voters[0] === this.selfId);
  }

  /**
   * Verifies every record once (the commit log's open checks only the tail, a flipped bit in an
   * older segment shows only on read) and cuts the log before the first that fails, keeping the
   * affected segment files in `<log dir>.damaged/<time>/`. A sequential read of the log; a
   * replica can repair what it finds from the others.
   */
  private writeRepair(repairTo: number, repairTerm: number | undefined): Promise<void> {
    return this.writeState(REPAIR_FILE, { version: 1, repairTo, ...(repairTerm !== undefined ? { repairTerm } : {}) });
  }

  private async cutAtFirstDamagedRecord(actions: string[], beforeCut: (heldThroughIndex: number) => Promise<void>): Promise<{ evidenceEndOffset: number } | undefined> {
    const log = this.log;
    const end = log.nextOffset();
    const damagedAt = log.verify((action) => actions.push(action));
    // Called for a replica whose latest configuration has other voters. Every one of them holds
    // the whole retained log (a member catches up from the leader's lowest retained offset), so
    // damage in entries written while this node was alone is repaired from them too.
    if (damagedAt === undefined) return undefined;
    await beforeCut(end);
    const keepDir = await log.cutAtDamage(damagedAt);
    actions.push(
      `CUT AT DAMAGE: the record for offset ${damagedAt} fails verification (its frame, checksum or index entry); ` +
        `the log is cut before it (it held up to offset ${end - 1}), the affected ` +
        `segment files as they were are kept in ${keepDir}`,
    );
    return { evidenceEndOffset: end - 1 };
  }

  /**
   * The log must cover the recorded begin and hold the snapshot's entry when it is retained. If it
   * does not (a crash during a replacement, or damage), it restarts empty after the snapshot.
   */
  private async reconcileLog(actions: string[]): Promise<void> {
    const { begin, snapshot } = this.state;
    const lowest = this.log.lowestOffset();
    const last = this.log.nextOffset(); // the last index the log holds
    const termAt = (index: number): number => this.log.read(index - 1).term;
    let problem: string | undefined;
    if (lowest > begin.firstIndex - 1) {
      problem = `the log begins at index ${lowest + 1}, after the first retained index ${begin.firstIndex}`;
    } else if (last < begin.firstIndex - 1) {
      problem = `the log ends at index ${last}, before the first retained index ${begin.firstIndex}`;
    } else if (snapshot.index >= begin.firstIndex && last < snapshot.index) {
      problem = `the log ends at index ${last}, before the snapshot index ${snapshot.index}`;
    } else if (snapshot.index >= begin.firstIndex && termAt(snapshot.index) !== snapshot.term) {
      problem = `the entry at the snapshot index ${snapshot.index} has term ${termAt(snapshot.index)}, not ${snapshot.term}`;
    } else if (begin.firstIndex - 1 > lowest && termAt(begin.firstIndex - 1) !== begin.prevTerm) {
      problem = `the entry at index ${begin.firstIndex - 1} has term ${termAt(begin.firstIndex - 1)}, not ${begin.prevTerm}`;
    }
    if (problem === undefined) {
      this.lastIdx = last;
      return;
    }
    actions.push(`${problem}: the log restarts empty after snapshot index ${snapshot.index} (term ${snapshot.term})`);
    await this.replaceLog({
      generation: this.state.generation + 1,
      snapshot,
      begin: { firstIndex: snapshot.index + 1, prevTerm: snapshot.term, firstOffset: snapshot.nextOffset },
    });
  }

  /** Loads the side file, cutting what a crash left beyond the log, and checks it against the log. */
  private async loadControl(actions: string[]): Promise<void> {
    const path = this.controlPath();
    const { firstIndex } = this.state.begin;
    const last = this.lastIdx;
    if (this.controlFd >= 0) {
      this.ops.close(this.controlFd); // a replacement during reconcileLog opened it
      this.controlFd = -1;
    }
    this.control.clear();
    this.controlStale = 0;
    let bytes: Buffer;
    let existed = true;
    let unreadable = false;
    try {
      bytes = (this.logConfig.io ?? NODE_FILE_IO).readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EIO') throw error;
      bytes = Buffer.alloc(0);
      existed = code === 'EIO';
      unreadable = code === 'EIO';
    }
    if (existed) {
      this.controlFd = this.ops.open(path, 'r+');
    } else {
      this.controlFd = this.ops.open(path, 'w');
      await this.ops.fsync(this.dirFd);
    }
    let rebuild: string | undefined;
    if (!existed && last >= firstIndex) rebuild = `${path} is missing`;
    if (unreadable) rebuild = `the device failed to read ${path} (EIO)`;
    const decoded = decodeControlFile(bytes);
    let records = decoded.records;
    let keptBytes = decoded.validBytes;
    if (keptBytes < bytes.length) {
      actions.push(`cut ${bytes.length - keptBytes} bytes from ${path} at byte ${keptBytes}: a torn or corrupt record`);
      if (decoded.strandedRecords.some((record) => record.index <= last)) rebuild ??= `records of ${path} after a bad one describe entries in the log`;
      // A torn tail describes an entry the log never got (the side file is written first), but a
      // damaged record may describe one it holds: nothing tells them apart, so the log decides.
      const lastKept = records[records.length - 1]?.index ?? firstIndex - 1;
      if (last > lastKept) rebuild ??= `a record of ${path} after index ${lastKept} is torn or damaged, and the log holds entries after it`;
    }
    const beyond = records.findIndex((record) => record.index > last);
    if (beyond >= 0) {
      actions.push(
        `dropped ${records.length - beyond} records of ${path} from index ${records[beyond]!.index} on: beyond the log's last index ${last} ` +
          '(an append that did not complete, or a removed suffix)',
      );
      records = records.slice(0, beyond);
      keptBytes = beyond * CONTROL_RECORD_BYTES;
    }
    // When the side file must be rebuilt, its bad tail stays until the rebuild replaces the file:
    // cut first, a crash before the rebuild would leave a side file that looks whole.
    if (keptBytes < bytes.length && rebuild === undefined) {
      this.ops.truncate(this.controlFd, keptBytes);
      await this.ops.fsync(this.controlFd);
    }
    for (const record of records) {
      if (record.index < firstIndex) {
        this.controlStale++;
        continue;
      }
      const stored = this.log.read(record.index - 1);
      if (stored.type !== record.type || stored.term !== record.term) {
        rebuild ??= `its record for index ${record.index} (term ${record.term}, type ${record.type}) disagrees with the log (term ${stored.term}, type ${stored.type})`;
        break;
      }
      this.control.push(record.index, record.term, record.type);
    }
    if (rebuild === undefined) {
      this.buildTermsFromControl();
      if (last >= firstIndex) {
        const lastTerm = this.log.read(last - 1).term;
        const expected = this.termValues[this.termValues.length - 1];
        if (lastTerm !== expected) rebuild = `the last entry has term ${lastTerm} but the last listed term start is of term ${expected}`;
      }
    }
    if (rebuild !== undefined) await this.rebuildControl(path, rebuild, actions);
  }

  private buildTermsFromControl(): void {
    this.termStarts = [];
    this.termValues = [];
    const { firstIndex } = this.state.begin;
    if (this.lastIdx < firstIndex) return;
    this.termStarts.push(firstIndex);
    this.termValues.push(this.log.read(firstIndex - 1).term);
    for (let j = 0; j < this.control.length; j++) {
      const term = this.control.termAt(j);
      if (term === this.termValues[this.termValues.length - 1]) continue;
      this.termStarts.push(this.control.indexAt(j));
      this.termValues.push(term);
    }
  }

  /** Repair: scans the retained log for control entries and term changes, rewrites the side file. */
  private async rebuildControl(path: string, reason: string, actions: string[]): Promise<void> {
    const { firstIndex } = this.state.begin;
    this.control.clear();
    this.termStarts = [];
    this.termValues = [];
    for (let index = firstIndex; index <= this.lastIdx; ) {
      for (const record of this.log.readBatch(index - 1, { maxCount: this.lastIdx - index + 1, maxBytes: 1 << 20 })) {
        if (!isUserEntry(record.type)) this.control.push(index, record.term, record.type);
        if (this.termValues.length === 0 || this.termValues[this.termValues.length - 1] !== record.term) {
          this.termStarts.push(index);
          this.termValues.push(record.term);
        }
        index++;
      }
    }
    await this.rewriteControl();
    actions.push(
      `rebuilt ${path} from the log because ${reason}: scanned ${this.lastIdx - firstIndex + 1} entries, found ${this.control.length} control entries`,
    );
  }
}

/**
 * Opens a replica's commit log keeping any damage in place (so the configuration can be read to
 * decide what to do with it, see recover); damage that cannot even be kept (a missing segment, a
 * truncated sealed one) is cut at once, as only a replica with others to fetch from can afford,
 * after `beforeCut` has recorded the highest index the files show.
 */
async function openReplicaLog(
  logDir: string,
  config: Partial<LogConfig>,
  beforeCut: (heldThroughIndex: number) => Promise<void>,
): Promise<CommitLog> {
  try {
    return await CommitLog.open(logDir, { ...config, quarantineDamaged: true });
  } catch (error) {
    if (!(error instanceof CorruptionError) || error.damage === undefined) throw error;
    const heldThroughOffset = Math.max(CommitLog.heldThroughOffset(logDir, config), error.damage.evidenceEndOffset);
    await beforeCut(heldThroughOffset + 1);
    return CommitLog.open(logDir, { ...config, cutAtDamage: true });
  }
}

function snapshotOf(record: SnapshotRecord): Snapshot {
  const meta = { index: record.index, term: record.term, config: record.config };
  return { meta, data: record.index === 0 && record.nextOffset === 0 ? EMPTY_BYTES : encodeLogSnapshot({ nextOffset: record.nextOffset }) };
}

function copyConfig(config: ClusterConfig): ClusterConfig {
  return { voters: [...config.voters], learners: [...config.learners] };
}

function isUint(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function prepareDirectory(io: FileIo, dir: string): void {
  try {
    io.mkdir(dir);
  } catch (error) {
    throw new InvalidArgumentError(`cannot create data dir ${dir}: ${(error as Error).message}`, { cause: error });
  }
  if (io.kind(dir) !== 'directory') throw new InvalidArgumentError(`data dir ${dir} exists and is not a directory`);
}

/** Reads and validates a JSON state file; undefined if it does not exist. */
function readJsonFile<T>(io: FileIo, path: string, parse: (value: Record<string, unknown>) => T | undefined): T | undefined {
  const value = readStateFile(io, path);
  if (value === undefined) return undefined;
  const parsed = value !== null && typeof value === 'object' && (value as { version?: unknown }).version === 1 ? parse(value as Record<string, unknown>) : undefined;
  if (parsed === undefined) throw new CorruptionError(path, 0, 'unexpected contents (or an unknown version)');
  return parsed;
}

function parseHardState(value: Record<string, unknown>): HardState | undefined {
  const { term, vote, commit } = value;
  if (!isUint(term) || !isUint(commit) || !(vote === null || (typeof vote === 'string' && vote.length > 0))) return undefined;
  return { term, vote, commit };
}

function parseRepair(value: Record<string, unknown>): { repairTo: number; repairTerm?: number } | undefined {
  if (!isUint(value.repairTo) || !(value.repairTerm === undefined || isUint(value.repairTerm))) return undefined;
  return { repairTo: value.repairTo, ...(value.repairTerm !== undefined ? { repairTerm: value.repairTerm } : {}) };
}

function parseCluster(value: Record<string, unknown>): string | undefined {
  return typeof value.clusterId === 'string' && value.clusterId.length > 0 ? value.clusterId : undefined;
}

function parseConfig(value: unknown): ClusterConfig | undefined {
  const config = value as { voters?: unknown; learners?: unknown } | null;
  if (config === null || typeof config !== 'object') return undefined;
  const ids = (list: unknown): list is string[] => Array.isArray(list) && list.every((id) => typeof id === 'string');
  if (!ids(config.voters) || !ids(config.learners)) return undefined;
  return { voters: config.voters, learners: config.learners };
}

function parseLogState(value: Record<string, unknown>): LogState | undefined {
  const { generation } = value;
  const snapshot = value.snapshot as Record<string, unknown> | null;
  const begin = value.begin as Record<string, unknown> | null;
  if (!isUint(generation) || snapshot === null || typeof snapshot !== 'object' || begin === null || typeof begin !== 'object') return undefined;
  const config = parseConfig(snapshot.config);
  const { index, term, nextOffset } = snapshot;
  const { firstIndex, prevTerm, firstOffset } = begin;
  if (config === undefined || !isUint(index) || !isUint(term) || !isUint(nextOffset)) return undefined;
  if (!isUint(firstIndex) || firstIndex < 1 || firstIndex > index + 1 || !isUint(prevTerm) || !isUint(firstOffset)) return undefined;
  return { generation, snapshot: { index, term, config, nextOffset }, begin: { firstIndex, prevTerm, firstOffset } };
}
