/**
 * Small JSON files replaced atomically: write a temporary file, fsync it, rename it over the
 * old one, fsync the directory. A crash at any point leaves the old file or the new one. The
 * calls go through the storage's FileIo (node:fs in production, the simulator's disk in tests).
 */
import { basename, dirname, join } from 'node:path';
import type { FileIo } from '../storage/index.js';
import { CorruptionError } from '../util/index.js';

const encoder = new TextEncoder();

export function writeJsonAtomic(io: FileIo, path: string, value: unknown): void {
  const temporary = join(dirname(path), `.${basename(path)}.tmp`);
  const fd = io.open(temporary, 'w');
  try {
    io.write(fd, encoder.encode(JSON.stringify(value) + '\n'), 0);
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
  let text: string;
  try {
    text = io.readFile(path).toString('utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CorruptionError(path, 0, `not valid JSON (${(error as Error).message}); it was written atomically, so this is damage, not a torn write`);
  }
}
