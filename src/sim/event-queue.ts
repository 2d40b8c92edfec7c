/**
 * A binary min-heap of timed events. Ties on time break by insertion sequence, so the order of
 * events (and hence the whole simulation) depends only on the seed.
 */
import { assert } from '../util/index.js';

interface Slot<T> {
  readonly timeMs: number;
  readonly sequence: number;
  readonly event: T;
}

export class EventQueue<T> {
  private readonly heap: Slot<T>[] = [];
  private sequence = 0;

  constructor(private readonly sizeMax: number) {}

  push(timeMs: number, event: T): void {
    assert(this.heap.length < this.sizeMax, `event queue overflow (${this.sizeMax})`);
    this.heap.push({ timeMs, sequence: this.sequence++, event });
    let child = this.heap.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.less(child, parent)) break;
      this.swap(child, parent);
      child = parent;
    }
  }

  pop(): { timeMs: number; event: T } | null {
    const top = this.heap[0];
    if (top === undefined) return null;
    const last = this.heap.pop() as Slot<T>;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      let parent = 0;
      for (;;) {
        const left = parent * 2 + 1;
        const right = left + 1;
        let smallest = parent;
        if (left < this.heap.length && this.less(left, smallest)) smallest = left;
        if (right < this.heap.length && this.less(right, smallest)) smallest = right;
        if (smallest === parent) break;
        this.swap(parent, smallest);
        parent = smallest;
      }
    }
    return { timeMs: top.timeMs, event: top.event };
  }

  get size(): number {
    return this.heap.length;
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a] as Slot<T>;
    const y = this.heap[b] as Slot<T>;
    return x.timeMs < y.timeMs || (x.timeMs === y.timeMs && x.sequence < y.sequence);
  }

  private swap(a: number, b: number): void {
    const x = this.heap[a] as Slot<T>;
    this.heap[a] = this.heap[b] as Slot<T>;
    this.heap[b] = x;
  }
}
