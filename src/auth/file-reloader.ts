/**
 * Reloads something built from files (TLS material, the ACL) when those files change, without a
 * restart. Three triggers, because each misses cases the others catch:
 * - fs.watch on the files' directories: prompt, and it sees a file replaced by rename (the way
 *   certificate tools and `annal certs` write), which a watch on the file itself would lose;
 * - a periodic stat of each file (`pollIntervalMs`): fs.watch is not reliable on every file
 *   system (network mounts, some container volumes);
 * - `reload()`, which the agent calls on SIGHUP.
 * A change is loaded and checked in full before it replaces anything; a failed load is logged
 * with its reason and the old value stays in force. Reloads never overlap: the triggers that
 * arrive during a reload share one queued reload.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { assert } from '../util/index.js';
import type { AuthLogger } from './logger.js';

export interface FileReloaderOptions<T> {
  /** What is reloaded, for log lines ("server TLS certificate", "ACL policy"). */
  name: string;
  paths: readonly string[];
  /** Reads and checks the files; throws to reject them. */
  load: () => Promise<T>;
  /** Puts a successfully loaded value in force. */
  apply: (value: T) => void;
  logger: AuthLogger;
  /** How often each file is stat'ed as a fallback to fs.watch. Default 2000 ms; 0 disables polling. */
  pollIntervalMs?: number;
  /** Use fs.watch (default true); false leaves polling and reload() (tests of the fallback). */
  watch?: boolean;
  /** Quiet time after a watch event before reloading, so that a burst of writes loads once. Default 100 ms. */
  debounceMs?: number;
}

export type ReloadOutcome = { type: 'applied' } | { type: 'unchanged' } | { type: 'rejected'; error: Error };

export class FileReloader<T> {
  private readonly watchers: FSWatcher[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  /** Signature (stat fields of every path) of the files last loaded, whether accepted or not. */
  private loadedSignature = '';
  private running: Promise<ReloadOutcome> | undefined;
  /** The one check queued behind `running`; `force` if any trigger asked to bypass the stat check. */
  private queued: { force: boolean; outcome: Promise<ReloadOutcome> } | undefined;
  private closed = false;

  private constructor(private readonly options: FileReloaderOptions<T>) {}

  /** Loads and applies the files once (throwing if they are bad), then watches them. */
  static async start<T>(options: FileReloaderOptions<T>): Promise<FileReloader<T>> {
    assert(options.paths.length > 0, 'FileReloader needs at least one path');
    const reloader = new FileReloader(options);
    reloader.loadedSignature = await signatureOf(options.paths);
    options.apply(await options.load());
    reloader.watch();
    return reloader;
  }

  /**
   * Loads the files now even if their stat is unchanged (SIGHUP). Resolves with what happened;
   * never rejects: a bad file is an outcome, logged here.
   */
  reload(): Promise<ReloadOutcome> {
    return this.runExclusive(true);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.debounceTimer);
    for (const watcher of this.watchers) watcher.close();
  }

  private watch(): void {
    const names = new Set(this.options.paths.map((path) => basename(path)));
    const directories = this.options.watch === false ? [] : new Set(this.options.paths.map((path) => dirname(path)));
    for (const directory of directories) {
      try {
        const watcher = watch(directory, { persistent: false }, (_event, filename) => {
          if (filename === null || names.has(basename(filename.toString()))) this.scheduleCheck();
        });
        watcher.on('error', (error) => this.options.logger.warn({ directory, error: error.message }, `${this.options.name}: file watch failed; polling only`));
        this.watchers.push(watcher);
      } catch (error) {
        this.options.logger.warn({ directory, error: (error as Error).message }, `${this.options.name}: cannot watch; polling only`);
      }
    }
    const pollIntervalMs = this.options.pollIntervalMs ?? 2000;
    if (pollIntervalMs > 0) {
      this.pollTimer = setInterval(() => void this.runExclusive(false), pollIntervalMs);
      this.pollTimer.unref();
    }
  }

  private scheduleCheck(): void {
    if (this.closed) return;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.runExclusive(false), this.options.debounceMs ?? 100);
    this.debounceTimer.unref();
  }

  /** Runs a check now, or queues one (at most one) behind the running one. */
  private runExclusive(force: boolean): Promise<ReloadOutcome> {
    if (this.running === undefined) return this.startCheck(force);
    if (this.queued === undefined) {
      const queued = { force, outcome: Promise.resolve<ReloadOutcome>({ type: 'unchanged' }) };
      // `running` settles after its own cleanup, so the queued check starts on a free slot.
      queued.outcome = this.running.then(() => {
        this.queued = undefined;
        return this.startCheck(queued.force);
      });
      this.queued = queued;
    } else {
      this.queued.force ||= force;
    }
    return this.queued.outcome;
  }

  private startCheck(force: boolean): Promise<ReloadOutcome> {
    assert(this.running === undefined, 'one reload at a time');
    const run: Promise<ReloadOutcome> = this.check(force).finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async check(force: boolean): Promise<ReloadOutcome> {
    if (this.closed) return { type: 'unchanged' };
    const signature = await signatureOf(this.options.paths);
    if (!force && signature === this.loadedSignature) return { type: 'unchanged' };
    this.loadedSignature = signature;
    let value: T;
    try {
      value = await this.options.load();
    } catch (error) {
      const reason = error instanceof Error ? error : new Error(String(error));
      this.options.logger.error(
        { files: this.options.paths, error: reason.message },
        `${this.options.name}: rejected the new files; the previous ones stay in force`,
      );
      return { type: 'rejected', error: reason };
    }
    if (this.closed) return { type: 'unchanged' };
    this.options.apply(value);
    this.options.logger.info({ files: this.options.paths }, `${this.options.name}: reloaded`);
    return { type: 'applied' };
  }
}

/** Identity of the files' current contents as far as stat can tell (a missing file counts too). */
async function signatureOf(paths: readonly string[]): Promise<string> {
  const parts = await Promise.all(
    paths.map(async (path) => {
      try {
        const info = await stat(path, { bigint: true });
        return `${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
      } catch {
        return 'missing';
      }
    }),
  );
  return parts.join('|');
}
