/**
 * One segment: a store file of frames and an index file of fixed-width entries, both named by the
 * segment's base offset. Reads of every segment, the active one included, take their index
 * entries from the index file (one pread per batch, usually a page-cache hit), so a segment holds
 * no memory that grows with its records.
 *
 * Writes go through the log's WriteBuffers, one fixed-size arena lent to whichever segment is
 * active: appends encode frames (and their index entries, into a small pending-index buffer)
 * synchronously, and the log writes the arena with one pwrite, then the pending entries with one
 * more, whenever the arena fills, before a roll, and at the end of the event-loop turn. A reused
 * arena stays in the CPU cache between the encode and the kernel's copy, and nothing is
 * allocated per flush or per segment.
 */
import { join } from 'node:path';
import { assert, AssertionError, CorruptionError } from '../util/index.js';
import { crc32 } from './checksum.js';
import type { FileIo } from './file-io.js';
import {
  decodeFrameHeader, decodeIndexEntry, encodeFrame, encodeIndexEntry, FRAME_HEADER_BYTES, INDEX_ENTRY_BYTES, INDEX_SUFFIX,
  frameChecksumMatches, segmentFileName, STORE_SUFFIX,
} from './format.js';
import { FileWindow, frameValidAt, isDeviceReadFailure, readFully, SECTOR_BYTES } from './scan.js';
import type { RecordInput, StoredRecord } from './types.js';

const TWO_POW_32 = 0x1_0000_0000;
/**
 * Default bytes of frames written with one pwrite (LogConfig.writeArenaBytes). Small enough that
 * the arena is still in the CPU's cache when the kernel copies it, large enough that the
 * syscall's fixed cost is spread over hundreds of 1 KiB records.
 */
export const DEFAULT_WRITE_ARENA_BYTES = 256 * 1024;
/** Index entries read per call when walking a segment, bounding one read's size. */
const READ_ENTRIES_MAX = 4096;

interface SegmentOptions {
  storeFd: number;
  indexFd: number;
  /** Entries in both files (and store bytes) when the segment is opened. */
  entryCount: number;
  storeSizeBytes: number;
  /** The last segment of the log, which takes appends. */
  active: boolean;
}

/**
 * The buffers appends encode into, one set per log (allocated at its first append). Only the
 * active segment has unwritten frames, so only it uses them; the log writes them out before a roll.
 */
export class WriteBuffers {
  readonly arena: Buffer;
  /** Index entries of the unwritten frames. */
  readonly pendingIndex: Buffer;
  /** The most frames the arena holds (each has at least its header), or one oversized frame alone. */
  readonly pendingIndexEntries: number;

  constructor(readonly arenaBytes: number) {
    this.arena = Buffer.allocUnsafe(arenaBytes);
    this.pendingIndexEntries = Math.max(1, Math.floor(arenaBytes / FRAME_HEADER_BYTES));
    this.pendingIndex = Buffer.allocUnsafe(this.pendingIndexEntries * INDEX_ENTRY_BYTES);
  }
}

export class Segment {
  // Invariant: both fds are -1 (parked: a sealed, idle segment's files closed to bound open
  // descriptors) or both are open; files() reopens a parked segment on demand.
  private storeFd: number;
  private indexFd: number;
  /** fdatasyncs running on the thread pool: a segment must not be parked under them. */
  private syncsInFlight = 0;

  // Invariant: indexedEntryCount <= writtenEntryCount <= entryCount; frames [0, writtenEntryCount)
  // are in the store, their index entries [0, indexedEntryCount) in the index file and the rest in
  // `unindexed` (written only after the frames' fdatasync, see writePending).
  /** Records assigned to this segment, written or not. */
  entryCount: number;
  writtenEntryCount: number;
  private indexedEntryCount: number;
  private unindexed: Buffer | undefined;
  /** Store bytes assigned, written or not. */
  storeSizeBytes: number;
  writtenStoreBytes: number;
  /** Store and index bytes known to be on stable storage. */
  syncedStoreBytes: number;
  syncedIndexEntryCount: number;

  sealed: boolean;

  // Invariant: the frames of entries [writtenEntryCount, entryCount) are the log's
  // WriteBuffers.arena[0, arenaUsedBytes) or, for one frame larger than the arena, `oversized`;
  // never both. Their index entries are pendingIndex[0, (entryCount - writtenEntryCount) * 12).
  private arenaUsedBytes = 0;
  private oversized: Buffer | undefined;

  private constructor(
    private readonly io: FileIo,
    readonly dir: string,
    readonly baseOffset: number,
    options: SegmentOptions,
  ) {
    this.storeFd = options.storeFd;
    this.indexFd = options.indexFd;
    this.entryCount = options.entryCount;
    this.writtenEntryCount = options.entryCount;
    this.indexedEntryCount = options.entryCount;
    this.storeSizeBytes = options.storeSizeBytes;
    this.writtenStoreBytes = options.storeSizeBytes;
    this.syncedStoreBytes = options.storeSizeBytes;
    this.syncedIndexEntryCount = options.entryCount;
    this.sealed = !options.active;
  }

  /** Creates a new, empty, active segment. */
  static create(io: FileIo, dir: string, baseOffset: number): Segment {
    const storePath = join(dir, segmentFileName(baseOffset, STORE_SUFFIX));
    const indexPath = join(dir, segmentFileName(baseOffset, INDEX_SUFFIX));
    const storeFd = io.open(storePath, 'wx+');
    const indexFd = io.open(indexPath, 'wx+');
    return new Segment(io, dir, baseOffset, { storeFd, indexFd, entryCount: 0, storeSizeBytes: 0, active: true });
  }

  /** Wraps files recovery has validated: `entryCount` entries in both files, the index whole. */
  static fromRecovered(
    io: FileIo,
    dir: string,
    baseOffset: number,
    options: SegmentOptions,
  ): Segment {
    return new Segment(io, dir, baseOffset, options);
  }

  // The paths are built when needed (opening files, naming damage) rather than kept: a long log
  // holds one descriptor per segment, and two path strings would double its size.
  get storePath(): string {
    return join(this.dir, segmentFileName(this.baseOffset, STORE_SUFFIX));
  }

  get indexPath(): string {
    return join(this.dir, segmentFileName(this.baseOffset, INDEX_SUFFIX));
  }

  get nextOffset(): number {
    return this.baseOffset + this.entryCount;
  }

  isFull(frameBytes: number, maxStoreBytes: number, maxIndexBytes: number): boolean {
    if (this.entryCount === 0) return false; // an empty segment takes any record that passed validation
    return this.storeSizeBytes + frameBytes > maxStoreBytes || (this.entryCount + 1) * INDEX_ENTRY_BYTES > maxIndexBytes;
  }

  /**
   * Whether appendFrame can take a frame of `frameBytes` now; if not, the caller writes the
   * pending frames first. A frame larger than the arena gets a buffer of its own, alone.
   */
  hasRoomFor(frameBytes: number, buffers: WriteBuffers): boolean {
    if (this.oversized !== undefined) return false;
    return frameBytes > buffers.arenaBytes ? this.arenaUsedBytes === 0 : this.arenaUsedBytes + frameBytes <= buffers.arenaBytes;
  }

  /** Encodes a record into the write arena and its entry into the pending index; returns its offset. */
  appendFrame(record: RecordInput, buffers: WriteBuffers): number {
    assert(!this.sealed, 'append to a sealed segment');
    const frameBytes = FRAME_HEADER_BYTES + record.value.length;
    assert(this.hasRoomFor(frameBytes, buffers), 'append without room: the pending frames must be written first');
    assert(this.entryCount - this.writtenEntryCount < buffers.pendingIndexEntries, 'pending index overflow');
    const offset = this.baseOffset + this.entryCount;
    const term = record.term ?? 0;
    const type = record.type ?? 0;
    if (frameBytes > buffers.arenaBytes) {
      this.oversized = Buffer.allocUnsafe(frameBytes);
      encodeFrame(this.oversized, 0, offset, term, type, record.value);
    } else {
      encodeFrame(buffers.arena, this.arenaUsedBytes, offset, term, type, record.value);
      this.arenaUsedBytes += frameBytes;
    }
    encodeIndexEntry(buffers.pendingIndex, this.entryCount, this.storeSizeBytes, this.writtenEntryCount);
    this.entryCount += 1;
    this.storeSizeBytes += frameBytes;
    return offset;
  }

  hasUnwritten(): boolean {
    return this.writtenEntryCount < this.entryCount;
  }

  /**
   * Writes everything appended since the last call: store frames, then index entries (the store
   * first, so an index entry never points at bytes that were not written). Synchronous: the
   * bytes go to the page cache, and the arena can be reused as soon as this returns.
   *
   * With `indexAfterSync` the index entries wait in memory until the frames' fdatasync completed
   * (sync, syncFilesSync): the kernel writes dirty pages back in no order, so an index entry
   * written with its frame can reach the disk before the frame does, and recovery would take a
   * frame torn by a power loss under a durable index entry for damage to an acknowledged record.
   * Written after the sync, an index entry on disk proves its frame was durable. Only for
   * fsync=always, where reads stop at the acknowledged (synced) end anyway; the other policies
   * acknowledge before any sync, so their index is written with the frames.
   */
  writePending(buffers: WriteBuffers, indexAfterSync: boolean): void {
    if (!this.hasUnwritten()) return;
    const frames = this.oversized ?? buffers.arena.subarray(0, this.arenaUsedBytes);
    assert(this.writtenStoreBytes + frames.length === this.storeSizeBytes, 'pending frames disagree with the assigned store size');
    this.io.write(this.storeFd, frames, this.writtenStoreBytes);
    this.oversized = undefined;
    this.arenaUsedBytes = 0;
    const pending = buffers.pendingIndex.subarray(0, (this.entryCount - this.writtenEntryCount) * INDEX_ENTRY_BYTES);
    if (indexAfterSync) {
      this.keepUnindexed(pending);
    } else {
      assert(this.indexedEntryCount === this.writtenEntryCount, 'index entries wait for a sync under a policy that writes them at once');
      this.io.write(this.indexFd, pending, this.writtenEntryCount * INDEX_ENTRY_BYTES);
      this.indexedEntryCount = this.entryCount;
    }
    this.writtenStoreBytes = this.storeSizeBytes;
    this.writtenEntryCount = this.entryCount;
  }

  /** Appends index entries of frames just written to the ones waiting for their fdatasync. */
  private keepUnindexed(entries: Buffer): void {
    const keptBytes = (this.writtenEntryCount - this.indexedEntryCount) * INDEX_ENTRY_BYTES;
    const neededBytes = keptBytes + entries.length;
    if (this.unindexed === undefined || this.unindexed.length < neededBytes) {
      const grown = Buffer.allocUnsafe(Math.max(neededBytes, 2 * (this.unindexed?.length ?? 0), 64 * INDEX_ENTRY_BYTES));
      this.unindexed?.copy(grown, 0, 0, keptBytes);
      this.unindexed = grown;
    }
    entries.copy(this.unindexed, keptBytes);
  }

  /**
   * Writes the index entries waiting in memory for entries [indexedEntryCount, count) with one
   * pwrite; the caller made their frames durable first.
   */
  private writeIndexThrough(count: number): void {
    const entries = Math.min(count, this.writtenEntryCount) - this.indexedEntryCount;
    if (entries <= 0) return;
    const unindexed = this.unindexed!;
    this.io.write(this.indexFd, unindexed.subarray(0, entries * INDEX_ENTRY_BYTES), this.indexedEntryCount * INDEX_ENTRY_BYTES);
    this.indexedEntryCount += entries;
    const leftBytes = (this.writtenEntryCount - this.indexedEntryCount) * INDEX_ENTRY_BYTES;
    if (leftBytes > 0) unindexed.copy(unindexed, 0, entries * INDEX_ENTRY_BYTES, entries * INDEX_ENTRY_BYTES + leftBytes);
    else if (this.sealed) this.unindexed = undefined;
  }

  /** Marks the segment sealed: no more appends. Its frames are all written (the log writes them before a roll). */
  seal(): void {
    assert(!this.hasUnwritten(), 'seal with unwritten frames');
    this.sealed = true;
  }

  /**
   * fdatasyncs what has been written, then writes the index entries that waited for it; the index
   * file is synced only when sealed (an active segment's index is rebuilt from the store by
   * recovery, so syncing it per append would only cost latency).
   */
  async sync(): Promise<void> {
    const storeBytes = this.writtenStoreBytes;
    const entryCount = this.writtenEntryCount;
    this.files();
    this.syncsInFlight += 1;
    try {
      if (storeBytes > this.syncedStoreBytes) await this.io.fdatasync(this.storeFd);
      this.syncedStoreBytes = Math.max(this.syncedStoreBytes, storeBytes);
      this.writeIndexThrough(entryCount);
      if (this.sealed && entryCount > this.syncedIndexEntryCount) {
        await this.io.fdatasync(this.indexFd);
        this.syncedIndexEntryCount = Math.max(this.syncedIndexEntryCount, entryCount);
      }
    } finally {
      this.syncsInFlight -= 1;
    }
  }

  needsSync(): boolean {
    return this.writtenStoreBytes > this.syncedStoreBytes || (this.sealed && this.writtenEntryCount > this.syncedIndexEntryCount);
  }

  /** Store positions of entries [first, first + count), plus the end of the last one. */
  private positions(first: number, count: number): number[] {
    assert(first + count <= this.writtenEntryCount, 'positions beyond written entries');
    const out = new Array<number>(count + 1);
    const withNext = first + count < this.writtenEntryCount;
    const entries = count + (withNext ? 1 : 0);
    const source = Buffer.allocUnsafe(entries * INDEX_ENTRY_BYTES);
    const fromFile = Math.max(0, Math.min(entries, this.indexedEntryCount - first));
    if (fromFile > 0) {
      this.files();
      readFully(this.io, this.indexFd, source.subarray(0, fromFile * INDEX_ENTRY_BYTES), first * INDEX_ENTRY_BYTES, this.indexPath);
    }
    if (fromFile < entries) {
      const at = (first + fromFile - this.indexedEntryCount) * INDEX_ENTRY_BYTES;
      this.unindexed!.copy(source, fromFile * INDEX_ENTRY_BYTES, at, at + (entries - fromFile) * INDEX_ENTRY_BYTES);
    }
    for (let i = 0; i < entries; i++) {
      const entry = decodeIndexEntry(source, first + i, first);
      if (entry.relativeOffset !== first + i) {
        throw new CorruptionError(this.indexPath, (first + i) * INDEX_ENTRY_BYTES, `index entry ${first + i} names entry ${entry.relativeOffset}`);
      }
      // A damaged position would make the read below fail with a RangeError or a short read.
      if (entry.positionBytes >= this.writtenStoreBytes || (i > 0 && entry.positionBytes <= out[i - 1]!)) {
        throw new CorruptionError(this.indexPath, (first + i) * INDEX_ENTRY_BYTES, `index entry ${first + i} points at byte ${entry.positionBytes}, out of order or past the store's end`);
      }
      out[i] = entry.positionBytes;
    }
    if (!withNext) out[count] = this.writtenStoreBytes;
    return out;
  }

  /**
   * Checks every written record against its index entry and checksum, reading the store
   * sequentially in `chunk`-sized pieces; returns the first damaged offset, or undefined.
   */
  verify(chunk: Buffer): number | undefined {
    const batch = 16_384;
    let chunkStart = 0;
    let chunkBytes = 0;
    let recordByRecord = false;
    for (let first = 0; first < this.writtenEntryCount; first += batch) {
      const count = Math.min(batch, this.writtenEntryCount - first);
      let positions: number[];
      try {
        positions = this.positions(first, count);
      } catch (error) {
        if (error instanceof CorruptionError) return this.baseOffset + first;
        throw error;
      }
      for (let i = 0; i < count; i++) {
        const offset = this.baseOffset + first + i;
        const position = positions[i]!;
        const end = positions[i + 1]!;
        if (end - position < FRAME_HEADER_BYTES) return offset;
        let source = chunk;
        let at = position - chunkStart;
        try {
          if (end - position > chunk.length || recordByRecord) {
            source = Buffer.allocUnsafe(end - position);
            if (this.readStore(source, position) !== source.length) return offset;
            at = 0;
          } else if (position < chunkStart || end > chunkStart + chunkBytes) {
            chunkStart = position;
            try {
              chunkBytes = this.readStore(chunk.subarray(0, Math.min(chunk.length, this.writtenStoreBytes - position)), position);
            } catch (error) {
              // The device failed to read the chunk: find the record it failed at, one read each.
              if (!(error instanceof CorruptionError)) throw error;
              recordByRecord = true;
              chunkStart = chunkBytes = 0;
              i--;
              continue;
            }
            at = 0;
            if (end > chunkStart + chunkBytes) return offset;
          }
        } catch (error) {
          if (error instanceof CorruptionError) return offset;
          throw error;
        }
        const header = decodeFrameHeader(source, at);
        if (header.offset !== offset || FRAME_HEADER_BYTES + header.valueLength !== end - position) return offset;
        if (!frameChecksumMatches(source.subarray(0, at + end - position), at, header)) return offset;
      }
    }
    return undefined;
  }

  /**
   * Rewrites the index file from the store when the store holds exactly this segment's entries,
   * every frame whole and matching its checksum; returns whether it did. An index is derived
   * data: one whose pages a failed fsync dropped (reads saw them, a power loss did not keep them)
   * must not make records that are intact in the store count as lost. Frames are checked as
   * recovery checks them (frameValidAt); this runs only after verify found damage.
   */
  rebuildIndexFromStore(): boolean {
    if (this.hasUnwritten() || this.indexedEntryCount !== this.writtenEntryCount) return false;
    this.files();
    const window = new FileWindow(this.io, this.storeFd, this.writtenStoreBytes, this.storePath);
    const index = Buffer.allocUnsafe(this.writtenEntryCount * INDEX_ENTRY_BYTES);
    let position = 0;
    for (let i = 0; i < this.writtenEntryCount; i++) {
      let frameBytes: number | undefined;
      try {
        frameBytes = frameValidAt(window, position, this.baseOffset + i, this.writtenStoreBytes);
      } catch (error) {
        if (error instanceof CorruptionError) return false; // the device failed a read: not intact
        throw error;
      }
      if (frameBytes === undefined) return false;
      encodeIndexEntry(index, i, position);
      position += frameBytes;
    }
    if (position !== this.writtenStoreBytes) return false;
    this.io.truncate(this.indexFd, index.length);
    this.io.write(this.indexFd, index, 0);
    this.io.fsyncSync(this.indexFd);
    this.syncedIndexEntryCount = this.writtenEntryCount;
    return true;
  }

  /**
   * Reads records from `offset` on: at most `maxCount`, and no more value bytes than `maxBytes`
   * except that one record is always returned. Values are views into one buffer read with a
   * single pread. Only written entries are readable; the caller bounds offsets to acknowledged ones.
   */
  readBatch(offset: number, maxCount: number, maxBytes: number): StoredRecord[] {
    const first = offset - this.baseOffset;
    if (first < 0 || first >= this.writtenEntryCount) throw new AssertionError(`offset ${offset} not in segment ${this.baseOffset}`);
    const count = Math.min(maxCount, this.writtenEntryCount - first, READ_ENTRIES_MAX);
    assert(count >= 1, 'readBatch of zero records');
    const positions = this.positions(first, count);
    let take = 1;
    let valueBytes = positions[1]! - positions[0]! - FRAME_HEADER_BYTES;
    while (take < count) {
      const next = positions[take + 1]! - positions[take]! - FRAME_HEADER_BYTES;
      if (valueBytes + next > maxBytes) break;
      valueBytes += next;
      take += 1;
    }
    const start = positions[0]!;
    let chunk = Buffer.allocUnsafe(positions[take]! - start);
    this.files();
    try {
      readFully(this.io, this.storeFd, chunk, start, this.storePath);
    } catch (error) {
      // An unreadable sector further on fails only the records it holds: read the first alone.
      if (!(error instanceof CorruptionError) || take === 1) throw error;
      take = 1;
      chunk = Buffer.allocUnsafe(positions[1]! - start);
      readFully(this.io, this.storeFd, chunk, start, this.storePath);
    }
    const records = new Array<StoredRecord>(take);
    for (let i = 0; i < take; i++) {
      records[i] = this.decodeAt(chunk, positions[i]! - start, positions[i + 1]! - start, offset + i, positions[i]!);
    }
    return records;
  }

  private decodeAt(chunk: Buffer, at: number, end: number, offset: number, positionBytes: number): StoredRecord {
    const fail = (reason: string): never => {
      throw new CorruptionError(this.storePath, positionBytes, `record for offset ${offset}: ${reason}`);
    };
    if (end - at < FRAME_HEADER_BYTES) fail('frame shorter than its header');
    const valueLength = chunk.readUInt32LE(at);
    if (at + FRAME_HEADER_BYTES + valueLength !== end) fail(`length field ${valueLength} disagrees with the index`);
    if (crc32(chunk, at + 8, end) !== chunk.readUInt32LE(at + 4)) fail('checksum mismatch');
    const storedOffset = chunk.readUInt32LE(at + 8) + chunk.readUInt32LE(at + 12) * TWO_POW_32;
    if (storedOffset !== offset) fail(`frame holds offset ${storedOffset}`);
    return {
      offset,
      term: chunk.readUInt32LE(at + 16) + chunk.readUInt32LE(at + 20) * TWO_POW_32,
      type: chunk.readUInt32LE(at + 24),
      value: chunk.subarray(at + FRAME_HEADER_BYTES, end),
    };
  }

  /**
   * Position of entry `relative` (for truncation): from its index entry, or, when that entry is
   * damaged (a cut at damage), by walking the frame headers from the segment's start.
   */
  positionOf(relative: number): number {
    try {
      return this.positions(relative, 1)[0]!;
    } catch (error) {
      if (!(error instanceof CorruptionError)) throw error;
      const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
      let position = 0;
      for (let k = 0; k < relative; k++) {
        if (this.readStore(header, position) !== FRAME_HEADER_BYTES) throw error;
        const frame = decodeFrameHeader(header, 0);
        if (frame.offset !== this.baseOffset + k) throw error;
        position += FRAME_HEADER_BYTES + frame.valueLength;
        if (position > this.writtenStoreBytes) throw error;
      }
      return position;
    }
  }

  /**
   * Drops entries from `relative` on (all written; the caller drained the writer) and makes the
   * segment active again.
   */
  truncateEntries(relative: number): void {
    assert(!this.hasUnwritten(), 'truncate with unwritten entries');
    assert(relative <= this.entryCount, 'truncate beyond the end');
    const storeBytes = relative < this.entryCount ? this.positionOf(relative) : this.writtenStoreBytes;
    this.files();
    this.io.truncate(this.storeFd, storeBytes);
    // Entries still in memory are not in the file: cut it no longer than it is.
    this.indexedEntryCount = Math.min(this.indexedEntryCount, relative);
    this.io.truncate(this.indexFd, this.indexedEntryCount * INDEX_ENTRY_BYTES);
    this.sealed = false;
    this.entryCount = this.writtenEntryCount = relative;
    this.storeSizeBytes = this.writtenStoreBytes = storeBytes;
    this.syncedStoreBytes = Math.min(this.syncedStoreBytes, storeBytes);
    this.syncedIndexEntryCount = Math.min(this.syncedIndexEntryCount, relative);
  }

  /**
   * Forgets entries assigned but not written (their frames sit in the arena): after a failed
   * write nothing past the written boundary may reach the files.
   */
  discardUnwritten(): void {
    this.oversized = undefined;
    this.arenaUsedBytes = 0;
    this.entryCount = this.writtenEntryCount;
    this.storeSizeBytes = this.writtenStoreBytes;
  }

  /** fsyncs both files now (a truncation's new size included), the store before the index entries waiting for it are written. */
  syncFilesSync(): void {
    this.files();
    this.io.fsyncSync(this.storeFd);
    this.writeIndexThrough(this.writtenEntryCount);
    this.io.fsyncSync(this.indexFd);
    this.syncedStoreBytes = this.writtenStoreBytes;
    if (this.sealed) this.syncedIndexEntryCount = this.writtenEntryCount;
  }

  /**
   * Whether either file holds written bytes no good fsync covered. Unlike needsSync, an active
   * segment's index counts: it is synced only once sealed, and a page whose fsync failed before
   * would never be written then.
   */
  hasUntrustedBytes(): boolean {
    return this.writtenStoreBytes > this.syncedStoreBytes || this.writtenEntryCount > this.syncedIndexEntryCount;
  }

  /**
   * Makes bytes written since the last good fdatasync durable without trusting the page cache's
   * dirty state: after a failed fsync the kernel may have marked those pages clean (they would
   * never be written again), so they are read back and written again before an fsync. The index
   * too: a sealed segment's records are acknowledged by their store's sync, and recovery takes a
   * sealed index entry that a power loss left out for damage. Recovery then validates the range.
   */
  rewriteUnsynced(): void {
    this.files();
    this.rewrite(this.storeFd, this.storePath, this.syncedStoreBytes, this.writtenStoreBytes);
    // Index entries past indexedEntryCount are still in memory: syncFilesSync writes them.
    this.rewrite(this.indexFd, this.indexPath, this.syncedIndexEntryCount * INDEX_ENTRY_BYTES, this.indexedEntryCount * INDEX_ENTRY_BYTES);
    this.syncFilesSync();
    this.syncedIndexEntryCount = this.writtenEntryCount;
  }

  /**
   * Writes both files again from what reads return, then fsyncs them: for a segment whose pages
   * an earlier failed fsync may have left clean but not on disk (see CommitLog.open).
   */
  rewriteFilesSync(): void {
    // No byte of them is trusted to be on disk: all of it is what no good fsync covered.
    this.syncedStoreBytes = 0;
    this.syncedIndexEntryCount = 0;
    this.rewriteUnsynced();
  }

  /**
   * Reads bytes [from, to) of a file back and writes them again, in bounded chunks. A sector the
   * device fails to read is left as it is (reads of the records it holds report the damage).
   */
  private rewrite(fd: number, path: string, from: number, to: number, chunkBytes = 1024 * 1024): void {
    for (let position = from; position < to; position += chunkBytes) {
      const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, to - position));
      try {
        readFully(this.io, fd, chunk, position, path);
      } catch (error) {
        if (!(error instanceof CorruptionError)) throw error;
        if (chunkBytes > SECTOR_BYTES) this.rewrite(fd, path, position, position + chunk.length, SECTOR_BYTES);
        continue;
      }
      this.io.write(fd, chunk, position);
    }
  }

  /** Reads raw store bytes [position, position + target.length); CorruptionError where the device fails the read. */
  readStore(target: Buffer, position: number): number {
    this.files();
    try {
      return this.io.read(this.storeFd, target, 0, target.length, position);
    } catch (error) {
      if (isDeviceReadFailure(error)) throw new CorruptionError(this.storePath, position, 'the device failed to read it (EIO)');
      throw error;
    }
  }

  get filesOpen(): boolean {
    return this.storeFd >= 0;
  }

  /** Reopens a parked segment's files. */
  private files(): void {
    if (this.storeFd >= 0) return;
    const storeFd = this.io.open(this.storePath, 'r+');
    try {
      this.indexFd = this.io.open(this.indexPath, 'r+');
    } catch (error) {
      this.io.close(storeFd);
      throw error;
    }
    this.storeFd = storeFd;
  }

  /**
   * Closes the files of a sealed segment with nothing to write or sync, so a long log holds a
   * bounded number of descriptors; returns whether it did. Never while an fdatasync runs on the
   * thread pool: the descriptor number could be reused by another open before the sync ran.
   */
  park(): boolean {
    if (!this.sealed || !this.filesOpen || this.hasUnwritten() || this.needsSync() || this.syncsInFlight > 0) return false;
    assert(this.indexedEntryCount === this.writtenEntryCount, 'a synced segment has index entries waiting');
    this.close();
    return true;
  }

  close(): void {
    if (this.storeFd < 0) return;
    this.io.close(this.storeFd);
    this.io.close(this.indexFd);
    this.storeFd = -1;
    this.indexFd = -1;
  }

  removeFiles(): void {
    this.io.unlink(this.storePath);
    this.io.unlink(this.indexPath);
  }

  /** For tests: the store file's size as the OS sees it. */
  storeFileSizeBytes(): number {
    this.files();
    return this.io.sizeBytes(this.storeFd);
  }
}
