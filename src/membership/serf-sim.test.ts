// Goal: the pure SWIM + Serf core forms a cluster, detects failures within the Lifeguard bounds,
// propagates leaves and tag updates, and shrugs off hostile messages without evicting a healthy
// member. Method: a deterministic in-memory network (seeded Prng, simulated clock; SEED env to
// reproduce) drives several cores; push/pull is delivered synchronously by the harness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../util/index.js';
import { type Address } from './address.js';
import { type MembershipTimings, lanTimings } from './config.js';
import { addCrc, buildPacket } from './framing.js';
import { defaultVsn, encodePacketMessage } from './messages.js';
import { type MemberEvent, Serf } from './serf.js';
import { nodesMax } from './swim.js';
import { encodeLeaveIntent, encodeTags } from './serf-messages.js';

const seed = Number(process.env.SEED ?? 7);

interface SimNode {
  readonly serf: Serf;
  readonly address: Address;
  crashed: boolean;
  /** Runs, but every packet and stream to or from it is lost. */
  isolated: boolean;
  /** Loses every UDP packet sent to it; TCP still works. */
  udpDeaf?: boolean;
  readonly events: MemberEvent[];
}

class SimCluster {
  nowMs = 0;
  readonly nodes: SimNode[] = [];
  private readonly prng: Prng;
  /** Packet loss probability in [0, 1). */
  lossProbability = 0;

  constructor(
    readonly timings: MembershipTimings,
    seedValue: number,
  ) {
    this.prng = new Prng(seedValue);
  }

  add(name: string, tags: Record<string, string> = {}): SimNode {
    const address = { host: '10.0.0.' + (this.nodes.length + 1), port: 7946 };
    const serf = new Serf({
      name,
      advertise: address,
      addr: Uint8Array.from(address.host.split('.').map(Number)),
      tags,
      timings: this.timings,
      prng: new Prng(this.prng.nextUint32()),
      nowMs: this.nowMs,
      packetOverheadBytes: 0,
    });
    const node: SimNode = { serf, address, crashed: false, isolated: false, events: [] };
    this.nodes.push(node);
    node.events.push(...serf.drainEvents());
    return node;
  }

  byAddress(address: Address): SimNode | undefined {
    return this.nodes.find((node) => node.address.host === address.host && node.address.port === address.port);
  }

  /** Push/pull from `node` to `to`, both directions merged, as over TCP. */
  pushPull(node: SimNode, to: Address, join: boolean): string | undefined {
    const peer = this.byAddress(to);
    if (!peer || peer.crashed || peer.isolated || node.isolated) return 'connection refused';
    const request = node.serf.localState(join);
    const reply = peer.serf.localState(join);
    const refused = peer.serf.mergeRemoteState(request, this.nowMs);
    if (refused) return refused;
    return node.serf.mergeRemoteState(reply, this.nowMs);
  }

  join(node: SimNode, seed: SimNode): void {
    assert.equal(this.pushPull(node, seed.address, true), undefined);
    node.serf.announceJoin();
  }

  /** Runs until `untilMs`, delivering packets at once (or dropping them with lossProbability). */
  run(durationMs: number, stop?: () => boolean): void {
    const untilMs = this.nowMs + durationMs;
    for (let steps = 0; steps < 1_000_000; steps++) {
      this.flush();
      if (stop?.()) return;
      const live = this.nodes.filter((node) => !node.crashed);
      const next = Math.min(...live.map((node) => node.serf.nextDeadlineMs()));
      if (next > untilMs) break;
      this.nowMs = Math.max(this.nowMs, next);
      for (const node of live) if (node.serf.nextDeadlineMs() <= this.nowMs) node.serf.tick(this.nowMs);
    }
    this.nowMs = untilMs;
  }

  private flush(): void {
    for (let round = 0; round < 100; round++) {
      let moved = false;
      for (const node of this.nodes) {
        if (node.crashed) continue;
        for (const output of node.serf.drainOutbox()) {
          moved = true;
          if (output.kind === 'packet') {
            const target = this.byAddress(output.to);
            const lost = node.isolated || target?.isolated === true || target?.udpDeaf === true || this.prng.chance(this.lossProbability);
            if (target && !target.crashed && !lost) target.serf.receivePacket(output.bytes, node.address, this.nowMs);
          } else if (output.kind === 'tcp-ping') {
            const target = this.byAddress(output.to);
            if (target && !target.crashed && !target.isolated && !node.isolated && target.serf.name === output.node) node.serf.swim.tcpPingAcked(output.seqNo);
          } else {
            this.pushPull(node, output.to, output.kind === 'join');
          }
        }
        node.events.push(...node.serf.drainEvents());
      }
      if (!moved) return;
    }
  }

  statusOf(observer: SimNode, name: string): string | undefined {
    return observer.serf.members().find((member) => member.name === name)?.status;
  }

  everyoneSees(name: string, status: string, except: SimNode[] = []): boolean {
    return this.nodes.filter((node) => !node.crashed && !except.includes(node)).every((node) => this.statusOf(node, name) === status);
  }
}

function formCluster(count: number, timings: MembershipTimings = lanTimings): SimCluster {
  const cluster = new SimCluster(timings, seed);
  const first = cluster.add('n0', { rpc_addr: '10.0.0.1:8400' });
  for (let i = 1; i < count; i++) {
    const node = cluster.add(`n${i}`, { rpc_addr: `10.0.0.${i + 1}:8400` });
    cluster.join(node, first);
  }
  cluster.run(10_000, () => cluster.nodes.every((node) => node.serf.members().filter((m) => m.status === 'alive').length === count));
  return cluster;
}

test(`five nodes converge on five alive members with their tags (seed=${seed})`, () => {
  const cluster = formCluster(5);
  for (const node of cluster.nodes) {
    const members = node.serf.members();
    assert.equal(members.length, 5, node.serf.name);
    assert.ok(members.every((m) => m.status === 'alive'));
    assert.equal(members.find((m) => m.name === 'n3')?.tags.rpc_addr, '10.0.0.4:8400');
  }
  assert.ok(cluster.nowMs < 5_000, `converged after ${cluster.nowMs} ms`);
  const joins = cluster.nodes[4]?.events.filter((e) => e.type === 'member-join').map((e) => e.member.name).sort();
  assert.deepEqual(joins, ['n0', 'n1', 'n2', 'n3', 'n4']);
});

test(`a crashed node is declared failed everywhere within the suspicion bounds (seed=${seed})`, () => {
  const cluster = formCluster(5);
  cluster.run(5_000);
  const victim = cluster.nodes[2] as SimNode;
  victim.crashed = true;
  const crashMs = cluster.nowMs;
  cluster.run(60_000, () => cluster.everyoneSees('n2', 'failed', [victim]));
  const elapsedMs = cluster.nowMs - crashMs;
  assert.ok(cluster.everyoneSees('n2', 'failed', [victim]), 'everyone sees n2 failed');
  // n = 5: min = 4 × log10(5)·1s ≈ 2.8 s → 4 s (floor of 1), max = 24 s; plus probing (≤ n periods).
  assert.ok(elapsedMs >= 4_000 && elapsedMs <= 35_000, `detected after ${elapsedMs} ms`);
  for (const node of cluster.nodes.filter((n) => n !== victim)) {
    assert.equal(node.events.filter((e) => e.type === 'member-failed' && e.member.name === 'n2').length, 1);
    assert.equal(cluster.statusOf(node, 'n1'), 'alive');
  }
});

test('a graceful leave shows as left everywhere, and failed members get reaped', () => {
  const cluster = formCluster(4, { ...lanTimings, tombstoneTimeoutMs: 20_000, reapIntervalMs: 5_000 });
  const leaver = cluster.nodes[3] as SimNode;
  leaver.serf.leave(cluster.nowMs);
  cluster.run(5_000, () => !leaver.serf.intentBroadcastsPending());
  leaver.serf.leaveGossip(cluster.nowMs);
  cluster.run(5_000, () => !leaver.serf.leaveBroadcastPending());
  assert.equal(cluster.statusOf(leaver, 'n3'), 'left', 'the leaver sees itself left');
  leaver.crashed = true; // gone after its broadcasts drained
  cluster.run(5_000, () => cluster.everyoneSees('n3', 'left', [leaver]));
  assert.ok(cluster.everyoneSees('n3', 'left', [leaver]));
  const n0 = cluster.nodes[0] as SimNode;
  assert.equal(n0.events.filter((e) => e.type === 'member-failed').length, 0);
  assert.equal(n0.events.filter((e) => e.type === 'member-leave' && e.member.name === 'n3').length, 1);
  cluster.run(40_000);
  assert.equal(n0.serf.members().find((m) => m.name === 'n3'), undefined);
  assert.equal(n0.events.filter((e) => e.type === 'member-reap' && e.member.name === 'n3').length, 1);
});

test('a tag change reaches everyone as member-update', () => {
  const cluster = formCluster(4);
  const node = cluster.nodes[1] as SimNode;
  node.serf.setTags({ rpc_addr: '10.0.0.2:9999', role: 'x' }, cluster.nowMs);
  const sees = (n: SimNode): boolean => n.serf.members().find((m) => m.name === 'n1')?.tags.rpc_addr === '10.0.0.2:9999';
  cluster.run(5_000, () => cluster.nodes.every(sees));
  assert.ok(cluster.nodes.every(sees));
  for (const other of cluster.nodes.filter((n) => n !== node)) {
    assert.ok(other.events.some((e) => e.type === 'member-update' && e.member.name === 'n1' && e.member.tags.role === 'x'));
  }
});

test('with 10% packet loss, every member ends up alive everywhere once the loss stops', () => {
  const cluster = formCluster(6);
  cluster.lossProbability = 0.1;
  cluster.run(60_000);
  cluster.lossProbability = 0;
  // A false suspicion under loss is refuted; a node that missed the refutation heals at the next push/pull.
  cluster.run(45_000);
  for (const node of cluster.nodes) assert.ok(node.serf.members().every((m) => m.status === 'alive'), `${node.serf.name}: ${JSON.stringify(node.serf.members().map((m) => [m.name, m.status]))}`);
});

test('hostile messages are counted and dropped; suspicion of a healthy member is refuted', () => {
  const cluster = formCluster(4);
  const victim = cluster.nodes[1] as SimNode;
  const observer = cluster.nodes[0] as SimNode;
  const attacker = { host: '10.6.6.6', port: 666 };
  const inject = (bytes: Uint8Array): void => observer.serf.receivePacket(bytes, attacker, cluster.nowMs);
  const incarnation = victim.serf.swim.self().incarnation;
  // An impostor claims n1's name from another address with a higher incarnation.
  inject(encodePacketMessage({ type: 'alive', node: 'n1', incarnation: incarnation + 10, addr: Uint8Array.of(10, 6, 6, 6), port: 666, meta: encodeTags({ rpc_addr: 'evil' }), vsn: defaultVsn }));
  assert.equal(observer.serf.members().find((m) => m.name === 'n1')?.tags.rpc_addr, '10.0.0.2:8400');
  assert.equal(observer.serf.counters.get('drop: alive claiming a known name from another address'), 1);
  // Forged accusations from a name nobody knows are dropped outright.
  inject(encodePacketMessage({ type: 'dead', node: 'n1', incarnation, from: 'mallory' }));
  assert.equal(observer.serf.counters.get('drop: accusation from an unknown node'), 1);
  // A forged suspicion in a member's name: the victim hears of it through gossip and refutes with a higher incarnation.
  inject(addCrc(buildPacket([encodePacketMessage({ type: 'suspect', node: 'n1', incarnation, from: 'n2' })])));
  // A forged leave intent about a member that is alive: serf sets it leaving; the member refutes with a join intent.
  inject(buildPacket([Uint8Array.from([8, ...encodeLeaveIntent({ lTime: 1_000, node: 'n1', prune: false })])]));
  // Garbage, wrong types, huge lengths.
  inject(Uint8Array.of(4, 0xdb, 0xff, 0xff, 0xff, 0xff));
  inject(Uint8Array.of(7, 3, 0, 9));
  inject(Uint8Array.of(0x0c, 1, 2, 3, 4, 5));
  cluster.run(30_000);
  for (const node of cluster.nodes) assert.equal(cluster.statusOf(node, 'n1'), 'alive', `${node.serf.name} sees n1 alive`);
  assert.ok(victim.serf.swim.self().incarnation > incarnation, 'the victim refuted');
  assert.ok((victim.serf.counters.get('refuted: suspect about us') ?? 0) >= 1);
  assert.ok((victim.serf.counters.get('refuted: leave intent about us') ?? 0) >= 1);
  assert.ok(!observer.serf.drainEvents().some((e) => e.type === 'member-failed'));
  assert.ok([...observer.serf.counters.keys()].filter((k) => k.startsWith('drop:')).length >= 3);
});

test('after a partition heals, reconnect attempts bring the failed member back everywhere', () => {
  const cluster = formCluster(4, { ...lanTimings, reconnectIntervalMs: 5_000 });
  const island = cluster.nodes[3] as SimNode;
  island.isolated = true;
  cluster.run(60_000, () => cluster.everyoneSees('n3', 'failed', [island]));
  assert.ok(cluster.everyoneSees('n3', 'failed', [island]));
  island.isolated = false;
  cluster.run(60_000, () => cluster.nodes.every((node) => node.serf.members().every((m) => m.status === 'alive')));
  for (const node of cluster.nodes) assert.ok(node.serf.members().every((m) => m.status === 'alive'), node.serf.name);
  const n0 = cluster.nodes[0] as SimNode;
  assert.ok(n0.events.some((e) => e.type === 'member-join' && e.member.name === 'n3' && n0.events.indexOf(e) > n0.events.findIndex((f) => f.type === 'member-failed')));
});

test('a member that misses UDP pings but answers the TCP fallback ping is not suspected', () => {
  const cluster = formCluster(4);
  const deaf = cluster.nodes[2] as SimNode;
  deaf.udpDeaf = true;
  cluster.run(30_000);
  for (const node of cluster.nodes.filter((n) => n !== deaf)) {
    assert.ok(!node.events.some((e) => e.type === 'member-failed'), `${node.serf.name} saw a failure`);
    assert.equal(cluster.statusOf(node, 'n2'), 'alive');
  }
  const fallbacks = cluster.nodes.reduce((sum, n) => sum + (n.serf.counters.get('probe: udp failed but tcp ping answered') ?? 0), 0);
  assert.ok(fallbacks >= 3, `fallback TCP pings answered: ${fallbacks}`);
});

test('a flood of alive messages with fresh names is bounded by the node table limit', () => {
  const cluster = formCluster(2);
  const target = cluster.nodes[0] as SimNode;
  for (let i = 0; i < nodesMax + 100; i++) {
    const alive = encodePacketMessage({ type: 'alive', node: `ghost-${i}`, incarnation: 1, addr: Uint8Array.of(10, 9, (i >> 8) & 0xff, i & 0xff), port: 7946, meta: new Uint8Array(0), vsn: defaultVsn });
    target.serf.receivePacket(alive, { host: '10.6.6.6', port: 1 }, cluster.nowMs);
  }
  assert.equal(target.serf.swim.allNodes().length, nodesMax);
  assert.ok((target.serf.counters.get('drop: node table full') ?? 0) >= 100);
  assert.ok(target.serf.members().length <= nodesMax);
  assert.equal(cluster.statusOf(target, 'n1'), 'alive');
});
