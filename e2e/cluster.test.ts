// Goal: annal runs as a replicated log of real processes with mutual TLS. Three agents form a
// cluster through gossip (n1 bootstraps, the others join as learners and are promoted); GetServers
// on every node reports the Raft configuration with one leader; a produce on any node is
// acknowledged (a follower forwards it) and every node then serves the same records at the same
// offsets; a subject without produce is denied where it called and nothing reaches the log.
// kill -9 of the leader under load: a new leader takes over, every acknowledged record is on every
// survivor at its acknowledged offset, and the old leader restarts and catches up. Every node,
// the bootstrap one included, restarts with its data (a rolling restart, SIGTERM each in turn); a
// node whose data dir was wiped rejoins as a new member. Method: `annal agent` processes on
// 127.0.0.1 with port 0, waits on the cluster's own answers (GetServers, reads), bounded loops.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NotLeaderError, PermissionDeniedError } from '../src/util/index.js';
import { killAll, runCli, spawnAgent } from './cli-harness.js';
import {
  client,
  leaderOf,
  logField,
  makeCerts,
  readAll,
  restartNode,
  startNode,
  tlsArgs,
  votersWithLeader,
  waitForRecords,
  waitForServers,
  type ClusterCerts,
  type ClusterNode,
} from './cluster-harness.js';

let dir: string;
let certs: ClusterCerts;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'annal-e2e-cluster-'));
  certs = await makeCerts(join(dir, 'certs'));
});

after(async () => {
  killAll();
  await rm(dir, { recursive: true, force: true });
});

async function startCluster(prefix: string, size: number): Promise<ClusterNode[]> {
  const first = await startNode({ name: `${prefix}1`, dataDir: join(dir, `${prefix}1`), certs, bootstrap: true });
  const nodes = [first];
  for (let i = 2; i <= size; i++) nodes.push(await startNode({ name: `${prefix}${i}`, dataDir: join(dir, `${prefix}${i}`), certs, join: [first.gossipAddr] }));
  await waitForServers(first, certs.root, votersWithLeader(size));
  return nodes;
}

async function stopAll(nodes: ClusterNode[]): Promise<void> {
  for (const node of nodes) if (node.process.child.exitCode === null && node.process.child.signalCode === null) node.process.child.kill('SIGKILL');
  await Promise.all(nodes.map((node) => node.process.exited));
}

/** Restarts a stopped node on its old ports with its data dir (or a wiped one). */
function restart(node: ClusterNode, join: string[]): Promise<ClusterNode> {
  return restartNode(node, certs, join);
}

describe('a three-node cluster', () => {
  it('forms through gossip, serves writes on every node and the same records everywhere', async () => {
    const nodes = await startCluster('a', 3);
    try {
      for (const node of nodes) {
        const servers = await waitForServers(node, certs.root, votersWithLeader(3));
        assert.deepEqual(servers.map((s) => s.id).sort(), ['a1', 'a2', 'a3']);
        assert.deepEqual(servers.map((s) => s.rpcAddr).sort(), nodes.map((n) => n.rpcAddr).sort(), 'every member with its RPC address');
      }
      const offsets: number[] = [];
      for (const [i, node] of nodes.entries()) {
        const c = client(node, certs.root);
        try {
          offsets.push(await c.produce(Buffer.from(`via-${i}`)));
          const batch = await c.produceStream().send(Buffer.from(`stream-${i}`));
          offsets.push(batch);
        } finally {
          c.close();
        }
      }
      assert.deepEqual(offsets, [0, 1, 2, 3, 4, 5], 'dense consumer offsets: control entries take none');
      const expected = ['via-0', 'stream-0', 'via-1', 'stream-1', 'via-2', 'stream-2'].map((value, offset) => ({ offset, value }));
      for (const node of nodes) {
        await waitForRecords(node, certs.root, 6);
        assert.deepEqual(await readAll(node, certs.root), expected, `records on ${node.name}`);
      }
      // A linearizable read on a follower sees a write acknowledged just before it began.
      const leader = leaderOf(await waitForServers(nodes[0]!, certs.root, votersWithLeader(3)));
      const follower = nodes.find((node) => node.rpcAddr !== leader.rpcAddr)!;
      const writer = client(leader.rpcAddr, certs.root);
      const reader = client(follower, certs.root);
      try {
        const offset = await writer.produce(Buffer.from('fresh'));
        assert.equal((await reader.consume(offset, { linearizable: true })).value.toString(), 'fresh');
      } finally {
        writer.close();
        reader.close();
      }
      // A denied subject is refused where it called; nothing is forwarded.
      const nobody = client(follower, certs.nobody);
      try {
        await assert.rejects(nobody.produce(Buffer.from('nope')), PermissionDeniedError);
      } finally {
        nobody.close();
      }
      const cli = await runCli(['servers', '--addr', follower.rpcAddr, '--ca-file', certs.files.caCert, '--cert-file', certs.files.rootClientCert, '--key-file', certs.files.rootClientKey]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(cli.stdout.trim().split('\n').length, 3, cli.stdout);
      assert.equal(cli.stdout.split('\n').filter((line) => line.endsWith('\tleader')).length, 1, cli.stdout);
      assert.equal((await readAll(follower, certs.root)).length, 7);
    } finally {
      await stopAll(nodes);
    }
  });

  it('survives kill -9 of the leader under load with every acknowledged record on every node; the old leader catches up', async (t) => {
    const nodes = await startCluster('b', 3);
    try {
      const leader = leaderOf(await waitForServers(nodes[0]!, certs.root, votersWithLeader(3)));
      const leaderNode = nodes.find((node) => node.rpcAddr === leader.rpcAddr)!;
      const survivors = nodes.filter((node) => node !== leaderNode);
      const acknowledged = new Map<number, string>();
      let stop = false;
      let killedAtMs = 0;
      let firstAckAfterKillMs = 0;
      // One producer per survivor, each writing unique values one at a time; failures are not retried.
      const producers = survivors.map(async (node, p) => {
        const c = client(node, certs.root);
        try {
          for (let n = 0; !stop && n < 100_000; n++) {
            const value = `p${p}-${n}`;
            try {
              const offset = await c.produce(Buffer.from(value));
              assert.ok(!acknowledged.has(offset), `offset ${offset} acknowledged twice`);
              acknowledged.set(offset, value);
              if (killedAtMs > 0 && firstAckAfterKillMs === 0) firstAckAfterKillMs = performance.now();
            } catch {
              await new Promise((resolve) => setTimeout(resolve, 10));
            }
          }
        } finally {
          c.close();
        }
      });
      while (acknowledged.size < 200) await new Promise((resolve) => setTimeout(resolve, 10));
      leaderNode.process.child.kill('SIGKILL');
      killedAtMs = performance.now();
      await leaderNode.process.exited;
      const ackedAtKill = acknowledged.size;
      while (acknowledged.size < ackedAtKill + 200) await new Promise((resolve) => setTimeout(resolve, 10));
      stop = true;
      await Promise.all(producers);
      t.diagnostic(`kill -9 of the leader to the next acknowledged produce: ${Math.round(firstAckAfterKillMs - killedAtMs)} ms`);
      const newLeader = leaderOf(await waitForServers(survivors[0]!, certs.root, (servers) => servers.some((s) => s.isLeader && s.rpcAddr !== leader.rpcAddr)));
      assert.notEqual(newLeader.rpcAddr, leader.rpcAddr);
      const restarted = await restart(leaderNode, [survivors[0]!.gossipAddr]);
      nodes[nodes.indexOf(leaderNode)] = restarted;
      const highest = Math.max(...acknowledged.keys());
      for (const node of [...survivors, restarted]) {
        await waitForRecords(node, certs.root, highest + 1, 60_000);
        const records = await readAll(node, certs.root);
        for (const [offset, value] of acknowledged) assert.equal(records[offset]?.value, value, `${node.name} offset ${offset}`);
        assert.equal(new Set(records.map((r) => r.value)).size, records.length, `${node.name}: no value twice`);
      }
      const [a, b, c] = await Promise.all([...survivors, restarted].map((node) => readAll(node, certs.root)));
      assert.deepEqual(a, b);
      assert.deepEqual(a, c);
    } finally {
      await stopAll(nodes);
    }
  });

  it('restarts every node in turn with its data (the bootstrap one included); a producer meanwhile stalls briefly and retries at most once per restart', async (t) => {
    const nodes = await startCluster('c', 3);
    try {
      let acknowledged = 0;
      let failed = 0;
      for (let round = 0; round < nodes.length; round++) {
        const node = nodes[round]!;
        const other = nodes[(round + 1) % nodes.length]!;
        // A producer on another node writes continuously while this one stops and comes back.
        const writer = client(other, certs.root);
        let stop = false;
        let longestMs = 0;
        let failures = 0;
        const failureMessages: string[] = [];
        const producing = (async () => {
          for (let n = 0; !stop; n++) {
            const startedMs = performance.now();
            try {
              await writer.produce(Buffer.from(`r${round}-${n}`));
              acknowledged++;
            } catch (error) {
              failures++;
              failureMessages.push(String(error));
            }
            longestMs = Math.max(longestMs, performance.now() - startedMs);
          }
        })();
        while (acknowledged < 20 * (round + 1)) await new Promise((resolve) => setTimeout(resolve, 5));
        node.process.child.kill('SIGTERM');
        assert.equal((await node.process.exited).code, 0, node.process.stderrLines.join('\n'));
        nodes[round] = await restart(node, [other.gossipAddr]);
        await waitForServers(other, certs.root, votersWithLeader(3));
        const before = acknowledged;
        while (acknowledged < before + 20) await new Promise((resolve) => setTimeout(resolve, 5));
        stop = true;
        await producing;
        writer.close();
        t.diagnostic(
          `rolling restart of ${node.name} (${node.rpcAddr}), producing on ${other.name} (${other.rpcAddr}): longest produce ${Math.round(longestMs)} ms, ${failures} failed calls ${[...new Set(failureMessages)].join('; ')}`,
        );
        failed += failures;
        assert.ok(failures <= 1, `${failures} failed produces while ${node.name} restarted`);
      }
      for (const node of nodes) {
        await waitForRecords(node, certs.root, acknowledged);
        // A failed call's outcome may be unknown (it may have committed): at most that many more.
        const held = (await readAll(node, certs.root)).length;
        assert.ok(held >= acknowledged && held <= acknowledged + failed, `${node.name} holds ${held}; ${acknowledged} acknowledged, ${failed} failed`);
      }
    } finally {
      await stopAll(nodes);
    }
  });

  it('takes back a node whose data dir was wiped as a new member, which catches up', async () => {
    const nodes = await startCluster('d', 3);
    try {
      const c = client(nodes[0]!, certs.root);
      for (let i = 0; i < 50; i++) await c.produce(Buffer.from(`r${i}`));
      c.close();
      const victim = nodes[2]!;
      victim.process.child.kill('SIGKILL');
      await victim.process.exited;
      await rm(victim.dataDir, { recursive: true, force: true });
      nodes[2] = await restart(victim, [nodes[0]!.gossipAddr]);
      // The new incarnation is added and promoted, the old one removed: three voters again.
      const servers = await waitForServers(nodes[0]!, certs.root, (list) => votersWithLeader(3)(list) && list.every((s) => s.role !== 'learner'));
      assert.deepEqual(servers.map((s) => s.id).sort(), ['d1', 'd2', 'd3']);
      await waitForRecords(nodes[2]!, certs.root, 50);
      assert.equal((await readAll(nodes[2]!, certs.root)).length, 50);
    } finally {
      await stopAll(nodes);
    }
  });
});

describe('observing a cluster and losing its quorum', () => {
  it('reports Raft metrics, goes quiet once followers caught up, and without a quorum refuses writes and appends nothing', async () => {
    const first = await startNode({ name: 'm1', dataDir: join(dir, 'm1'), certs, bootstrap: true, extra: ['--metrics-addr', '127.0.0.1:0'] });
    const nodes = [first];
    for (const name of ['m2', 'm3']) nodes.push(await startNode({ name, dataDir: join(dir, name), certs, join: [first.gossipAddr] }));
    try {
      await waitForServers(first, certs.root, (servers) => votersWithLeader(3)(servers) && leaderOf(servers).rpcAddr === first.rpcAddr);
      const url = await logField(first.process, 'serving Prometheus metrics', 'url');
      const c = client(first, certs.root);
      const stream = c.produceStream();
      await Promise.all(Array.from({ length: 100 }, (_, i) => stream.send(Buffer.from(`m${i}`))));
      await stream.close();
      c.close();
      const scrape = async (): Promise<string> => (await fetch(url)).text();
      const value = (text: string, pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? NaN);
      let text = await scrape();
      const deadline = Date.now() + 20_000;
      while (!/annal_raft_follower_lag_entries\{[^}]*peer="m2"[^}]*\} 0\n/.test(text) || !/annal_raft_follower_lag_entries\{[^}]*peer="m3"[^}]*\} 0\n/.test(text)) {
        if (Date.now() > deadline) assert.fail(`followers never caught up:\n${text}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        text = await scrape();
      }
      assert.match(text, /annal_raft_role\{[^}]*role="leader"[^}]*\} 1/);
      assert.ok(value(text, /annal_raft_proposals_total\{[^}]*outcome="committed"[^}]*\} (\d+)/) >= 100, text);
      assert.equal(value(text, /annal_raft_members\{[^}]*suffrage="voter"[^}]*\} (\d+)/), 3);
      // Caught up and idle: heartbeats only, no append sent over and over (no replication loop).
      const appendsBefore = value(text, /annal_raft_peer_messages_sent_total\{[^}]*type="append"[^}]*\} (\d+)/);
      assert.ok(appendsBefore > 0);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const later = await scrape();
      assert.equal(value(later, /annal_raft_peer_messages_sent_total\{[^}]*type="append"[^}]*\} (\d+)/), appendsBefore, 'no appends while idle');
      assert.ok(value(later, /annal_raft_peer_messages_sent_total\{[^}]*type="heartbeat"[^}]*\} (\d+)/) > value(text, /annal_raft_peer_messages_sent_total\{[^}]*type="heartbeat"[^}]*\} (\d+)/));
      // Without a quorum the leader steps down (CheckQuorum) and a write fails fast, appending nothing.
      for (const node of nodes.slice(1)) node.process.child.kill('SIGKILL');
      await Promise.all(nodes.slice(1).map((node) => node.process.exited));
      await waitForServers(first, certs.root, (servers) => servers.every((s) => !s.isLeader));
      const lone = client(first, certs.root);
      try {
        await assert.rejects(lone.produce(Buffer.from('no quorum')), NotLeaderError);
        assert.equal((await readAll(first, certs.root)).length, 100);
      } finally {
        lone.close();
      }
    } finally {
      await stopAll(nodes);
    }
  });
});

describe('clusters that must not merge', () => {
  it('refuses to start a node whose name a member already uses, naming it', async () => {
    const first = await startNode({ name: 'g1', dataDir: join(dir, 'g1'), certs, bootstrap: true });
    const second = await startNode({ name: 'g2', dataDir: join(dir, 'g2'), certs, join: [first.gossipAddr] });
    try {
      await waitForServers(first, certs.root, votersWithLeader(2));
      const clash = spawnAgent(['agent', '--node-name', 'g2', '--data-dir', join(dir, 'g2-clash'), '--rpc-port', '0', '--bind-addr', '127.0.0.1:0', '--gossip-profile', 'local', '--start-join-addrs', first.gossipAddr, ...tlsArgs(certs.files)]);
      assert.equal((await clash.exited).code, 1);
      assert.ok(clash.stderrLines.some((line) => line.includes(`node name "g2" is already used by the member at ${second.gossipAddr}`)), clash.stderrLines.join('\n'));
      assert.deepEqual((await waitForServers(first, certs.root, votersWithLeader(2))).map((s) => s.id).sort(), ['g1', 'g2']);
    } finally {
      await stopAll([first, second]);
    }
  });

  it('keeps two nodes started with --bootstrap against each other apart, and says why', async () => {
    const first = await startNode({ name: 'f1', dataDir: join(dir, 'f1'), certs, bootstrap: true });
    const second = await startNode({ name: 'f2', dataDir: join(dir, 'f2'), certs, bootstrap: true, join: [first.gossipAddr] });
    try {
      const ids = await Promise.all([first, second].map((node) => logField(node.process, 'log opened', 'clusterId')));
      assert.notEqual(ids[0], ids[1]);
      for (const node of [first, second]) {
        await logField(node.process, `gossip member ${node === first ? 'f2' : 'f1'} belongs to cluster ${ids[node === first ? 1 : 0]}, not this one (${ids[node === first ? 0 : 1]}): two nodes started with --bootstrap, or a data dir from another cluster; it is not added`, 'member');
        const servers = await waitForServers(node, certs.root, votersWithLeader(1));
        assert.deepEqual(servers.map((s) => s.id), [node.name], `${node.name} stays alone`);
        const c = client(node, certs.root);
        try {
          assert.equal(await c.produce(Buffer.from('mine')), 0);
        } finally {
          c.close();
        }
      }
    } finally {
      await stopAll([first, second]);
    }
  });
});

describe('a five-node cluster', () => {
  it('survives two kill -9s and keeps every acknowledged record', async () => {
    const nodes = await startCluster('e', 5);
    try {
      const c = client(nodes[0]!, certs.root);
      for (let i = 0; i < 20; i++) await c.produce(Buffer.from(`r${i}`));
      c.close();
      for (const victim of [nodes[3]!, nodes[4]!]) {
        victim.process.child.kill('SIGKILL');
        await victim.process.exited;
      }
      const writer = client(nodes[1]!, certs.root);
      try {
        assert.equal(await writer.produce(Buffer.from('after')), 20);
      } finally {
        writer.close();
      }
      for (const node of nodes.slice(0, 3)) {
        await waitForRecords(node, certs.root, 21);
        assert.equal((await readAll(node, certs.root)).length, 21);
      }
    } finally {
      await stopAll(nodes);
    }
  });
});
