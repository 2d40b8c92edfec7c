/**
 * Test support: a small tmpfs of the test's own (a full disk on demand), mounted in a temp dir
 * and unmounted at the end. Mounting needs root; where it is refused, `skipReason` says why and
 * tests skip with it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  /** The mount point (an empty temp dir when mounting was refused). */
  readonly dir: string;
  /** Why there is no tmpfs, or undefined when it is mounted. */
  readonly skipReason: string | undefined;
  /** Changes the size in place (a full disk gets space again); only when mounted. */
  resize(size: string): void;
  /** Unmounts (lazily: a failed test may leave files open) and removes the mount point. */
  remove(): void;
}

export function mountTmpfs(prefix: string, size = '8m'): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let skipReason: string | undefined;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    skipReason = `cannot mount a tmpfs (needs root): ${String((error as Error).message).split('\n')[0]}`;
  }
  return {
    dir,
    skipReason,
    resize: (next: string) => {
      execFileSync('mount', ['-o', `remount,size=${next}`, dir], { stdio: 'pipe' });
    },
    remove: () => {
      if (skipReason === undefined) execFileSync('umount', ['-l', dir]);
      rmdirSync(dir);
    },
  };
}
