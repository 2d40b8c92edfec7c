/**
 * Failpoints: faults injected into a running node for tests, in the style of etcd's gofail. They
 * are compiled in and inert unless the environment variable ANNAL_FAILPOINTS is set when the
 * process starts; unset, a call site costs one comparison (`failpoints !== undefined`).
 *
 *     ANNAL_FAILPOINTS=fsync-delay=200ms,fsync-error=1%,seed=7 annal agent ...
 *
 * Terms, comma-separated:
 * - `fsync-delay=<n>ms|<n>s`: every fsync waits this long first (a slow disk).
 * - `fsync-error=<p>%`: that fraction of fsyncs fail with EIO instead of syncing (a failing disk).
 * - `sync-report=<path>`: after every successful fsync of a regular file, the file's length when
 *   the fsync began (what is now durable) is recorded in the JSON object at `path`
 *   ({"<file>": bytes}), and after every successful fsync of a directory, the names it held when
 *   that fsync began ({"<dir>": ["name", ...]}: the entries now durable); the object is replaced
 *   atomically (rename) so that it survives kill -9. A harness simulates power loss by removing
 *   the files created in a reported directory after its last fsync and truncating each file to
 *   its recorded length. The object is loaded at start, so it covers every incarnation of the
 *   node. Synchronous fsyncs are reported too (nothing else is injected into them).
 * - `unsafe-skip-fsync`: fsync returns success without syncing, so writes are acknowledged before
 *   they are durable on any replica: a deliberately broken build, for proving that a power-loss
 *   test catches it. With sync-report, the skipped files are recorded with nothing made durable.
 * - `seed=<n>`: the seed of the pseudo-random choices (default: from the clock).
 *
 * Call sites: the fsyncs of the commit log's segments and directory (src/storage) and of the Raft
 * storage's files (src/replication/file-ops.ts). Synchronous fsyncs on recovery and truncation
 * paths are not hooked.
 */
import { fstatSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { Prng } from '../util/index.js';

export const FAILPOINTS_ENV = 'ANNAL_FAILPOINTS';

export class FailpointSpecError extends Error {
  override readonly name = 'FailpointSpecError';
}

export interface FailpointSpec {
  readonly fsyncDelayMs: number;
  /** In [0, 1]. */
  readonly fsyncErrorRatio: number;
  readonly syncReportPath: string | undefined;
  readonly skipFsync: boolean;
  readonly seed: number;
}

export function parseFailpoints(text: string): FailpointSpec {
  let fsyncDelayMs = 0;
  let fsyncErrorRatio = 0;
  let syncReportPath: string | undefined;
  let skipFsync = false;
  let seed = Date.now() >>> 0;
  for (const term of text.split(',').map((t) => t.trim()).filter((t) => t !== '')) {
    const eq = term.indexOf('=');
    const name = eq < 0 ? term : term.slice(0, eq);
    const value = eq < 0 ? '' : term.slice(eq + 1);
    switch (name) {
      case 'fsync-delay': {
        const match = /^(\d+)(ms|s)$/.exec(value);
        if (match === null) throw new FailpointSpecError(`${FAILPOINTS_ENV}: fsync-delay=${value}: expected <n>ms or <n>s`);
        fsyncDelayMs = Number(match[1]) * (match[2] === 's' ? 1000 : 1);
        break;
      }
      case 'fsync-error': {
        const match = /^(\d+(?:\.\d+)?)%$/.exec(value);
        if (match === null || Number(match[1]) > 100) throw new FailpointSpecError(`${FAILPOINTS_ENV}: fsync-error=${value}: expected a percentage such as 1%`);
        fsyncErrorRatio = Number(match[1]) / 100;
        break;
      }
      case 'sync-report':
        if (value === '') throw new FailpointSpecError(`${FAILPOINTS_ENV}: sync-report needs a file path`);
        syncReportPath = value;
        break;
      case 'unsafe-skip-fsync':
        skipFsync = true;
        break;
      case 'seed':
        if (!/^\d+$/.test(value)) throw new FailpointSpecError(`${FAILPOINTS_ENV}: seed=${value}: expected an integer`);
        seed = Number(value) >>> 0;
        break;
      default:
        throw new FailpointSpecError(`${FAILPOINTS_ENV}: unknown failpoint "${name}" (known: fsync-delay, fsync-error, sync-report, unsafe-skip-fsync, seed)`);
    }
  }
  return { fsyncDelayMs, fsyncErrorRatio, syncReportPath, skipFsync, seed };
}

/** Durable state per path: a file's synced length, or the names a directory's last fsync covered. */
export type SyncReport = Record<string, number | string[]>;

export class Failpoints {
  private readonly prng: Prng;
  private readonly durable: SyncReport;

  constructor(readonly spec: FailpointSpec) {
    this.prng = new Prng(spec.seed);
    this.durable = spec.syncReportPath === undefined ? {} : loadReport(spec.syncReportPath);
  }

  /** Runs `sync` (node:fs fsync or fdatasync) on `fd` with the configured faults around it. */
  async fsync(fd: number, sync: (fd: number, callback: (error: Error | null) => void) => void): Promise<void> {
    const report = this.spec.syncReportPath;
    const file = report === undefined ? undefined : durableState(fd);
    if (this.spec.fsyncDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.spec.fsyncDelayMs));
    if (this.spec.fsyncErrorRatio > 0 && this.prng.chance(this.spec.fsyncErrorRatio)) {
      throw Object.assign(new Error('EIO: i/o error, fsync (failpoint fsync-error)'), { code: 'EIO', errno: -5, syscall: 'fsync' });
    }
    if (this.spec.skipFsync) {
      if (file !== undefined && !(file.path in this.durable)) this.record(report!, file.path, typeof file.state === 'number' ? 0 : []);
      return;
    }
    await new Promise<void>((resolve, reject) => sync(fd, (error) => (error ? reject(error) : resolve())));
    if (file !== undefined) this.record(report!, file.path, file.state);
  }

  /** A synchronous fsync (recovery, truncation, a segment roll): reported, no fault injected. */
  fsyncSync(fd: number, sync: (fd: number) => void): void {
    const report = this.spec.syncReportPath;
    const file = report === undefined ? undefined : durableState(fd);
    sync(fd);
    if (file !== undefined) this.record(report!, file.path, file.state);
  }

  private record(report: string, path: string, state: number | string[]): void {
    this.durable[path] = state;
    const temporary = `${report}.tmp`;
    writeFileSync(temporary, JSON.stringify(this.durable));
    renameSync(temporary, report);
  }
}

/** What an fsync of `fd` makes durable, read before it: a regular file's length, a directory's names. */
function durableState(fd: number): { path: string; state: number | string[] } | undefined {
  const stat = fstatSync(fd);
  if (!stat.isFile() && !stat.isDirectory()) return undefined;
  const path = readlinkSync(`/proc/self/fd/${fd}`);
  return { path, state: stat.isFile() ? stat.size : readdirSync(path).sort() };
}

function loadReport(path: string): SyncReport {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as SyncReport;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
}

function fromEnvironment(): Failpoints | undefined {
  const text = process.env[FAILPOINTS_ENV];
  if (text === undefined || text.trim() === '') return undefined;
  return new Failpoints(parseFailpoints(text));
}

/** The process's failpoints, or undefined (the normal case) when ANNAL_FAILPOINTS is unset. */
export const failpoints: Failpoints | undefined = fromEnvironment();
