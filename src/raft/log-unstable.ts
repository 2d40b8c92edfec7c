/**
 * Entries (and possibly a snapshot) the core has accepted but the driver has not yet made durable.
 * They are handed out in a Ready and become stable on `advance`.
 */
import { assert } from '../util/index.js';
import type { Entry, Snapshot } from './types.js';

export class Unstable {
  /** A snapshot received from the leader that must be persisted before the entries that follow. */
  snapshot: Snapshot | null = null;
  // Invariant: entries[i].index === offset + i.
  entries: Entry[] = [];
  offset: number;
  /**
   * The first entry not yet handed to storage: entries [offset, inProgress) are being written (a
   * leader writing in the background) and are not handed out again. Invariant: offset <= inProgress
   * <= offset + entries.length.
   */
  inProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.inProgress = offset;
  }

  /** Entries not yet handed to storage. */
  entriesToWrite(): Entry[] {
    return this.entries.slice(this.inProgress - this.offset);
  }

  /** Whether entries are being written, handed out but not yet stable. */
  writing(): boolean {
    return this.inProgress > this.offset;
  }

  /** Every unstable entry has been handed to storage. */
  acceptInProgress(): void {
    this.inProgress = this.offset + this.entries.length;
  }

  maybeFirstIndex(): number | null {
    return this.snapshot === null ? null : this.snapshot.meta.index + 1;
  }

  maybeLastIndex(): number | null {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === null ? null : this.snapshot.meta.index;
  }

  maybeTerm(index: number): number | null {
    if (index < this.offset) {
      return this.snapshot !== null && this.snapshot.meta.index === index ? this.snapshot.meta.term : null;
    }
    const entry = this.entries[index - this.offset];
    return entry === undefined ? null : entry.term;
  }

  /** Entries up to `index` (with `term`) are durable: drop them from the unstable part. */
  stableTo(index: number, term: number): void {
    if (index < this.offset || this.maybeTerm(index) !== term) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
    this.inProgress = Math.max(this.inProgress, this.offset);
  }

  stableSnapshotTo(index: number): void {
    if (this.snapshot !== null && this.snapshot.meta.index === index) this.snapshot = null;
  }

  restore(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.entries = [];
    this.offset = snapshot.meta.index + 1;
    this.inProgress = this.offset;
  }

  /** Appends entries, replacing any unstable suffix starting at the first new index. */
  truncateAndAppend(entries: readonly Entry[]): void {
    const first = (entries[0] as Entry).index;
    if (first === this.offset + this.entries.length) {
      this.entries.push(...entries);
    } else if (first <= this.offset) {
      // The stable log is truncated too: the driver's storage.append replaces from `first`.
      this.offset = first;
      this.entries = [...entries];
    } else {
      this.entries = this.entries.slice(0, first - this.offset).concat(entries);
    }
    // Entries being written from `first` on are replaced: the storage's later append, queued behind
    // that write, truncates them, and their completion no longer matches (stableTo checks the term).
    this.inProgress = Math.min(this.inProgress, first);
    assert((this.entries[0] as Entry).index === this.offset, 'unstable entries must start at offset');
  }

  slice(lo: number, hi: number): Entry[] {
    assert(lo >= this.offset && hi <= this.offset + this.entries.length, `unstable slice [${lo}, ${hi}) out of bounds`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
