// Goal: each property of the replica simulation's produce/consume checker fails on a history
// that breaks it, and a correct history passes. Method: small hand-written histories and logs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkReplicaHistory, type ReplicaHistory } from './replica-checker.js';

function history(parts: Partial<ReplicaHistory> = {}): ReplicaHistory {
  return { produces: [], sequenced: [], observations: [], barriers: [], ...parts };
}

const LOG = ['a', 'b', 'c'];
const logs = (...each: string[][]): Map<string, string[]> => new Map(each.map((log, i) => [`n${i + 1}`, log]));

test('a correct history passes', () => {
  const h = history({
    produces: [
      { value: 'a', start: 1, end: 2, outcome: { type: 'ok', offset: 0 } },
      { value: 'b', start: 3, end: 6, outcome: { type: 'unknown' } },
      { value: 'x', start: 3, end: 4, outcome: { type: 'failed', reason: 'NotLeaderError' } },
    ],
    sequenced: [
      { producerId: 1, sequence: 0, value: 'c', offset: 2, duplicate: false, start: 5, end: 7 },
      { producerId: 1, sequence: 0, value: 'c', offset: 2, duplicate: true, start: 8, end: 9 },
    ],
    observations: [{ node: 'n2', offset: 1, value: 'b' }],
    barriers: [{ node: 'n1', start: 3, end: 5, next: 1 }],
  });
  assert.equal(checkReplicaHistory(h, logs(LOG, [...LOG], [...LOG])), null);
});

test('replicas that differ fail', () => {
  assert.match(checkReplicaHistory(history(), logs(LOG, ['a', 'b'])) ?? '', /replicas n1 and n2 differ at offset 2/);
});

test('a record in the log twice fails', () => {
  assert.match(checkReplicaHistory(history(), logs(['a', 'b', 'a'])) ?? '', /record a is in the log 2 times/);
});

test('a lost or moved acknowledged produce fails, and a failed produce that is in the log', () => {
  const acked = history({ produces: [{ value: 'b', start: 1, end: 2, outcome: { type: 'ok', offset: 2 } }] });
  assert.match(checkReplicaHistory(acked, logs(LOG)) ?? '', /acknowledged produce b at offset 2 is lost/);
  const failed = history({ produces: [{ value: 'c', start: 1, end: 2, outcome: { type: 'failed', reason: 'NotLeaderError' } }] });
  assert.match(checkReplicaHistory(failed, logs(LOG)) ?? '', /produce c reported failed .* is in the log/);
});

test('a retried sequenced batch answered with another offset fails', () => {
  const h = history({
    sequenced: [
      { producerId: 1, sequence: 4, value: 'b', offset: 1, duplicate: false, start: 1, end: 2 },
      { producerId: 1, sequence: 4, value: 'b', offset: 2, duplicate: true, start: 3, end: 4 },
    ],
  });
  assert.match(checkReplicaHistory(h, logs(LOG)) ?? '', /sequence 4 was acknowledged at offset 1, then as a duplicate at 2/);
});

test('a read of a record the healed log does not hold fails', () => {
  const h = history({ observations: [{ node: 'n3', offset: 1, value: 'z' }] });
  assert.match(checkReplicaHistory(h, logs(LOG)) ?? '', /n3 served z at offset 1/);
});

test('real-time order: a later produce at a lower offset, and a barrier read missing an earlier acknowledgement, fail', () => {
  const reordered = history({
    produces: [
      { value: 'b', start: 1, end: 2, outcome: { type: 'ok', offset: 1 } },
      { value: 'a', start: 3, end: 4, outcome: { type: 'ok', offset: 0 } },
    ],
  });
  assert.match(checkReplicaHistory(reordered, logs(LOG)) ?? '', /b \(offset 1\) was acknowledged before a was produced/);
  const stale = history({
    produces: [{ value: 'b', start: 1, end: 2, outcome: { type: 'ok', offset: 1 } }],
    barriers: [{ node: 'n2', start: 3, end: 4, next: 1 }],
  });
  assert.match(checkReplicaHistory(stale, logs(LOG)) ?? '', /linearizable read at n2 ended at offset 1/);
});

test('below the retained range records are legitimately gone, a resent batch retention removed may be appended again; different retained ranges fail', () => {
  // Retention removed offsets 0 and 1 on every replica.
  const retained = ['', '', 'c', 'd'].map((value, offset) => (offset < 2 ? undefined : value)) as string[];
  const lowest = new Map([['n1', 2], ['n2', 2]]);
  const h = history({
    produces: [{ value: 'a', start: 1, end: 2, outcome: { type: 'ok', offset: 0 } }],
    sequenced: [
      { producerId: 1, sequence: 0, value: 'b', offset: 1, duplicate: false, start: 3, end: 4 },
      // Resent after retention removed offset 1: appended again at 3, then answered as a duplicate there.
      { producerId: 1, sequence: 0, value: 'b', offset: 3, duplicate: true, start: 7, end: 8, retainedFrom: 2 },
    ],
    observations: [{ node: 'n1', offset: 0, value: 'a' }],
  });
  const withB = [...retained.slice(0, 3), 'b'];
  assert.equal(checkReplicaHistory(h, logs(withB, [...withB]), lowest), null);
  // Before retention removed it, another offset for the batch is a violation.
  const early = history({ sequenced: [h.sequenced[0]!, { ...h.sequenced[1]!, retainedFrom: 1 }] });
  assert.match(checkReplicaHistory(early, logs(withB, [...withB]), lowest) ?? '', /sequence 0 was acknowledged at offset 1, then as a duplicate at 3/);
  // A record lost inside the retained range is still a violation.
  const lost = history({ produces: [{ value: 'x', start: 1, end: 2, outcome: { type: 'ok', offset: 2 } }] });
  assert.match(checkReplicaHistory(lost, logs(withB, [...withB]), lowest) ?? '', /acknowledged produce x at offset 2 is lost/);
  assert.match(checkReplicaHistory(history(), logs(withB, [...withB]), new Map([['n1', 2], ['n2', 0]])) ?? '', /replicas n1 and n2 retain different ranges/);
});
