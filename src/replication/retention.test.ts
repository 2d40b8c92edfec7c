// Goal: the retention rule drops whole segments oldest first, never the active one or anything
// not applied, keeps at least `bytes` (Kafka's rule) and drops by age; the control entry that
// carries the decision round-trips and unknown ones are refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeControl, encodeControl, retainFrom, type SegmentView } from './retention.js';

const segment = (firstIndex: number, nextIndex: number, sizeBytes: number, modifiedMs = 0, active = false): SegmentView => ({
  firstIndex,
  nextIndex,
  sizeBytes,
  modifiedMs,
  active,
});
const segments = [segment(1, 101, 100, 1000), segment(101, 201, 100, 2000), segment(201, 301, 100, 3000), segment(301, 351, 50, 4000, true)];

test('by bytes: drops the oldest segments while at least `bytes` remain', () => {
  assert.equal(retainFrom(segments, { bytes: 1000 }, 350, 0), null, 'under the limit');
  assert.equal(retainFrom(segments, { bytes: 250 }, 350, 0), 101, '350 - 100 = 250 >= 250');
  assert.equal(retainFrom(segments, { bytes: 150 }, 350, 0), 201);
  assert.equal(retainFrom(segments, { bytes: 1 }, 350, 0), 301, 'never the active segment');
  assert.equal(retainFrom(segments, { bytes: 1 }, 150, 0), 101, 'never past the applied index');
});

test('by age: drops segments whose newest record is older than ageMs', () => {
  assert.equal(retainFrom(segments, { ageMs: 10_000 }, 350, 5000), null);
  assert.equal(retainFrom(segments, { ageMs: 2500 }, 350, 5000), 201, 'segments modified at 1000 and 2000 are older than 2.5 s');
  assert.equal(retainFrom(segments, { ageMs: 1 }, 350, 1_000_000), 301);
  assert.equal(retainFrom(segments, { ageMs: 2500, bytes: 10 }, 350, 5000), 301, 'either rule drops a segment');
});

test('the retain control entry round-trips; anything else is refused', () => {
  assert.deepEqual(decodeControl(encodeControl({ kind: 'retain', firstIndex: 42 })), { kind: 'retain', firstIndex: 42 });
  assert.throws(() => decodeControl(new TextEncoder().encode('{"kind":"retain","firstIndex":0}')));
  assert.throws(() => decodeControl(new TextEncoder().encode('{"kind":"other"}')));
  assert.throws(() => decodeControl(new Uint8Array([0xff])));
});
