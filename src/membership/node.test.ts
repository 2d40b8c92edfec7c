// Goal: the public Membership API over real UDP/TCP sockets on 127.0.0.1: join, members with tags,
// the proglog-style handler (join/leave, never about ourselves), the events iterator, tag updates,
// graceful leave vs crash, encryption between annal nodes, and clear errors for bad options.
// Method: three in-process nodes with fast timings on free ports; waits are bounded polls on state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../util/index.js';
import { type Member, type MemberEvent, type MembershipTimings, JoinFailedError, Membership, localTimings } from './index.js';

const fast: Partial<MembershipTimings> = { ...localTimings, probeIntervalMs: 300, probeTimeoutMs: 100, gossipIntervalMs: 50, suspicionMult: 2, pushPullIntervalMs: 2_000, leavePropagateDelayMs: 100 };

async function until(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function statusOf(node: Membership, name: string): string | undefined {
  return node.members().find((m) => m.name === name)?.status;
}

test('three nodes: handler calls, events iterator, tags, leave and crash', { timeout: 60_000 }, async () => {
  const calls: string[] = [];
  const handler = { join: (m: Member) => void calls.push(`join ${m.name} ${m.tags.rpc_addr}`), leave: (m: Member) => void calls.push(`leave ${m.name}`) };
  const a = await Membership.start({ nodeName: 'a', bindAddr: '127.0.0.1:0', tags: { rpc_addr: 'a:1' }, timings: fast, handler, seed: 1 });
  const iterated: MemberEvent[] = [];
  const iteration = (async () => {
    for await (const event of a.events()) iterated.push(event);
  })();
  const b = await Membership.start({ nodeName: 'b', bindAddr: '127.0.0.1:0', tags: { rpc_addr: 'b:1' }, startJoinAddrs: [`127.0.0.1:${a.address.port}`], timings: fast, seed: 2 });
  const c = await Membership.start({ nodeName: 'c', bindAddr: '127.0.0.1:0', tags: { rpc_addr: 'c:1' }, startJoinAddrs: [`127.0.0.1:${b.address.port}`], timings: fast, seed: 3 });
  try {
    await until(() => [a, b, c].every((n) => n.members().filter((m) => m.status === 'alive').length === 3), 'three alive everywhere');
    const snapshot = c.events({ includeCurrent: true });
    const current = [];
    for (let i = 0; i < 3; i++) current.push((await snapshot.next()).value?.member.name);
    await snapshot.return?.();
    assert.deepEqual(current.sort(), ['a', 'b', 'c']);
    assert.deepEqual(calls.sort(), ['join b b:1', 'join c c:1']);
    c.setTags({ rpc_addr: 'c:2' });
    await until(() => a.members().find((m) => m.name === 'c')?.tags.rpc_addr === 'c:2', 'a to see c:2');
    await b.leave();
    await until(() => statusOf(a, 'b') === 'left' && statusOf(c, 'b') === 'left', 'b left everywhere');
    await c.shutdown();
    await until(() => statusOf(a, 'c') === 'failed', 'a to see c failed');
    assert.deepEqual(calls.slice(2), ['leave b', 'leave c']);
    await a.shutdown();
    await iteration;
    assert.deepEqual(
      iterated.map((e) => `${e.type} ${e.member.name}`),
      ['member-join b', 'member-join c', 'member-update c', 'member-leave b', 'member-failed c'],
    );
  } finally {
    await Promise.all([a.shutdown(), b.shutdown(), c.shutdown()]);
  }
});

test('encrypted nodes join each other; a node without the key is refused with the reason', { timeout: 30_000 }, async () => {
  const key = Buffer.alloc(32, 7).toString('base64');
  const a = await Membership.start({ nodeName: 'ea', bindAddr: '127.0.0.1:0', encryptKey: key, timings: fast });
  try {
    const b = await Membership.start({ nodeName: 'eb', bindAddr: '127.0.0.1:0', encryptKey: key, startJoinAddrs: [`127.0.0.1:${a.address.port}`], timings: fast });
    await until(() => statusOf(a, 'eb') === 'alive' && statusOf(b, 'ea') === 'alive', 'encrypted pair');
    await b.shutdown();
    // Key rotation: a node whose primary key is new but whose keyring still holds the old key joins.
    const newKey = Buffer.alloc(16, 9).toString('base64');
    const r = await Membership.start({ nodeName: 'er', bindAddr: '127.0.0.1:0', encryptKey: [newKey, key], startJoinAddrs: [`127.0.0.1:${a.address.port}`], timings: fast }).catch((error: unknown) => error);
    // a only knows the old key, so it cannot read r's traffic: the join fails, and says why.
    assert.ok(r instanceof JoinFailedError);
    const a2 = await Membership.start({ nodeName: 'ea2', bindAddr: '127.0.0.1:0', encryptKey: [key, newKey], startJoinAddrs: [`127.0.0.1:${a.address.port}`], timings: fast });
    await until(() => statusOf(a, 'ea2') === 'alive', 'a node with a two-key ring joins');
    await a2.shutdown();
    await assert.rejects(Membership.start({ nodeName: 'plain', bindAddr: '127.0.0.1:0', startJoinAddrs: [`127.0.0.1:${a.address.port}`], timings: fast }), (error: unknown) => {
      assert.ok(error instanceof JoinFailedError);
      assert.equal(error.code, 'UNAVAILABLE');
      assert.match(error.reasons[0]?.reason ?? '', /encrypt/);
      return true;
    });
    assert.equal(statusOf(a, 'plain'), undefined);
  } finally {
    await a.shutdown();
  }
});

test('bad options fail fast with InvalidArgumentError', async () => {
  await assert.rejects(Membership.start({ nodeName: 'x', bindAddr: 'nonsense' }), InvalidArgumentError);
  await assert.rejects(Membership.start({ nodeName: 'x', bindAddr: '127.0.0.1:0', encryptKey: 'c2hvcnQ=' }), InvalidArgumentError);
  await assert.rejects(Membership.start({ nodeName: 'x', bindAddr: '127.0.0.1:0', tags: { big: 'x'.repeat(600) } }), InvalidArgumentError);
  await assert.rejects(Membership.start({ nodeName: 'x', bindAddr: '0.0.0.0:0' }), InvalidArgumentError);
  await assert.rejects(Membership.start({ nodeName: 'x', bindAddr: 'localhost:0' }), InvalidArgumentError);
  await assert.rejects(Membership.start({ nodeName: 'x', bindAddr: '127.0.0.1:0', startJoinAddrs: ['127.0.0.1:1'] }), JoinFailedError);
});

test('shutdown does not wait for a silent inbound TCP connection (LAN tcpTimeout is 10 s)', { timeout: 30_000 }, async () => {
  const { connect } = await import('node:net');
  const node = await Membership.start({ nodeName: 'quiet', bindAddr: '127.0.0.1:0' });
  const socket = connect({ host: '127.0.0.1', port: node.address.port });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  await new Promise((resolve) => setImmediate(resolve));
  const start = Date.now();
  await node.shutdown();
  assert.ok(Date.now() - start < 5_000, `shutdown took ${Date.now() - start} ms`);
  socket.destroy();
});
