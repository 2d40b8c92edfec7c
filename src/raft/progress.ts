/**
 * The leader's view of each follower: how much of the log it holds and how to send it more.
 *
 * - probe: one append in flight at a time until the follower's match index is found.
 * - replicate: appends are pipelined optimistically, bounded by `Inflights`.
 * - snapshot: the follower is too far behind; a snapshot is streamed in chunks.
 */
import { assert } from '../util/index.js';
import type { Snapshot } from './types.js';

export const ProgressState = { Probe: 'probe', Replicate: 'replicate', Snapshot: 'snapshot' } as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

/** A bounded window of in-flight appends, each identified by its last entry index. */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizesBytes: number[] = [];
  private totalBytes = 0;

  constructor(
    /** Maximum number of appends in flight. */
    readonly countMax: number,
    /** Maximum bytes in flight (Infinity: no byte limit). */
    readonly bytesMax: number,
  ) {
    assert(countMax >= 1, 'inflight count limit must be at least 1');
  }

  add(lastIndex: number, sizeBytes: number): void {
    assert(!this.full(), 'inflights: add when full');
    const previous = this.lastIndexes[this.lastIndexes.length - 1];
    assert(previous === undefined || lastIndex > previous, 'inflights must be added in index order');
    this.lastIndexes.push(lastIndex);
    this.sizesBytes.push(sizeBytes);
    this.totalBytes += sizeBytes;
  }

  /** Frees every append whose last index is <= `index` (acknowledged). */
  freeLE(index: number): void {
    let count = 0;
    while (count < this.lastIndexes.length && (this.lastIndexes[count] as number) <= index) count++;
    this.freeFirst(count);
  }

  freeFirstOne(): void {
    this.freeFirst(Math.min(1, this.lastIndexes.length));
  }

  private freeFirst(count: number): void {
    for (let i = 0; i < count; i++) this.totalBytes -= this.sizesBytes[i] as number;
    this.lastIndexes.splice(0, count);
    this.sizesBytes.splice(0, count);
  }

  full(): boolean {
    return this.lastIndexes.length >= this.countMax || this.totalBytes >= this.bytesMax;
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.freeFirst(this.lastIndexes.length);
  }
}

export class Progress {
  // Invariant: 0 <= match < next.
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** In probe state: an append was sent and no answer has come back yet. */
  probeSent = false;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly isLearner: boolean;
  readonly inflights: Inflights;
  /** In snapshot state: the snapshot being streamed, and the next byte offset to send. */
  snapshot: Snapshot | null = null;
  snapshotOffsetBytes = 0;
  /** The highest commit index an append to this follower carried (appends with nothing new are skipped once it knows). */
  commitSent = 0;

  constructor(options: { next: number; isLearner: boolean; inflightCountMax: number; inflightBytesMax: number }) {
    assert(options.next >= 1, 'next must be at least 1');
    this.next = options.next;
    this.isLearner = options.isLearner;
    this.inflights = new Inflights(options.inflightCountMax, options.inflightBytesMax);
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }

  /**
   * The follower's log now ends at `lastIndex`, before `match`: it lost entries it had
   * acknowledged (damage, repaired from us). The only place match goes down; commit does not.
   */
  lostEntries(lastIndex: number): void {
    assert(lastIndex < this.match, 'lostEntries: the follower log must end before match');
    this.match = lastIndex;
    this.next = lastIndex + 1;
    this.resetState(ProgressState.Probe);
  }

    becomeProbe(): void {
    if (this.state === ProgressState.Snapshot && this.snapshot !== null) {
      this.next = Math.max(this.match + 1, this.snapshot.meta.index + 1);
    } else {
      this.next = this.match + 1;
    }
    this.resetState(ProgressState.Probe);
  }

  becomeReplicate(): void {
    this.next = this.match + 1;
    this.resetState(ProgressState.Replicate);
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.resetState(ProgressState.Snapshot);
    this.snapshot = snapshot;
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.snapshot = null;
    this.snapshotOffsetBytes = 0;
    this.inflights.reset();
  }

  /** An acknowledgement up to `index`; returns whether match moved. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of an append whose prevLogIndex was `rejected`; `hintIndex` is where the leader
   * should probe next. Returns false for stale rejections (already superseded).
   */
  maybeDecrTo(rejected: number, hintIndex: number): boolean {
    if (this.state === ProgressState.Snapshot) return false;
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hintIndex + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }
}
