// Goal: a replica's cluster id survives the disk failing while it is written: a bootstrap whose
// last step (the cluster id) failed is finished by the next open instead of leaving a cluster
// without an id; a member whose adoption of its cluster's id failed stops, to be reopened in
// place, instead of refusing every message from then on.
// Method: Replica.open on a SimDisk whose next fsync of the cluster id's temporary file fails
// with EIO, then again on the same disk.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Replica, type ReplicaLogger } from '../replication/replica.js';
import { Prng } from '../util/index.js';
import { SimDisk } from './disk.js';

const CLUSTER_TMP = '/data/raft/cluster.json.tmp';

function options(disk: SimDisk, bootstrap: boolean, lines: string[]): Parameters<typeof Replica.open>[0] {
  const prng = new Prng(7);
  const logger: ReplicaLogger = {
    debug: () => {},
    info: (_fields, message) => lines.push(message),
    warn: (_fields, message) => lines.push(message),
    error: (_fields, message) => lines.push(message),
  };
  return {
    dataDir: '/data',
    nodeName: 'n1',
    bootstrap,
    log: { fsync: { kind: 'always' } },
    logger,
    environment: {
      fileIo: disk,
      randomBytes: (count) => Uint8Array.from({ length: count }, () => prng.int(0, 255)),
      raftPrng: () => new Prng(prng.nextUint32()),
      // No peers: these replicas never start their Raft loop.
      transport: () => ({
        send: () => {},
        onMessage: () => {},
        deliver: () => {},
        close: () => {},
        forward: () => Promise.reject(new Error('no peers here')),
        readIndex: () => Promise.reject(new Error('no peers here')),
      }),
    },
  };
}

function newDisk(): SimDisk {
  const disk = new SimDisk({ seed: 1, scheduleSync: (complete) => queueMicrotask(complete) });
  disk.mkdir('/data');
  return disk;
}

test('a bootstrap whose cluster id was not written is finished by the next open', async () => {
  const disk = newDisk();
  const lines: string[] = [];
  disk.failNextFsyncOf(CLUSTER_TMP);
  await assert.rejects(Replica.open(options(disk, true, lines)), /EIO/);
  // Started again without --bootstrap, as a supervisor restarting the agent with other flags might.
  const replica = await Replica.open(options(disk, false, lines));
  try {
    assert.match(replica.clusterId ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(lines.includes('finished an interrupted bootstrap: the cluster has its id'), lines.join('\n'));
  } finally {
    await replica.close();
  }
});

test('a member whose adoption of the cluster id failed refuses the stream and stops, to be reopened in place', async () => {
  const disk = newDisk();
  const lines: string[] = [];
  const replica = await Replica.open(options(disk, false, lines));
  try {
    assert.equal(replica.clusterId, undefined);
    const stopped = new Promise<Error>((resolve) => (replica.onStopped = resolve));
    disk.failNextFsyncOf(CLUSTER_TMP);
    const admission = await replica.admission.admit('n2@1', 'cluster-a', 'stream');
    assert.deepEqual(admission.admitted, false);
    assert.match((await stopped).message, /EIO/);
    assert.equal(replica.stopped, true);
  } finally {
    await replica.close();
  }
  // Reopened, it adopts the id the next stream brings.
  const reopened = await Replica.open(options(disk, false, lines));
  try {
    assert.deepEqual(await reopened.admission.admit('n2@1', 'cluster-a', 'stream'), { admitted: true });
    assert.equal(reopened.clusterId, 'cluster-a');
  } finally {
    await reopened.close();
  }
});
