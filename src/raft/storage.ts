/**
 * The storage contract between the Raft core and the durable log. The core only reads through
 * `Storage`; the driver writes (hard state, entries, snapshots) after each `Ready` and before it
 * sends that Ready's messages. `MemoryStorage` is the reference implementation that tests and the
 * simulator use; the durable implementation over annal's segmented log must behave identically.
 */
import { CompactedError, LogUnavailableError } from '../util/errors.js';
import { assert, assertUint } from '../util/index.js';
import { EntryType, entrySizeBytes, type ClusterConfig, type Entry, type HardState, type Snapshot, type SnapshotMeta } from './types.js';

export { CompactedError, LogUnavailableError } from '../util/errors.js';

export interface InitialState {
  readonly hardState: HardState;
  readonly snapshotMeta: SnapshotMeta;
  /**
   * Set when damage cost this replica entries it may have acknowledged: the highest index it
   * held. Until its log reaches it again (from a leader) it never campaigns, and it votes only
   * for a candidate whose log is at least as up to date as (repairTerm, repairTo), so it cannot
   * help elect a leader that lacks what it lost. 0 or absent: none.
   */
  readonly repairTo?: number;
  /**
   * With repairTo: a term no lower than that of the last entry the replica held (its current
   * term when the damage was found). Absent: it grants no votes until repaired.
   */
  readonly repairTerm?: number;
}

/** Read side of the log as the core sees it. All ranges are half-open [lo, hi). */
export interface Storage {
  /** The hard state and the latest snapshot's metadata, read once at start-up. */
  initialState(): InitialState;
  /**
   * Entries in [lo, hi), stopping before their total `entrySizeBytes` would exceed `maxSizeBytes`
   * but always returning at least one entry when lo < hi (Infinity: no limit). Throws
   * `CompactedError` if lo < firstIndex() and `LogUnavailableError` if hi > lastIndex() + 1.
   * The returned entries are immutable and owned by the storage.
   */
  entries(lo: number, hi: number, maxSizeBytes: number): readonly Entry[];
  /**
   * Configuration entries with index >= lo, in index order. A durable store keeps their indexes in
   * a small side list so this needs no scan of the log.
   */
  configEntries(lo: number): readonly Entry[];
  /** Term of the entry at `index`, for index in [firstIndex() - 1, lastIndex()]. */
  term(index: number): number;
  /** Index of the first retained entry: the latest snapshot's index + 1. */
  firstIndex(): number;
  /** Index of the last entry, or the snapshot's index when no entries follow it. */
  lastIndex(): number;
  /** The latest snapshot (meta.index 0 and empty data if none was taken). */
  snapshot(): Snapshot;
}

const EMPTY_CONFIG: ClusterConfig = { voters: [], learners: [] };

/** In-memory storage: the reference implementation of `Storage` plus the write side. */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private latestSnapshot: Snapshot;
  // Invariant: log[i].index === prevIndex + 1 + i, and prevIndex === latestSnapshot.meta.index.
  private log: Entry[] = [];
  private prevIndex = 0;
  private prevTerm = 0;

  constructor(initialConfig: ClusterConfig = EMPTY_CONFIG) {
    this.latestSnapshot = { meta: { index: 0, term: 0, config: initialConfig }, data: new Uint8Array(0) };
  }

  initialState(): InitialState {
    return { hardState: this.hardState, snapshotMeta: this.latestSnapshot.meta };
  }

  entries(lo: number, hi: number, maxSizeBytes: number): readonly Entry[] {
    assert(lo <= hi, `entries: lo ${lo} > hi ${hi}`);
    if (lo < this.firstIndex()) throw new CompactedError(lo, this.firstIndex());
    if (hi > this.lastIndex() + 1) throw new LogUnavailableError(hi - 1, this.lastIndex());
    const result: Entry[] = [];
    let sizeBytes = 0;
    for (let index = lo; index < hi; index++) {
      const entry = this.log[index - this.prevIndex - 1] as Entry;
      sizeBytes += entrySizeBytes(entry);
      if (result.length > 0 && sizeBytes > maxSizeBytes) break;
      result.push(entry);
    }
    return result;
  }

  configEntries(lo: number): readonly Entry[] {
    return this.log.filter((entry) => entry.type === EntryType.Config && entry.index >= lo);
  }

  term(index: number): number {
    if (index < this.prevIndex) throw new CompactedError(index, this.firstIndex());
    if (index > this.lastIndex()) throw new LogUnavailableError(index, this.lastIndex());
    if (index === this.prevIndex) return this.prevTerm;
    return (this.log[index - this.prevIndex - 1] as Entry).term;
  }

  firstIndex(): number {
    return this.prevIndex + 1;
  }

  lastIndex(): number {
    return this.prevIndex + this.log.length;
  }

  snapshot(): Snapshot {
    return this.latestSnapshot;
  }

  // ---- write side, used by the driver ----

  setHardState(hardState: HardState): void {
    assert(hardState.term >= this.hardState.term, `hard state term went back from ${this.hardState.term} to ${hardState.term}`);
    this.hardState = hardState;
  }

  /**
   * Appends contiguous entries, first truncating any suffix they conflict with (an entry at an
   * existing index replaces it and everything after it).
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = (entries[0] as Entry).index;
    assert(first > this.prevIndex, `append at ${first} would overwrite compacted entries (first ${this.firstIndex()})`);
    assert(first <= this.lastIndex() + 1, `append at ${first} leaves a gap after ${this.lastIndex()}`);
    this.log.length = first - this.prevIndex - 1;
    for (const entry of entries) {
      assert(entry.index === this.lastIndex() + 1, 'appended entries must be contiguous');
      this.log.push(entry);
    }
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snapshot: Snapshot): void {
    assert(snapshot.meta.index >= this.prevIndex, `snapshot ${snapshot.meta.index} is older than ${this.prevIndex}`);
    this.latestSnapshot = snapshot;
    this.log = [];
    this.prevIndex = snapshot.meta.index;
    this.prevTerm = snapshot.meta.term;
  }

  /**
   * Records a snapshot of the state machine at `index` (<= lastIndex) and discards the entries it
   * covers, except `trailingEntryCount` of them kept so slightly lagging followers need no snapshot.
   */
  createSnapshot(options: { index: number; config: ClusterConfig; data: Uint8Array; trailingEntryCount: number }): void {
    const { index, config, data, trailingEntryCount } = options;
    assertUint(trailingEntryCount, 'trailingEntryCount');
    assert(index > this.latestSnapshot.meta.index, `snapshot at ${index} is not newer than ${this.latestSnapshot.meta.index}`);
    assert(index <= this.lastIndex(), `snapshot at ${index} is beyond the last index ${this.lastIndex()}`);
    this.latestSnapshot = { meta: { index, term: this.term(index), config }, data };
    this.compact(Math.max(this.prevIndex, index - trailingEntryCount));
  }

  /** Discards entries up to and including `index`, which must be covered by the snapshot. */
  compact(index: number): void {
    assert(index <= this.latestSnapshot.meta.index, `compact ${index} beyond snapshot ${this.latestSnapshot.meta.index}`);
    if (index <= this.prevIndex) return;
    const term = this.term(index);
    this.log = this.log.slice(index - this.prevIndex);
    this.prevIndex = index;
    this.prevTerm = term;
  }
}
