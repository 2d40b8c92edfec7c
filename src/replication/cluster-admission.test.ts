// Goal: a node takes Raft traffic only from its own cluster, adopts the first id a peer stream
// brings when it has none (once, even with several streams at once), and never adopts on a call.
// Method: ClusterAdmission over an in-memory id with a gated adoption.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterAdmission } from './cluster-admission.js';

const quiet = { info: () => {}, error: () => {} };

test('a node with an id admits its own cluster and peers without one at once, and refuses another cluster', () => {
  const admission = new ClusterAdmission({ clusterId: () => 'a', adoptClusterId: () => assert.fail('nothing to adopt'), logger: quiet });
  assert.deepEqual(admission.admit('n2', 'a', 'stream'), { admitted: true });
  assert.deepEqual(admission.admit('n2', '', 'stream'), { admitted: true });
  assert.deepEqual(admission.admit('n2', 'b', 'call'), { admitted: false, reason: 'otherCluster', ours: 'a' });
});

test('a node without an id adopts the first stream\'s once; a second stream waits for it and is compared with it', async () => {
  let ours: string | undefined;
  const adoptions: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const admission = new ClusterAdmission({
    clusterId: () => ours,
    adoptClusterId: async (id) => {
      adoptions.push(id);
      await gate;
      ours = id;
    },
    logger: quiet,
  });
  assert.deepEqual(admission.admit('n1', 'b', 'call'), { admitted: true }, 'a call never adopts');
  assert.equal(ours, undefined);
  const first = admission.admit('n1', 'a', 'stream');
  const second = admission.admit('n3', 'c', 'stream');
  assert.ok(first instanceof Promise && second instanceof Promise);
  release();
  assert.deepEqual(await first, { admitted: true });
  assert.deepEqual(await second, { admitted: false, reason: 'otherCluster', ours: 'a' });
  assert.deepEqual(adoptions, ['a']);
});

test('a failed adoption refuses the stream and the next stream tries again', async () => {
  let ours: string | undefined;
  let fail = true;
  const admission = new ClusterAdmission({
    clusterId: () => ours,
    adoptClusterId: (id) => {
      if (fail) throw new Error('EIO: fsync of cluster.json failed');
      ours = id;
    },
    logger: quiet,
  });
  const refused = await admission.admit('n1', 'a', 'stream');
  assert.equal(refused.admitted, false);
  assert.equal(!refused.admitted && refused.reason, 'adoptFailed');
  fail = false;
  assert.deepEqual(await admission.admit('n1', 'a', 'stream'), { admitted: true });
  assert.equal(ours, 'a');
});
