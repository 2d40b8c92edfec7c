// Goal: retention is decided once and applied by every replica at the same log position: with
// small segments and --retention-bytes, every node reports the same lowest offset, consuming
// below it answers OUT_OF_RANGE naming the retained range, and a node that joins later catches
// up from the leader's lowest retained offset (Raft's snapshot path: the log begins there) with
// the same records at the same offsets. Method: three, then four `annal agent` processes with
// mTLS; waits on the cluster's answers, bounded.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { OffsetOutOfRangeError } from '../src/util/index.js';
import { killAll } from './cli-harness.js';
import { client, makeCerts, readAll, startNode, votersWithLeader, waitForRecords, waitForServers, type ClusterCerts, type ClusterNode } from './cluster-harness.js';

let dir: string;
let certs: ClusterCerts;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'annal-e2e-retention-'));
  certs = await makeCerts(join(dir, 'certs'));
});

after(async () => {
  killAll();
  await rm(dir, { recursive: true, force: true });
});

const STORAGE = ['--max-store-bytes', '64KiB', '--max-record-bytes', '16KiB', '--retention-bytes', '192KiB'];

it('drops whole old segments on every replica at the same offset, and a late joiner starts there', async () => {
  const nodes: ClusterNode[] = [await startNode({ name: 'r1', dataDir: join(dir, 'r1'), certs, bootstrap: true, extra: STORAGE })];
  for (const name of ['r2', 'r3']) nodes.push(await startNode({ name, dataDir: join(dir, name), certs, join: [nodes[0]!.gossipAddr], extra: STORAGE }));
  try {
    await waitForServers(nodes[0]!, certs.root, votersWithLeader(3));
    // Through the cluster client: an election on a loaded machine resends, exactly once, in order.
    const writer = client(`annal://${nodes.map((node) => node.rpcAddr).join(',')}`, certs.root);
    const value = Buffer.alloc(1000, 'x');
    const stream = writer.produceStream();
    const sent = Array.from({ length: 1500 }, () => stream.send(value));
    await Promise.all(sent);
    await stream.close();
    writer.close();
    // Every node converges on the same retained range, starting above 0. The leader moves the
    // start one decision per second, so the range counts as settled when it has not moved for
    // three checks of the leader's.
    let lowest = -1;
    let settled = 0;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const lows = await Promise.all(nodes.map(async (node) => (await readAll(node, certs.root))[0]?.offset ?? -1));
      const agreed = lows.every((low) => low > 0 && low === lows[0]);
      settled = agreed && lows[0] === lowest ? settled + 1 : 0;
      if (agreed) lowest = lows[0]!;
      if (settled >= 3) break;
      if (Date.now() > deadline) assert.fail(`retained ranges never settled: ${lows.join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    for (const node of nodes) {
      const records = await readAll(node, certs.root);
      assert.equal(records[records.length - 1]!.offset, 1499, `${node.name} holds the tail`);
      assert.ok(records.length * 1000 >= 192 * 1024, `${node.name} keeps at least the retention bytes (${records.length} records)`);
      const c = client(node, certs.root);
      try {
        await assert.rejects(c.consume(lowest - 1), (error: unknown) => error instanceof OffsetOutOfRangeError && error.lowestOffset === lowest);
      } finally {
        c.close();
      }
    }
    // A new node gets the log from the leader's first retained index, at the same offsets.
    const late = await startNode({ name: 'r4', dataDir: join(dir, 'r4'), certs, join: [nodes[0]!.gossipAddr], extra: STORAGE });
    nodes.push(late);
    await waitForServers(nodes[0]!, certs.root, votersWithLeader(4));
    await waitForRecords(late, certs.root, 1500);
    const lateRecords = await readAll(late, certs.root);
    const leaderRecords = await readAll(nodes[0]!, certs.root);
    assert.equal(lateRecords[0]!.offset, leaderRecords[0]!.offset);
    assert.deepEqual(lateRecords, leaderRecords);
  } finally {
    for (const node of nodes) node.process.child.kill('SIGKILL');
    await Promise.all(nodes.map((node) => node.process.exited));
  }
});
