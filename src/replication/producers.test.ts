/**
 * Goal: the producer table answers retries with the original offsets, refuses gaps and partial
 * overlaps with the sequence to resend from, forgets by the log-only window rules, and a table
 * rebuilt from the tail of the log answers like the one built by applying every entry.
 * Method: hand-made sequences, then a seeded random interleaving of producers (Prng).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Prng } from '../util/index.js';
import { decodeProducerHeader, encodeSequenced, ProducerTable, SEQUENCED_HEADER_BYTES } from './producers.js';

describe('producer header', () => {
  it('round-trips ids and sequences up to 2^53 - 1 in front of the value', () => {
    for (const [producerId, sequence] of [[1, 0], [2 ** 32 + 7, 2 ** 32 - 1], [2 ** 53 - 1, 2 ** 53 - 2]] as const) {
      const data = encodeSequenced(producerId, sequence, Buffer.from('value'));
      assert.deepEqual(decodeProducerHeader(data), { producerId, sequence });
      assert.equal(data.subarray(SEQUENCED_HEADER_BYTES).toString(), 'value');
    }
  });
});

describe('ProducerTable', () => {
  it('answers a retried batch with its offsets, refuses gaps and partial overlaps', () => {
    const table = new ProducerTable();
    assert.deepEqual(table.check(7, 5, 2), { kind: 'next' }, 'an unknown producer starts anywhere');
    // Producer 7: sequences 0..2 at offsets 10..12, then 3..4 at 20..21 (another producer wrote between).
    [10, 11, 12].forEach((offset, i) => table.record(7, i, offset, offset + 1));
    [20, 21].forEach((offset, i) => table.record(7, 3 + i, offset, offset + 1));
    assert.deepEqual(table.check(7, 5, 1), { kind: 'next' });
    assert.deepEqual(table.check(7, 0, 3), { kind: 'duplicate', firstOffset: 10 });
    assert.deepEqual(table.check(7, 1, 2), { kind: 'duplicate', firstOffset: 11 });
    assert.deepEqual(table.check(7, 3, 2), { kind: 'duplicate', firstOffset: 20 });
    assert.deepEqual(table.check(7, 2, 3), { kind: 'outOfOrder', expectedSequence: 3 }, 'the log holds 3.. elsewhere: resend from 3');
    assert.deepEqual(table.check(7, 4, 3), { kind: 'outOfOrder', expectedSequence: 5 }, 'partly held: resend from 5');
    assert.deepEqual(table.check(7, 6, 1), { kind: 'outOfOrder', expectedSequence: 5 }, 'a gap');
  });

  it('forgets producers outside the window and beyond maxProducers, the least recently written first', () => {
    const table = new ProducerTable({ windowEntries: 100, maxProducers: 2, maxRunsPerProducer: 4 });
    table.record(1, 0, 0, 1);
    table.record(2, 0, 1, 2);
    table.record(1, 1, 2, 3);
    table.record(3, 0, 3, 4);
    assert.equal(table.nextSequence(2), undefined, 'producer 2 was the least recently written');
    assert.equal(table.nextSequence(1), 2);
    table.record(3, 1, 4, 104);
    assert.equal(table.nextSequence(1), undefined, 'producer 1 last wrote 101 entries back');
    table.forgetBefore(105);
    assert.equal(table.size, 0);
  });

  it('keeps maxRunsPerProducer runs: older retries are refused, not guessed', () => {
    const table = new ProducerTable({ windowEntries: 1000, maxProducers: 10, maxRunsPerProducer: 2 });
    for (let sequence = 0; sequence < 3; sequence++) table.record(1, sequence, sequence * 2, sequence * 2 + 1);
    assert.deepEqual(table.check(1, 2, 1), { kind: 'duplicate', firstOffset: 4 });
    assert.deepEqual(table.check(1, 1, 1), { kind: 'duplicate', firstOffset: 2 });
    assert.deepEqual(table.check(1, 0, 1), { kind: 'outOfOrder', expectedSequence: 3 });
  });

  it('rebuilt from the last windowEntries entries answers like the table built from all of them', () => {
    const prng = new Prng(20261201);
    const window = { windowEntries: 300, maxProducers: 16, maxRunsPerProducer: 64 };
    const log: { producerId: number; sequence: number; offset: number; index: number }[] = [];
    const next = new Map<number, number>();
    for (let index = 1; index <= 3000; index++) {
      if (prng.chance(0.2)) continue; // a no-op, a configuration or a plain record
      const producerId = prng.int(1, 12);
      const sequence = next.get(producerId) ?? 0;
      next.set(producerId, sequence + 1);
      log.push({ producerId, sequence, offset: log.length, index });
    }
    const full = new ProducerTable(window);
    for (const entry of log) full.record(entry.producerId, entry.sequence, entry.offset, entry.index);
    const lastIndex = log[log.length - 1]!.index;
    const rebuilt = new ProducerTable(window);
    for (const entry of log) if (entry.index > lastIndex - window.windowEntries) rebuilt.record(entry.producerId, entry.sequence, entry.offset, entry.index);
    let duplicates = 0;
    for (let producerId = 1; producerId <= 12; producerId++) {
      const nextSequence = full.nextSequence(producerId);
      assert.equal(rebuilt.nextSequence(producerId), nextSequence, `producer ${producerId}`);
      if (nextSequence === undefined) continue;
      for (let sequence = Math.max(0, nextSequence - 40); sequence < nextSequence; sequence++) {
        const entry = log.find((e) => e.producerId === producerId && e.sequence === sequence)!;
        const expected = full.check(producerId, sequence, 1);
        assert.deepEqual(rebuilt.check(producerId, sequence, 1), expected, `producer ${producerId} sequence ${sequence}`);
        if (entry.index > lastIndex - window.windowEntries) {
          assert.deepEqual(expected, { kind: 'duplicate', firstOffset: entry.offset });
          duplicates++;
        }
      }
    }
    assert.ok(duplicates > 100, `${duplicates} retries answered`);
  });
});
