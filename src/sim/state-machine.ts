/**
 * The simulator's state machine: a log of the string values of committed Normal entries (the log
 * model: an append's result is its offset). Its state hash chains every applied value, so two
 * nodes at the same index must have equal hashes.
 */
import { EntryType, type Entry } from '../raft/index.js';
import { HASH_SEED, mixString } from './hash.js';

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

export class SimStateMachine {
  values: string[] = [];
  hash = HASH_SEED;
  appliedIndex = 0;

  /** Applies one entry; returns the offset a Normal entry got, or null for control entries. */
  apply(entry: Entry): number | null {
    this.appliedIndex = entry.index;
    if (entry.type !== EntryType.Normal) return null;
    const value = textDecoder.decode(entry.data);
    this.values.push(value);
    this.hash = mixString(this.hash, value);
    return this.values.length - 1;
  }

  snapshot(): Uint8Array {
    return textEncoder.encode(JSON.stringify({ values: this.values, hash: this.hash, appliedIndex: this.appliedIndex }));
  }

  restore(data: Uint8Array, index: number): void {
    if (data.length === 0) {
      this.values = [];
      this.hash = HASH_SEED;
    } else {
      const parsed = JSON.parse(textDecoder.decode(data)) as { values: string[]; hash: number };
      this.values = parsed.values;
      this.hash = parsed.hash;
    }
    this.appliedIndex = index;
  }
}
