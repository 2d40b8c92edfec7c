// Goal: a replica whose files were damaged while it was down repairs from the others and never
// helps elect a leader with what it lost. A flipped bit in its log: the log is cut before the
// damaged record (the files kept aside), the node refuses to vote until the leader has sent the
// lost entries again, then serves exactly the leader's records. A truncated hard-state file (its
// term and vote lost): the Raft dir is moved aside and the node rejoins as a new member that
// catches up. Method: three `annal agent` processes with mTLS; damage applied between kill -9
// and restart; waits on the cluster's own answers (GetServers, reads) in bounded loops. A bit
// flipped while a replica runs: the read that meets it fails, and the running process repairs it.
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CorruptionError } from '../src/util/index.js';
import { killAll } from './cli-harness.js';
import {
  client, makeCerts, readAll, restartNode, startNode, votersWithLeader, waitForRecords, waitForServers, type ClusterCerts, type ClusterNode,
} from './cluster-harness.js';

let dir: string;
let certs: ClusterCerts;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'annal-e2e-repair-'));
  certs = await makeCerts(join(dir, 'certs'));
});

after(async () => {
  killAll();
  await rm(dir, { recursive: true, force: true });
});

function restart(node: ClusterNode, join: string[]): Promise<ClusterNode> {
  return restartNode(node, certs, join);
}

async function kill(node: ClusterNode): Promise<void> {
  node.process.child.kill('SIGKILL');
  await node.process.exited;
}

function logged(node: ClusterNode, message: string): boolean {
  return node.process.stderrLines.some((line) => line.includes(`"msg":"${message}`));
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('a damaged replica', () => {
  it('repairs a flipped bit in its log from the others, and rejoins as a new member after losing its hard state', async () => {
    const first = await startNode({ name: 'r1', dataDir: join(dir, 'r1'), certs, bootstrap: true });
    const nodes = [first];
    for (const name of ['r2', 'r3']) nodes.push(await startNode({ name, dataDir: join(dir, name), certs, join: [first.gossipAddr] }));
    try {
      await waitForServers(first, certs.root, votersWithLeader(3));
      const c = client(first, certs.root);
      const values = Array.from({ length: 300 }, (_, i) => `record-${i}-${'x'.repeat(80)}`);
      for (let i = 0; i < values.length; i += 50) await c.produceBatch(values.slice(i, i + 50).map((v) => Buffer.from(v)));
      for (const node of nodes) await waitForRecords(node, certs.root, values.length);
      const expected = await readAll(first, certs.root);
      assert.equal(expected.length, values.length);

      // A flipped bit in the middle of r3's log (an older record; the tail is intact).
      const victim = nodes[2]!;
      await kill(victim);
      const logDir = join(victim.dataDir, 'raft', 'log.0');
      const store = join(logDir, readdirSync(logDir).find((name) => name.endsWith('.store'))!);
      const bytes = readFileSync(store);
      bytes[Math.floor(bytes.length / 2)]! ^= 0x04;
      writeFileSync(store, bytes);
      nodes[2] = await restart(victim, [first.gossipAddr]);
      await until('the damage report', () => logged(nodes[2]!, 'raft log damaged: cut before the damage'));
      await until('the repair to finish', () => !existsSync(join(victim.dataDir, 'raft', 'repair.json')));
      await waitForRecords(nodes[2]!, certs.root, values.length);
      assert.deepEqual(await readAll(nodes[2]!, certs.root), expected, 'the repaired replica serves exactly the leader\'s records');
      assert.ok(readdirSync(`${logDir}.damaged`).length >= 1, 'the damaged files are kept aside');

      // r2's hard state is truncated: it no longer knows its term and vote.
      const amnesiac = nodes[1]!;
      await kill(amnesiac);
      const hardState = join(amnesiac.dataDir, 'raft', 'hard-state.json');
      truncateSync(hardState, Math.floor(statSync(hardState).size / 2));
      nodes[1] = await restart(amnesiac, [first.gossipAddr]);
      await until('the rejoin report', () => logged(nodes[1]!, 'raft state damaged: moved it aside'));
      assert.ok(readdirSync(amnesiac.dataDir).some((name) => name.startsWith('raft.damaged-')));
      // The new incarnation is added and promoted, the old one removed: three voters again (the
      // old one counts among three voters until it is replaced, so wait for its removal first).
      const removedOld = (): boolean =>
        first.process.stderrLines.some((line) => line.includes('"msg":"proposing a configuration change"') && line.includes('"change":"remove"') && line.includes('"member":"r2@'));
      await until('the old incarnation removed', removedOld, 60_000);
      await waitForServers(first, certs.root, (list) => votersWithLeader(3)(list) && list.every((s) => s.role !== 'learner'), 60_000);
      await waitForRecords(nodes[1]!, certs.root, values.length);
      assert.deepEqual(await readAll(nodes[1]!, certs.root), expected);

      // The cluster takes writes and every node serves them.
      await c.produce(Buffer.from('after repair'));
      for (const node of nodes) await waitForRecords(node, certs.root, values.length + 1);
      const withLast = await readAll(first, certs.root);

      // A bit flips in r3's log while it runs: the read that meets it fails with DATA_LOSS, and the
      // same process repairs the record from the others (reopened in place, no restart).
      const running = nodes[2]!;
      const pid = running.process.child.pid;
      const liveLog = join(running.dataDir, 'raft', readdirSync(join(running.dataDir, 'raft')).find((name) => /^log\.\d+$/.test(name))!);
      const liveStore = join(liveLog, readdirSync(liveLog).find((name) => name.endsWith('.store'))!);
      const position = Math.floor(statSync(liveStore).size / 3);
      const fd = openSync(liveStore, 'r+');
      try {
        const byte = Buffer.alloc(1);
        readSync(fd, byte, 0, 1, position);
        byte[0]! ^= 0x10;
        writeSync(fd, byte, 0, 1, position);
      } finally {
        closeSync(fd);
      }
      await assert.rejects(readAll(running, certs.root), (error: unknown) => error instanceof CorruptionError);
      await until('the repair of the live damage', () => logged(running, 'replica reopened in place'), 60_000);
      let lastRead = '';
      await until('the repaired records', async () => {
        const read = await readAll(running, certs.root).catch((error: unknown) => String(error));
        lastRead = typeof read === 'string' ? read : `${read.length} records`;
        return JSON.stringify(read) === JSON.stringify(withLast);
      }, 60_000).catch((error: unknown) => {
        throw new Error(`${String(error)}; last read: ${lastRead}; r3 said: ${running.process.stderrLines.filter((line) => !line.includes('"access"')).slice(-12).join('\n')}\nr2 said: ${nodes[1]!.process.stderrLines.filter((line) => /damage|repair|reopen|stopped|CUT|incarnation|raft role|configuration/.test(line)).slice(-20).join('\n')}`);
      });
      assert.ok(logged(running, 'raft log damaged while serving'));
      assert.equal(running.process.child.pid, pid);
      assert.equal(running.process.child.exitCode, null);
      c.close();
    } finally {
      for (const node of nodes) if (node.process.child.exitCode === null && node.process.child.signalCode === null) node.process.child.kill('SIGKILL');
      await Promise.all(nodes.map((node) => node.process.exited));
    }
  });
});
