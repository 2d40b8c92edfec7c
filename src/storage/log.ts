/**
 * CommitLog: a directory of segments with one writer and group commit.
 *
 * Append path: `append`/`appendBatch` validate, assign offsets and encode frames into the active
 * segment's arena synchronously, then queue an acknowledgement. The arena (one per log) is
 * written whenever it fills and before a roll, and a flush scheduled with setImmediate writes the
 * rest appended in that event-loop turn (so a burst of appends costs one pwrite per arena), then
 * acknowledges, and under `fsync: always` starts an fdatasync if none is running.
 * Appends that arrive while an fdatasync runs are written at once and wait for the next one:
 * that is the group commit, and it pipelines writes with syncs.
 *
 * Readers see only acknowledged records: [lowestOffset, nextOffset).
 */
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  AnnalError, assert, AssertionError, assertUint, ClosedError, InvalidArgumentError, OffsetOutOfRangeError, RecordTooLargeError,
  StorageFailedError,
  OffsetWaiters,
} from '../util/index.js';
import { FRAME_HEADER_BYTES, INDEX_ENTRY_BYTES } from './format.js';
import { NODE_FILE_IO, type FileIo } from './file-io.js';
import { heldThroughOffset, keepSegmentFilesAside, recoverSegments } from './recovery.js';
import { DEFAULT_WRITE_ARENA_BYTES, Segment, WriteBuffers } from './segment.js';
import type { FsyncPolicy, LogConfig, ReadLimits, RecordInput, RecoveryReport, StoredRecord } from './types.js';

const MIB = 1024 * 1024;

export const DEFAULT_LOG_CONFIG: LogConfig = Object.freeze({
  maxStoreBytes: 64 * MIB,
  maxIndexBytes: 12 * MIB, // 1,048,576 entries
  initialOffset: 0,
  fsync: { kind: 'always' } as FsyncPolicy,
  maxRecordBytes: 16 * MIB,
  maxOpenSegments: 256,
  writeArenaBytes: DEFAULT_WRITE_ARENA_BYTES,
});

/**
 * The largest nextOffset a log reaches: offsets are JavaScript numbers, exact only up to
 * 2^53 - 1, so the last record a log can hold sits at 2^53 - 2. Appends beyond are refused
 * rather than given an offset that rounds onto an existing one.
 */
export const NEXT_OFFSET_MAX = Number.MAX_SAFE_INTEGER;

/** Parses `always`, `never`, `interval:<ms>` (or `interval:<n>ms`). */
export function parseFsyncPolicy(text: string): FsyncPolicy {
  if (text === 'always') return { kind: 'always' };
  if (text === 'never') return { kind: 'never' };
  const match = /^interval:(\d+)(ms)?$/.exec(text);
  if (match) {
    const intervalMs = Number(match[1]);
    if (intervalMs >= 1 && intervalMs <= 2_147_483_647) return { kind: 'interval', intervalMs };
  }
  throw new InvalidArgumentError(`invalid fsync policy "${text}": expected always, never or interval:<ms> (1 or more)`);
}

export function formatFsyncPolicy(policy: FsyncPolicy): string {
  return policy.kind === 'interval' ? `interval:${policy.intervalMs}ms` : policy.kind;
}

function validateConfig(config: LogConfig): void {
  const check = (ok: boolean, message: string): void => {
    if (!ok) throw new InvalidArgumentError(`invalid log config: ${message}`);
  };
  check(Number.isSafeInteger(config.maxStoreBytes) && config.maxStoreBytes > FRAME_HEADER_BYTES, 'maxStoreBytes must be an integer > 28');
  check(
    Number.isSafeInteger(config.maxIndexBytes) && config.maxIndexBytes >= INDEX_ENTRY_BYTES && config.maxIndexBytes % INDEX_ENTRY_BYTES === 0,
    `maxIndexBytes must be a positive multiple of ${INDEX_ENTRY_BYTES}`,
  );
  check(Number.isSafeInteger(config.initialOffset) && config.initialOffset >= 0, 'initialOffset must be a non-negative integer');
  check(config.initialOffset < NEXT_OFFSET_MAX, `initialOffset must be below ${NEXT_OFFSET_MAX} (2^53 - 1, the largest exact offset)`);
  check(Number.isSafeInteger(config.maxRecordBytes) && config.maxRecordBytes >= 0, 'maxRecordBytes must be a non-negative integer');
  check(
    config.maxRecordBytes + FRAME_HEADER_BYTES <= config.maxStoreBytes,
    `maxRecordBytes (${config.maxRecordBytes}) plus the ${FRAME_HEADER_BYTES}-byte frame header must fit in maxStoreBytes (${config.maxStoreBytes})`,
  );
  check(config.maxRecordBytes < 0x1_0000_0000, 'maxRecordBytes must be below 4 GiB');
  check(Number.isSafeInteger(config.maxOpenSegments) && config.maxOpenSegments >= 1, 'maxOpenSegments must be an integer >= 1');
  check(
    Number.isSafeInteger(config.writeArenaBytes) && config.writeArenaBytes >= 1 && config.writeArenaBytes <= 64 * MIB,
    'writeArenaBytes must be an integer from 1 to 64 MiB',
  );
}

/** Checks that `dir` is (or can be made) a writable directory, with a one-line reason if not. */
function prepareDirectory(io: FileIo, dir: string): void {
  let kind;
  try {
    kind = io.kind(dir);
  } catch {
    kind = 'absent';
  }
  if (kind === 'absent') {
    try {
      io.mkdir(dir);
    } catch (error) {
      throw new InvalidArgumentError(`cannot create data dir ${dir}: ${(error as Error).message}`, { cause: error });
    }
    return;
  }
  if (kind !== 'directory') throw new InvalidArgumentError(`data dir ${dir} exists and is not a directory`);
  try {
    io.checkWritable(dir);
  } catch (error) {
    throw new InvalidArgumentError(`data dir ${dir} is not writable: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * fsyncs the files a process killed before its sync round may have left only in the page cache:
 * the last segment, and back through the last one holding records (a roll makes the sealed
 * segments durable before the next one gets a byte under fsync=always). What the open reads is
 * served and replicated as the log, so it must not vanish at a later power loss; fsyncs later
 * appends start cover only their own files, and the directory fsync (the caller's) a segment
 * created by a roll whose own fsync never ran.
 */
function makeTailDurable(segments: readonly Segment[], rewrite: boolean): void {
  for (let i = segments.length - 1; i >= 0; i--) {
    const segment = segments[i]!;
    if (rewrite) segment.rewriteFilesSync();
    else segment.syncFilesSync();
    if (segment.nextOffset > segment.baseOffset) break;
  }
}

/**
 * Left in a log directory by an open whose fsync of the tail failed. After a failed fsync the
 * kernel may mark the pages it could not write clean: reads still return them, and a later fsync,
 * by this process or the next, succeeds without writing them. So the next open writes the tail's
 * bytes again before its fsync. The file needs no fsync of its own: what it warns about lives in
 * the page cache, and a power loss takes both.
 */
const UNTRUSTED_TAIL_FILE = 'tail-not-durable';

function markTailUntrusted(io: FileIo, marker: string): void {
  try {
    io.close(io.open(marker, 'w'));
  } catch {
    // Best effort: the open fails either way, and the disk that refused the fsync may refuse this.
  }
}

/**
 * Pending acknowledgements in offset order: parallel arrays used as a FIFO between a head and a
 * tail index, because one object and two closures per append showed up as a third of the append
 * cost (GC). The arrays keep their capacity when the queue empties (regrowing them every
 * event-loop turn cost more than the appends' own allocations), unless a burst made them large.
 */
class AcknowledgementQueue {
  /** Capacity kept across an emptying; a larger burst's arrays are released. */
  private static readonly KEPT_CAPACITY = 65_536;
  private head = 0;
  private tail = 0;
  /** One past the last offset each entry covers. */
  private nextOffsets: number[] = [];
  private values: unknown[] = [];
  private resolvers: (((value: never) => void) | undefined)[] = [];
  private rejecters: (((error: Error) => void) | undefined)[] = [];

  /** The entry the shared executor files: the Promise constructor calls it synchronously. */
  private stagedNextOffset = 0;
  private stagedValue: unknown;
  /** One executor for every promise, so an append allocates no closure and context of its own. */
  private readonly executor = (resolve: (value: never) => void, reject: (error: Error) => void): void => {
    this.push(this.stagedNextOffset, this.stagedValue, resolve, reject);
  };

  get length(): number {
    return this.tail - this.head;
  }

  /** A promise settled when the records below `nextOffset` are acknowledged (with `value`) or fail. */
  enqueue<T>(nextOffset: number, value: T): Promise<T> {
    this.stagedNextOffset = nextOffset;
    this.stagedValue = value;
    const promise = new Promise<T>(this.executor as (resolve: (value: T) => void, reject: (error: Error) => void) => void);
    this.stagedValue = undefined;
    return promise;
  }

  private push(nextOffset: number, value: unknown, resolve: (value: never) => void, reject: (error: Error) => void): void {
    const at = this.tail++;
    if (at === this.nextOffsets.length) {
      this.nextOffsets.push(nextOffset);
      this.values.push(value);
      this.resolvers.push(resolve as (value: never) => void);
      this.rejecters.push(reject);
    } else {
      this.nextOffsets[at] = nextOffset;
      this.values[at] = value;
      this.resolvers[at] = resolve as (value: never) => void;
      this.rejecters[at] = reject;
    }
  }

  /** Resolves every entry whose records all lie below `next`. */
  resolveBelow(next: number): void {
    let i = this.head;
    while (i < this.tail && this.nextOffsets[i]! <= next) {
      const resolve = this.resolvers[i]!;
      const value = this.values[i];
      this.forget(i);
      resolve(value as never);
      i++;
    }
    this.advance(i);
  }

  rejectAll(error: Error): void {
    const end = this.tail;
    for (let i = this.head; i < end; i++) {
      const reject = this.rejecters[i]!;
      this.forget(i);
      reject(error);
    }
    this.advance(end);
  }

  /** Drops the references of a settled entry, so its promise and value can be collected. */
  private forget(i: number): void {
    this.values[i] = undefined;
    this.resolvers[i] = undefined;
    this.rejecters[i] = undefined;
  }

  private advance(to: number): void {
    this.head = to;
    if (this.head === this.tail) {
      this.head = this.tail = 0;
      if (this.nextOffsets.length > AcknowledgementQueue.KEPT_CAPACITY) {
        this.nextOffsets.length = this.values.length = this.resolvers.length = this.rejecters.length = 0;
      }
    } else if (this.head > 4096 && this.head * 2 > this.tail) {
      // Settled entries fill the front half while the queue never empties: move the rest down.
      const live = this.tail - this.head;
      for (let i = 0; i < live; i++) {
        const from = this.head + i;
        this.nextOffsets[i] = this.nextOffsets[from]!;
        this.values[i] = this.values[from];
        this.resolvers[i] = this.resolvers[from];
        this.rejecters[i] = this.rejecters[from];
        this.forget(from);
      }
      this.head = 0;
      this.tail = live;
    }
  }
}


export class CommitLog {
  readonly config: LogConfig;
  /** What recovery found and did at open, or at the last successful recover(). */
  recovery: RecoveryReport;

  // Invariant: segments is non-empty, sorted, contiguous; the last one is the only unsealed one.
  private segments: Segment[];
  /** Sealed segments with open files, least recently used first (see touch). */
  private openSealed = new Set<Segment>();
  /** What appends encode into, lent to the active segment; allocated at the first append. */
  private writeBuffers: WriteBuffers | undefined;
  /** Segments written since their last fdatasync (a superset: sync rounds check needsSync). */
  private unsynced = new Set<Segment>();
  private dirFd: number;
  private readonly io: FileIo;
  /** Index entries are written once their frames are durable (see Segment.writePending). */
  private readonly indexAfterSync: boolean;

  // Invariant: ackedNext <= writtenNext <= active.nextOffset (acknowledged <= written <= assigned).
  private ackedNext: number;
  private writtenNext: number;
  private acknowledgements = new AcknowledgementQueue();
  private readonly appendWaiters = new OffsetWaiters();
  private flushScheduled = false;
  private syncInFlight: Promise<void> | undefined;
  private dirDirty = false;
  private intervalTimer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;
  /** Cutting the files back to the acknowledged boundary after a failure; pending answers wait for it. */
  private cutInFlight: Promise<void> | undefined;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  private constructor(
    readonly dir: string,
    config: LogConfig,
    segments: Segment[],
    dirFd: number,
    recovery: RecoveryReport,
    private readonly unlock: () => void,
  ) {
    this.config = config;
    this.io = config.io ?? NODE_FILE_IO;
    this.indexAfterSync = config.fsync.kind === 'always' && config.faults?.acknowledgeBeforeSync !== true;
    this.segments = segments;
    this.dirFd = dirFd;
    this.recovery = recovery;
    this.ackedNext = this.writtenNext = this.active.nextOffset;
    for (const segment of segments) if (segment.sealed) this.touch(segment);
    if (config.fsync.kind === 'interval') {
      this.intervalTimer = setInterval(() => this.startSync(), config.fsync.intervalMs);
      this.intervalTimer.unref();
    }
  }

  /**
   * The highest offset the files of the log in `dir` show a record of, or -1: read only, for a
   * caller that must record what a log held before an open with `cutAtDamage` cuts it.
   */
  static heldThroughOffset(dir: string, config: Partial<LogConfig> = {}): number {
    const full: LogConfig = { ...DEFAULT_LOG_CONFIG, ...config };
    return heldThroughOffset(full.io ?? NODE_FILE_IO, dir, full.maxRecordBytes);
  }

  /**
   * Opens (creating if needed) the log in `dir` and recovers it. Throws InvalidArgumentError for a
   * bad config or an unusable directory, CorruptionError for corruption it must not repair.
   */
  static async open(dir: string, config: Partial<LogConfig> = {}): Promise<CommitLog> {
    const full: LogConfig = { ...DEFAULT_LOG_CONFIG, ...config };
    // Unless set, the record limit shrinks with small segments so that any record fits in one.
    if (config.maxRecordBytes === undefined) {
      full.maxRecordBytes = Math.max(0, Math.min(full.maxRecordBytes, full.maxStoreBytes - FRAME_HEADER_BYTES));
    }
    validateConfig(full);
    const io = full.io ?? NODE_FILE_IO;
    prepareDirectory(io, dir);
    const unlock = io.lock(dir);
    const marker = join(dir, UNTRUSTED_TAIL_FILE);
    const untrusted = io.kind(marker) === 'file';
    let segments: Segment[] = [];
    let dirFd = -1;
    try {
      const recovered = recoverSegments(io, dir, full);
      segments = recovered.segments;
      const report = recovered.report;
      dirFd = io.open(dir, 'r');
      if (segments.length === 0) {
        segments.push(Segment.create(io, dir, full.initialOffset));
        report.segmentCount = 1;
      }
      makeTailDurable(segments, untrusted);
      if (untrusted) {
        io.unlink(marker);
        report.actions.push(`wrote the last segments again before their fsync: an earlier open's fsync of them failed`);
      }
      io.fsyncSync(dirFd);
      return new CommitLog(dir, full, segments, dirFd, report, unlock);
    } catch (error) {
      // An I/O error here may be a failed fsync of what recovery or the tail sync wrote.
      if (!untrusted && typeof (error as { code?: unknown }).code === 'string' && !(error instanceof AnnalError)) markTailUntrusted(io, marker);
      for (const segment of segments) segment.close();
      if (dirFd >= 0) io.close(dirFd);
      unlock();
      throw error;
    }
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  lowestOffset(): number {
    return this.segments[0]!.baseOffset;
  }

  /** One past the highest acknowledged offset. */
  nextOffset(): number {
    return this.ackedNext;
  }

  /** The highest acknowledged offset; lowestOffset() - 1 when the log is empty. */
  highestOffset(): number {
    return this.ackedNext - 1;
  }

  /** Total store bytes of every segment. */
  sizeBytes(): number {
    let total = 0;
    for (const segment of this.segments) total += segment.storeSizeBytes;
    return total;
  }

  segmentCount(): number {
    return this.segments.length;
  }

  /**
   * Each segment's offset range, store size and store file, oldest first; the last is the active
   * one (for retention decisions).
   */
  segmentSummaries(): { baseOffset: number; nextOffset: number; storeSizeBytes: number; storePath: string; active: boolean }[] {
    return this.segments.map((segment, i) => ({
      baseOffset: segment.baseOffset,
      nextOffset: segment.nextOffset,
      storeSizeBytes: segment.storeSizeBytes,
      storePath: segment.storePath,
      active: i === this.segments.length - 1,
    }));
  }

  /** Appends one record; resolves with its offset once acknowledged under the fsync policy. */
  append(record: RecordInput): Promise<number> {
    const refused = this.refusal(record) ?? this.offsetsExhausted(1);
    if (refused) return Promise.reject(refused);
    let offset: number;
    try {
      offset = this.encode(record);
    } catch (error) {
      return Promise.reject(this.encodeFailed(error as Error));
    }
    return this.enqueueAcknowledgement(offset + 1, offset);
  }

  private enqueueAcknowledgement<T>(nextOffset: number, value: T): Promise<T> {
    const done = this.acknowledgements.enqueue(nextOffset, value);
    this.scheduleFlush();
    return done;
  }

  /** Why the log cannot take this record now, if it cannot. */
  private refusal(record: RecordInput): Error | undefined {
    if (this.closed) return new ClosedError('the log is closed');
    if (this.failure) return new StorageFailedError(`the log failed earlier and takes no appends until reopened: ${this.failure.message}`, { cause: this.failure });
    if (record.value.length > this.config.maxRecordBytes) return new RecordTooLargeError(record.value.length, this.config.maxRecordBytes);
    const term = record.term ?? 0;
    const type = record.type ?? 0;
    if (!Number.isSafeInteger(term) || term < 0) return new InvalidArgumentError(`invalid term ${term}`);
    if (!Number.isInteger(type) || type < 0 || type > 0xffff_ffff) return new InvalidArgumentError(`invalid type ${type}`);
    return undefined;
  }

  /** Why `count` more records cannot get offsets, if nextOffset would pass NEXT_OFFSET_MAX. */
  private offsetsExhausted(count: number): Error | undefined {
    const assigned = this.active.nextOffset;
    if (assigned + count <= NEXT_OFFSET_MAX) return undefined;
    return new InvalidArgumentError(
      `the log is full: ${count === 1 ? 'a record' : `${count} records`} at offset ${assigned} would pass the largest offset ${NEXT_OFFSET_MAX - 1} (offsets are exact up to 2^53 - 1)`,
    );
  }

  /**
   * Encodes a validated record into the active segment (rolling first if it is full, and writing
   * the pending frames first if its arena is). Throws if that write fails.
   */
  private encode(record: RecordInput): number {
    const frameBytes = FRAME_HEADER_BYTES + record.value.length;
    if (this.active.isFull(frameBytes, this.config.maxStoreBytes, this.config.maxIndexBytes)) this.roll();
    const buffers = (this.writeBuffers ??= new WriteBuffers(this.config.writeArenaBytes));
    if (!this.active.hasRoomFor(frameBytes, buffers)) this.writeUnwritten();
    const offset = this.active.appendFrame(record, buffers);
    // A constant message: a template literal here would build a string on every append.
    assert(offset < NEXT_OFFSET_MAX, 'offset assigned at or past NEXT_OFFSET_MAX');
    return offset;
  }

  /** Frames already encoded would be written: poison the log rather than acknowledge part of a batch. */
  private encodeFailed(error: Error): Error {
    this.fail(error);
    return new StorageFailedError(`append failed: ${error.message}`, { cause: error });
  }

  /**
   * Appends records atomically in order (they get consecutive offsets) and resolves once they are
   * acknowledged under the fsync policy. Rejects the whole batch, appending none, if any record
   * is invalid.
   */
  appendBatch(records: readonly RecordInput[]): Promise<{ firstOffset: number; lastOffset: number }> {
    if (records.length === 0) return Promise.reject(new InvalidArgumentError('appendBatch of no records'));
    for (const record of records) {
      const refused = this.refusal(record);
      if (refused) return Promise.reject(refused);
    }
    const exhausted = this.offsetsExhausted(records.length);
    if (exhausted) return Promise.reject(exhausted);
    let firstOffset = -1;
    let lastOffset = -1;
    try {
      for (const record of records) {
        lastOffset = this.encode(record);
        if (firstOffset < 0) firstOffset = lastOffset;
      }
    } catch (error) {
      return Promise.reject(this.encodeFailed(error as Error));
    }
    return this.enqueueAcknowledgement(lastOffset + 1, { firstOffset, lastOffset });
  }

  /**
   * Writes the active segment's pending frames, seals it, and starts a new one at the next
   * offset (which then takes the write buffers).
   */
  private roll(): void {
    const previous = this.active;
    this.writeUnwritten();
    previous.seal();
    this.segments.push(Segment.create(this.io, this.dir, previous.nextOffset));
    this.dirDirty = this.config.faults?.skipDirSyncAfterRoll !== true;
    this.touch(previous);
  }

  /**
   * Marks a sealed segment as just used and closes the files of the least recently used idle
   * ones beyond maxOpenSegments (a parked segment reopens its files when next read).
   */
  private touch(segment: Segment): void {
    if (!segment.sealed) return;
    this.openSealed.delete(segment);
    this.openSealed.add(segment);
    if (this.openSealed.size <= this.config.maxOpenSegments) return;
    for (const candidate of this.openSealed) {
      if (this.openSealed.size <= this.config.maxOpenSegments) break;
      if (candidate !== segment && candidate.park()) this.openSealed.delete(candidate);
    }
  }

  /** Open sealed segments (for tests of the descriptor bound). */
  openSegmentCount(): number {
    let open = 0;
    for (const segment of this.segments) if (segment.filesOpen) open++;
    return open;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.failure) return;
    try {
      this.writeUnwritten();
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    this.writtenNext = this.active.nextOffset;
    if (this.config.fsync.kind === 'always' && this.config.faults?.acknowledgeBeforeSync !== true) this.startSync();
    else this.acknowledge(this.writtenNext);
    if (this.config.fsync.kind === 'never') this.syncSealed();
    this.notifyIdle();
  }

  /**
   * Writes the active segment's pending frames and index entries (only it has any: a roll writes
   * them first), store before index. Acknowledging stays with the flush at the end of the turn.
   */
  private writeUnwritten(): void {
    const segment = this.active;
    if (!segment.hasUnwritten()) return;
    assert(this.writeBuffers !== undefined, 'unwritten frames without write buffers');
    if (this.config.fsync.kind === 'always') this.syncSealedBefore(segment);
    segment.writePending(this.writeBuffers, this.indexAfterSync);
    this.unsynced.add(segment);
  }

  /**
   * Under fsync=always, makes the sealed segments before `segment` durable before it gets a byte
   * (once per roll; their tail's fdatasync is usually in flight already, so this waits for it).
   * Otherwise a power loss can keep a segment's bytes and lose its predecessor's tail (the
   * kernel writes files back in no order), and recovery, which must take a damaged sealed
   * segment followed by records for damage to acknowledged records, refuses to open. Under the
   * other policies a power loss may lose acknowledged appends anyway, and a synchronous fsync of
   * a whole unsynced segment would stall the event loop.
   */
  private syncSealedBefore(segment: Segment): void {
    for (let i = this.segments.lastIndexOf(segment) - 1; i >= 0; i--) {
      const sealed = this.segments[i]!;
      if (!sealed.needsSync()) break;
      sealed.syncFilesSync();
    }
  }

  /** Segments with written bytes not yet fdatasynced; forgets the others. */
  private dirtySegments(): Segment[] {
    const dirty: Segment[] = [];
    for (const segment of this.unsynced) {
      if (segment.needsSync()) dirty.push(segment);
      else this.unsynced.delete(segment);
    }
    return dirty;
  }

  /** Starts an fdatasync of everything written so far, unless one is running (it restarts after). */
  private startSync(): void {
    if (this.syncInFlight || this.failure) return;
    const dirty = this.dirtySegments();
    if (dirty.length === 0 && !this.dirDirty) {
      this.acknowledge(this.writtenNext);
      return;
    }
    const target = this.writtenNext;
    this.syncRound(dirty, () => {
      // After a failure nothing more is acknowledged, not even what this sync covered: an
      // fsync error is reported once per file, so a failed fsync elsewhere (the roll's, on the
      // same file) may have taken the error this one should have returned.
      if (this.failure === undefined) this.acknowledge(target);
      if (this.writtenNext > target || this.dirDirty) this.startSync();
    });
  }

  /**
   * Under fsync=never: fdatasyncs sealed segments once they are written, and the directory after
   * a roll, on the thread pool (the policy's sync at roll). A sealed segment with bytes not yet
   * synced cannot be parked (see Segment.park), so without this a long log would keep two file
   * descriptors open per segment. A failure fails the log, as under the other policies.
   */
  private syncSealed(): void {
    if (this.syncInFlight || this.failure) return;
    const sealed = this.dirtySegments().filter((segment) => segment.sealed && !segment.hasUnwritten());
    if (sealed.length === 0 && !this.dirDirty) return;
    this.syncRound(sealed, () => this.syncSealed());
  }

  /**
   * One sync round on the thread pool: an fdatasync of each of `segments`, and an fsync of the
   * directory if a roll changed it. `done` runs once all succeeded; a failure fails the log.
   */
  private syncRound(segments: readonly Segment[], done: () => void): void {
    const startedMs = performance.now();
    const work = segments.map((segment) => segment.sync());
    if (this.dirDirty) work.push(this.io.fsync(this.dirFd));
    this.dirDirty = false;
    this.syncInFlight = Promise.all(work).then(
      () => {
        this.config.onSync?.({ durationMs: performance.now() - startedMs, fileCount: work.length });
        this.syncInFlight = undefined;
        done();
        this.notifyIdle();
      },
      (error: Error) => {
        this.syncInFlight = undefined;
        this.fail(error);
        this.notifyIdle();
      },
    );
  }

  private acknowledge(next: number): void {
    if (next <= this.ackedNext) {
      if (this.config.fsync.kind !== 'always') this.resolveAcknowledgements(next);
      return;
    }
    assert(next <= this.writtenNext, `acknowledging offset ${next - 1} before it was written`);
    this.ackedNext = next;
    this.resolveAcknowledgements(next);
    this.appendWaiters.wake(next);
  }

  private resolveAcknowledgements(next: number): void {
    this.acknowledgements.resolveBelow(next);
  }

  /**
   * A write or fsync failed. After a failed fsync the page cache may have dropped the dirty pages
   * (so a retry could "succeed" without the data), so nothing pending is acknowledged and the log
   * refuses appends until recover() (or a reopen) re-validates the tail.
   *
   * Before the pending appends are answered, the files are cut back to the acknowledged boundary
   * and the cut is fsynced, so an append reported as failed cannot reappear after a restart. A
   * sync already running settles first, but acknowledges nothing (see startSync). If the cut
   * itself fails, the answer says the outcome is unknown.
   */
  private fail(error: Error): void {
    if (this.failure === undefined) {
      this.failure = error;
      try {
        this.config.onFailure?.(error);
      } catch {
        // a hook must not stop the log from answering
      }
    }
    if (this.cutInFlight !== undefined) return;
    const settled = this.syncInFlight ?? Promise.resolve();
    this.cutInFlight = settled.then(() => {
      let answer: Error;
      try {
        this.cutToAcknowledged();
        answer = new StorageFailedError(
          `write or fsync failed, append not acknowledged (cut from the log): ${error.message}`, { cause: error },
        );
      } catch (cutError) {
        answer = new StorageFailedError(
          `write or fsync failed and cutting the unacknowledged tail failed too (${(cutError as Error).message}): ` +
            `outcome unknown, the append may reappear after recovery: ${error.message}`,
          { cause: error },
        );
      }
      this.acknowledgements.rejectAll(answer);
      this.cutInFlight = undefined;
      this.notifyIdle();
    });
  }

  /**
   * Truncates the store and index files to the acknowledged boundary (dropping whole segments
   * above it) and fsyncs the cut. Idempotent; the caller has no sync in flight.
   */
  private cutToAcknowledged(): void {
    const boundary = this.ackedNext;
    for (const segment of this.segments) segment.discardUnwritten();
    let removed = false;
    while (this.segments.length > 1 && this.active.baseOffset >= boundary) {
      this.dropSegment(this.segments.pop()!);
      removed = true;
    }
    const last = this.active;
    this.openSealed.delete(last);
    last.truncateEntries(boundary - last.baseOffset);
    last.syncFilesSync();
    if (removed || this.dirDirty) this.io.fsyncSync(this.dirFd);
    this.dirDirty = false;
    this.writtenNext = boundary;
  }

  /**
   * After a failure: cuts the files to the acknowledged boundary, then writes again and fsyncs
   * every byte no good fsync covered (see Segment.rewriteUnsynced), and the directory. The
   * caller drained the log. Throws when a write or fsync fails (the bytes stay in doubt).
   */
  private makeFailedDurable(): void {
    this.cutToAcknowledged();
    for (const segment of this.segments) if (segment.hasUntrustedBytes()) segment.rewriteUnsynced();
    this.io.fsyncSync(this.dirFd);
  }

  /** Removes a segment's files: it has been taken off `segments`. */
  private dropSegment(segment: Segment): void {
    this.openSealed.delete(segment);
    this.unsynced.delete(segment);
    segment.close();
    segment.removeFiles();
  }

  private isIdle(): boolean {
    return !this.flushScheduled && this.syncInFlight === undefined && this.cutInFlight === undefined && this.acknowledgements.length === 0;
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters.splice(0);
    for (const wake of waiters) wake();
  }

  /** Resolves once every append so far is written and acknowledged (or failed). */
  private async drain(): Promise<void> {
    while (!this.isIdle() && !(this.failure && !this.flushScheduled && !this.syncInFlight && !this.cutInFlight)) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }

  /** The failure that stopped appends, if the log is failed (for health and metrics). */
  failedWith(): Error | undefined {
    return this.failure;
  }

  /**
   * Brings a failed log back in place once the cause is gone (space freed, device back): finishes
   * the cut to the acknowledged boundary, writes again and fsyncs any bytes whose fsync failed
   * (never trusting the page cache after a failed fsync), then re-runs open's recovery on the
   * files (re-validating the tail) and swaps in the result. Resolves at once when the log has not
   * failed; rejects, leaving the log failed, when any step fails (call again later). On success
   * `recovery` holds the new report and appends are taken again.
   */
  async recover(): Promise<void> {
    this.ensureOpen();
    if (this.failure === undefined) return;
    await this.drain();
    this.ensureOpen();
    const boundary = this.ackedNext;
    this.makeFailedDurable();
    const { segments, report } = recoverSegments(this.io, this.dir, this.config);
    const next = segments.length === 0 ? undefined : segments[segments.length - 1]!.nextOffset;
    if (next !== boundary || segments[0]!.baseOffset !== this.lowestOffset()) {
      for (const segment of segments) segment.close();
      throw new StorageFailedError(
        `recovery of ${this.dir} found offsets [${segments[0]?.baseOffset ?? '?'}, ${next ?? '?'}) where the log held ` +
          `[${this.lowestOffset()}, ${boundary}); the log stays failed`,
      );
    }
    for (const segment of this.segments) segment.close();
    this.segments = segments;
    this.openSealed.clear();
    this.unsynced.clear();
    for (const segment of segments) if (segment.sealed) this.touch(segment);
    this.ackedNext = this.writtenNext = boundary;
    this.recovery = report;
    this.failure = undefined;
  }

  /** Reads the record at `offset`. Synchronous: a page-cache hit costs less than a thread-pool hop. */
  read(offset: number): StoredRecord {
    return this.readBatch(offset, { maxCount: 1, maxBytes: 0 })[0] ?? this.outOfRange(offset);
  }

  /**
   * Reads consecutive records from `offset`: up to `maxCount`, and up to `maxBytes` of values
   * (always at least one record). Returns [] at nextOffset(); stops at a segment boundary.
   */
  readBatch(offset: number, limits: ReadLimits): StoredRecord[] {
    if (this.closed) throw new ClosedError('the log is closed');
    if (!Number.isSafeInteger(offset) || offset < this.lowestOffset() || offset > this.ackedNext) this.outOfRange(offset);
    if (offset === this.ackedNext) return [];
    assert(limits.maxCount >= 1, 'readBatch maxCount must be at least 1');
    const segment = this.segmentFor(offset);
    this.touch(segment);
    const maxCount = Math.min(limits.maxCount, this.ackedNext - offset);
    return segment.readBatch(offset, maxCount, limits.maxBytes);
  }

  private outOfRange(offset: number): never {
    throw new OffsetOutOfRangeError(offset, this.lowestOffset(), this.ackedNext);
  }

  private segmentFor(offset: number): Segment {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.segments[mid]!.baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const segment = this.segments[lo]!;
    if (segment.baseOffset > offset || offset >= segment.nextOffset) throw new AssertionError(`no segment holds offset ${offset}`);
    return segment;
  }

  /**
   * Reads every acknowledged record once and checks it against its index entry and checksum
   * (open checks only the tail; damage in an older segment shows only on read). A segment whose
   * store is whole but whose index is not gets its index rebuilt from the store (reported through
   * `onRepaired`). Returns the first damaged offset, or undefined. Sequential reads of the whole log.
   */
  verify(onRepaired?: (action: string) => void): number | undefined {
    this.ensureOpen();
    const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (const segment of this.segments) {
      this.touch(segment);
      let damaged = segment.verify(chunk);
      if (damaged !== undefined && segment.rebuildIndexFromStore()) {
        onRepaired?.(`rebuilt ${segment.indexPath} from its store: the index did not match it at offset ${damaged}, every record is intact`);
        damaged = segment.verify(chunk);
      }
      if (damaged !== undefined && damaged < this.ackedNext) return damaged;
    }
    return undefined;
  }

  /**
   * Resolves once nextOffset() > offset: immediately if it already is. Rejects with the signal's
   * reason on abort and with ClosedError when the log closes. No polling: appends wake waiters.
   */
  waitForAppend(offset: number, signal?: AbortSignal): Promise<void> {
    if (offset < this.ackedNext) return Promise.resolve();
    if (this.closed) return Promise.reject(new ClosedError('the log is closed'));
    return this.appendWaiters.wait(offset, signal);
  }

  /** Number of callers blocked in waitForAppend (for tests and metrics). */
  waiterCount(): number {
    return this.appendWaiters.size;
  }

  /**
   * Retention: removes every segment whose records all lie below `lowest`. The active segment
   * is never removed, so the log keeps its next offset.
   */
  async truncate(lowest: number): Promise<void> {
    assertUint(lowest, 'truncate lowest');
    this.ensureOpen();
    await this.drain();
    while (this.segments.length > 1 && this.segments[0]!.nextOffset <= lowest) {
      this.dropSegment(this.segments.shift()!);
    }
    this.io.fsyncSync(this.dirFd);
  }

  /**
   * removeFrom(offset) for damage found at `offset`, keeping the files of every segment the cut
   * changes as they were in `<dir>.damaged/<time>/` (see LogConfig.cutAtDamage). Returns that
   * directory.
   */
  async cutAtDamage(offset: number): Promise<string> {
    this.ensureOpen();
    const affected = this.segments.filter((segment) => segment.nextOffset > offset).map((segment) => ({ base: segment.baseOffset, move: false }));
    const keepDir = keepSegmentFilesAside(this.io, this.dir, affected);
    await this.removeFrom(offset);
    return keepDir;
  }

  /**
   * Removes every record at or after `offset` (Raft: a conflicting suffix). `offset` must be in
   * [lowestOffset(), nextOffset()]. Durable when it resolves.
   */
  async removeFrom(offset: number): Promise<void> {
    assertUint(offset, 'removeFrom offset');
    this.ensureOpen();
    await this.drain();
    this.ensureOpen();
    if (offset < this.lowestOffset() || offset > this.ackedNext) this.outOfRange(offset);
    while (this.segments.length > 1 && this.active.baseOffset >= offset) {
      this.dropSegment(this.segments.pop()!);
    }
    const last = this.active;
    this.openSealed.delete(last); // active again: always open
    last.truncateEntries(offset - last.baseOffset);
    this.ackedNext = this.writtenNext = offset;
    // The new size must be durable: sync() only covers bytes written since the last sync, and a
    // lost truncation brings the removed records back after a power loss.
    try {
      last.syncFilesSync();
      this.io.fsyncSync(this.dirFd);
    } catch (error) {
      // The fsync may have dropped pages written before (the segment's index among them): the
      // log fails like after any failed fsync, and its close or recover() writes them again.
      this.fail(error as Error);
      throw error;
    }
  }

  /**
   * The raw bytes of every store file in offset order (the frames of the whole log), for
   * snapshots. The set of segments and their sizes are fixed when this is called.
   */
  reader(): Readable {
    const parts = this.segments.map((segment) => ({ segment, sizeBytes: segment.writtenStoreBytes }));
    const chunkBytes = 1024 * 1024;
    const touch = (segment: Segment): void => this.touch(segment);
    return Readable.from(
      (function* () {
        for (const { segment, sizeBytes } of parts) {
          for (let position = 0; position < sizeBytes; position += chunkBytes) {
            const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, sizeBytes - position));
            touch(segment);
            const n = segment.readStore(buffer, position);
            assert(n === buffer.length, 'short read from a store file');
            yield buffer;
          }
        }
      })(),
      { objectMode: false },
    );
  }

  private ensureOpen(): void {
    if (this.closed) throw new ClosedError('the log is closed');
  }

  /**
   * Waits for in-flight appends, fsyncs what was appended, then releases the files and the
   * directory lock. After a failure (earlier, or of that final fsync) it first writes again and
   * fsyncs whatever no good fsync covered (makeFailedDurable); the files and the lock are released
   * even when that fails too (the error is rethrown): a process that reopens the log in place
   * after a failed disk must not find it locked by itself. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.drain();
      if (this.intervalTimer) clearInterval(this.intervalTimer);
      const closing = new ClosedError('the log closed');
      this.appendWaiters.rejectAll(closing);
      if (!this.failure) {
        this.active.seal();
        const syncs = await Promise.allSettled(this.segments.filter((s) => s.needsSync()).map((s) => s.sync()));
        const failed = syncs.find((result) => result.status === 'rejected');
        if (failed === undefined) this.io.fsyncSync(this.dirFd);
        else this.failure = failed.reason as Error;
      }
      // A reopen in the same process reads the page cache, which still shows the pages a failed
      // fsync dropped: write them again now, or a later power loss takes them.
      if (this.failure) this.makeFailedDurable();
    } finally {
      for (const segment of this.segments) segment.close();
      this.io.close(this.dirFd);
      this.unlock();
    }
  }

  /** Closes the log and deletes its directory. */
  async remove(): Promise<void> {
    await this.close();
    this.io.remove(this.dir);
  }

  /** Removes everything and returns a new, empty log in the same directory with the same config. */
  async reset(): Promise<CommitLog> {
    await this.remove();
    return CommitLog.open(this.dir, this.config);
  }
}
