/**
 * Goal: the record checksum is standard CRC-32 whichever path computes it.
 * Method: known check values, and the JavaScript table against zlib's on random inputs of every
 * length around the switch-over point and with non-zero starting values.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { Prng } from '../util/index.js';
import { crc32, crc32Table } from './checksum.js';

describe('crc32', () => {
  it('matches the standard check value', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    assert.equal(crc32Table(Buffer.from('123456789')), 0xcbf43926);
    assert.equal(crc32(Buffer.alloc(0)), 0);
  });

  it('agrees with zlib on every length up to 600 bytes, sub-ranges and continuations', () => {
    const prng = new Prng(42);
    const bytes = prng.fill(new Uint8Array(700));
    for (let length = 0; length <= 600; length++) {
      const start = prng.int(0, 50);
      const expected = zlibCrc32(bytes.subarray(start, start + length));
      assert.equal(crc32Table(bytes, start, start + length), expected, `length ${length}`);
      assert.equal(crc32(bytes, start, start + length), expected, `length ${length}`);
    }
    const whole = crc32(bytes);
    assert.equal(crc32(bytes, 300, 700, crc32(bytes, 0, 300)), whole);
    assert.equal(crc32Table(bytes, 5, 700, crc32Table(bytes, 0, 5)), whole);
  });
});
