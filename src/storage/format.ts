/**
 * On-disk format of a segment. All integers are little-endian.
 *
 * Store file `<base>.store`: a sequence of frames, one per record, with no file header:
 *
 *   0  u32  valueLength
 *   4  u32  CRC-32 of bytes [8, 28 + valueLength): everything after the checksum field
 *   8  u64  offset      (the record's absolute offset; checked on read, so a misplaced frame is caught)
 *  16  u64  term
 *  24  u32  type
 *  28  ...  value (valueLength bytes)
 *
 * Index file `<base>.index`: fixed 12-byte entries, entry i for offset base + i (offsets within a
 * segment are dense, so lookup is O(1)):
 *
 *   0  u32  relative offset (i; a check against zeroed or stale entries)
 *   4  u64  position of the frame in the store file
 *
 * `<base>` is the segment's base offset as 20 decimal digits, so names sort in offset order.
 */
import { assert } from '../util/index.js';
import { crc32 } from './checksum.js';

export const FRAME_HEADER_BYTES = 28;
export const INDEX_ENTRY_BYTES = 12;
const TWO_POW_32 = 0x1_0000_0000;

export const STORE_SUFFIX = '.store';
export const INDEX_SUFFIX = '.index';
const NAME_PATTERN = /^(\d{20})\.(store|index)$/;

export function segmentFileName(baseOffset: number, suffix: string): string {
  return String(baseOffset).padStart(20, '0') + suffix;
}

/** Parses a segment file name, or returns undefined for files that are not segment files. */
export function parseSegmentFileName(name: string): { baseOffset: number; kind: 'store' | 'index' } | undefined {
  const match = NAME_PATTERN.exec(name);
  if (!match) return undefined;
  const baseOffset = Number(match[1]);
  if (!Number.isSafeInteger(baseOffset)) return undefined;
  return { baseOffset, kind: match[2] as 'store' | 'index' };
}

export function frameSizeBytes(valueLength: number): number {
  return FRAME_HEADER_BYTES + valueLength;
}

/** Unchecked little-endian u32 store (the callers bound `at`; Buffer's checked writers cost ~2x here). */
function writeUint32(target: Uint8Array, value: number, at: number): void {
  target[at] = value;
  target[at + 1] = value >>> 8;
  target[at + 2] = value >>> 16;
  target[at + 3] = value >>> 24;
}

function writeUint64(target: Uint8Array, value: number, at: number): void {
  writeUint32(target, value >>> 0, at);
  writeUint32(target, (value - (value >>> 0)) / TWO_POW_32, at + 4);
}

function readUint64(source: Uint8Array, at: number): number {
  const view = source as Buffer;
  return view.readUInt32LE(at) + view.readUInt32LE(at + 4) * TWO_POW_32;
}

/**
 * Encodes one frame into `target` at `at`; returns the frame's size in bytes. The checksum runs
 * over the header fields in `target` and then over `value` where it lies, not over its copy, so
 * the native CRC reads the caller's bytes without a view allocated per frame.
 */
export function encodeFrame(target: Buffer, at: number, offset: number, term: number, type: number, value: Uint8Array): number {
  const valueLength = value.length;
  assert(at + FRAME_HEADER_BYTES + valueLength <= target.length, 'frame does not fit its buffer');
  writeUint32(target, valueLength, at);
  writeUint64(target, offset, at + 8);
  writeUint64(target, term, at + 16);
  writeUint32(target, type, at + 24);
  target.set(value, at + FRAME_HEADER_BYTES);
  writeUint32(target, crc32(value, 0, valueLength, crc32(target, at + 8, at + FRAME_HEADER_BYTES)), at + 4);
  return FRAME_HEADER_BYTES + valueLength;
}

export interface FrameHeader {
  valueLength: number;
  checksum: number;
  offset: number;
  term: number;
  type: number;
}

export function decodeFrameHeader(source: Buffer, at: number): FrameHeader {
  assert(at + FRAME_HEADER_BYTES <= source.length, 'frame header out of bounds');
  return {
    valueLength: source.readUInt32LE(at),
    checksum: source.readUInt32LE(at + 4),
    offset: readUint64(source, at + 8),
    term: readUint64(source, at + 16),
    type: source.readUInt32LE(at + 24),
  };
}

/** Whether the frame at `at` (whose header has been decoded) is whole in `source` and its checksum matches. */
export function frameChecksumMatches(source: Buffer, at: number, header: FrameHeader): boolean {
  const end = at + FRAME_HEADER_BYTES + header.valueLength;
  if (end > source.length) return false;
  return crc32(source, at + 8, end) === header.checksum;
}

/** Encodes entry `entryIndex` into an index held in `target` starting at entry `firstEntryIndex`. */
export function encodeIndexEntry(target: Buffer, entryIndex: number, positionBytes: number, firstEntryIndex = 0): void {
  const at = (entryIndex - firstEntryIndex) * INDEX_ENTRY_BYTES;
  assert(at >= 0 && at + INDEX_ENTRY_BYTES <= target.length, 'index entry does not fit its buffer');
  writeUint32(target, entryIndex, at);
  writeUint64(target, positionBytes, at + 4);
}

/** Decodes entry `entryIndex` of an index held in `source` starting at entry `firstEntryIndex`. */
export function decodeIndexEntry(
  source: Buffer,
  entryIndex: number,
  firstEntryIndex = 0,
): { relativeOffset: number; positionBytes: number } {
  const at = (entryIndex - firstEntryIndex) * INDEX_ENTRY_BYTES;
  return { relativeOffset: source.readUInt32LE(at), positionBytes: readUint64(source, at + 4) };
}
