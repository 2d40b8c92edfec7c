/**
 * An exclusive lock on a log directory, so two processes never append to the same files.
 *
 * Node has no flock(2), so the lock is a `LOCK` file created with O_EXCL holding the owner's pid
 * and, on Linux, its start time from /proc (pids are reused, and a container's agent is often pid
 * 1 on every start: the start time tells a live owner from a stale file left by kill -9).
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../util/index.js';

export const LOCK_FILE_NAME = 'LOCK';

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), if known. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

function ownerAlive(pid: number, startTime: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const current = processStartTime(pid);
  return startTime === undefined || current === undefined || current === startTime;
}

/** Takes the lock or throws InvalidArgumentError naming the owner. Returns the release function. */
export function lockDirectory(dir: string): () => void {
  const path = join(dir, LOCK_FILE_NAME);
  const contents = `${process.pid} ${processStartTime(process.pid) ?? '-'}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      try {
        writeSync(fd, contents);
      } finally {
        closeSync(fd);
      }
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new InvalidArgumentError(`cannot lock ${dir}: ${(error as Error).message}`, { cause: error });
      }
    }
    let owner = '';
    try {
      owner = readFileSync(path, 'utf8');
    } catch {
      continue; // released between our open and read: try again
    }
    const [pidText, startText] = owner.trim().split(' ');
    const pid = Number(pidText);
    if (Number.isSafeInteger(pid) && pid > 0 && ownerAlive(pid, startText === '-' ? undefined : startText)) {
      const who = pid === process.pid ? 'this process (the log is already open)' : `process ${pid}`;
      throw new InvalidArgumentError(`data dir ${dir} is in use by ${who}; if no annal process owns it, remove ${path}`);
    }
    rmSync(path, { force: true }); // stale: its owner is gone
  }
  throw new InvalidArgumentError(`cannot lock ${dir}: the lock file keeps changing hands`);
}
