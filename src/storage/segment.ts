/**
 * One segment: a store file of frames and an index file of fixed-width entries, both named by the
 * segment's base offset. The active (last) segment keeps its index in memory (bounded by
 * maxIndexBytes); sealed segments read theirs from the file, so memory does not grow with the log.
 *
 * Writes go through a reusable arena: appends encode frames into it synchronously and the log's
 * flusher writes the arena with one pwritev per segment, then the index entries with one pwrite.
 */
import { join } from 'node:path';
import { assert, CorruptionError } from '../util/index.js';
import { crc32 } from './checksum.js';
import type { FileIo } from './file-io.js';
import {
  decodeFrameHeader, decodeIndexEntry, encodeFrame, encodeIndexEntry, FRAME_HEADER_BYTES, INDEX_ENTRY_BYTES, INDEX_SUFFIX,
  frameChecksumMatches, segmentFileName, STORE_SUFFIX,
} from './format.js';
import { readFully } from './scan.js';
import type { StoredRecord } from './types.js';

const TWO_POW_32 = 0x1_0000_0000;
const ARENA_BYTES = 512 * 1024;
/** A segment that takes no appends holds no arena: a long log of sealed segments costs no write memory. */
const NO_ARENA = Buffer.alloc(0);
const INITIAL_INDEX_CAPACITY_BYTES = 64 * 1024;
/** Index entries read per call when walking a sealed segment, bounding one read's size. */
const READ_ENTRIES_MAX = 4096;

export class Segment {
  readonly storePath: string;
  readonly indexPath: string;
  // Invariant: both fds are -1 (parked: a sealed, idle segment's files closed to bound open
  // descriptors) or both are open; files() reopens a parked segment on demand.
  private storeFd: number;
  private indexFd: number;
  /** fdatasyncs running on the thread pool: a segment must not be parked under them. */
  private syncsInFlight = 0;

  // Invariant: writtenEntryCount <= entryCount, and entries [0, writtenEntryCount) are in both files.
  /** Records assigned to this segment, written or not. */
  entryCount: number;
  writtenEntryCount: number;
  /** Store bytes assigned, written or not. */
  storeSizeBytes: number;
  writtenStoreBytes: number;
  /** Store and index bytes known to be on stable storage. */
  syncedStoreBytes: number;
  syncedIndexEntryCount: number;

  /** The in-memory index while active; undefined once sealed and fully written. */
  private index: Buffer | undefined;
  sealed = false;

  /** Allocated at the first append, released once sealed and written. */
  private arena = NO_ARENA;
  private arenaUsedBytes = 0;
  /** Arenas filled before the current one; written on the next flush. */
  private fullArenas: Buffer[] = [];

  private constructor(
    private readonly io: FileIo,
    readonly dir: string,
    readonly baseOffset: number,
    options: { storeFd: number; indexFd: number; entryCount: number; storeSizeBytes: number; index?: Buffer },
  ) {
    this.storePath = join(dir, segmentFileName(baseOffset, STORE_SUFFIX));
    this.indexPath = join(dir, segmentFileName(baseOffset, INDEX_SUFFIX));
    this.storeFd = options.storeFd;
    this.indexFd = options.indexFd;
    this.entryCount = options.entryCount;
    this.writtenEntryCount = options.entryCount;
    this.storeSizeBytes = options.storeSizeBytes;
    this.writtenStoreBytes = options.storeSizeBytes;
    this.syncedStoreBytes = options.storeSizeBytes;
    this.syncedIndexEntryCount = options.entryCount;
    this.index = options.index;
    this.sealed = options.index === undefined;
  }

  /** Creates a new, empty, active segment. */
  static create(io: FileIo, dir: string, baseOffset: number): Segment {
    const storePath = join(dir, segmentFileName(baseOffset, STORE_SUFFIX));
    const indexPath = join(dir, segmentFileName(baseOffset, INDEX_SUFFIX));
    const storeFd = io.open(storePath, 'wx+');
    const indexFd = io.open(indexPath, 'wx+');
    return new Segment(io, dir, baseOffset, {
      storeFd, indexFd, entryCount: 0, storeSizeBytes: 0, index: Buffer.alloc(INITIAL_INDEX_CAPACITY_BYTES),
    });
  }

  /**
   * Wraps files recovery has validated. `index` is given for the active segment (entries already
   * in it, and in the file); sealed segments pass undefined and read their index file.
   */
  static fromRecovered(
    io: FileIo,
    dir: string,
    baseOffset: number,
    options: { storeFd: number; indexFd: number; entryCount: number; storeSizeBytes: number; index?: Buffer },
  ): Segment {
    return new Segment(io, dir, baseOffset, options);
  }

  get nextOffset(): number {
    return this.baseOffset + this.entryCount;
  }

  isFull(frameBytes: number, maxStoreBytes: number, maxIndexBytes: number): boolean {
    if (this.entryCount === 0) return false; // an empty segment takes any record that passed validation
    return this.storeSizeBytes + frameBytes > maxStoreBytes || (this.entryCount + 1) * INDEX_ENTRY_BYTES > maxIndexBytes;
  }

  /** Encodes a record into the write arena and the in-memory index; returns its offset. */
  appendFrame(record: { term: number; type: number; value: Uint8Array }): number {
    assert(!this.sealed && this.index !== undefined, 'append to a sealed segment');
    const frameBytes = FRAME_HEADER_BYTES + record.value.length;
    if (this.arenaUsedBytes + frameBytes > this.arena.length) {
      if (this.arenaUsedBytes > 0) this.fullArenas.push(this.arena.subarray(0, this.arenaUsedBytes));
      this.arena = Buffer.allocUnsafe(Math.max(ARENA_BYTES, frameBytes));
      this.arenaUsedBytes = 0;
    }
    const offset = this.baseOffset + this.entryCount;
    encodeFrame(this.arena, this.arenaUsedBytes, { offset, term: record.term, type: record.type, value: record.value });
    this.arenaUsedBytes += frameBytes;
    encodeIndexEntry(this.indexWithCapacity(this.entryCount + 1), this.entryCount, this.storeSizeBytes);
    this.entryCount += 1;
    this.storeSizeBytes += frameBytes;
    return offset;
  }

  /** The in-memory index, grown (doubling) to hold `entries` entries. */
  private indexWithCapacity(entries: number): Buffer {
    assert(this.index !== undefined, 'index not in memory');
    const needBytes = entries * INDEX_ENTRY_BYTES;
    if (needBytes <= this.index.length) return this.index;
    const grown = Buffer.alloc(Math.max(needBytes, this.index.length * 2));
    this.index.copy(grown, 0, 0, this.entryCount * INDEX_ENTRY_BYTES);
    this.index = grown;
    return grown;
  }

  hasUnwritten(): boolean {
    return this.writtenEntryCount < this.entryCount;
  }

  /**
   * Writes everything appended since the last call: store frames, then index entries (the store
   * first, so an index entry never points at bytes that were not written). Synchronous: the
   * bytes go to the page cache, and the arena can be reused as soon as this returns.
   */
  writePending(): void {
    if (!this.hasUnwritten()) return;
    assert(this.index !== undefined, 'unwritten entries without an in-memory index');
    const buffers = this.fullArenas;
    if (this.arenaUsedBytes > 0) buffers.push(this.arena.subarray(0, this.arenaUsedBytes));
    let position = this.writtenStoreBytes;
    for (let i = 0; i < buffers.length; i += 512) {
      const slice = buffers.slice(i, i + 512);
      this.io.writev(this.storeFd, slice, position);
      for (const b of slice) position += b.length;
    }
    assert(position === this.storeSizeBytes, 'store size after write disagrees with assigned size');
    this.fullArenas = [];
    this.arenaUsedBytes = 0;
    const from = this.writtenEntryCount * INDEX_ENTRY_BYTES;
    const to = this.entryCount * INDEX_ENTRY_BYTES;
    this.io.write(this.indexFd, this.index.subarray(from, to), from);
    this.writtenStoreBytes = this.storeSizeBytes;
    this.writtenEntryCount = this.entryCount;
    if (this.sealed) this.releaseWriteMemory(); // fully written: reads now use the index file
  }

  private releaseWriteMemory(): void {
    this.index = undefined;
    this.arena = NO_ARENA;
  }

  /** Marks the segment sealed: no more appends; the index leaves memory once written. */
  seal(): void {
    this.sealed = true;
    if (!this.hasUnwritten()) this.releaseWriteMemory();
  }

  /**
   * fdatasyncs what has been written; the index file only when sealed (an active segment's index
   * is rebuilt from the store by recovery, so syncing it per append would only cost latency).
   */
  async sync(): Promise<void> {
    const storeBytes = this.writtenStoreBytes;
    const entryCount = this.writtenEntryCount;
    const work: Promise<void>[] = [];
    this.files();
    if (storeBytes > this.syncedStoreBytes) work.push(this.io.fdatasync(this.storeFd));
    const syncIndex = this.sealed && entryCount > this.syncedIndexEntryCount;
    if (syncIndex) work.push(this.io.fdatasync(this.indexFd));
    this.syncsInFlight += 1;
    try {
      await Promise.all(work);
    } finally {
      this.syncsInFlight -= 1;
    }
    this.syncedStoreBytes = Math.max(this.syncedStoreBytes, storeBytes);
    if (syncIndex) this.syncedIndexEntryCount = Math.max(this.syncedIndexEntryCount, entryCount);
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
    let source: Buffer;
    let sourceFirst: number;
    if (this.index !== undefined) {
      source = this.index;
      sourceFirst = 0;
    } else {
      source = Buffer.allocUnsafe(entries * INDEX_ENTRY_BYTES);
      this.files();
      readFully(this.io, this.indexFd, source, first * INDEX_ENTRY_BYTES);
      sourceFirst = first;
    }
    for (let i = 0; i < entries; i++) {
      const entry = decodeIndexEntry(source, first + i, sourceFirst);
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
        if (end - position > chunk.length) {
          source = Buffer.allocUnsafe(end - position);
          if (this.readStore(source, position) !== source.length) return offset;
          at = 0;
        } else if (position < chunkStart || end > chunkStart + chunkBytes) {
          chunkStart = position;
          chunkBytes = this.readStore(chunk.subarray(0, Math.min(chunk.length, this.writtenStoreBytes - position)), position);
          at = 0;
          if (end > chunkStart + chunkBytes) return offset;
        }
        const header = decodeFrameHeader(source, at);
        if (header.offset !== offset || FRAME_HEADER_BYTES + header.valueLength !== end - position) return offset;
        if (!frameChecksumMatches(source.subarray(0, at + end - position), at, header)) return offset;
      }
    }
    return undefined;
  }

  /**
   * Reads records from `offset` on: at most `maxCount`, and no more value bytes than `maxBytes`
   * except that one record is always returned. Values are views into one buffer read with a
   * single pread. Only written entries are readable; the caller bounds offsets to acknowledged ones.
   */
  readBatch(offset: number, maxCount: number, maxBytes: number): StoredRecord[] {
    const first = offset - this.baseOffset;
    assert(first >= 0 && first < this.writtenEntryCount, `offset ${offset} not in segment ${this.baseOffset}`);
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
    const chunk = Buffer.allocUnsafe(positions[take]! - start);
    this.files();
    readFully(this.io, this.storeFd, chunk, start);
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
   * segment active again with its index in memory.
   */
  truncateEntries(relative: number): void {
    assert(!this.hasUnwritten(), 'truncate with unwritten entries');
    assert(relative <= this.entryCount, 'truncate beyond the end');
    const storeBytes = relative < this.entryCount ? this.positionOf(relative) : this.writtenStoreBytes;
    this.files();
    const index = Buffer.alloc(Math.max(INITIAL_INDEX_CAPACITY_BYTES, relative * INDEX_ENTRY_BYTES));
    if (this.index !== undefined) this.index.copy(index, 0, 0, relative * INDEX_ENTRY_BYTES);
    else if (relative > 0) readFully(this.io, this.indexFd, index.subarray(0, relative * INDEX_ENTRY_BYTES), 0);
    this.io.truncate(this.storeFd, storeBytes);
    this.io.truncate(this.indexFd, relative * INDEX_ENTRY_BYTES);
    this.index = index;
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
    this.fullArenas = [];
    this.arenaUsedBytes = 0;
    this.entryCount = this.writtenEntryCount;
    this.storeSizeBytes = this.writtenStoreBytes;
    if (this.sealed) this.releaseWriteMemory();
  }

  /** fsyncs both files now (a truncation's new size included). */
  syncFilesSync(): void {
    this.files();
    this.io.fsyncSync(this.storeFd);
    this.io.fsyncSync(this.indexFd);
    this.syncedStoreBytes = this.writtenStoreBytes;
    if (this.sealed) this.syncedIndexEntryCount = this.writtenEntryCount;
  }

  /**
   * Makes bytes written since the last good fdatasync durable without trusting the page cache's
   * dirty state: after a failed fsync the kernel may have marked those pages clean (they would
   * never be written again), so they are read back and written again before an fsync. Recovery
   * then validates every frame of the range.
   */
  rewriteUnsynced(): void {
    this.files();
    const chunkBytes = 1024 * 1024;
    for (let position = this.syncedStoreBytes; position < this.writtenStoreBytes; position += chunkBytes) {
      const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, this.writtenStoreBytes - position));
      readFully(this.io, this.storeFd, chunk, position);
      this.io.write(this.storeFd, chunk, position);
    }
    this.syncFilesSync();
  }

  /** Reads raw store bytes [position, position + target.length). */
  readStore(target: Buffer, position: number): number {
    this.files();
    return this.io.read(this.storeFd, target, 0, target.length, position);
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
