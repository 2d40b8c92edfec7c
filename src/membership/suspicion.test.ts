// Goal: the Lifeguard suspicion timer follows memberlist's formula. Method: direct checks of the
// deadline after 0, 1 and 2 confirmations, repeats, the original accuser, and k = 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Suspicion, suspicionTimeoutMs } from './suspicion.js';

test('minimum timeout scales with log10 of the cluster size', () => {
  assert.equal(suspicionTimeoutMs(4, 3, 1000), 4000);
  assert.equal(suspicionTimeoutMs(4, 10, 1000), 4000);
  assert.equal(suspicionTimeoutMs(4, 100, 1000), 8000);
});

test('the deadline starts at max and shrinks with independent confirmations down to min', () => {
  const suspicion = new Suspicion({ from: 'a', incarnation: 1, confirmationsWanted: 2, minMs: 4000, maxMs: 24000, startMs: 1000 });
  assert.equal(suspicion.deadlineMs, 25000);
  assert.equal(suspicion.confirm('a', 0), false, 'the accuser does not confirm');
  assert.equal(suspicion.confirm('b', 0), true);
  // 24 − log(2)/log(3) × 20 = 11.38 s (the worked example in the fact sheet).
  assert.equal(suspicion.deadlineMs, 1000 + 11381);
  assert.equal(suspicion.confirm('b', 0), false, 'a repeat does not count');
  assert.equal(suspicion.confirm('c', 0), true);
  assert.equal(suspicion.deadlineMs, 5000);
  assert.equal(suspicion.confirm('d', 0), false, 'no confirmations beyond k');
});

test('with no confirmations wanted the deadline is the minimum', () => {
  const suspicion = new Suspicion({ from: 'a', incarnation: 1, confirmationsWanted: 0, minMs: 4000, maxMs: 24000, startMs: 0 });
  assert.equal(suspicion.deadlineMs, 4000);
  assert.equal(suspicion.confirm('b', 0), false);
});
