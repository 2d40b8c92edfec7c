/**
 * The few file-system calls the Raft storage makes outside the commit log (small state files and
 * the control-entry side file), behind an interface so that tests can stop the process between
 * any two of them. Everything else (reads, the commit log itself) uses node:fs directly.
 */
import { closeSync, fsync, ftruncateSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { failpoints } from '../failpoints/index.js';
import { assert } from '../util/index.js';

export interface FileOps {
  /** Opens a file with node:fs flags ('w' creates or truncates); 'r' on a directory, for fsync. */
  open(path: string, flags: 'r' | 'r+' | 'w'): number;
  /** Writes all of `data` at byte `position`. */
  write(fd: number, data: Uint8Array, position: number): void;
  truncate(fd: number, lengthBytes: number): void;
  /** fsync on the thread pool (files and directories). */
  fsync(fd: number): Promise<void>;
  close(fd: number): void;
  rename(from: string, to: string): void;
  /** Removes a file or a directory tree; nothing if it is absent. */
  remove(path: string): void;
}

export const NODE_FILE_OPS: FileOps = Object.freeze({
  open: (path: string, flags: 'r' | 'r+' | 'w') => openSync(path, flags),
  write(fd: number, data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.length) {
      const n = writeSync(fd, data, done, data.length - done, position + done);
      assert(n > 0, 'write made no progress');
      done += n;
    }
  },
  truncate: (fd: number, lengthBytes: number) => ftruncateSync(fd, lengthBytes),
  fsync: (fd: number) => failpoints !== undefined ? failpoints.fsync(fd, fsync) : new Promise<void>((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve()))),
  close: (fd: number) => closeSync(fd),
  rename: (from: string, to: string) => renameSync(from, to),
  remove: (path: string) => rmSync(path, { recursive: true, force: true }),
});

export const TEMP_SUFFIX = '.tmp';

/**
 * Replaces `dir/name` with `data` so that a crash leaves either the old or the new contents:
 * write a temp file, fsync it, rename it over the target, fsync the directory (`dirFd`).
 */
export async function writeFileAtomic(ops: FileOps, dir: string, dirFd: number, name: string, data: Uint8Array): Promise<void> {
  const path = join(dir, name);
  const temp = path + TEMP_SUFFIX;
  const fd = ops.open(temp, 'w');
  try {
    ops.write(fd, data, 0);
    await ops.fsync(fd);
  } finally {
    ops.close(fd);
  }
  ops.rename(temp, path);
  await ops.fsync(dirFd);
}
