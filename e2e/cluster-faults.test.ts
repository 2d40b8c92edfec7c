// Goal: a full disk on one follower costs the cluster nothing it promised: the follower's Raft
// stops with one clear error line and a metric, the other two keep acknowledging writes, and
// every acknowledged record is on both of them at its offset; once it has space again, the same
// process reopens its replica in place and catches up. Method: three `annal agent`
// processes with mTLS, one follower's data dir on an 8 MiB tmpfs this test mounts (as root; the
// test is skipped, saying why, where mounting is not allowed) and unmounts at the end.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { mountTmpfs, type Tmpfs } from '../src/storage/testdata/tmpfs.js';
import { killAll } from './cli-harness.js';
import { client, leaderOf, logField, makeCerts, readAll, startNode, votersWithLeader, waitForRecords, waitForServers, type ClusterCerts, type ClusterNode } from './cluster-harness.js';

let dir: string;
let certs: ClusterCerts;
let mounted: Tmpfs | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'annal-e2e-faults-'));
  certs = await makeCerts(join(dir, 'certs'));
});

after(async () => {
  killAll();
  mounted?.remove();
  await rm(dir, { recursive: true, force: true });
});

it('a follower whose disk fills stops replicating loudly; the others keep every acknowledged record', async (t) => {
  const tmpfs = mountTmpfs('annal-e2e-small-');
  if (tmpfs.skipReason !== undefined) {
    tmpfs.remove();
    t.skip(tmpfs.skipReason);
    return;
  }
  mounted = tmpfs;
  const small = tmpfs.dir;
  const storage = ['--max-store-bytes', '1MiB', '--max-record-bytes', '64KiB'];
  const nodes: ClusterNode[] = [await startNode({ name: 'x1', dataDir: join(dir, 'x1'), certs, bootstrap: true, extra: storage })];
  nodes.push(await startNode({ name: 'x2', dataDir: join(dir, 'x2'), certs, join: [nodes[0]!.gossipAddr], extra: storage }));
  nodes.push(await startNode({ name: 'x3', dataDir: join(small, 'x3'), certs, join: [nodes[0]!.gossipAddr], extra: storage }));
  try {
    await waitForServers(nodes[0]!, certs.root, (servers) => votersWithLeader(3)(servers) && leaderOf(servers).rpcAddr === nodes[0]!.rpcAddr);
    // Through the cluster client: an election on a loaded machine resends, exactly once.
    const c = client(`annal://${nodes.map((node) => node.rpcAddr).join(',')}`, certs.root);
    const acknowledged = new Map<number, string>();
    try {
      // 16 MiB of records: twice what the follower's disk holds.
      for (let batch = 0; batch < 64; batch++) {
        const stream = c.produceStream();
        const sent = Array.from({ length: 16 }, (_, i) => {
          const value = `${batch}-${i}-`.padEnd(16 * 1024, 'z');
          return stream.send(Buffer.from(value)).then((offset) => acknowledged.set(offset, value));
        });
        await Promise.all(sent);
        await stream.close();
      }
    } finally {
      c.close();
    }
    assert.equal(acknowledged.size, 1024, 'every write was acknowledged by the two healthy nodes');
    await logField(nodes[2]!.process, 'raft stopped: a storage write failed (a full disk?); this node no longer takes part in replication and serves only what it applied until its replica is reopened', 'err');
    for (const node of nodes.slice(0, 2)) {
      const records = await readAll(node, certs.root);
      for (const [offset, value] of acknowledged) assert.equal(records[offset]?.value, value, `${node.name} offset ${offset}`);
    }
    // Space again: the same process reopens its replica in place and catches up.
    const pid = nodes[2]!.process.child.pid;
    tmpfs.resize('64m');
    await logField(nodes[2]!.process, 'replica reopened in place: raft runs again', 'msg').catch(() => undefined);
    await waitForRecords(nodes[2]!, certs.root, acknowledged.size, 60_000);
    const recovered = await readAll(nodes[2]!, certs.root);
    for (const [offset, value] of acknowledged) assert.equal(recovered[offset]?.value, value, `x3 offset ${offset} after recovering in place`);
    assert.equal(nodes[2]!.process.child.pid, pid);
    assert.equal(nodes[2]!.process.child.exitCode, null, 'no restart');
  } finally {
    for (const node of nodes) node.process.child.kill('SIGKILL');
    await Promise.all(nodes.map((node) => node.process.exited));
  }
});

it('a leader paused past its peers\' keepalive (SIGSTOP, then SIGCONT) survives, and the cluster goes on', async () => {
  const nodes: ClusterNode[] = [await startNode({ name: 'p1', dataDir: join(dir, 'p1'), certs, bootstrap: true })];
  for (const name of ['p2', 'p3']) nodes.push(await startNode({ name, dataDir: join(dir, name), certs, join: [nodes[0]!.gossipAddr] }));
  try {
    const leader = leaderOf(await waitForServers(nodes[0]!, certs.root, votersWithLeader(3)));
    const paused = nodes.find((node) => node.rpcAddr === leader.rpcAddr)!;
    const others = nodes.filter((node) => node !== paused);
    paused.process.child.kill('SIGSTOP');
    // The others elect a new leader and take writes while it sleeps.
    await waitForServers(others[0]!, certs.root, (servers) => servers.some((s) => s.isLeader && s.rpcAddr !== paused.rpcAddr));
    const writer = client(others[0]!, certs.root);
    try {
      await writer.produce(Buffer.from('while paused'));
      await new Promise((resolve) => setTimeout(resolve, 3000));
      paused.process.child.kill('SIGCONT');
      // Its calls end on connections its peers dropped meanwhile: it must not crash on them.
      await writer.produce(Buffer.from('after'));
      await waitForRecords(paused, certs.root, 2);
      assert.equal(paused.process.child.exitCode, null, paused.process.stderrLines.slice(-20).join('\n'));
      assert.deepEqual((await readAll(paused, certs.root)).map((r) => r.value), ['while paused', 'after']);
    } finally {
      writer.close();
    }
  } finally {
    for (const node of nodes) node.process.child.kill('SIGKILL');
    await Promise.all(nodes.map((node) => node.process.exited));
  }
});
