/**
 * The file-system calls the storage makes, behind one interface: node:fs in production, and in
 * tests the simulator's disk (which loses unsynced writes at a crash, tears writes, flips bits,
 * fails fsyncs and runs out of space). The commit log, its recovery and the Raft storage's small
 * files all go through it. The calls mirror node:fs (synchronous except fsync/fdatasync, which
 * run on the thread pool) so the production path costs one indirection.
 */
import {
  accessSync, closeSync, constants, copyFileSync, fdatasync, fstatSync, fsync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync,
  readFileSync, readSync, renameSync, rmSync, statSync, unlinkSync, writeSync, writevSync,
} from 'node:fs';
import { failpoints } from '../failpoints/index.js';
import { assert } from '../util/index.js';
import { lockDirectory } from './dir-lock.js';

/** node:fs open flags the storage uses ('wx+' creates and fails if the file exists; 'r' on a directory, for fsync). */
export type OpenFlags = 'r' | 'r+' | 'w' | 'wx' | 'wx+' | 'a+';

export interface FileIo {
  open(path: string, flags: OpenFlags): number;
  close(fd: number): void;
  /** Reads up to `length` bytes at `position` into `target` from `offset`; returns the count (0 at the end). */
  read(fd: number, target: Uint8Array, offset: number, length: number, position: number): number;
  /** Writes all of `data` at byte `position`. */
  write(fd: number, data: Uint8Array, position: number): void;
  /** Writes all of `buffers`, in order, from byte `position`. */
  writev(fd: number, buffers: readonly Uint8Array[], position: number): void;
  truncate(fd: number, lengthBytes: number): void;
  sizeBytes(fd: number): number;
  /** fsync now, on this thread (files and directories). */
  fsyncSync(fd: number): void;
  /** fsync on the thread pool (files and directories). */
  fsync(fd: number): Promise<void>;
  /** fdatasync on the thread pool. */
  fdatasync(fd: number): Promise<void>;
  readFile(path: string): Buffer;
  rename(from: string, to: string): void;
  copyFile(from: string, to: string): void;
  unlink(path: string): void;
  /** Removes a file or a directory tree; nothing if it is absent. */
  remove(path: string): void;
  readdir(dir: string): string[];
  /** Creates a directory and its parents (nothing if it exists). */
  mkdir(dir: string): void;
  /** Whether `path` is a directory, a file, or absent. */
  kind(path: string): 'directory' | 'file' | 'absent';
  /** The file's modification time (stat's mtime), ms since the epoch. */
  modifiedMs(path: string): number;
  /** Throws unless `dir` is readable, writable and searchable. */
  checkWritable(dir: string): void;
  /**
   * Takes an exclusive lock on `dir` so two processes never write the same files; throws
   * InvalidArgumentError naming the owner. Returns the release function.
   */
  lock(dir: string): () => void;
}

export const NODE_FILE_IO: FileIo = Object.freeze({
  open: (path: string, flags: OpenFlags) => openSync(path, flags),
  close: (fd: number) => closeSync(fd),
  read: (fd: number, target: Uint8Array, offset: number, length: number, position: number) => readSync(fd, target, offset, length, position),
  write(fd: number, data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.length) {
      const n = writeSync(fd, data, done, data.length - done, position + done);
      assert(n > 0, 'write made no progress');
      done += n;
    }
  },
  writev(fd: number, buffers: readonly Uint8Array[], position: number): void {
    let expected = 0;
    for (const buffer of buffers) expected += buffer.length;
    // Regular files take a whole pwritev unless the device fails mid-way (then it throws).
    const written = writevSync(fd, buffers as Uint8Array[], position);
    assert(written === expected, `short write: ${written} of ${expected} bytes`);
  },
  truncate: (fd: number, lengthBytes: number) => ftruncateSync(fd, lengthBytes),
  sizeBytes: (fd: number) => fstatSync(fd).size,
  fsyncSync: (fd: number) => (failpoints !== undefined ? failpoints.fsyncSync(fd, fsyncSync) : fsyncSync(fd)),
  fsync: (fd: number) =>
    failpoints !== undefined ? failpoints.fsync(fd, fsync) : new Promise<void>((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve()))),
  fdatasync: (fd: number) =>
    failpoints !== undefined ? failpoints.fsync(fd, fdatasync) : new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
  readFile: (path: string) => readFileSync(path),
  rename: (from: string, to: string) => renameSync(from, to),
  copyFile: (from: string, to: string) => copyFileSync(from, to),
  unlink: (path: string) => unlinkSync(path),
  remove: (path: string) => rmSync(path, { recursive: true, force: true }),
  readdir: (dir: string) => readdirSync(dir),
  mkdir: (dir: string) => void mkdirSync(dir, { recursive: true }),
  kind(path: string): 'directory' | 'file' | 'absent' {
    const stat = statSync(path, { throwIfNoEntry: false });
    return stat === undefined ? 'absent' : stat.isDirectory() ? 'directory' : 'file';
  },
  modifiedMs: (path: string) => statSync(path).mtimeMs,
  checkWritable: (dir: string) => accessSync(dir, constants.W_OK | constants.R_OK | constants.X_OK),
  lock: (dir: string) => lockDirectory(dir),
});
