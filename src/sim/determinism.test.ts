// Goal: one seed reproduces one run bit for bit. Method: run the same seeds twice (fresh module
// state each time is not needed: all randomness flows from the seed) and compare the hash of the
// full event trace, the event count and the virtual clock; different seeds must differ.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed } from './run.js';

test('the same seed gives the same trace hash; different seeds differ', () => {
  const hashes = new Set<number>();
  for (const [seed, nodeCount] of [
    [7, 3],
    [1234, 5],
    [99, 7],
  ] as const) {
    const first = runSeed({ seed, nodeCount, steps: 300 });
    const second = runSeed({ seed, nodeCount, steps: 300 });
    assert.equal(first.ok, true, first.failure ?? '');
    assert.equal(second.traceHash, first.traceHash);
    assert.equal(second.eventCount, first.eventCount);
    assert.equal(second.virtualMs, first.virtualMs);
    assert.ok(first.eventCount > 500, 'a run processes a meaningful number of events');
    hashes.add(first.traceHash);
  }
  assert.equal(hashes.size, 3);
});

test('a verbose trace is the same text on every run of a seed', () => {
  const lines = (): string[] => {
    const trace: string[] = [];
    runSeed({ seed: 42, nodeCount: 3, steps: 100, trace: (line) => trace.push(line) });
    return trace;
  };
  const first = lines();
  assert.ok(first.length > 100);
  assert.deepEqual(lines(), first);
});
