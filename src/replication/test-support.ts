/**
 * Test helpers for RaftLogStorage: a plain-data view of everything a storage answers, a check that
 * the consumer view agrees with the entries, and entry builders.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactedError, EntryType, LogUnavailableError, encodeConfig, type ClusterConfig, type Entry, type Storage } from '../raft/index.js';
import type { RaftLogStorage } from './raft-storage.js';

const textEncoder = new TextEncoder();

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `annal-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function normal(index: number, term: number, text = `v${index}.${term}`): Entry {
  return { index, term, type: EntryType.Normal, data: textEncoder.encode(text) };
}

export function noop(index: number, term: number): Entry {
  return { index, term, type: EntryType.Noop, data: new Uint8Array(0) };
}

export function configEntry(index: number, term: number, config: ClusterConfig): Entry {
  return { index, term, type: EntryType.Config, data: encodeConfig(config) };
}

/** Normal entries [from, to] of `term`. */
export function normals(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let index = from; index <= to; index++) out.push(normal(index, term));
  return out;
}

export interface PlainEntry {
  index: number;
  term: number;
  type: number;
  data: string;
}

function plain(entry: Entry): PlainEntry {
  return { index: entry.index, term: entry.term, type: entry.type, data: Buffer.from(entry.data).toString('hex') };
}

/** Everything the Raft core can read, as plain data. */
export interface RaftView {
  firstIndex: number;
  lastIndex: number;
  terms: number[];
  entries: PlainEntry[];
  configEntries: PlainEntry[];
  snapshot: { index: number; term: number; config: ClusterConfig; data: string };
  hardState: { term: number; vote: string | null; commit: number };
}

export function raftView(storage: Storage): RaftView {
  const firstIndex = storage.firstIndex();
  const lastIndex = storage.lastIndex();
  const terms: number[] = [];
  for (let index = firstIndex - 1; index <= lastIndex; index++) terms.push(storage.term(index));
  const snapshot = storage.snapshot();
  const { hardState, snapshotMeta } = storage.initialState();
  assert.deepEqual(snapshotMeta, snapshot.meta);
  return {
    firstIndex,
    lastIndex,
    terms,
    entries: storage.entries(firstIndex, lastIndex + 1, Infinity).map(plain),
    configEntries: storage.configEntries(0).map(plain),
    snapshot: {
      index: snapshot.meta.index,
      term: snapshot.meta.term,
      config: { voters: [...snapshot.meta.config.voters], learners: [...snapshot.meta.config.learners] },
      data: Buffer.from(snapshot.data).toString('hex'),
    },
    hardState: { term: hardState.term, vote: hardState.vote, commit: hardState.commit },
  };
}

/** Consumer records as plain data: [offset, raft index, term, value]. */
export interface ConsumerView {
  lowestOffset: number;
  nextOffset: number;
  records: [number, number, number, string][];
}

export interface FullView extends RaftView {
  consumer: ConsumerView;
}

/**
 * Reads `storage` completely and checks it against itself: the range errors, size-limited
 * reads, configEntries against the entries' types, and the consumer view against the normal
 * entries (dense offsets, no control entry, offsetOfIndex/indexOfOffset inverse, readRecords
 * limits and maxIndex).
 */
export function fullView(storage: RaftLogStorage): FullView {
  const view = raftView(storage);
  const { firstIndex, lastIndex } = view;
  if (firstIndex >= 2) assert.throws(() => storage.term(firstIndex - 2), CompactedError);
  assert.throws(() => storage.term(lastIndex + 1), LogUnavailableError);
  if (firstIndex > 1) assert.throws(() => storage.entries(firstIndex - 1, lastIndex + 1, Infinity), CompactedError);
  assert.throws(() => storage.entries(firstIndex, lastIndex + 2, Infinity), LogUnavailableError);
  for (let lo = firstIndex; lo <= lastIndex; lo++) {
    assert.deepEqual(storage.entries(lo, lastIndex + 1, 1).map(plain), [view.entries[lo - firstIndex]], 'a tiny limit still returns one entry');
    // 24 bytes of overhead per entry: room for about two entries.
    const limited = storage.entries(lo, lastIndex + 1, 60).map(plain);
    let size = 0;
    let expected = 0;
    for (const entry of view.entries.slice(lo - firstIndex)) {
      size += entry.data.length / 2 + 24;
      if (expected > 0 && size > 60) break;
      expected++;
    }
    assert.equal(limited.length, expected, `entries(${lo}, ..., 60)`);
  }
  assert.deepEqual(view.configEntries, view.entries.filter((entry) => entry.type === EntryType.Config));
  for (const entry of view.entries) assert.equal(entry.term, view.terms[entry.index - firstIndex + 1]);

  const lowestOffset = storage.lowestOffset();
  const nextOffset = storage.offsetOfIndex(lastIndex + 1);
  const normalEntries = view.entries.filter((entry) => entry.type === EntryType.Normal);
  assert.equal(nextOffset - lowestOffset, normalEntries.length, 'consumer offsets are dense over the normal entries');
  assert.equal(storage.offsetOfIndex(firstIndex), lowestOffset);
  const records: ConsumerView['records'] = normalEntries.map((entry, i) => [lowestOffset + i, entry.index, entry.term, entry.data]);
  let expectedOffset = lowestOffset;
  for (const entry of view.entries) {
    assert.equal(storage.offsetOfIndex(entry.index), expectedOffset, `offsetOfIndex(${entry.index})`);
    if (entry.type === EntryType.Normal) {
      assert.equal(storage.indexOfOffset(expectedOffset), entry.index, `indexOfOffset(${expectedOffset})`);
      expectedOffset++;
    }
  }
  assert.throws(() => storage.indexOfOffset(nextOffset));
  if (lowestOffset > 0) assert.throws(() => storage.readRecords(lowestOffset - 1, lastIndex, { maxCount: 10, maxBytes: 1 << 20 }), /out of range/);
  const read = (offset: number, maxIndex: number, maxCount: number, maxBytes: number): ConsumerView['records'] =>
    storage.readRecords(offset, maxIndex, { maxCount, maxBytes }).map((record) => {
      assert.equal(record.type, 0);
      return [record.offset, storage.indexOfOffset(record.offset), record.term, record.value.toString('hex')];
    });
  assert.deepEqual(read(lowestOffset, lastIndex, 1_000_000, Infinity), records);
  assert.deepEqual(read(nextOffset, lastIndex, 10, 1000), []);
  for (let i = 0; i < records.length; i++) {
    const [offset, index] = records[i]!;
    assert.deepEqual(read(offset, lastIndex, 2, Infinity), records.slice(i, i + 2), `readRecords(${offset}) maxCount 2`);
    assert.deepEqual(read(offset, lastIndex, 100, 0), records.slice(i, i + 1), 'maxBytes 0 still returns one record');
    assert.deepEqual(read(offset, index, 100, Infinity), records.slice(i, i + 1), 'maxIndex bounds the read');
    assert.deepEqual(read(offset, index - 1, 100, Infinity), [], 'nothing at or below maxIndex');
    const valueBytes = records[i]![3].length / 2;
    const two = read(offset, lastIndex, 100, valueBytes + (records[i + 1]?.[3].length ?? 0) / 2);
    assert.deepEqual(two, records.slice(i, i + 2), 'maxBytes fitting exactly two values');
  }
  return { ...view, consumer: { lowestOffset, nextOffset, records } };
}

/** `view` cut after `lastIndex` (what removing a suffix leaves). */
export function truncatedView(view: FullView, lastIndex: number): FullView {
  const records = view.consumer.records.filter(([, index]) => index <= lastIndex);
  return {
    ...view,
    lastIndex,
    terms: view.terms.slice(0, lastIndex - view.firstIndex + 2),
    entries: view.entries.filter((entry) => entry.index <= lastIndex),
    configEntries: view.configEntries.filter((entry) => entry.index <= lastIndex),
    consumer: { lowestOffset: view.consumer.lowestOffset, nextOffset: view.consumer.lowestOffset + records.length, records },
  };
}
