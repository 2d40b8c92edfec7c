/**
 * Deliberately broken file-I/O layers for the replica simulator's variants: a FileIo around the
 * simulated disk that mishandles the disk's errors as a careless node:fs wrapper would. The
 * production FileIo (storage/file-io.ts) has no such branches; the simulator passes this one in
 * place of the disk.
 */
import type { FileIo } from '../storage/index.js';

export interface FileIoFaults {
  /** An fsync that failed reports success (the error is swallowed), so its writes are acknowledged. */
  readonly ignoreFsyncErrors?: boolean;
  /** A write the disk refuses for lack of space reports success, having written nothing. */
  readonly ignoreNoSpace?: boolean;
}

function code(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

export function faultyFileIo(io: FileIo, faults: FileIoFaults): FileIo {
  if (faults.ignoreFsyncErrors !== true && faults.ignoreNoSpace !== true) return io;
  const swallowNoSpace = <A extends unknown[]>(write: (...args: A) => void) => (...args: A): void => {
    try {
      write(...args);
    } catch (error) {
      if (faults.ignoreNoSpace !== true || code(error) !== 'ENOSPC') throw error;
    }
  };
  const swallowSyncError = (sync: (fd: number) => Promise<void>) => (fd: number): Promise<void> =>
    faults.ignoreFsyncErrors === true ? sync(fd).catch((error: unknown) => (code(error) === 'EIO' ? undefined : Promise.reject(error))) : sync(fd);
  return {
    open: (path, flags) => io.open(path, flags),
    close: (fd) => io.close(fd),
    read: (fd, target, offset, length, position) => io.read(fd, target, offset, length, position),
    write: swallowNoSpace((fd: number, data: Uint8Array, position: number) => io.write(fd, data, position)),
    writev: swallowNoSpace((fd: number, buffers: readonly Uint8Array[], position: number) => io.writev(fd, buffers, position)),
    truncate: swallowNoSpace((fd: number, lengthBytes: number) => io.truncate(fd, lengthBytes)),
    sizeBytes: (fd) => io.sizeBytes(fd),
    fsyncSync: (fd) => {
      try {
        io.fsyncSync(fd);
      } catch (error) {
        if (faults.ignoreFsyncErrors !== true || code(error) !== 'EIO') throw error;
      }
    },
    fsync: swallowSyncError((fd) => io.fsync(fd)),
    fdatasync: swallowSyncError((fd) => io.fdatasync(fd)),
    readFile: (path) => io.readFile(path),
    rename: (from, to) => io.rename(from, to),
    copyFile: swallowNoSpace((from: string, to: string) => io.copyFile(from, to)),
    unlink: (path) => io.unlink(path),
    remove: (path) => io.remove(path),
    readdir: (dir) => io.readdir(dir),
    mkdir: (dir) => io.mkdir(dir),
    kind: (path) => io.kind(path),
    modifiedMs: (path) => io.modifiedMs(path),
    checkWritable: (dir) => io.checkWritable(dir),
    lock: (dir) => io.lock(dir),
  };
}
