/**
 * The simulator's state machine: a log of the string values of committed Normal entries (the log
 * model: an append's result is its offset). Its state hash chains every applied value, so two
 * nodes at the same index must have equal hashes. `appliedIndex` is the node's applied Raft index
 * (control entries included), kept by the cluster.
 */
import { HASH_SEED, mixString } from './hash.js';

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

interface SnapshotData {
  readonly values: string[];
  readonly hash: number;
  readonly appliedIndex: number;
}

export class SimStateMachine {
  values: string[] = [];
  hash = HASH_SEED;
  appliedIndex = 0;

  /** Applies one normal entry; returns the offset its value got. */
  apply(index: number, data: Uint8Array): number {
    this.appliedIndex = index;
    const value = textDecoder.decode(data);
    this.values.push(value);
    this.hash = mixString(this.hash, value);
    return this.values.length - 1;
  }

  snapshot(): Uint8Array {
    const data: SnapshotData = { values: this.values, hash: this.hash, appliedIndex: this.appliedIndex };
    return textEncoder.encode(JSON.stringify(data));
  }

  /** Replaces the state with a snapshot's (an empty array: the initial state). */
  restore(data: Uint8Array): void {
    const parsed = parse(data);
    this.values = [...parsed.values];
    this.hash = parsed.hash;
    this.appliedIndex = parsed.appliedIndex;
  }

  /** The applied index a snapshot was taken at. */
  static snapshotIndex(data: Uint8Array): number {
    return parse(data).appliedIndex;
  }
}

function parse(data: Uint8Array): SnapshotData {
  if (data.length === 0) return { values: [], hash: HASH_SEED, appliedIndex: 0 };
  return JSON.parse(textDecoder.decode(data)) as SnapshotData;
}
