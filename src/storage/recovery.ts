/**
 * Opening a log directory: find the segments, check them, repair what a crash can leave behind,
 * and report every action. Cost is bounded by the last segment plus O(1) reads per sealed
 * segment, so opening a log of millions of records does not scan it.
 *
 * What a crash can leave: a torn tail in the last store file (bytes of appends that were never
 * acknowledged, or a partial frame), index entries missing (the active index is written after the
 * store and not fsynced per append), an index file missing, or an empty segment created by a roll.
 * What is corruption instead, reported and never dropped: a bad frame with valid frames after
 * it, a last frame that shows it was written whole (see scan.ts), a sealed segment whose last
 * record fails, an indexed record of the active segment that fails, a gap between segments. A damaged record whose extent is known is kept in place (reads
 * of it fail with CorruptionError); damage that cannot be delimited fails the open unless
 * `quarantineDamaged` keeps the whole range in place as unreadable offsets.
 */
import { join } from 'node:path';
import { assert, CorruptionError } from '../util/index.js';
import {
  decodeIndexEntry, encodeIndexEntry, FRAME_HEADER_BYTES, INDEX_ENTRY_BYTES, INDEX_SUFFIX, parseSegmentFileName, segmentFileName,
  STORE_SUFFIX,
} from './format.js';
import type { FileIo } from './file-io.js';
import { FileWindow, frameValidAt, isDeviceReadFailure, readFillingUnreadable, readFully, scanFrames, type ScanResult } from './scan.js';
import { Segment } from './segment.js';
import type { LogConfig, RecoveryReport } from './types.js';

export function emptyReport(): RecoveryReport {
  return { segmentCount: 0, droppedTailRecords: 0, droppedTailBytes: 0, rebuiltIndexEntries: 0, actions: [], damagedOffsets: [], quarantinedOffsets: [] };
}

/** Lists segment base offsets present in `dir`; removes index files that have no store file. */
function listSegments(io: FileIo, dir: string, report: RecoveryReport): number[] {
  const stores = new Set<number>();
  const indexes = new Set<number>();
  for (const name of io.readdir(dir)) {
    const parsed = parseSegmentFileName(name);
    if (!parsed) continue;
    (parsed.kind === 'store' ? stores : indexes).add(parsed.baseOffset);
  }
  for (const base of indexes) {
    if (stores.has(base)) continue;
    const path = join(dir, segmentFileName(base, INDEX_SUFFIX));
    io.unlink(path);
    report.actions.push(`removed ${path}: an index with no store file`);
  }
  return [...stores].sort((a, b) => a - b);
}

export function recoverSegments(io: FileIo, dir: string, config: LogConfig): { segments: Segment[]; report: RecoveryReport } {
  if (config.cutAtDamage !== true) return recoverOnce(io, dir, config);
  // Recover keeping damage in place (quarantined) to learn where it is and how far the log went,
  // cut just before the first damaged record, and recover again; each round ends the log earlier.
  const quarantining: LogConfig = { ...config, quarantineDamaged: true };
  const actions: string[] = [];
  let cut: { fromOffset: number; evidenceEndOffset: number } | undefined;
  for (let round = 0; ; round++) {
    assert(round < 64, 'cutting a damaged log did not converge');
    let damage: { firstOffset: number; evidenceEndOffset: number };
    try {
      const result = recoverOnce(io, dir, quarantining);
      const { segments, report } = result;
      const damagedOffsets = [...report.damagedOffsets, ...report.quarantinedOffsets];
      if (damagedOffsets.length === 0) {
        report.actions.unshift(...actions);
        if (cut !== undefined) report.cut = cut;
        return result;
      }
      const end = segments[segments.length - 1]!.nextOffset - 1;
      for (const segment of segments) segment.close();
      damage = { firstOffset: Math.min(...damagedOffsets), evidenceEndOffset: end };
      actions.push(...report.actions);
    } catch (error) {
      if (!(error instanceof CorruptionError) || error.damage === undefined) throw error;
      damage = error.damage;
      actions.push(error.message);
    }
    // What the files show before the first cut sets later segments aside: damage reports only
    // how far its own segment went.
    const held = cut === undefined ? heldThroughOffset(io, dir, config.maxRecordBytes) : -1;
    actions.push(cutLogAt(io, dir, damage.firstOffset));
    cut = {
      fromOffset: Math.min(damage.firstOffset, cut?.fromOffset ?? Infinity),
      evidenceEndOffset: Math.max(damage.evidenceEndOffset, held, cut?.evidenceEndOffset ?? -1),
    };
  }
}

/**
 * The highest offset the segment files in `dir` show a record of (-1 if none): the last segment's
 * base, and the frames its store holds from there. Reads only; damage in the last segment ends
 * what it shows there.
 */
export function heldThroughOffset(io: FileIo, dir: string, maxRecordBytes: number): number {
  const stores: number[] = [];
  for (const name of io.readdir(dir)) {
    const parsed = parseSegmentFileName(name);
    if (parsed?.kind === 'store') stores.push(parsed.baseOffset);
  }
  if (stores.length === 0) return -1;
  const base = Math.max(...stores);
  const storePath = join(dir, segmentFileName(base, STORE_SUFFIX));
  const fd = io.open(storePath, 'r');
  try {
    const window = new FileWindow(io, fd, io.sizeBytes(fd), storePath);
    const scan = scanFrames({ window, fileName: storePath, startBytes: 0, startOffset: base, maxValueBytes: maxRecordBytes, quarantine: true });
    return base + scan.positions.length - 1;
  } catch (error) {
    if (error instanceof CorruptionError && error.damage !== undefined) return Math.max(base - 1, error.damage.evidenceEndOffset);
    throw error;
  } finally {
    io.close(fd);
  }
}

/**
 * Drops the records from `firstOffset` on: the segment holding it is truncated just before its
 * frame (found through the index, or by a scan when the index does not reach it) and every later
 * segment is removed. Nothing is destroyed: the files as they were are kept in
 * `<dir>.damaged/<time>/` for the operator. Returns the action line.
 */
function cutLogAt(io: FileIo, dir: string, firstOffset: number): string {
  const report = emptyReport();
  const bases = listSegments(io, dir, report);
  let holder: number | undefined;
  for (const base of bases) if (base <= firstOffset) holder = base;
  const affected = bases.filter((base) => holder === undefined || base >= holder).map((base) => ({ base, move: base !== holder }));
  const keepDir = keepSegmentFilesAside(io, dir, affected);
  const moved = affected.filter((segment) => segment.move).length;
  let truncated = '';
  if (holder !== undefined) {
    const files = openFiles(io, dir, holder);
    try {
      const keep = firstOffset - holder;
      const storeSizeBytes = io.sizeBytes(files.storeFd);
      const positionBytes = positionOf(io, files, keep, storeSizeBytes);
      io.truncate(files.storeFd, positionBytes);
      io.truncate(files.indexFd, Math.min(io.sizeBytes(files.indexFd), keep * INDEX_ENTRY_BYTES));
      io.fsyncSync(files.storeFd);
      io.fsyncSync(files.indexFd);
      truncated = `truncated ${files.storePath} at byte ${positionBytes} (before offset ${firstOffset}) `;
    } finally {
      io.close(files.storeFd);
      io.close(files.indexFd);
    }
  }
  const dirFd = io.open(dir, 'r');
  try {
    io.fsyncSync(dirFd);
  } finally {
    io.close(dirFd);
  }
  return `CUT AT DAMAGE: ${truncated}and removed ${moved} later segments: records from offset ${firstOffset} on are dropped ` +
    `(cutAtDamage); the files as they were are kept in ${keepDir}`;
}

/**
 * Keeps the files of the given segments as they are now in `<dir>.damaged/<time>/` for the
 * operator, before a cut changes them: moved when the cut removes the segment, else copied.
 * Returns that directory.
 */
export function keepSegmentFilesAside(io: FileIo, dir: string, segments: readonly { base: number; move: boolean }[]): string {
  const keepDir = join(`${dir}.damaged`, new Date().toISOString().replace(/[:.]/g, '-'));
  io.mkdir(keepDir);
  for (const { base, move } of segments) {
    for (const suffix of [STORE_SUFFIX, INDEX_SUFFIX]) {
      const name = segmentFileName(base, suffix);
      if (io.kind(join(dir, name)) !== 'file') continue; // an index a roll had not yet created
      if (move) io.rename(join(dir, name), join(keepDir, name));
      else copyReadable(io, join(dir, name), join(keepDir, name));
    }
  }
  return keepDir;
}

/**
 * frameValidAt for the open's quick checks, where a frame the device fails to read is only not
 * known to be valid: the scan that follows judges it (and reports it as damage).
 */
function readableFrameAt(window: FileWindow, position: number, offset: number, maxValueBytes: number): number | undefined {
  try {
    return frameValidAt(window, position, offset, maxValueBytes);
  } catch (error) {
    if (error instanceof CorruptionError && error.damage === undefined) return undefined;
    throw error;
  }
}

/** Copies a file; where the device fails to read it, the copy holds zeros (sector by sector). */
function copyReadable(io: FileIo, from: string, to: string): void {
  try {
    io.copyFile(from, to);
    return;
  } catch (error) {
    if (!isDeviceReadFailure(error)) throw error;
  }
  const source = io.open(from, 'r');
  const target = io.open(to, 'w');
  try {
    const sizeBytes = io.sizeBytes(source);
    const chunkBytes = 1024 * 1024;
    for (let position = 0; position < sizeBytes; position += chunkBytes) {
      const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, sizeBytes - position));
      readFillingUnreadable(io, source, chunk, position, from);
      io.write(target, chunk, position);
    }
  } finally {
    io.close(source);
    io.close(target);
  }
}

/** Store position of the `count`-th record of a segment: its index entry if sound, else by scanning frames. */
function positionOf(io: FileIo, files: { storeFd: number; indexFd: number; storePath: string; indexPath: string }, count: number, storeSizeBytes: number): number {
  const indexBytes = io.sizeBytes(files.indexFd);
  if (count < Math.floor(indexBytes / INDEX_ENTRY_BYTES)) {
    const entry = Buffer.allocUnsafe(INDEX_ENTRY_BYTES);
    readFully(io, files.indexFd, entry, count * INDEX_ENTRY_BYTES, files.indexPath);
    const decoded = decodeIndexEntry(entry, 0);
    if (decoded.relativeOffset === count && decoded.positionBytes <= storeSizeBytes) return decoded.positionBytes;
  }
  // Walk the frame lengths (checksums aside: frames before the damage were verified by recovery).
  const window = new FileWindow(io, files.storeFd, storeSizeBytes, files.storePath);
  let position = 0;
  for (let i = 0; i < count && position + FRAME_HEADER_BYTES <= storeSizeBytes; i++) {
    const head = window.view(position, 4);
    position += FRAME_HEADER_BYTES + head.buffer.readUInt32LE(head.at);
  }
  return Math.min(position, storeSizeBytes);
}

function recoverOnce(io: FileIo, dir: string, config: LogConfig): { segments: Segment[]; report: RecoveryReport } {
  const report = emptyReport();
  const bases = listSegments(io, dir, report);
  removeInterruptedRoll(io, dir, bases, report);
  const segments: Segment[] = [];
  try {
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i]!;
      const isLast = i === bases.length - 1;
      const segment = isLast ? openActive(io, dir, base, config, report) : openSealed(io, dir, base, bases[i + 1]!, config, report);
      const previous = segments[segments.length - 1];
      if (previous && previous.nextOffset !== base) {
        segment.close();
        throw new CorruptionError(
          segment.storePath, 0,
          `segment starts at offset ${base} but the previous segment ends before offset ${previous.nextOffset}: records are missing`,
          { firstOffset: previous.nextOffset, evidenceEndOffset: Math.max(base, segment.nextOffset - 1) },
        );
      }
      // An empty sealed segment (a roll interrupted before its first write) carries nothing.
      if (!isLast && segment.entryCount === 0) {
        segment.close();
        segment.removeFiles();
        report.actions.push(`removed empty segment ${segment.storePath}`);
        continue;
      }
      segments.push(segment);
    }
  } catch (error) {
    for (const segment of segments) segment.close();
    throw error;
  }
  report.segmentCount = segments.length;
  return { segments, report };
}

/**
 * A roll creates the next segment's files when a record no longer fits, after the previous
 * segment's last records are written but before they are synced (the previous segment is synced
 * before the next one gets a byte): a crash in between leaves an empty last segment, and after a
 * power loss the previous one's tail unwritten or torn. None of that tail was acknowledged, so the empty segment goes and the previous one is
 * recovered as the active segment (a torn tail cut) rather than judged as a sealed one.
 */
function removeInterruptedRoll(io: FileIo, dir: string, bases: number[], report: RecoveryReport): void {
  if (bases.length < 2) return;
  const base = bases[bases.length - 1]!;
  const storePath = join(dir, segmentFileName(base, STORE_SUFFIX));
  const fd = io.open(storePath, 'r');
  let sizeBytes: number;
  try {
    sizeBytes = io.sizeBytes(fd);
  } finally {
    io.close(fd);
  }
  if (sizeBytes > 0) return;
  io.unlink(storePath);
  const indexPath = join(dir, segmentFileName(base, INDEX_SUFFIX));
  if (io.kind(indexPath) !== 'absent') io.unlink(indexPath);
  bases.pop();
  report.actions.push(`removed empty segment ${storePath}: a roll interrupted before its first record was written`);
}

function openFiles(io: FileIo, dir: string, base: number): { storeFd: number; indexFd: number; storePath: string; indexPath: string } {
  const storePath = join(dir, segmentFileName(base, STORE_SUFFIX));
  const indexPath = join(dir, segmentFileName(base, INDEX_SUFFIX));
  const storeFd = io.open(storePath, 'r+');
  let indexFd: number;
  try {
    indexFd = io.open(indexPath, 'a+');
    io.close(indexFd);
    indexFd = io.open(indexPath, 'r+');
  } catch (error) {
    io.close(storeFd);
    throw error;
  }
  return { storeFd, indexFd, storePath, indexPath };
}

/**
 * A sealed segment is trusted after O(1) checks: whole index entries, the last entry naming
 * the last entry, and the last frame valid and ending exactly at the end of the store. If the
 * index fails these, it is rebuilt from the store (which then must scan cleanly to its end).
 */
function openSealed(io: FileIo, dir: string, base: number, nextBase: number, config: LogConfig, report: RecoveryReport): Segment {
  const files = openFiles(io, dir, base);
  try {
    const storeSizeBytes = io.sizeBytes(files.storeFd);
    const indexBytes = io.sizeBytes(files.indexFd);
    const window = new FileWindow(io, files.storeFd, storeSizeBytes, files.storePath);
    const entryCount = indexBytes / INDEX_ENTRY_BYTES;
    if (Number.isInteger(entryCount) && entryCount > 0) {
      const last = Buffer.allocUnsafe(INDEX_ENTRY_BYTES);
      // Index sectors the device fails to read come back as zeros, which no sound entry is: rebuilt from the store.
      readFillingUnreadable(io, files.indexFd, last, indexBytes - INDEX_ENTRY_BYTES, files.indexPath);
      const entry = decodeIndexEntry(last, 0);
      const size = entry.relativeOffset === entryCount - 1
        ? readableFrameAt(window, entry.positionBytes, base + entryCount - 1, config.maxRecordBytes)
        : undefined;
      if (size !== undefined && entry.positionBytes + size === storeSizeBytes) {
        return Segment.fromRecovered(io, dir, base, { ...files, entryCount, storeSizeBytes, active: false });
      }
    } else if (indexBytes === 0 && storeSizeBytes === 0) {
      return Segment.fromRecovered(io, dir, base, { ...files, entryCount: 0, storeSizeBytes: 0, active: false });
    }
    const scan = scanFrames({
      window, fileName: files.storePath, startBytes: 0, startOffset: base, maxValueBytes: config.maxRecordBytes,
      quarantine: config.quarantineDamaged === true,
    });
    reportCorruptFrames(scan.corruptFrames, files.storePath, report);
    reportQuarantined(scan.quarantined, files.storePath, report);
    if (scan.validEndBytes !== storeSizeBytes) {
      // Every record of a sealed segment was acknowledged (records follow in the next segment), so
      // the damaged end is kept: the next segment's base says how many records it holds.
      const firstOffset = base + scan.positions.length;
      const missing = nextBase - firstOffset;
      const damaged = { firstOffset, endOffset: nextBase, positionBytes: scan.validEndBytes, endBytes: storeSizeBytes };
      if (missing === 1) {
        scan.positions.push(scan.validEndBytes);
        reportCorruptFrames([{ offset: firstOffset, positionBytes: scan.validEndBytes }], files.storePath, report);
      } else if (missing > 1 && config.quarantineDamaged === true && storeSizeBytes - scan.validEndBytes >= missing) {
        for (let i = 0; i < missing; i++) scan.positions.push(scan.validEndBytes + i);
        reportQuarantined([damaged], files.storePath, report);
      } else {
        throw new CorruptionError(
          files.storePath, scan.validEndBytes,
          `a sealed segment ends in bytes that are not a valid record (offsets ${firstOffset} to ${nextBase - 1} were acknowledged); ` +
            'restore this segment from a replica or backup, or start with --quarantine-damaged to serve them as DATA_LOSS',
          { firstOffset, evidenceEndOffset: nextBase - 1 },
        );
      }
    }
    writeIndex(io, files.indexFd, scan.positions);
    report.rebuiltIndexEntries += scan.positions.length;
    report.actions.push(`rebuilt ${files.indexPath} from its store: ${scan.positions.length} entries`);
    return Segment.fromRecovered(io, dir, base, { ...files, entryCount: scan.positions.length, storeSizeBytes, active: false });
  } catch (error) {
    io.close(files.storeFd);
    io.close(files.indexFd);
    throw error;
  }
}

/**
 * The last segment: keep the index entries that are structurally sound and point at valid frames,
 * then scan the store from there, indexing what the index lacked and cutting a torn tail.
 */
function openActive(io: FileIo, dir: string, base: number, config: LogConfig, report: RecoveryReport): Segment {
  const files = openFiles(io, dir, base);
  try {
    const storeSizeBytes = io.sizeBytes(files.storeFd);
    const window = new FileWindow(io, files.storeFd, storeSizeBytes, files.storePath);
    const indexBytes = io.sizeBytes(files.indexFd);
    const fileEntries = Math.floor(indexBytes / INDEX_ENTRY_BYTES);
    const maxEntries = Math.floor(Math.max(64 * 1024, config.maxIndexBytes, fileEntries * INDEX_ENTRY_BYTES) / INDEX_ENTRY_BYTES);
    const index = Buffer.allocUnsafe(fileEntries * INDEX_ENTRY_BYTES);
    if (fileEntries > 0) readFillingUnreadable(io, files.indexFd, index, 0, files.indexPath); // zeros where unreadable: rebuilt
    const indexed = soundPrefix(index, fileEntries, storeSizeBytes);
    let trusted = indexed;
    // Step back over trailing entries whose frames fail (torn writes); usually none.
    let resumeBytes = 0;
    while (trusted > 0) {
      const position = decodeIndexEntry(index, trusted - 1).positionBytes;
      const size = readableFrameAt(window, position, base + trusted - 1, config.maxRecordBytes);
      if (size !== undefined) {
        resumeBytes = position + size;
        break;
      }
      trusted -= 1;
    }
    const scan = scanFrames({
      window, fileName: files.storePath, startBytes: resumeBytes, startOffset: base + trusted,
      maxValueBytes: config.maxRecordBytes, maxFrames: maxEntries - trusted,
      quarantine: config.quarantineDamaged === true,
    });
    reportCorruptFrames(scan.corruptFrames, files.storePath, report);
    reportQuarantined(scan.quarantined, files.storePath, report);
    // Index entries are written after their frames (under `always`, after the frames'
    // fdatasync), so an indexed record that fails to verify was written whole (and under
    // `always` was durable): it is damage, not a torn tail to cut. Except when the store ends
    // before even the last indexed frame's header does: that frame never reached the disk whole,
    // so no fdatasync covered it. Files written under another policy (or by an older version)
    // can hold an index page the kernel wrote back before the frames it names.
    const scannedEnd = trusted + scan.positions.length;
    const lastFrameHeaderTorn = scannedEnd === indexed - 1 && storeSizeBytes - scan.validEndBytes < FRAME_HEADER_BYTES;
    if (scan.validEndBytes < storeSizeBytes && scannedEnd < indexed && !lastFrameHeaderTorn) {
      const firstOffset = base + scannedEnd;
      const missing = indexed - scannedEnd;
      const indexedAt = (i: number): number => decodeIndexEntry(index, i).positionBytes;
      const aligned = indexedAt(scannedEnd) === scan.validEndBytes;
      if (missing === 1 && aligned) {
        scan.positions.push(scan.validEndBytes);
        reportCorruptFrames([{ offset: firstOffset, positionBytes: scan.validEndBytes }], files.storePath, report);
      } else if (config.quarantineDamaged === true && storeSizeBytes - scan.validEndBytes >= missing) {
        for (let i = 0; i < missing; i++) scan.positions.push(aligned ? indexedAt(scannedEnd + i) : scan.validEndBytes + i);
        reportQuarantined(
          [{ firstOffset, endOffset: firstOffset + missing, positionBytes: scan.validEndBytes, endBytes: storeSizeBytes }],
          files.storePath, report,
        );
      } else {
        throw new CorruptionError(
          files.storePath, scan.validEndBytes,
          `records for offsets ${firstOffset} to ${firstOffset + missing - 1} are indexed (written whole, and acknowledged unless the ` +
            'process died before their fsync) but fail to verify; refusing to cut them: restore from a replica or backup, ' +
            'or start with --quarantine-damaged to serve them as DATA_LOSS',
          { firstOffset, evidenceEndOffset: firstOffset + missing - 1 },
        );
      }
      scan.validEndBytes = storeSizeBytes;
    }
    const entryCount = trusted + scan.positions.length;
    const rebuilt = scan.positions.length;
    if (rebuilt > 0) {
      report.rebuiltIndexEntries += rebuilt;
      report.actions.push(`rebuilt ${rebuilt} index entries of ${files.indexPath} from its store`);
    }
    if (scan.validEndBytes < storeSizeBytes) {
      const dropped = storeSizeBytes - scan.validEndBytes;
      report.droppedTailBytes += dropped;
      report.droppedTailRecords += 1;
      report.actions.push(
        `cut a torn tail of ${dropped} bytes from ${files.storePath} at byte ${scan.validEndBytes} ` +
          `(the record for offset ${base + entryCount} was never written whole, so never acknowledged)`,
      );
      io.truncate(files.storeFd, scan.validEndBytes);
    }
    // Rebuilt entries are rewritten even when the file already has the right length (entries
    // zeroed or damaged inside it; rebuilt > 0 means trusted < fileEntries): reads take their
    // positions from the file.
    if (trusted !== fileEntries || entryCount !== fileEntries || indexBytes !== entryCount * INDEX_ENTRY_BYTES) {
      // Entries [0, trusted) are in the file as they should be; rewrite the rest from the scan.
      io.truncate(files.indexFd, trusted * INDEX_ENTRY_BYTES);
      const rewritten = Buffer.allocUnsafe(scan.positions.length * INDEX_ENTRY_BYTES);
      for (let i = 0; i < scan.positions.length; i++) encodeIndexEntry(rewritten, trusted + i, scan.positions[i]!, trusted);
      if (rewritten.length > 0) io.write(files.indexFd, rewritten, trusted * INDEX_ENTRY_BYTES);
      if (fileEntries > entryCount) {
        report.actions.push(`dropped ${fileEntries - entryCount} index entries of ${files.indexPath} that pointed beyond the valid store`);
      }
    }
    if (report.actions.length > 0) {
      io.fsyncSync(files.storeFd);
      io.fsyncSync(files.indexFd);
    }
    return Segment.fromRecovered(io, dir, base, { ...files, entryCount, storeSizeBytes: scan.validEndBytes, active: true });
  } catch (error) {
    io.close(files.storeFd);
    io.close(files.indexFd);
    throw error;
  }
}

/** How many leading index entries are well-formed: entry i names i, positions increase, inside the store. */
function soundPrefix(index: Buffer, entries: number, storeSizeBytes: number): number {
  let previous = -1;
  for (let i = 0; i < entries; i++) {
    const entry = decodeIndexEntry(index, i);
    if (entry.relativeOffset !== i || entry.positionBytes <= previous || entry.positionBytes >= storeSizeBytes) return i;
    if (i === 0 && entry.positionBytes !== 0) return 0;
    previous = entry.positionBytes;
  }
  return entries;
}

/** Replaces an index file's contents with entries for `positions`. */
function writeIndex(io: FileIo, fd: number, positions: number[]): void {
  const buffer = Buffer.allocUnsafe(positions.length * INDEX_ENTRY_BYTES);
  for (let i = 0; i < positions.length; i++) encodeIndexEntry(buffer, i, positions[i]!);
  io.truncate(fd, 0);
  if (buffer.length > 0) io.write(fd, buffer, 0);
  io.fsyncSync(fd);
}

function reportQuarantined(ranges: ScanResult['quarantined'], path: string, report: RecoveryReport): void {
  for (const range of ranges) {
    report.quarantinedOffsets.push(range.firstOffset);
    report.actions.push(
      `CORRUPT, QUARANTINED: records for offsets ${range.firstOffset} to ${range.endOffset - 1} in ${path} at bytes ` +
        `${range.positionBytes} to ${range.endBytes} cannot be delimited; kept in place as a damaged range (reads of it fail ` +
        'with DATA_LOSS) because quarantineDamaged is set',
    );
  }
}

function reportCorruptFrames(frames: { offset: number; positionBytes: number }[], path: string, report: RecoveryReport): void {
  for (const frame of frames) {
    report.damagedOffsets.push(frame.offset);
    report.actions.push(
      `CORRUPT: record for offset ${frame.offset} in ${path} at byte ${frame.positionBytes} fails its checksum; ` +
        'kept in place (reads of it fail with DATA_LOSS) so the records after it stay readable',
    );
  }
}
