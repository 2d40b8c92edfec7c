/**
 * A transmit-limited broadcast queue (SWIM piggybacking): each broadcast goes out until it has
 * been sent `limit()` times. Selection favours the least-sent, then the longest, then the newest.
 * A broadcast with a key replaces a queued one with the same key (memberlist keys alive/suspect/dead
 * by node name, so only the latest news about a node is spread).
 */
import { assert } from '../util/index.js';

interface Broadcast {
  readonly key: string | undefined;
  readonly bytes: Uint8Array;
  readonly id: number;
  transmits: number;
}

export class BroadcastQueue {
  private items: Broadcast[] = [];
  private nextId = 0;

  constructor(
    private readonly limit: () => number,
    private readonly depthMax: number,
  ) {
    assert(depthMax > 0, 'broadcast queue depth must be positive');
  }

  get size(): number {
    return this.items.length;
  }

  /** True while a broadcast with this key still has sends left. */
  has(key: string): boolean {
    return this.items.some((item) => item.key === key);
  }

  enqueue(bytes: Uint8Array, key?: string): void {
    if (key !== undefined) this.items = this.items.filter((item) => item.key !== key);
    this.items.push({ key, bytes, id: this.nextId++, transmits: 0 });
    if (this.items.length > this.depthMax) {
      // Shed the broadcasts that have already been sent the most (oldest among equals).
      this.items.sort((a, b) => b.transmits - a.transmits || a.id - b.id);
      this.items.splice(0, this.items.length - this.depthMax);
    }
  }

  /**
   * Takes broadcasts that fit in `bytesMax`, each costing its length plus `overheadBytes`, and
   * counts one transmission for each.
   */
  take(overheadBytes: number, bytesMax: number): Uint8Array[] {
    if (this.items.length === 0) return [];
    this.items.sort((a, b) => a.transmits - b.transmits || b.bytes.length - a.bytes.length || b.id - a.id);
    const limit = Math.max(1, this.limit());
    const taken: Uint8Array[] = [];
    let usedBytes = 0;
    for (const item of this.items) {
      const cost = item.bytes.length + overheadBytes;
      if (usedBytes + cost > bytesMax) continue;
      usedBytes += cost;
      item.transmits++;
      taken.push(item.bytes);
    }
    this.items = this.items.filter((item) => item.transmits < limit);
    return taken;
  }
}
