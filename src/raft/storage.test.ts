// Goal: MemoryStorage honours the Storage contract the core relies on (and that the durable store
// must match): half-open ranges, maxSizeBytes returning at least one entry, typed errors for
// compacted and unavailable indexes, suffix truncation on append, snapshots with trailing entries.
// Method: direct calls on small logs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CompactedError, LogUnavailableError, MemoryStorage } from './storage.js';
import { EntryType, type Entry } from './types.js';

const config = { voters: ['a'], learners: [] };

function entries(from: number, to: number, term: number, sizeBytes = 10): Entry[] {
  const result: Entry[] = [];
  for (let index = from; index <= to; index++) result.push({ index, term, type: EntryType.Normal, data: new Uint8Array(sizeBytes) });
  return result;
}

test('entries reads [lo, hi) and stops at maxSizeBytes but returns at least one entry', () => {
  const storage = new MemoryStorage(config);
  storage.append(entries(1, 5, 1));
  assert.deepEqual(storage.entries(2, 4, Infinity).map((e) => e.index), [2, 3]);
  assert.deepEqual(storage.entries(3, 3, Infinity), []);
  // Each entry counts 10 data bytes + 24 overhead = 34 bytes.
  assert.deepEqual(storage.entries(1, 6, 70).map((e) => e.index), [1, 2]);
  assert.deepEqual(storage.entries(1, 6, 1).map((e) => e.index), [1]);
  assert.equal(storage.firstIndex(), 1);
  assert.equal(storage.lastIndex(), 5);
  assert.equal(storage.term(0), 0);
  assert.equal(storage.term(5), 1);
});

test('out-of-range reads throw CompactedError or LogUnavailableError', () => {
  const storage = new MemoryStorage(config);
  storage.append(entries(1, 10, 1));
  storage.createSnapshot({ index: 6, config, data: new Uint8Array([1]), trailingEntryCount: 2 });
  assert.equal(storage.firstIndex(), 5, 'two trailing entries are kept before the snapshot index');
  assert.equal(storage.term(4), 1, 'the term just before the first entry stays readable');
  assert.throws(() => storage.entries(4, 6, Infinity), CompactedError);
  assert.throws(() => storage.term(3), CompactedError);
  assert.throws(() => storage.entries(9, 12, Infinity), LogUnavailableError);
  assert.throws(() => storage.term(11), LogUnavailableError);
  assert.equal(storage.snapshot().meta.index, 6);
  assert.equal(storage.snapshot().meta.term, 1);
});

test('append truncates a conflicting suffix and refuses gaps', () => {
  const storage = new MemoryStorage(config);
  storage.append(entries(1, 5, 1));
  storage.append(entries(3, 3, 2));
  assert.equal(storage.lastIndex(), 3);
  assert.equal(storage.term(3), 2);
  assert.throws(() => storage.append(entries(5, 5, 2)), /gap/);
});

test('applySnapshot replaces the log; configEntries finds configuration entries', () => {
  const storage = new MemoryStorage(config);
  storage.append([...entries(1, 2, 1), { index: 3, term: 1, type: EntryType.Config, data: new Uint8Array([0x7b, 0x7d]) }]);
  assert.deepEqual(storage.configEntries(1).map((e) => e.index), [3]);
  assert.deepEqual(storage.configEntries(4), []);
  storage.applySnapshot({ meta: { index: 20, term: 3, config }, data: new Uint8Array(0) });
  assert.equal(storage.firstIndex(), 21);
  assert.equal(storage.lastIndex(), 20);
  assert.equal(storage.term(20), 3);
  assert.deepEqual(storage.configEntries(1), []);
});
