/**
 * ReadIndex bookkeeping on the leader: each read remembers the commit index when it arrived and
 * is released once a quorum has answered a heartbeat carrying its context, which proves this node
 * was still the leader after the read arrived (§6.4).
 */
import { assert } from '../util/index.js';
import type { NodeId, ReadState } from './types.js';

interface PendingRead {
  readonly context: string;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

export class ReadOnly {
  // Invariant: reads are in arrival order, so their indexes never decrease.
  private reads: PendingRead[] = [];

  add(context: string, index: number, self: NodeId): void {
    const last = this.reads[this.reads.length - 1];
    assert(last === undefined || last.index <= index, 'read indexes must not decrease');
    this.reads.push({ context, index, acks: new Set([self]) });
  }

  /** Records an ack; returns the reads it releases (this one and all earlier ones), in order. */
  ack(context: string, from: NodeId, voters: readonly NodeId[], quorum: number): ReadState[] {
    const position = this.reads.findIndex((read) => read.context === context);
    if (position < 0) return [];
    const read = this.reads[position] as PendingRead;
    read.acks.add(from);
    let votes = 0;
    for (const voter of voters) if (read.acks.has(voter)) votes++;
    if (votes < quorum) return [];
    return this.reads.splice(0, position + 1).map(({ context: released, index }) => ({ context: released, index }));
  }

  /** Contexts of the pending reads, oldest first. */
  contexts(): string[] {
    return this.reads.map((read) => read.context);
  }

  pendingCount(): number {
    return this.reads.length;
  }

  reset(): void {
    this.reads = [];
  }
}
