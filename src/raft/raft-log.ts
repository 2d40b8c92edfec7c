/**
 * The core's view of the log: durable entries in `Storage` followed by `Unstable` ones, plus the
 * commit and applied indexes.
 */
import { assert } from '../util/index.js';
import { Unstable } from './log-unstable.js';
import { CompactedError, LogUnavailableError, type Storage } from './storage.js';
import { entrySizeBytes, type Entry, type Snapshot } from './types.js';

/** Stable entries kept in memory for applying, at most (older ones are read from storage). */
const RECENT_ENTRIES_MAX = 8192;
const RECENT_BYTES_MAX = 8 * 1024 * 1024;

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  // Invariant: applied <= committed <= lastIndex().
  committed: number;
  /** Highest index handed to the state machine (in a Ready that was advanced). */
  applied: number;
  /**
   * Entries that became stable and are not applied yet, as they were handed to storage, so that
   * applying them (usually right after) reads no disk. Invariant: contiguous from recentOffset,
   * identical to storage's entries there; bounded by RECENT_ENTRIES_MAX.
   */
  private recent: Entry[] = [];
  private recentOffset = 0;
  private recentBytes = 0;

  constructor(storage: Storage, appliedAtStart = 0) {
    this.storage = storage;
    const { hardState, snapshotMeta } = storage.initialState();
    this.unstable = new Unstable(storage.lastIndex() + 1);
    this.committed = hardState.commit;
    // The driver restores the state machine from the latest snapshot at start-up.
    this.applied = snapshotMeta.index;
    assert(this.committed <= this.lastIndex(), `persisted commit ${this.committed} beyond last index ${this.lastIndex()}`);
    // A crash between installing a snapshot and persisting the hard state leaves the persisted
    // commit behind the snapshot; everything in a snapshot is committed.
    if (this.committed < this.applied) this.committed = this.applied;
    this.applied = Math.max(this.applied, Math.min(appliedAtStart, this.committed));
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Term at `index`, or null if it is compacted (before firstIndex - 1) or beyond the last index. */
  term(index: number): number | null {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return null;
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== null) return unstableTerm;
    try {
      return this.storage.term(index);
    } catch (error) {
      if (error instanceof CompactedError || error instanceof LogUnavailableError) return null;
      throw error;
    }
  }

  lastTerm(): number {
    const term = this.term(this.lastIndex());
    assert(term !== null, 'the last entry always has a term');
    return term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Whether a log ending at (lastIndex, lastTerm) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourLastTerm = this.lastTerm();
    return lastTerm > ourLastTerm || (lastTerm === ourLastTerm && lastIndex >= this.lastIndex());
  }

  /**
   * The follower side of AppendEntries. Returns null if the log does not contain prevIndex at
   * prevTerm; otherwise appends what is new (truncating a conflicting suffix), advances commit, and
   * returns the index of the last entry the message vouches for plus the entries actually written.
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    leaderCommit: number,
    entries: readonly Entry[],
    keepConflictingSuffix: boolean,
  ): { lastNewIndex: number; appended: readonly Entry[] } | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNewIndex = prevIndex + entries.length;
    const conflictIndex = this.findConflict(entries);
    let appended: readonly Entry[] = [];
    if (conflictIndex !== 0) {
      assert(conflictIndex > this.committed, `entry ${conflictIndex} conflicts with the committed prefix (commit ${this.committed})`);
      appended = entries.slice(conflictIndex - (prevIndex + 1));
      if (keepConflictingSuffix && lastNewIndex < this.lastIndex()) {
        // Broken variant: rewrite the stale tail after the new entries instead of dropping it.
        appended = [...appended, ...this.slice(lastNewIndex + 1, this.lastIndex() + 1, Infinity)];
      }
      this.append(appended);
    }
    this.commitTo(Math.min(leaderCommit, lastNewIndex));
    return { lastNewIndex, appended };
  }

  /** Index of the first entry whose term differs from ours (or that we lack), or 0. */
  private findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (or the first index we can no longer
   * read). Used for fast backtracking on both sides of a rejected append.
   */
  findConflictByTerm(index: number, term: number): number {
    for (let candidate = index; candidate > 0; candidate--) {
      const candidateTerm = this.term(candidate);
      if (candidateTerm === null || candidateTerm <= term) return candidate;
    }
    return 0;
  }

  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const first = (entries[0] as Entry).index;
    assert(first > this.committed, `append at ${first} would overwrite committed ${this.committed}`);
    assert(first <= this.lastIndex() + 1, `append at ${first} leaves a gap after ${this.lastIndex()}`);
    this.unstable.truncateAndAppend(entries);
    // The storage's copy from `first` on is replaced too.
    if (first < this.recentOffset + this.recent.length) this.dropRecentFrom(Math.max(0, first - this.recentOffset));
    return this.lastIndex();
  }

  /** Unstable entries through `index` with `term` are durable (see Unstable.stableTo). */
  stableTo(index: number, term: number): void {
    const unstable = this.unstable;
    if (index < unstable.offset || unstable.maybeTerm(index) !== term) return;
    const stable = unstable.slice(unstable.offset, index + 1);
    if (unstable.offset !== this.recentOffset + this.recent.length) this.dropRecentFrom(0);
    for (const entry of stable) {
      if (entry.index <= this.applied) continue;
      this.recent.push(entry);
      this.recentBytes += entrySizeBytes(entry);
    }
    if (this.recent.length === 0) this.recentOffset = index + 1;
    else this.recentOffset = (this.recent[0] as Entry).index;
    this.trimRecent();
    unstable.stableTo(index, term);
  }

  /** Drops what is applied, then the oldest entries beyond the bounds. */
  private trimRecent(): void {
    const recent = this.recent;
    let drop = Math.min(recent.length, Math.max(0, this.applied + 1 - this.recentOffset, recent.length - RECENT_ENTRIES_MAX));
    let bytes = this.recentBytes;
    for (let i = 0; i < drop; i++) bytes -= entrySizeBytes(recent[i] as Entry);
    while (drop < recent.length && bytes > RECENT_BYTES_MAX) bytes -= entrySizeBytes(recent[drop++] as Entry);
    if (drop === 0) return;
    this.recent = recent.slice(drop);
    this.recentOffset += drop;
    this.recentBytes = bytes;
  }

  /** Forgets the cached entries from position `keep` on (their storage copy is being replaced). */
  private dropRecentFrom(keep: number): void {
    for (let i = keep; i < this.recent.length; i++) this.recentBytes -= entrySizeBytes(this.recent[i] as Entry);
    this.recent.length = keep;
    if (keep === 0) {
      this.recentBytes = 0;
      this.recentOffset = this.unstable.offset;
    }
  }

  /** Entries from `lo` to the end, bounded by `maxSizeBytes` (at least one). Throws CompactedError. */
  entriesFrom(lo: number, maxSizeBytes: number): readonly Entry[] {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxSizeBytes);
  }

  /** Entries in [lo, hi) from storage then the unstable part. Throws CompactedError below firstIndex. */
  slice(lo: number, hi: number, maxSizeBytes: number): readonly Entry[] {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) throw new CompactedError(lo, this.firstIndex());
    assert(hi <= this.lastIndex() + 1, `slice [${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    const offset = this.unstable.offset;
    let result: readonly Entry[] = [];
    if (lo < offset) {
      const stableHi = Math.min(hi, offset);
      result =
        lo >= this.recentOffset && stableHi <= this.recentOffset + this.recent.length
          ? limitSize(this.recent.slice(lo - this.recentOffset, stableHi - this.recentOffset), maxSizeBytes)
          : this.storage.entries(lo, stableHi, maxSizeBytes);
      // Storage stopped early because of the size limit: don't add unstable entries after a gap.
      if (result.length < stableHi - lo) return result;
    }
    if (hi > offset) {
      const unstable = this.unstable.slice(Math.max(lo, offset), hi);
      result = result.length === 0 ? unstable : [...result, ...unstable];
    }
    return limitSize(result, maxSizeBytes);
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Leader rule: commit `index` only if its entry is from the current term (§5.4.2). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  appliedTo(index: number): void {
    assert(index >= this.applied, `applied went back from ${this.applied} to ${index}`);
    this.applied = index;
    this.trimRecent();
  }

  /** Committed entries not yet handed to the state machine; `upTo` overrides commit (broken variant). */
  nextEntriesToApply(upTo: number, maxSizeBytes: number): readonly Entry[] {
    if (upTo <= this.applied) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    return this.slice(lo, upTo + 1, maxSizeBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Replaces the log with a snapshot from the leader. */
  restore(snapshot: Snapshot): void {
    assert(snapshot.meta.index > this.committed, 'restore must move commit forward');
    this.committed = snapshot.meta.index;
    this.unstable.restore(snapshot);
    this.dropRecentFrom(0);
  }
}

function limitSize(entries: readonly Entry[], maxSizeBytes: number): readonly Entry[] {
  if (maxSizeBytes === Infinity) return entries;
  let sizeBytes = 0;
  for (let i = 0; i < entries.length; i++) {
    sizeBytes += entrySizeBytes(entries[i] as Entry);
    if (i > 0 && sizeBytes > maxSizeBytes) return entries.slice(0, i);
  }
  return entries;
}
