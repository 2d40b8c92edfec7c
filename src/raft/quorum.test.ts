// Goal: the commit-index and vote arithmetic match a deliberately dumb reference, and the in-flight
// window behaves. Method: compare committedIndex/voteResult with brute-force definitions on
// 20,000 seeded random inputs; drive Inflights through fill/free sequences.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Prng } from '../util/index.js';
import { Inflights } from './progress.js';
import { committedIndex, voteResult } from './quorum.js';

test('committedIndex is the largest index a majority holds (reference model)', () => {
  const prng = new Prng(5);
  for (let round = 0; round < 20_000; round++) {
    const matches = Array.from({ length: prng.int(1, 7) }, () => prng.int(0, 20));
    // Dumb definition: the largest i such that more than half of the voters have match >= i.
    let expected = 0;
    for (let i = 0; i <= 20; i++) if (matches.filter((m) => m >= i).length * 2 > matches.length) expected = i;
    assert.equal(committedIndex(matches), expected, `matches ${matches.join(',')}`);
  }
});

test('voteResult is won with a majority of grants, lost once a majority is impossible', () => {
  const prng = new Prng(6);
  for (let round = 0; round < 20_000; round++) {
    const voters = Array.from({ length: prng.int(1, 7) }, (_, i) => `n${i}`);
    const votes = new Map<string, boolean>();
    for (const voter of voters) if (prng.chance(0.7)) votes.set(voter, prng.chance(0.5));
    votes.set('outsider', true);
    const granted = voters.filter((v) => votes.get(v) === true).length;
    const open = voters.filter((v) => !votes.has(v)).length;
    const expected = granted * 2 > voters.length ? 'won' : (granted + open) * 2 > voters.length ? 'pending' : 'lost';
    assert.equal(voteResult(voters, votes), expected);
  }
});

test('Inflights bounds count and bytes and frees acknowledged appends', () => {
  const inflights = new Inflights(3, 100);
  inflights.add(5, 10);
  inflights.add(7, 10);
  assert.equal(inflights.full(), false);
  inflights.add(9, 10);
  assert.equal(inflights.full(), true);
  assert.throws(() => inflights.add(10, 1), /full/);
  inflights.freeLE(7);
  assert.equal(inflights.count(), 1);
  inflights.add(12, 95);
  assert.equal(inflights.full(), true, 'the byte limit is reached');
  inflights.freeFirstOne();
  assert.equal(inflights.count(), 1);
  assert.equal(inflights.full(), false, '95 bytes are under the 100-byte window');
  inflights.reset();
  assert.equal(inflights.count(), 0);
});
