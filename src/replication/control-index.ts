/**
 * The control-entry side file: a sorted list of the Raft entries whose type is not 0 (no-ops,
 * configurations, future control types), so that consumer offsets can skip them and
 * `configEntries` and the term boundaries need no scan of the log.
 *
 * `control.<generation>.idx` is a sequence of fixed 24-byte records, little-endian:
 *
 *   0  u64  Raft index (strictly increasing along the file)
 *   8  u64  term
 *  16  u32  entry type (never 0)
 *  20  u32  CRC-32 of bytes [0, 20)
 *
 * The file only grows at its end or is cut at a record boundary, so a crash leaves at most a torn
 * last record; a record that fails is dropped with everything after it (see RaftLogStorage.open).
 */
import { crc32 } from '../storage/index.js';
import { assert } from '../util/index.js';

export const CONTROL_RECORD_BYTES = 24;
const TWO_POW_32 = 0x1_0000_0000;

export interface ControlRecord {
  readonly index: number;
  readonly term: number;
  readonly type: number;
}

function writeUint64(target: Buffer, value: number, at: number): void {
  target.writeUInt32LE(value >>> 0, at);
  target.writeUInt32LE(Math.floor(value / TWO_POW_32), at + 4);
}

function readUint64(source: Buffer, at: number): number {
  return source.readUInt32LE(at) + source.readUInt32LE(at + 4) * TWO_POW_32;
}

export function encodeControlRecords(records: readonly ControlRecord[]): Buffer {
  const buffer = Buffer.alloc(records.length * CONTROL_RECORD_BYTES);
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const at = i * CONTROL_RECORD_BYTES;
    writeUint64(buffer, record.index, at);
    writeUint64(buffer, record.term, at + 8);
    buffer.writeUInt32LE(record.type, at + 16);
    buffer.writeUInt32LE(crc32(buffer, at, at + 20), at + 20);
  }
  return buffer;
}

export interface DecodedControlFile {
  /** The well-formed prefix. */
  readonly records: ControlRecord[];
  /** Bytes that prefix takes; anything after it is torn or corrupt. */
  readonly validBytes: number;
  /** Records after the first bad one whose checksum still matches (they must not be needed). */
  readonly strandedRecords: ControlRecord[];
}

function decodeAt(bytes: Buffer, at: number): ControlRecord | undefined {
  if (at + CONTROL_RECORD_BYTES > bytes.length) return undefined;
  if (crc32(bytes, at, at + 20) !== bytes.readUInt32LE(at + 20)) return undefined;
  return { index: readUint64(bytes, at), term: readUint64(bytes, at + 8), type: bytes.readUInt32LE(at + 16) };
}

export function decodeControlFile(bytes: Buffer): DecodedControlFile {
  const records: ControlRecord[] = [];
  let at = 0;
  for (; at + CONTROL_RECORD_BYTES <= bytes.length; at += CONTROL_RECORD_BYTES) {
    const record = decodeAt(bytes, at);
    const previous = records[records.length - 1];
    if (record === undefined || record.type === 0 || record.index < 1 || (previous !== undefined && record.index <= previous.index)) break;
    records.push(record);
  }
  const validBytes = at;
  const strandedRecords: ControlRecord[] = [];
  for (at += CONTROL_RECORD_BYTES; at + CONTROL_RECORD_BYTES <= bytes.length; at += CONTROL_RECORD_BYTES) {
    const record = decodeAt(bytes, at);
    if (record !== undefined) strandedRecords.push(record);
  }
  return { records, validBytes, strandedRecords };
}

/**
 * The control entries of the retained log in memory, in index order, as parallel arrays.
 * Invariant: indexes strictly increase.
 */
export class ControlList {
  private indexes: number[] = [];
  private terms: number[] = [];
  private types: number[] = [];

  get length(): number {
    return this.indexes.length;
  }

  indexAt(j: number): number {
    return this.indexes[j]!;
  }

  termAt(j: number): number {
    return this.terms[j]!;
  }

  typeAt(j: number): number {
    return this.types[j]!;
  }

  push(index: number, term: number, type: number): void {
    assert(this.indexes.length === 0 || index > this.indexes[this.indexes.length - 1]!, `control entry ${index} out of order`);
    this.indexes.push(index);
    this.terms.push(term);
    this.types.push(type);
  }

  /** How many control entries have an index below `index`. */
  countBelow(index: number): number {
    let lo = 0;
    let hi = this.indexes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.indexes[mid]! < index) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Removes the entries at or after `index`; returns how many. */
  removeFrom(index: number): number {
    const keep = this.countBelow(index);
    const removed = this.indexes.length - keep;
    this.indexes.length = this.terms.length = this.types.length = keep;
    return removed;
  }

  /** Removes the entries below `index`; returns how many. */
  removeBelow(index: number): number {
    const drop = this.countBelow(index);
    if (drop > 0) {
      this.indexes.splice(0, drop);
      this.terms.splice(0, drop);
      this.types.splice(0, drop);
    }
    return drop;
  }

  clear(): void {
    this.indexes.length = this.terms.length = this.types.length = 0;
  }

  /**
   * The Raft index of the normal entry with ordinal `ordinal` (0 = the first normal entry at or
   * after `firstIndex`), all control entries being at or after `firstIndex`. The number of normal
   * entries before control entry j is indexes[j] - firstIndex - j, non-decreasing in j, so the
   * control entries before the wanted one are found by binary search.
   */
  indexOfNormal(firstIndex: number, ordinal: number): number {
    let lo = 0;
    let hi = this.indexes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.indexes[mid]! - firstIndex - mid <= ordinal) lo = mid + 1;
      else hi = mid;
    }
    return firstIndex + ordinal + lo;
  }

  records(): ControlRecord[] {
    return this.indexes.map((index, j) => ({ index, term: this.terms[j]!, type: this.types[j]! }));
  }
}
