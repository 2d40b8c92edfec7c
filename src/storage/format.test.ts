/**
 * Goal: an encoded frame is the documented layout, and its checksum covers exactly its bytes after
 * the checksum field, however the encoder splits the computation (header fields in the target,
 * then the value where the caller holds it).
 * Method: frames of value lengths on both sides of the native CRC's threshold, encoded at odd
 * positions of a larger buffer, checked against zlib's CRC-32 of the frame's bytes and decoded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { Prng } from '../util/index.js';
import { decodeFrameHeader, encodeFrame, frameChecksumMatches, FRAME_HEADER_BYTES } from './format.js';

describe('frame format', () => {
  it('checksums bytes [8, end) of the frame and decodes to what was encoded', () => {
    const prng = new Prng(7);
    const target = Buffer.alloc(4096, 0xee);
    for (const length of [0, 1, 99, 100, 127, 128, 129, 1024, 2000]) {
      const value = prng.fill(new Uint8Array(length));
      const at = prng.int(0, 64) * 2 + 1;
      const offset = 2 ** 40 + length;
      const size = encodeFrame(target, at, offset, 2 ** 33 + 5, 0xffff_fffe, value);
      assert.equal(size, FRAME_HEADER_BYTES + length);
      const frame = target.subarray(at, at + size);
      assert.equal(frame.readUInt32LE(4), zlibCrc32(frame.subarray(8)), `length ${length}`);
      const header = decodeFrameHeader(target, at);
      assert.deepEqual(header, { valueLength: length, checksum: frame.readUInt32LE(4), offset, term: 2 ** 33 + 5, type: 0xffff_fffe });
      assert.ok(frameChecksumMatches(target, at, header));
      assert.deepEqual(new Uint8Array(frame.subarray(FRAME_HEADER_BYTES)), value);
      frame[FRAME_HEADER_BYTES - 1]! ^= 1; // the type field is covered too
      assert.ok(!frameChecksumMatches(target, at, header), `length ${length}`);
    }
  });
});
