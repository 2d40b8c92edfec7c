/**
 * Small JSON files replaced atomically: write a temporary file, fsync it, rename it over the
 * old one, fsync the directory. A crash at any point leaves the old file or the new one. The
 * calls go through the storage's FileIo (node:fs in production, the simulator's disk in tests).
 */
import { basename, dirname, join } from 'node:path';
import { crc32, type FileIo } from '../storage/index.js';
import { CorruptionError } from '../util/index.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });
const HEADER = 'annal-state crc32=';
const HEADER_PATTERN = /^annal-state crc32=([0-9a-f]{8})\n$/;
/** The header line's length: the prefix, 8 hex digits, the newline. */
const HEADER_BYTES = HEADER.length + 9;

/**
 * A state file's bytes: a header line with the CRC-32 of the JSON line that follows. A bit flip
 * that leaves valid JSON (a term, a vote, where the log begins) would otherwise be taken as the
 * truth; with the checksum it is damage, handled as a file that does not parse.
 */
export function encodeStateFile(value: unknown): Uint8Array {
  const json = encoder.encode(JSON.stringify(value));
  const header = encoder.encode(`${HEADER}${crc32(json).toString(16).padStart(8, '0')}\n`);
  const bytes = new Uint8Array(header.length + json.length + 1);
  bytes.set(header, 0);
  bytes.set(json, header.length);
  bytes[bytes.length - 1] = 0x0a;
  return bytes;
}

/**
 * The value of a state file's bytes, or CorruptionError. A file that starts with `{` was written
 * before files had a checksum and is taken as it parses (no prefix of a checked file starts so).
 */
export function decodeStateFile(bytes: Uint8Array, path: string): unknown {
  let json = bytes;
  if (bytes[0] !== 0x7b) {
    const header = HEADER_PATTERN.exec(decoder.decode(bytes.subarray(0, HEADER_BYTES)));
    if (header === null) throw new CorruptionError(path, 0, 'no state-file header; it was written atomically, so this is damage, not a torn write');
    if (bytes[bytes.length - 1] !== 0x0a) throw new CorruptionError(path, HEADER_BYTES, 'the JSON line does not end the file; it was written atomically, so this is damage');
    json = bytes.subarray(HEADER_BYTES, bytes.length - 1);
    if (crc32(json) !== Number.parseInt(header[1]!, 16)) throw new CorruptionError(path, HEADER_BYTES, 'checksum mismatch: the file was damaged after it was written');
  }
  try {
    return JSON.parse(decoder.decode(json)) as unknown;
  } catch (error) {
    throw new CorruptionError(path, 0, `not valid JSON (${(error as Error).message}); it was written atomically, so this is damage, not a torn write`);
  }
}

export function writeJsonAtomic(io: FileIo, path: string, value: unknown): void {
  const temporary = join(dirname(path), `.${basename(path)}.tmp`);
  const fd = io.open(temporary, 'w');
  try {
    io.write(fd, encodeStateFile(value), 0);
    io.fsyncSync(fd);
  } finally {
    io.close(fd);
  }
  io.rename(temporary, path);
  const dirFd = io.open(dirname(path), 'r');
  try {
    io.fsyncSync(dirFd);
  } finally {
    io.close(dirFd);
  }
}

/** The parsed file, or undefined if it does not exist; a file that does not parse is an error. */
export function readJsonFile(io: FileIo, path: string): unknown {
  let bytes: Uint8Array;
  try {
    bytes = io.readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // A file the device cannot read is damaged like one that fails its checksum.
    if ((error as NodeJS.ErrnoException).code === 'EIO') throw new CorruptionError(path, 0, 'the device failed to read it (EIO)');
    throw error;
  }
  return decodeStateFile(bytes, path);
}
