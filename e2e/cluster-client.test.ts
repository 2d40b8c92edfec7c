// Goal: the cluster-aware client against three real `annal agent` processes (mutual TLS). One
// annal:// client produces 10,000 records through one produce stream while the leader is killed
// with kill -9 twice (and restarted each time): every record is in the log exactly once, in the
// producer's order, and every acknowledged offset holds its record on every node. Reads spread
// over the followers (counted by each node's annal_rpc_server_requests_total) and, once a follower
// is killed, stop going to it. A client of one follower alone (plain address, idempotent) gets
// the same exactly-once answers, the follower forwarding its batches with their sequences, also
// while the leader is killed. The CLI with `--addr a,b,c` produces and consumes with the leader
// down and with a follower down. Method: processes on 127.0.0.1 with port 0, waits on the cluster's answers, bounded loops.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { InterceptingCall, Interceptor, InterceptorOptions, NextCall } from '@grpc/grpc-js';
import { status as Status } from '@grpc/grpc-js';
import { AnnalClient } from '../src/client/index.js';
import { sendSequencedBatch as sendBatch } from '../src/client/test-support.js';
import { OutOfOrderSequenceError } from '../src/util/index.js';
import { parseSamples, sampleValue } from '../src/telemetry/testdata/prom-text.js';
import { killAll, runCli } from './cli-harness.js';
import {
  leaderOf,
  logField,
  makeCerts,
  readAll,
  startNode,
  votersWithLeader,
  waitForRecords,
  waitForServers,
  type ClusterCerts,
  type ClusterNode,
} from './cluster-harness.js';
import { InterceptingCall as GrpcInterceptingCall } from '@grpc/grpc-js';

let dir: string;
let certs: ClusterCerts;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'annal-e2e-client-'));
  certs = await makeCerts(join(dir, 'certs'));
});

after(async () => {
  killAll();
  await rm(dir, { recursive: true, force: true });
});

const METRICS = ['--metrics-addr', '127.0.0.1:0'];

interface Member extends ClusterNode {
  metricsUrl: string;
}

async function startMember(prefix: string, i: number, join: string[], ports?: { rpc: number; gossip: number }): Promise<Member> {
  const node = await startNode({
    name: `${prefix}${i}`,
    dataDir: joinPath(prefix, i),
    certs,
    ...(join.length === 0 && ports === undefined ? { bootstrap: true } : { join }),
    ...(ports !== undefined ? { rpcPort: ports.rpc, gossipPort: ports.gossip } : {}),
    extra: METRICS,
  });
  return { ...node, metricsUrl: await logField(node.process, 'serving Prometheus metrics', 'url') };
}

function joinPath(prefix: string, i: number): string {
  return join(dir, `${prefix}${i}`);
}

async function startCluster(prefix: string): Promise<Member[]> {
  const first = await startMember(prefix, 1, []);
  const members = [first, await startMember(prefix, 2, [first.gossipAddr]), await startMember(prefix, 3, [first.gossipAddr])];
  await waitForServers(first, certs.root, votersWithLeader(3));
  return members;
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

async function kill(member: Member): Promise<void> {
  member.process.child.kill('SIGKILL');
  await member.process.exited;
}

async function restart(member: Member, members: Member[]): Promise<Member> {
  const i = Number(member.name.slice(-1));
  const others = members.filter((m) => m !== member).map((m) => m.gossipAddr);
  return startMember(member.name.slice(0, -1), i, others, { rpc: portOf(member.rpcAddr), gossip: portOf(member.gossipAddr) });
}

function clusterAddress(members: Member[]): string {
  return `annal://${members.map((m) => m.rpcAddr).join(',')}`;
}

async function consumeCalls(member: Member): Promise<number> {
  const text = await (await fetch(member.metricsUrl)).text();
  return sampleValue(parseSamples(text), 'annal_rpc_server_requests_total', { grpc_method: 'Consume', grpc_code: 'OK' });
}

async function stopAll(members: Member[]): Promise<void> {
  for (const m of members) if (m.process.child.exitCode === null && m.process.child.signalCode === null) m.process.child.kill('SIGKILL');
  await Promise.all(members.map((m) => m.process.exited));
}

describe('the annal:// client', () => {
  it('produces 10,000 records exactly once, in order, through two kill -9s of the leader', async () => {
    let members = await startCluster('x');
    const c = new AnnalClient({ address: clusterAddress(members), security: certs.root });
    try {
      const total = 10_000;
      const window = 128;
      const stream = c.produceStream();
      const acked: number[] = new Array(total);
      const pending: Promise<void>[] = [];
      let killed = 0;
      const restarts: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        pending.push(stream.send(Buffer.from(`r${i}`)).then((offset) => void (acked[i] = offset)));
        if (pending.length >= window) await pending.shift();
        if ((i === 2500 || i === 6500) && killed < 2) {
          killed++;
          await Promise.all(restarts); // the second kill finds the first killed node back
          // Any member answers GetServers; one just restarted may not know the leader yet.
          let servers = await c.getServers();
          for (let tries = 0; tries < 200 && !servers.some((s) => s.isLeader); tries++) {
            await new Promise((resolve) => setTimeout(resolve, 50));
            servers = await c.getServers();
          }
          const leaderAddr = leaderOf(servers).rpcAddr;
          const leader = members.find((m) => m.rpcAddr === leaderAddr)!;
          await kill(leader);
          // Restarted while the client keeps producing; it rejoins on its old ports with its data.
          const index = members.indexOf(leader);
          restarts.push(restart(leader, members).then((restarted) => void (members[index] = restarted)));
        }
      }
      await Promise.all(pending);
      await stream.close();
      await Promise.all(restarts);
      assert.equal(killed, 2);
      for (let i = 1; i < total; i++) assert.ok(acked[i]! > acked[i - 1]!, `offsets follow the producer's order at ${i}`);
      await waitForServers(members[0]!, certs.root, votersWithLeader(3));
      for (const member of members) {
        await waitForRecords(member, certs.root, acked[total - 1]! + 1);
        const records = await readAll(member, certs.root);
        const byOffset = new Map(records.map((r) => [r.offset, r.value]));
        for (let i = 0; i < total; i++) assert.equal(byOffset.get(acked[i]!), `r${i}`, `${member.name}: offset ${acked[i]} holds r${i}`);
        const ours = records.filter((r) => r.value.startsWith('r')).map((r) => r.value);
        assert.deepEqual(ours, Array.from({ length: total }, (_, i) => `r${i}`), `${member.name}: every record once, in order`);
      }
    } finally {
      c.close();
      await stopAll(members);
    }
  });

  it('spreads reads over the followers and stops sending them to a killed one', async () => {
    const members = await startCluster('y');
    let failedAttempts = 0;
    const countFailures: Interceptor = (options: InterceptorOptions, next: NextCall): InterceptingCall =>
      new GrpcInterceptingCall(next(options), {
        start: (metadata, _listener, start) =>
          start(metadata, {
            onReceiveStatus: (status, forward) => {
              if (status.code !== Status.OK) failedAttempts++;
              forward(status);
            },
          }),
      });
    const c = new AnnalClient({ address: clusterAddress(members), security: certs.root, interceptors: [countFailures] });
    try {
      for (let i = 0; i < 10; i++) await c.produce(Buffer.from(`v${i}`));
      const leaderAddr = leaderOf(await c.getServers()).rpcAddr;
      const leader = members.find((m) => m.rpcAddr === leaderAddr)!;
      const followers = members.filter((m) => m !== leader);
      await Promise.all(followers.map((f) => waitForRecords(f, certs.root, 10)));
      const before = await Promise.all(members.map(consumeCalls));
      for (let i = 0; i < 60; i++) assert.equal((await c.consume(i % 10)).value.toString(), `v${i % 10}`);
      const spread = (await Promise.all(members.map(consumeCalls))).map((n, i) => n - before[i]!);
      const leaderIndex = members.indexOf(leader);
      assert.equal(spread[leaderIndex], 0, `no read went to the leader while followers were up: ${spread}`);
      for (const follower of followers) assert.ok(spread[members.indexOf(follower)]! >= 20, `reads spread over both followers: ${spread}`);

      await kill(followers[0]!);
      // The client notices the lost connection at its first call there at the latest.
      for (let i = 0; i < 10; i++) await c.consume(i);
      failedAttempts = 0;
      const live = [leader, followers[1]!];
      const beforeLive = await Promise.all(live.map(consumeCalls));
      for (let i = 0; i < 60; i++) await c.consume(i % 10);
      const afterLive = await Promise.all(live.map(consumeCalls));
      assert.equal(failedAttempts, 0, 'no read attempt went to the killed follower');
      assert.equal(afterLive[1]! - beforeLive[1]!, 60, 'the remaining follower served every read');
    } finally {
      c.close();
      await stopAll(members);
    }
  });

  it('a follower forwards an idempotent producer\'s batches: a client of that follower alone gets exactly-once, across a kill -9 of the leader', async () => {
    const members = await startCluster('w');
    const leaderAddr = leaderOf(await waitForServers(members[0]!, certs.root, votersWithLeader(3))).rpcAddr;
    const leader = members.find((m) => m.rpcAddr === leaderAddr)!;
    const follower = members.find((m) => m !== leader)!;
    const atFollower = new AnnalClient({ address: follower.rpcAddr, security: certs.root, idempotent: true });
    const atLeader = new AnnalClient({ address: leader.rpcAddr, security: certs.root });
    try {
      // Raw batches with producer fields, sent to the follower: the leader's table decides.
      const producer = 2 ** 45 + 11;
      assert.deepEqual(await sendBatch(atFollower, producer, 0, ['a', 'b', 'c']), { firstOffset: 0, lastOffset: 2, count: 3, duplicate: false });
      assert.deepEqual(await sendBatch(atFollower, producer, 0, ['a', 'b', 'c']), { firstOffset: 0, lastOffset: 2, count: 3, duplicate: true });
      assert.deepEqual(await sendBatch(atLeader, producer, 1, ['b', 'c']), { firstOffset: 1, lastOffset: 2, count: 2, duplicate: true });
      await assert.rejects(sendBatch(atFollower, producer, 9, ['z']), (error: unknown) => {
        assert.ok(error instanceof OutOfOrderSequenceError, String(error));
        assert.equal(error.expectedSequence, 3);
        return true;
      });
      // The client's own idempotent producer, pipelined through the follower while the leader dies.
      const total = 3000;
      const stream = atFollower.produceStream();
      const acked: number[] = new Array(total);
      const pending: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        pending.push(stream.send(Buffer.from(`f${i}`)).then((offset) => void (acked[i] = offset)));
        if (pending.length >= 128) await pending.shift();
        if (i === 1000) await kill(leader);
      }
      await Promise.all(pending);
      await stream.close();
      for (let i = 1; i < total; i++) assert.equal(acked[i], acked[i - 1]! + 1, `consecutive offsets in the producer's order at ${i}`);
      for (const member of members.filter((m) => m !== leader)) {
        await waitForRecords(member, certs.root, acked[total - 1]! + 1);
        const records = await readAll(member, certs.root);
        assert.deepEqual(records.slice(0, 3).map((r) => r.value), ['a', 'b', 'c'], `${member.name}: the raw batch once`);
        const ours = records.filter((r) => r.value.startsWith('f'));
        assert.deepEqual(ours.map((r) => r.value), Array.from({ length: total }, (_, i) => `f${i}`), `${member.name}: every record once, in order`);
        assert.deepEqual(ours.map((r) => r.offset), acked, `${member.name}: at the acknowledged offsets`);
      }
    } finally {
      atFollower.close();
      atLeader.close();
      await stopAll(members);
    }
  });

  it('CLI produce and consume with --addr a,b,c work with the leader or a follower down', async () => {
    const members = await startCluster('z');
    const tls = ['--ca-file', certs.files.caCert, '--cert-file', certs.files.rootClientCert, '--key-file', certs.files.rootClientKey];
    const addr = members.map((m) => m.rpcAddr).join(',');
    try {
      let produced = 0;
      // The two kinds of member: the leader (writes must find the next one) and a follower.
      const leaderAddr = leaderOf(await waitForServers(members[0]!, certs.root, votersWithLeader(3))).rpcAddr;
      const leader = members.find((m) => m.rpcAddr === leaderAddr)!;
      const follower = members.find((m) => m !== leader)!;
      for (const down of [leader, follower]) {
        await kill(down);
        const result = await runCli(['produce', '--addr', addr, ...tls], { input: `down-${down.name}-a\ndown-${down.name}-b\n`, timeoutMs: 30_000 });
        assert.equal(result.code, 0, `produce with ${down.name} down: ${result.stderr}`);
        produced += 2;
        const consumed = await runCli(['consume', '--addr', addr, '--offset', '0', ...tls], { timeoutMs: 30_000 });
        assert.equal(consumed.code, 0, `consume with ${down.name} down: ${consumed.stderr}`);
        const lines = consumed.stdout.trim().split('\n');
        assert.equal(lines.length, produced, consumed.stdout);
        assert.match(lines[lines.length - 1]!, new RegExp(`down-${down.name}-b`));
        const restarted = await restart(down, members);
        members[members.indexOf(down)] = restarted;
        await waitForServers(restarted, certs.root, votersWithLeader(3));
      }
    } finally {
      await stopAll(members);
    }
  });
});
