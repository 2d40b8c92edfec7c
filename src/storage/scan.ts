/**
 * Sequential validation of a store file, used by recovery: walks frames from a known-good position,
 * and at the first frame that fails decides whether it is a torn tail (cut it) or damage: corruption
 * in the middle of the file, or a frame written whole that changed since (report it, never drop it
 * or what follows).
 */
import { CorruptionError } from '../util/index.js';
import { crc32 } from './checksum.js';
import { NODE_FILE_IO, type FileIo } from './file-io.js';
import { FRAME_HEADER_BYTES } from './format.js';

const TWO_POW_32 = 0x1_0000_0000;
const WINDOW_BYTES = 4 * 1024 * 1024;

/** A read-only window over a file, refilled on demand so scanning never holds the whole file. */
export class FileWindow {
  private buffer = Buffer.alloc(0);
  private startBytes = 0;

  constructor(
    private readonly io: FileIo,
    readonly fd: number,
    readonly sizeBytes: number,
    readonly path: string,
  ) {}

  /**
   * Returns a buffer and the index in it at which `[position, position + length)` starts. A window
   * the device fails to read is read again as just that range, so an unreadable sector fails only
   * the frames it holds (CorruptionError at its position).
   */
  view(position: number, length: number): { buffer: Buffer; at: number } {
    if (position < this.startBytes || position + length > this.startBytes + this.buffer.length) {
      const want = Math.min(Math.max(length, WINDOW_BYTES), this.sizeBytes - position);
      let buffer = Buffer.allocUnsafe(want);
      try {
        readFully(this.io, this.fd, buffer, position, this.path);
      } catch (error) {
        if (!(error instanceof CorruptionError) || want === length) throw error;
        buffer = Buffer.allocUnsafe(length);
        readFully(this.io, this.fd, buffer, position, this.path);
      }
      this.buffer = buffer;
      this.startBytes = position;
    }
    return { buffer: this.buffer, at: position - this.startBytes };
  }
}

/**
 * Reads `target.length` bytes at `position`. A read the device fails (EIO: a medium error the
 * drive could not correct) is CorruptionError at the failing position: bytes that cannot be read
 * are damage like bytes that fail their checksum.
 */
export function readFully(io: FileIo, fd: number, target: Buffer, position: number, path: string): void {
  let done = 0;
  while (done < target.length) {
    let n: number;
    try {
      n = io.read(fd, target, done, target.length - done, position + done);
    } catch (error) {
      if (isDeviceReadFailure(error)) throw new CorruptionError(path, position + done, 'the device failed to read it (EIO)');
      throw error;
    }
    if (n === 0) throw new Error(`short read at byte ${position + done} of ${path}: file ended`);
    done += n;
  }
}

/** The unit a disk writes atomically (a torn write leaves whole sectors unwritten) and fails reads in. */
export const SECTOR_BYTES = 512;

/** readFully, except that sectors the device fails to read come back as zeros. */
export function readFillingUnreadable(io: FileIo, fd: number, target: Buffer, position: number, path: string): void {
  try {
    readFully(io, fd, target, position, path);
    return;
  } catch (error) {
    if (!(error instanceof CorruptionError)) throw error;
  }
  for (let at = 0; at < target.length; ) {
    const end = Math.min(target.length, (Math.floor((position + at) / SECTOR_BYTES) + 1) * SECTOR_BYTES - position);
    const part = target.subarray(at, end);
    try {
      readFully(io, fd, part, position + at, path);
    } catch (error) {
      if (!(error instanceof CorruptionError)) throw error;
      part.fill(0);
    }
    at = end;
  }
}

export function isDeviceReadFailure(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EIO';
}

/**
 * Whether a complete, checksum-valid frame for `expectedOffset` starts at `position`
 * (any offset > `expectedOffset` - 1 when `anyLaterOffset` is set).
 */
export function frameValidAt(
  window: FileWindow,
  position: number,
  expectedOffset: number,
  maxValueBytes: number,
  anyLaterOffset = false,
): number | undefined {
  if (position + FRAME_HEADER_BYTES > window.sizeBytes) return undefined;
  const head = window.view(position, FRAME_HEADER_BYTES);
  const valueLength = head.buffer.readUInt32LE(head.at);
  if (valueLength > maxValueBytes || position + FRAME_HEADER_BYTES + valueLength > window.sizeBytes) return undefined;
  const offset = head.buffer.readUInt32LE(head.at + 8) + head.buffer.readUInt32LE(head.at + 12) * TWO_POW_32;
  if (anyLaterOffset ? offset < expectedOffset : offset !== expectedOffset) return undefined;
  const checksum = head.buffer.readUInt32LE(head.at + 4);
  const frame = window.view(position, FRAME_HEADER_BYTES + valueLength);
  const end = frame.at + FRAME_HEADER_BYTES + valueLength;
  if (crc32(frame.buffer, frame.at + 8, end) !== checksum) return undefined;
  return FRAME_HEADER_BYTES + valueLength;
}

export interface ScanResult {
  /** Store positions of the frames found, for offsets startOffset, startOffset + 1, ... */
  positions: number[];
  /** Where valid data ends: everything from here on is a torn tail to cut. */
  validEndBytes: number;
  /** Frames whose checksum fails but that are delimited by valid frames: kept, reported, unreadable. */
  corruptFrames: { offset: number; positionBytes: number }[];
  /**
   * Damaged ranges whose records cannot be delimited, kept under `quarantine`: offsets
   * [firstOffset, endOffset) get index positions inside [positionBytes, endBytes), so each reads
   * as DATA_LOSS and the valid records after the range stay readable.
   */
  quarantined: { firstOffset: number; endOffset: number; positionBytes: number; endBytes: number }[];
}

/**
 * Scans frames from `startBytes` (which must be a frame boundary for `startOffset`) to the end of
 * the file. Throws CorruptionError if a bad frame is followed by valid frames that cannot be
 * re-synchronised with (cutting would drop records that were acknowledged).
 */
export function scanFrames(options: {
  window: FileWindow;
  fileName: string;
  startBytes: number;
  startOffset: number;
  maxValueBytes: number;
  /** Stop after this many frames (the index capacity); the rest is left for the caller to judge. */
  maxFrames?: number;
  /** Keep an undelimitable damaged range followed by valid records (see ScanResult.quarantined) instead of throwing. */
  quarantine?: boolean;
}): ScanResult {
  const { window, fileName, maxValueBytes } = options;
  const positions: number[] = [];
  const corruptFrames: ScanResult['corruptFrames'] = [];
  const quarantined: ScanResult['quarantined'] = [];
  let position = options.startBytes;
  let offset = options.startOffset;
  const maxFrames = options.maxFrames ?? Number.MAX_SAFE_INTEGER;
  try {
    while (position < window.sizeBytes && positions.length < maxFrames) {
      const size = frameValidAt(window, position, offset, maxValueBytes);
      if (size !== undefined) {
        positions.push(position);
        position += size;
        offset += 1;
        continue;
      }
      // A bad frame. If its length field still delimits it and a valid successor follows, keep it
      // (reads of it report DATA_LOSS) rather than lose the records after it.
      const delimitedEnd = delimitedFrameEnd(window, position, maxValueBytes);
      if (delimitedEnd !== undefined && delimitedEnd < window.sizeBytes &&
          frameValidAt(window, delimitedEnd, offset + 1, maxValueBytes) !== undefined) {
        corruptFrames.push({ offset, positionBytes: position });
        positions.push(position);
        position = delimitedEnd;
        offset += 1;
        continue;
      }
      const later = findLaterValidFrame(window, position + 1, offset, maxValueBytes);
      if (later !== undefined) {
        const head = window.view(later, FRAME_HEADER_BYTES);
        const laterOffset = head.buffer.readUInt32LE(head.at + 8) + head.buffer.readUInt32LE(head.at + 12) * TWO_POW_32;
        const count = laterOffset - offset;
        if (options.quarantine === true && count >= 1 && later - position >= count && positions.length + count <= maxFrames) {
          quarantined.push({ firstOffset: offset, endOffset: laterOffset, positionBytes: position, endBytes: later });
          for (let i = 0; i < count; i++) positions.push(position + i);
          position = later;
          offset = laterOffset;
          continue;
        }
        throw new CorruptionError(
          fileName,
          position,
          `record for offset ${offset} is unreadable and valid records follow at byte ${later}; ` +
            'refusing to cut acknowledged records (restore this segment from a replica or backup, ' +
            'or start with --quarantine-damaged to serve the damaged range as DATA_LOSS)',
          { firstOffset: offset, evidenceEndOffset: Math.max(offset, laterOffset) },
        );
      }
      // Nothing valid follows. A crash leaves a frame cut short or sectors never written; a frame
      // that was written whole and then changed is damage, kept (reads report DATA_LOSS) so that
      // an acknowledged last record is not cut as if it had been torn.
      const damagedEnd = writtenWholeFrameEnd(window, position, maxValueBytes);
      if (damagedEnd !== undefined) {
        corruptFrames.push({ offset, positionBytes: position });
        positions.push(position);
        position = damagedEnd;
        offset += 1;
        continue;
      }
      return { positions, validEndBytes: position, corruptFrames, quarantined };
    }
  } catch (error) {
    // A read the device failed: damage at the frame being judged, of unknown extent. What the
    // file shows after the unreadable sector is evidence of records held.
    if (!(error instanceof CorruptionError) || error.damage !== undefined) throw error;
    const evidenceEndOffset = lastOffsetAfter(window, position, error.positionBytes, offset, maxValueBytes);
    throw new CorruptionError(error.file, error.positionBytes, `record for offset ${offset}: ${error.reason}`, { firstOffset: offset, evidenceEndOffset });
  }
  return { positions, validEndBytes: position, corruptFrames, quarantined };
}

function delimitedFrameEnd(window: FileWindow, position: number, maxValueBytes: number): number | undefined {
  if (position + FRAME_HEADER_BYTES > window.sizeBytes) return undefined;
  const head = window.view(position, 4);
  const valueLength = head.buffer.readUInt32LE(head.at);
  if (valueLength > maxValueBytes) return undefined;
  const end = position + FRAME_HEADER_BYTES + valueLength;
  return end <= window.sizeBytes ? end : undefined;
}


/**
 * How far records may have gone past the frame for `offset` at `frameAtBytes`, whose read failed
 * at `failedAtBytes`: the highest offset of a valid frame found by searching past each unreadable
 * sector and following the frames from there. With none found, the unreadable bytes may hold the
 * last records, so as many frames as fit between the frame and the end of the file count (an
 * upper bound: a replica may wait for a few more entries than it held, never fewer).
 */
function lastOffsetAfter(window: FileWindow, frameAtBytes: number, failedAtBytes: number, offset: number, maxValueBytes: number): number {
  let last = -1;
  let position = (Math.floor(failedAtBytes / SECTOR_BYTES) + 1) * SECTOR_BYTES;
  while (position < window.sizeBytes) {
    try {
      const found = findLaterValidFrame(window, position, Math.max(last, offset) + 1, maxValueBytes);
      if (found === undefined) break;
      const head = window.view(found, FRAME_HEADER_BYTES);
      let next = head.buffer.readUInt32LE(head.at + 8) + head.buffer.readUInt32LE(head.at + 12) * TWO_POW_32;
      position = found;
      for (let size = frameValidAt(window, position, next, maxValueBytes); size !== undefined; size = frameValidAt(window, position, next, maxValueBytes)) {
        last = next;
        position += size;
        next += 1;
      }
    } catch (error) {
      if (!(error instanceof CorruptionError)) throw error;
      position = (Math.floor(error.positionBytes / SECTOR_BYTES) + 1) * SECTOR_BYTES;
    }
  }
  return last >= 0 ? last : offset + Math.max(0, Math.ceil((window.sizeBytes - frameAtBytes) / FRAME_HEADER_BYTES) - 1);
}

/**
 * Where a frame that fails its checksum ends, if it shows it was written whole; undefined if it
 * may be a torn write. It was written whole when a one-bit change of its length field (which the
 * checksum does not cover) makes it valid, or when its length delimits it inside the file and
 * none of its sectors reads as zeros: an append cut short by a crash ends the file inside the
 * frame (writes reach the disk in order under data=ordered), or leaves sectors the file system
 * allocated and never wrote, which read as zeros (only sectors the frame covers whole are
 * looked at: a part of a sector may be zeros the frame holds). What this cannot tell apart: a
 * damaged frame whose value holds a whole sector of zeros reads as torn; a torn frame whose
 * unwritten part covers no whole sector, or stale bytes a data=writeback file system exposes,
 * read as damage (kept and reported; a replica repairs it from its peers).
 */
function writtenWholeFrameEnd(window: FileWindow, position: number, maxValueBytes: number): number | undefined {
  if (position + FRAME_HEADER_BYTES > window.sizeBytes) return undefined;
  const head = window.view(position, FRAME_HEADER_BYTES);
  const valueLength = head.buffer.readUInt32LE(head.at);
  const checksum = head.buffer.readUInt32LE(head.at + 4);
  for (let bit = 0; bit < 32; bit++) {
    const length = (valueLength ^ (1 << bit)) >>> 0;
    const end = position + FRAME_HEADER_BYTES + length;
    if (length > maxValueBytes || end > window.sizeBytes) continue;
    const frame = window.view(position, FRAME_HEADER_BYTES + length);
    if (crc32(frame.buffer, frame.at + 8, frame.at + FRAME_HEADER_BYTES + length) === checksum) return end;
  }
  const end = position + FRAME_HEADER_BYTES + valueLength;
  if (valueLength > maxValueBytes || end > window.sizeBytes) return undefined;
  for (let sector = Math.ceil(position / SECTOR_BYTES) * SECTOR_BYTES; sector + SECTOR_BYTES <= end; sector += SECTOR_BYTES) {
    const bytes = window.view(sector, SECTOR_BYTES);
    if (isZero(bytes.buffer, bytes.at, bytes.at + SECTOR_BYTES)) return undefined;
  }
  return end;
}

function isZero(buffer: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buffer[i] !== 0) return false;
  return true;
}

/** Byte-by-byte search for any valid frame of an offset >= `afterOffset` starting at or after `fromBytes`. */
function findLaterValidFrame(
  window: FileWindow,
  fromBytes: number,
  afterOffset: number,
  maxValueBytes: number,
): number | undefined {
  for (let position = fromBytes; position + FRAME_HEADER_BYTES <= window.sizeBytes; position++) {
    // Cheap filter first: the offset field must be plausible before the checksum is computed.
    const head = window.view(position, FRAME_HEADER_BYTES);
    const offsetHigh = head.buffer.readUInt32LE(head.at + 12);
    const offsetLow = head.buffer.readUInt32LE(head.at + 8);
    const offset = offsetLow + offsetHigh * TWO_POW_32;
    if (offset < afterOffset || offset > afterOffset + (window.sizeBytes - fromBytes) / FRAME_HEADER_BYTES) continue;
    if (frameValidAt(window, position, afterOffset, maxValueBytes, true) !== undefined) return position;
  }
  return undefined;
}

/** Opens a file read-only just to scan it (used by tests and tools). */
export function withFileWindow<T>(path: string, body: (window: FileWindow) => T, io: FileIo = NODE_FILE_IO): T {
  const fd = io.open(path, 'r');
  try {
    return body(new FileWindow(io, fd, io.sizeBytes(fd), path));
  } finally {
    io.close(fd);
  }
}
