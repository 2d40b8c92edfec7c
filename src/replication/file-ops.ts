/**
 * The few file-system calls the Raft storage makes outside the commit log (small state files and
 * the control-entry side file): a subset of the storage's FileIo, so that tests can stop the
 * process between any two of them, and the simulator's disk (a FileIo) serves both.
 */
import { join } from 'node:path';
import { NODE_FILE_IO, type FileIo } from '../storage/index.js';

export type FileOps = Pick<FileIo, 'open' | 'write' | 'truncate' | 'fsync' | 'close' | 'rename' | 'remove'>;

export const NODE_FILE_OPS: FileOps = NODE_FILE_IO;

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
