/**
 * Idempotent producers (Kafka's idempotent producer): a producer numbers its records 0, 1, 2, ...
 * under a random producer id, and the leader appends each (producer, sequence) once, so a client
 * may resend a write whose answer it lost.
 *
 * Where the state lives: in the log. A producer's record is a Raft entry of type Sequenced whose
 * data is `u64 producer id | u64 sequence` (little-endian) followed by the value; the commit log
 * stores it as one record of type 4, and consumers get the value without the header and type 0
 * (raft-storage.ts), so what they read does not change. The table below is derived from the log
 * alone: every replica builds it while applying entries, and rebuilds it at start-up by reading
 * the retained tail of the log, so a new leader knows exactly what its predecessors committed.
 *
 * The window: a producer is remembered while its last record is among the last `windowEntries`
 * Raft entries and still retained (retention and snapshots drop what they drop), and it is among
 * the `maxProducers` most recently written producers. For each producer the table keeps its last
 * sequence and up to `maxRunsPerProducer` runs (consecutive sequences at consecutive indexes),
 * enough to answer a retry of any of its last that many batches with the offsets they got. These
 * rules depend on the log only, so within them every replica, and a replica that rebuilt the table
 * at start-up from the window, answers alike. Beyond them a producer may be forgotten: its next
 * batch is then taken as the start of a new producer, and a retry of an old batch would append it
 * again.
 */
import { assert } from '../util/index.js';

/** Bytes of the producer header in front of a Sequenced entry's value. */
export const SEQUENCED_HEADER_BYTES = 16;

const TWO_POW_32 = 0x1_0000_0000;

/** The Sequenced entry data for one record: header, then the value. */
export function encodeSequenced(producerId: number, sequence: number, value: Uint8Array): Buffer {
  const data = Buffer.allocUnsafe(SEQUENCED_HEADER_BYTES + value.length);
  data.writeUInt32LE(producerId >>> 0, 0);
  data.writeUInt32LE(Math.floor(producerId / TWO_POW_32), 4);
  data.writeUInt32LE(sequence >>> 0, 8);
  data.writeUInt32LE(Math.floor(sequence / TWO_POW_32), 12);
  data.set(value, SEQUENCED_HEADER_BYTES);
  return data;
}

export function decodeProducerHeader(data: Uint8Array): { producerId: number; sequence: number } {
  assert(data.length >= SEQUENCED_HEADER_BYTES, `a Sequenced entry of ${data.length} bytes has no producer header`);
  return { producerId: readUint64(data, 0), sequence: readUint64(data, 8) };
}

function readUint32(data: Uint8Array, at: number): number {
  return (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16)) + data[at + 3]! * 0x100_0000;
}

function readUint64(data: Uint8Array, at: number): number {
  return readUint32(data, at) + readUint32(data, at + 4) * TWO_POW_32;
}

export interface ProducerWindow {
  /** A producer is forgotten once its last record is this many Raft entries back. Default 2^20. */
  windowEntries: number;
  /** At most this many producers; the least recently written is forgotten first. Default 1024. */
  maxProducers: number;
  /** Runs kept per producer (the retries it can be answered for). Default 1024. */
  maxRunsPerProducer: number;
}

export const DEFAULT_PRODUCER_WINDOW: ProducerWindow = { windowEntries: 1 << 20, maxProducers: 1024, maxRunsPerProducer: 1024 };

interface Run {
  firstSequence: number;
  firstOffset: number;
  count: number;
  /** Raft index of the run's first record; the others follow it at consecutive indexes. */
  firstIndex: number;
}

interface Producer {
  lastSequence: number;
  lastIndex: number;
  // Invariant: runs[head..] in sequence order, at most maxRunsPerProducer of them.
  runs: Run[];
  head: number;
}

/** What the table says about a batch (firstSequence, count) of a producer. */
export type SequenceCheck =
  | { kind: 'next' }
  | { kind: 'duplicate'; firstOffset: number }
  | { kind: 'outOfOrder'; expectedSequence: number };

export class ProducerTable {
  // Insertion order is write order: the first producer is the least recently written.
  private readonly producers = new Map<number, Producer>();
  private floorIndex = 0;

  constructor(private readonly window: ProducerWindow = DEFAULT_PRODUCER_WINDOW) {
    assert(window.windowEntries >= 1 && window.maxProducers >= 1 && window.maxRunsPerProducer >= 1, 'producer window limits must be at least 1');
  }

  get size(): number {
    return this.producers.size;
  }

  /** Records an applied Sequenced entry, in log order. */
  record(producerId: number, sequence: number, offset: number, index: number): void {
    let producer = this.producers.get(producerId);
    if (producer === undefined) {
      producer = { lastSequence: sequence, lastIndex: index, runs: [], head: 0 };
    } else {
      this.producers.delete(producerId);
    }
    this.producers.set(producerId, producer);
    producer.lastSequence = sequence;
    producer.lastIndex = index;
    const last = producer.runs.length > producer.head ? producer.runs[producer.runs.length - 1]! : undefined;
    if (last !== undefined && sequence === last.firstSequence + last.count && offset === last.firstOffset + last.count && index === last.firstIndex + last.count) {
      last.count++;
    } else {
      producer.runs.push({ firstSequence: sequence, firstOffset: offset, count: 1, firstIndex: index });
      if (producer.runs.length - producer.head > this.window.maxRunsPerProducer) producer.head++;
      if (producer.head >= 64 && producer.head * 2 >= producer.runs.length) {
        producer.runs.splice(0, producer.head);
        producer.head = 0;
      }
    }
    if (this.producers.size > this.window.maxProducers) this.producers.delete(this.producers.keys().next().value!);
    this.forgetBefore(index - this.window.windowEntries + 1);
  }

  /** Forgets everything recorded at Raft indexes below `index` (the window moved, or the log was compacted). */
  forgetBefore(index: number): void {
    if (index <= this.floorIndex) return;
    this.floorIndex = index;
    for (const [id, producer] of this.producers) {
      if (producer.lastIndex >= index) break;
      this.producers.delete(id);
    }
  }

  clear(): void {
    this.producers.clear();
  }

  /** The sequence the producer's next batch must start with, or undefined for a producer not in the table. */
  nextSequence(producerId: number): number | undefined {
    const producer = this.producers.get(producerId);
    return producer === undefined ? undefined : producer.lastSequence + 1;
  }

  /** Whether a batch continues the producer's sequence, repeats what the log holds, or neither. */
  check(producerId: number, firstSequence: number, count: number): SequenceCheck {
    const producer = this.producers.get(producerId);
    if (producer === undefined) return { kind: 'next' };
    const expectedSequence = producer.lastSequence + 1;
    if (firstSequence === expectedSequence) return { kind: 'next' };
    if (firstSequence > expectedSequence) return { kind: 'outOfOrder', expectedSequence };
    for (let i = producer.runs.length - 1; i >= producer.head; i--) {
      const run = producer.runs[i]!;
      // Only the part of a run inside the window counts (what a rebuild from the window sees).
      const skipped = Math.max(0, this.floorIndex - run.firstIndex);
      if (skipped >= run.count) break;
      if (firstSequence < run.firstSequence + skipped) {
        if (skipped > 0) break;
        continue;
      }
      const runEnd = run.firstSequence + run.count;
      if (firstSequence >= runEnd) break;
      // The log holds the batch at consecutive offsets, or only its first part: resend the rest from runEnd.
      if (firstSequence + count <= runEnd) return { kind: 'duplicate', firstOffset: run.firstOffset + (firstSequence - run.firstSequence) };
      return { kind: 'outOfOrder', expectedSequence: runEnd };
    }
    // Held, but older than the runs kept: its offsets are no longer known.
    return { kind: 'outOfOrder', expectedSequence };
  }
}
