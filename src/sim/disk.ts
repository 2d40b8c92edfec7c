/**
 * A simulated disk (a FileIo): files live in memory with two states, what reads see (the page
 * cache) and what survives a crash (synced). Seeded, it
 * - loses writes not yet fsynced at a crash, keeping a random prefix of them, the last one torn
 *   at a random byte (data=ordered: a file's writes reach the platter in order);
 * - loses directory changes (created, renamed and removed names) not yet made durable by an
 *   fsync of the directory, keeping a random prefix of them;
 * - fails an fsync with EIO: the writes it covered are dropped from the cache's dirty list, as
 *   Linux does, so reads still see them but no later fsync writes them (their pages must not be
 *   trusted: a crash loses them); directory changes stay pending (they are journaled);
 * - returns ENOSPC once the files would exceed the capacity;
 * - flips a bit of a synced byte at a crash;
 * - fails reads of a sector (EIO, a medium error) once told to, until the sector is written again;
 * - is slow: an fsync on the thread pool completes after a random number of event-loop turns.
 * Directories themselves (mkdir, and renaming one) are durable at once. A crash returns a new disk holding what
 * survived; the old one (and every descriptor and fsync in flight on it) is dead.
 */
import { dirname } from 'node:path';
import type { FileIo, OpenFlags } from '../storage/index.js';
import { InvalidArgumentError, Prng, assert } from '../util/index.js';

export interface SimDiskOptions {
  readonly seed: number;
  /** Probability that one fsync or fdatasync fails with EIO. Default 0. */
  readonly fsyncFailureProbability?: number;
  /** Bytes the files may hold in total; a write beyond fails with ENOSPC. Default: no limit. */
  readonly capacityBytes?: number;
  /** An fsync on the thread pool completes after 0 to this many event-loop turns. Default 0. */
  readonly syncDelayTurnsMax?: number;
  /**
   * Completes an fsync in flight: when set (the cluster simulator's event queue at a virtual
   * time), it replaces the event-loop turns, so when fsyncs finish depends only on the seed.
   */
  readonly scheduleSync?: (complete: () => void) => void;
  /** The clock files' modification times are read from (the simulator's virtual one). Default: 0. */
  readonly nowMs?: () => number;
}

export interface CrashOptions {
  /** Probability that one bit of one synced byte flips. Default 0. */
  readonly bitFlipProbability?: number;
  /** The restarted machine's capacity (an operator freed space). Default: unchanged. */
  readonly capacityBytes?: number;
}

type FileChange = ({ readonly kind: 'write'; readonly position: number; readonly bytes: Buffer } | { readonly kind: 'truncate'; readonly lengthBytes: number }) & {
  /** Order of the change on its disk, so an fsync covers exactly the changes made before it started. */
  readonly sequence?: number;
};

type NameChange = ({ readonly kind: 'link'; readonly path: string; readonly inode: Inode } | { readonly kind: 'unlink'; readonly path: string }) & {
  readonly sequence: number;
};

/** The unit the simulated device fails reads in. */
const SECTOR_BYTES = 512;

class Inode {
  /** What reads see. */
  data: Buffer;
  sizeBytes: number;
  /** What a crash keeps. */
  synced: Buffer;
  /** Changes since the last good fsync, in order. */
  unsynced: FileChange[] = [];
  /** When the file was last written or truncated. */
  modifiedMs = 0;
  /** Sectors (SECTOR_BYTES each, by index) the device fails to read, until they are written again. */
  readonly unreadableSectors = new Set<number>();

  constructor(synced: Buffer = Buffer.alloc(0)) {
    this.synced = synced;
    this.data = Buffer.from(synced);
    this.sizeBytes = synced.length;
  }

  apply(change: FileChange): void {
    if (change.kind === 'truncate') {
      this.resize(change.lengthBytes);
      for (const sector of this.unreadableSectors) if (sector * SECTOR_BYTES >= change.lengthBytes) this.unreadableSectors.delete(sector);
      return;
    }
    const end = change.position + change.bytes.length;
    // A drive remaps a bad sector when it is written (the page cache writes whole pages).
    for (const sector of this.unreadableSectors) {
      if (sector * SECTOR_BYTES < end && (sector + 1) * SECTOR_BYTES > change.position) this.unreadableSectors.delete(sector);
    }
    if (end > this.sizeBytes) this.resize(end);
    change.bytes.copy(this.data, change.position);
  }

  private resize(lengthBytes: number): void {
    if (lengthBytes > this.data.length) {
      const grown = Buffer.alloc(Math.max(lengthBytes, this.data.length * 2));
      this.data.copy(grown, 0, 0, this.sizeBytes);
      this.data = grown;
    } else if (lengthBytes < this.sizeBytes) {
      this.data.fill(0, lengthBytes, this.sizeBytes);
    }
    this.sizeBytes = lengthBytes;
  }

  contents(): Buffer {
    return this.data.subarray(0, this.sizeBytes);
  }

  /** Throws EIO if a sector of bytes [from, to) is unreadable. */
  checkReadable(from: number, to: number): void {
    for (const sector of this.unreadableSectors) {
      if (sector * SECTOR_BYTES < to && (sector + 1) * SECTOR_BYTES > from) throw ioError('EIO', `sector ${sector} cannot be read`);
    }
  }
}

interface Descriptor {
  readonly path: string;
  /** null for a directory. */
  readonly inode: Inode | null;
}

function ioError(code: string, message: string): Error {
  // No stack: the simulator makes many (every call of a dead process's code), and none is read.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return Object.assign(new Error(`${code}: ${message}`), { code });
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export class SimDisk implements FileIo {
  private readonly prng: Prng;
  private options: SimDiskOptions;
  private readonly directories = new Set<string>(['/']);
  /** The names reads see. */
  private readonly names = new Map<string, Inode>();
  /** Directory changes not yet durable, per directory, in order. */
  private readonly unsyncedNames = new Map<string, NameChange[]>();
  /** The names a crash keeps. */
  private readonly syncedNames = new Map<string, Inode>();
  private readonly descriptors = new Map<number, Descriptor>();
  private readonly locks = new Set<string>();
  private nextFd = 3;
  private sequence = 0;
  private dead = false;
  /** fsyncs that failed, for tests. */
  fsyncFailures = 0;
  /** Files whose next fsync fails with EIO whatever the probability (failNextFsyncOf). */
  private readonly failingNext = new Set<string>();
  /** Where bits were flipped at the crash that made this disk (for tests). */
  readonly bitFlips: { readonly inode: unknown; readonly position: number }[] = [];

  constructor(options: SimDiskOptions) {
    this.options = options;
    this.prng = new Prng(options.seed);
  }

  // ---- FileIo ----

  open(path: string, flags: OpenFlags): number {
    this.alive();
    if (this.directories.has(path)) {
      if (flags !== 'r') throw ioError('EISDIR', `${path} is a directory`);
      return this.descriptor({ path, inode: null });
    }
    let inode = this.names.get(path);
    if (inode !== undefined && (flags === 'wx' || flags === 'wx+')) throw ioError('EEXIST', `${path} exists`);
    if (inode === undefined) {
      if (flags === 'r' || flags === 'r+') throw ioError('ENOENT', `no file ${path}`);
      if (!this.directories.has(dirname(path))) throw ioError('ENOENT', `no directory ${dirname(path)}`);
      inode = new Inode();
      this.link(path, inode);
    } else if (flags === 'w') {
      this.change(inode, { kind: 'truncate', lengthBytes: 0 });
    }
    return this.descriptor({ path, inode });
  }

  close(fd: number): void {
    this.alive();
    assert(this.descriptors.delete(fd), `close of unknown descriptor ${fd}`);
  }

  read(fd: number, target: Uint8Array, offset: number, length: number, position: number): number {
    const inode = this.file(fd);
    const count = Math.max(0, Math.min(length, inode.sizeBytes - position));
    if (count > 0) inode.checkReadable(position, position + count);
    if (count > 0) target.set(inode.data.subarray(position, position + count), offset);
    return count;
  }

  write(fd: number, data: Uint8Array, position: number): void {
    const inode = this.file(fd);
    this.reserve(inode, position + data.length);
    this.change(inode, { kind: 'write', position, bytes: Buffer.from(data) });
  }

  writev(fd: number, buffers: readonly Uint8Array[], position: number): void {
    let total = 0;
    for (const buffer of buffers) total += buffer.length;
    this.reserve(this.file(fd), position + total);
    for (const buffer of buffers) {
      this.write(fd, buffer, position);
      position += buffer.length;
    }
  }

  truncate(fd: number, lengthBytes: number): void {
    const inode = this.file(fd);
    this.reserve(inode, lengthBytes);
    this.change(inode, { kind: 'truncate', lengthBytes });
  }

  sizeBytes(fd: number): number {
    const descriptor = this.descriptorOf(fd);
    return descriptor.inode?.sizeBytes ?? 0;
  }

  fsyncSync(fd: number): void {
    this.sync(this.descriptorOf(fd), this.sequence);
  }

  fsync(fd: number): Promise<void> {
    const descriptor = this.descriptorOf(fd);
    // What the fsync covers is fixed when it starts; later changes wait for the next one.
    const upTo = this.sequence;
    return new Promise<void>((resolve, reject) => {
      const complete = (): void => {
        if (this.dead) return; // the process died: nothing settles
        try {
          this.sync(descriptor, upTo);
          resolve();
        } catch (error) {
          reject(error as Error);
        }
      };
      if (this.options.scheduleSync !== undefined) this.options.scheduleSync(complete);
      else void eventLoopTurns(this.prng.int(1, 1 + (this.options.syncDelayTurnsMax ?? 0))).then(complete);
    });
  }

  fdatasync(fd: number): Promise<void> {
    return this.fsync(fd);
  }

  readFile(path: string): Buffer {
    this.alive();
    const inode = this.names.get(path);
    if (inode === undefined) throw ioError('ENOENT', `no file ${path}`);
    inode.checkReadable(0, inode.sizeBytes);
    return Buffer.from(inode.contents());
  }

  rename(from: string, to: string): void {
    this.alive();
    if (this.directories.has(from)) {
      this.renameDirectory(from, to);
      return;
    }
    const inode = this.names.get(from);
    if (inode === undefined) throw ioError('ENOENT', `no file ${from}`);
    this.unlinkName(from);
    this.link(to, inode);
  }

  copyFile(from: string, to: string): void {
    this.alive();
    const inode = this.names.get(from);
    if (inode === undefined) throw ioError('ENOENT', `no file ${from}`);
    inode.checkReadable(0, inode.sizeBytes);
    const copy = new Inode();
    this.link(to, copy);
    this.change(copy, { kind: 'write', position: 0, bytes: Buffer.from(inode.contents()) });
  }

  unlink(path: string): void {
    this.alive();
    if (!this.names.has(path)) throw ioError('ENOENT', `no file ${path}`);
    this.unlinkName(path);
  }

  remove(path: string): void {
    this.alive();
    for (const name of [...this.names.keys()]) if (name === path || name.startsWith(`${path}/`)) this.unlinkName(name);
    for (const directory of [...this.directories]) if (directory === path || directory.startsWith(`${path}/`)) this.directories.delete(directory);
  }

  readdir(dir: string): string[] {
    this.alive();
    if (!this.directories.has(dir)) throw ioError('ENOENT', `no directory ${dir}`);
    const children = new Set<string>();
    for (const path of [...this.names.keys(), ...this.directories]) {
      if (path !== dir && dirname(path) === dir) children.add(path.slice(dir.length + 1));
    }
    return [...children].sort();
  }

  mkdir(dir: string): void {
    this.alive();
    for (let path = dir; path !== '/' && !this.directories.has(path); path = dirname(path)) {
      if (this.names.has(path)) throw ioError('EEXIST', `${path} is a file`);
      this.directories.add(path);
    }
  }

  kind(path: string): 'directory' | 'file' | 'absent' {
    this.alive();
    return this.directories.has(path) ? 'directory' : this.names.has(path) ? 'file' : 'absent';
  }

  checkWritable(dir: string): void {
    this.alive();
    if (!this.directories.has(dir)) throw ioError('ENOENT', `no directory ${dir}`);
  }

  lock(dir: string): () => void {
    this.alive();
    if (this.locks.has(dir)) throw new InvalidArgumentError(`data dir ${dir} is in use by this process (the log is already open)`);
    this.locks.add(dir);
    return () => this.locks.delete(dir);
  }

  /**
   * Changes the disk's faults from now on: a disk filling up (a capacity at or below what the
   * files hold), an operator freeing space (no capacity: unlimited), a device that starts or stops
   * failing fsyncs. They carry over to the disk a crash or restart returns.
   */
  configure(changes: { readonly capacityBytes?: number | undefined; readonly fsyncFailureProbability?: number }): void {
    const { capacityBytes, ...rest } = { ...this.options, ...changes };
    this.options = { ...rest, ...(capacityBytes === undefined ? {} : { capacityBytes }) };
  }

  /** The next fsync (or fdatasync) of the file at `path` fails with EIO, for targeted tests. */
  failNextFsyncOf(path: string): void {
    this.failingNext.add(path);
  }

  // ---- crashes ----

  /**
   * The machine dies now: returns the disk as a restarted machine finds it. This disk and every
   * descriptor on it are dead, and fsyncs in flight never complete.
   */
  crash(options: CrashOptions = {}): SimDisk {
    this.alive();
    this.dead = true;
    const after = new SimDisk({
      ...this.options,
      seed: this.prng.nextUint32(),
      ...(options.capacityBytes === undefined ? {} : { capacityBytes: options.capacityBytes }),
    });
    for (const directory of this.directories) after.directories.add(directory);
    const names = new Map(this.syncedNames);
    for (const changes of this.unsyncedNames.values()) {
      const kept = this.prng.int(0, changes.length);
      for (const change of changes.slice(0, kept)) {
        if (change.kind === 'link') names.set(change.path, change.inode);
        else names.delete(change.path);
      }
    }
    const survivors = new Map<Inode, Inode>();
    for (const [path, inode] of names) {
      let survivor = survivors.get(inode);
      if (survivor === undefined) {
        survivor = new Inode(this.survivingContents(inode));
        survivor.modifiedMs = inode.modifiedMs;
        for (const sector of inode.unreadableSectors) if (sector * SECTOR_BYTES < survivor.sizeBytes) survivor.unreadableSectors.add(sector);
        survivors.set(inode, survivor);
      }
      after.names.set(path, survivor);
      after.syncedNames.set(path, survivor);
    }
    if (this.prng.chance(options.bitFlipProbability ?? 0)) after.flipBit();
    return after;
  }

  /**
   * The process dies but the machine stays up (kill -9): returns the disk a restarted process
   * finds. The page cache survives whole (nothing written is lost, nothing more is durable);
   * descriptors and locks go with the process, and its fsyncs in flight never complete.
   */
  restartProcess(): SimDisk {
    this.alive();
    this.dead = true;
    const after = new SimDisk({ ...this.options, seed: this.prng.nextUint32() });
    for (const directory of this.directories) after.directories.add(directory);
    for (const [path, inode] of this.names) after.names.set(path, inode);
    for (const [path, inode] of this.syncedNames) after.syncedNames.set(path, inode);
    for (const [dir, changes] of this.unsyncedNames) after.unsyncedNames.set(dir, [...changes]);
    after.sequence = this.sequence;
    return after;
  }

  /** The synced bytes plus a random prefix of the unsynced changes, the last write torn. */
  private survivingContents(inode: Inode): Buffer {
    const file = new Inode(Buffer.from(inode.synced));
    const kept = this.prng.int(0, inode.unsynced.length);
    for (let i = 0; i < kept; i++) {
      const change = inode.unsynced[i] as FileChange;
      if (i === kept - 1 && change.kind === 'write' && this.prng.chance(0.5)) {
        file.apply({ kind: 'write', position: change.position, bytes: change.bytes.subarray(0, this.prng.int(0, change.bytes.length)) });
      } else {
        file.apply(change);
      }
    }
    return Buffer.from(file.contents());
  }

  private flipBit(): void {
    const files = [...new Set(this.names.values())].filter((inode) => inode.sizeBytes > 0);
    if (files.length === 0) return;
    const inode = this.prng.pick(files);
    const position = this.prng.int(0, inode.sizeBytes - 1);
    const bit = 1 << this.prng.int(0, 7);
    inode.data[position] = (inode.data[position] as number) ^ bit;
    inode.synced = Buffer.from(inode.contents());
    this.bitFlips.push({ inode, position });
  }

  /**
   * A medium error: one sector of a file whose path passes `select`, picked at random, fails every
   * read (EIO) from now on, across crashes, until it is written again. Returns where, or
   * undefined if no such file holds data.
   */
  failSector(select: (path: string) => boolean): { path: string; sector: number } | undefined {
    this.alive();
    const files = [...this.names].filter(([path, inode]) => select(path) && inode.sizeBytes > 0).sort(([a], [b]) => (a < b ? -1 : 1));
    if (files.length === 0) return undefined;
    const [path, inode] = this.prng.pick(files);
    const sector = this.prng.int(0, Math.ceil(inode.sizeBytes / SECTOR_BYTES) - 1);
    inode.unreadableSectors.add(sector);
    return { path, sector };
  }

  /**
   * A lost sector: the file (what reads see and what is durable alike) keeps only its first
   * `keepBytes`, as a reader without checksums finds it. Nothing if the file does not exist.
   */
  damage(path: string, keepBytes: number): void {
    this.alive();
    const inode = this.names.get(path);
    if (inode === undefined) return;
    const kept = Buffer.from(inode.contents().subarray(0, Math.min(keepBytes, inode.sizeBytes)));
    inode.data = Buffer.from(kept);
    inode.sizeBytes = kept.length;
    inode.synced = kept;
    inode.unsynced = [];
  }

  /** The file's size (stat's size; no read, so an unreadable sector does not fail it). */
  fileSizeBytes(path: string): number {
    this.alive();
    const inode = this.names.get(path);
    if (inode === undefined) throw ioError('ENOENT', `no file ${path}`);
    return inode.sizeBytes;
  }

  /** The file's modification time (stat's mtime). */
  modifiedMs(path: string): number {
    this.alive();
    const inode = this.names.get(path);
    if (inode === undefined) throw ioError('ENOENT', `no file ${path}`);
    return inode.modifiedMs;
  }

  /** Bytes every file holds (what reads see). */
  usedBytes(): number {
    let total = 0;
    for (const inode of new Set(this.names.values())) total += inode.sizeBytes;
    return total;
  }

  // ---- internals ----

  private alive(): void {
    if (this.dead) throw ioError('EIO', 'the simulated machine crashed');
  }

  private descriptor(descriptor: Descriptor): number {
    const fd = this.nextFd++;
    this.descriptors.set(fd, descriptor);
    return fd;
  }

  private descriptorOf(fd: number): Descriptor {
    this.alive();
    const descriptor = this.descriptors.get(fd);
    if (descriptor === undefined) throw ioError('EBADF', `descriptor ${fd} is not open`);
    return descriptor;
  }

  private file(fd: number): Inode {
    const inode = this.descriptorOf(fd).inode;
    if (inode === null) throw ioError('EISDIR', `descriptor ${fd} is a directory`);
    return inode;
  }

  private reserve(inode: Inode, endBytes: number): void {
    const capacity = this.options.capacityBytes ?? Infinity;
    const growth = Math.max(0, endBytes - inode.sizeBytes);
    if (growth > 0 && this.usedBytes() + growth > capacity) throw ioError('ENOSPC', `no space left on the device (${capacity} bytes)`);
  }

  private change(inode: Inode, change: FileChange): void {
    inode.apply(change);
    inode.modifiedMs = this.options.nowMs?.() ?? 0;
    inode.unsynced.push({ ...change, sequence: this.sequence++ });
  }

  /** Makes the unsynced changes of a file (or directory) made before `upTo` durable, or fails. */
  private sync(descriptor: Descriptor, upTo: number): void {
    const failed = this.prng.chance(this.options.fsyncFailureProbability ?? 0) || this.failingNext.delete(descriptor.path);
    const covered = (changes: readonly { readonly sequence?: number }[]): number => {
      let count = 0;
      while (count < changes.length && (changes[count]?.sequence ?? 0) < upTo) count++;
      return count;
    };
    if (descriptor.inode === null) {
      if (failed) {
        // Directory changes are journaled: a failed fsync leaves them pending, not lost.
        this.fsyncFailures++;
        throw ioError('EIO', `fsync of directory ${descriptor.path} failed`);
      }
      const changes = this.unsyncedNames.get(descriptor.path) ?? [];
      for (const change of changes.splice(0, covered(changes))) {
        if (change.kind === 'link') this.syncedNames.set(change.path, change.inode);
        else this.syncedNames.delete(change.path);
      }
      return;
    }
    const inode = descriptor.inode;
    const done = inode.unsynced.splice(0, covered(inode.unsynced));
    if (failed) {
      // The kernel forgets the dirty pages: reads still see them, no fsync will ever write them.
      // A truncation changes the inode's size, journaled metadata: it stays pending, and the next
      // good fsync makes it durable, as a directory change does.
      inode.unsynced.unshift(...done.filter((change) => change.kind === 'truncate'));
      this.fsyncFailures++;
      throw ioError('EIO', `fsync of ${descriptor.path} failed`);
    }
    const durable = new Inode(inode.synced);
    for (const change of done) durable.apply(change);
    inode.synced = Buffer.from(durable.contents());
  }

  /** Like mkdir, durable at once: the tree moves, synced and unsynced names alike. */
  private renameDirectory(from: string, to: string): void {
    if (this.directories.has(to) || this.names.has(to)) throw ioError('EEXIST', `${to} exists`);
    if (!this.directories.has(dirname(to))) throw ioError('ENOENT', `no directory ${dirname(to)}`);
    const moved = (path: string): string | undefined => (path === from ? to : path.startsWith(`${from}/`) ? to + path.slice(from.length) : undefined);
    const moveKeys = <V>(map: Map<string, V>, value: (v: V) => V = (v) => v): void => {
      for (const [path, v] of [...map]) {
        const target = moved(path);
        if (target === undefined) continue;
        map.delete(path);
        map.set(target, value(v));
      }
    };
    for (const directory of [...this.directories]) {
      const target = moved(directory);
      if (target === undefined) continue;
      this.directories.delete(directory);
      this.directories.add(target);
    }
    moveKeys(this.names);
    moveKeys(this.syncedNames);
    moveKeys(this.unsyncedNames, (changes) => changes.map((change) => ({ ...change, path: moved(change.path) ?? change.path })));
  }

  private link(path: string, inode: Inode): void {
    this.names.set(path, inode);
    this.nameChanges(dirname(path)).push({ kind: 'link', path, inode, sequence: this.sequence++ });
  }

  private unlinkName(path: string): void {
    this.names.delete(path);
    this.nameChanges(dirname(path)).push({ kind: 'unlink', path, sequence: this.sequence++ });
  }

  private nameChanges(dir: string): NameChange[] {
    let changes = this.unsyncedNames.get(dir);
    if (changes === undefined) {
      changes = [];
      this.unsyncedNames.set(dir, changes);
    }
    return changes;
  }
}

/** Resolves after `count` turns of the event loop (setImmediate), so I/O callbacks interleave. */
export function eventLoopTurns(count: number): Promise<void> {
  return new Promise((resolve) => {
    const step = (left: number): void => {
      if (left === 0) resolve();
      else setImmediate(() => step(left - 1));
    };
    step(count);
  });
}
