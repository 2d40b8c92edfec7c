/**
 * Goal: the seeded PRNG is reproducible and roughly uniform, since simulations depend on both.
 * Method: same seed → same sequence; different seeds differ; bucket counts over many draws.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Prng } from './prng.js';

describe('Prng', () => {
  it('is deterministic per seed', () => {
    const a = new Prng(1234);
    const b = new Prng(1234);
    const c = new Prng(1235);
    const seqA = Array.from({ length: 100 }, () => a.nextUint32());
    assert.deepEqual(seqA, Array.from({ length: 100 }, () => b.nextUint32()));
    assert.notDeepEqual(seqA, Array.from({ length: 100 }, () => c.nextUint32()));
  });

  it('int() stays in range and covers it evenly', () => {
    const prng = new Prng(7);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const v = prng.int(0, 9);
      assert.ok(v >= 0 && v <= 9);
      counts[v]! += 1;
    }
    for (const count of counts) assert.ok(count > 9_000 && count < 11_000, `bucket count ${count}`);
    assert.throws(() => prng.int(3, 2), RangeError);
  });

  it('next() is in [0, 1)', () => {
    const prng = new Prng(0);
    for (let i = 0; i < 10_000; i++) {
      const v = prng.next();
      assert.ok(v >= 0 && v < 1);
    }
  });
});
