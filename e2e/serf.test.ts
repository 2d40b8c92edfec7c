// Goal: an annal membership node and real `serf agent` processes (Debian serf 0.9.4) form one
// cluster in both directions: each lists the other alive with its tags, tag changes arrive as
// member-update, a graceful leave shows as left and a kill -9 as failed, with and without
// encryption. Method: real agents on 127.0.0.1 with free ports and serf's fastest profile
// (`-profile=local`); annal uses the same timings. We wait on events and on `serf members` with
// bounded timeouts, and kill every agent at the end even on failure.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { type MemberEvent, JoinFailedError, Membership, localTimings } from '../src/membership/index.js';
import { keygen, killAgent, killAllAgents, rpcLeave, rpcMember, rpcMembersDetailed, rpcQueryAcks, rpcSetTag, startAgent, waitFor } from './serf-agent.js';

after(killAllAgents);

/** Generous bounds for a loaded 2-core CI machine; typical values are a few seconds. */
const convergeMs = 15_000;
/**
 * Expected worst case for kill -9 → failed with the local profile and 3 members: one probe round
 * (n × 1 s) plus the Lifeguard maximum suspicion timeout (6 × 3 s) plus one protocol period, about
 * 22 s; typically ~5 s because the other member confirms the suspicion. Plus slack for CI load.
 */
const failureDetectMs = 30_000;

function recorder(membership: Membership): { events: MemberEvent[]; wait: (type: MemberEvent['type'], name: string, timeoutMs: number) => Promise<MemberEvent> } {
  const events: MemberEvent[] = [];
  membership.subscribe((event) => events.push(event));
  return {
    events,
    wait: async (type, name, timeoutMs) => {
      await waitFor(() => events.some((e) => e.type === type && e.member.name === name), timeoutMs, `${type} ${name}`);
      return events.find((e) => e.type === type && e.member.name === name) as MemberEvent;
    },
  };
}

async function startAnnal(name: string, joinAddrs: string[], encryptKey?: string): Promise<Membership> {
  return Membership.start({
    nodeName: name,
    bindAddr: '127.0.0.1:0',
    tags: { rpc_addr: '127.0.0.1:8400', role: 'annal' },
    startJoinAddrs: joinAddrs,
    timings: localTimings,
    ...(encryptKey === undefined ? {} : { encryptKey }),
  });
}

test('annal joins a serf cluster: listed alive with tags, sees joins, updates, leaves and failures', { timeout: 90_000 }, async () => {
  const s1 = await startAgent({ name: 's1', tags: { role: 'web' } });
  const s2 = await startAgent({ name: 's2', join: s1.bindAddr });
  const annal = await startAnnal('annal-a', [s1.bindAddr]);
  const seen = recorder(annal);
  try {
    // Both agents list annal alive with its tags (rpc_addr among them) and the serf protocol it speaks.
    for (const agent of [s1, s2]) {
      await waitFor(async () => (await rpcMember(agent, 'annal-a'))?.status === 'alive', convergeMs, `${agent.name} to list annal-a`);
      const listed = await rpcMember(agent, 'annal-a');
      assert.equal(listed?.tags.rpc_addr, '127.0.0.1:8400');
      assert.equal(listed?.port, annal.address.port);
      assert.equal(listed?.protocol.version, 5);
    }
    const detailed = (await rpcMembersDetailed(s1)).find((line) => line.startsWith('annal-a '));
    assert.match(detailed ?? '', /alive\s+.*rpc_addr=127\.0\.0\.1:8400/);
    assert.match(detailed ?? '', /Protocol Version: 5/);
    await waitFor(() => annal.members().filter((m) => m.status === 'alive').length === 3, convergeMs, 'annal to see 3 alive');
    assert.equal(annal.members().find((m) => m.name === 's1')?.tags.role, 'web');

    // Tag change on annal reaches the agents as a member-update.
    annal.setTags({ rpc_addr: '127.0.0.1:9400', role: 'annal' });
    await waitFor(async () => (await rpcMember(s2, 'annal-a'))?.tags.rpc_addr === '127.0.0.1:9400', convergeMs, 's2 to see the new rpc_addr');
    await waitFor(() => s1.log.some((line) => line.includes('EventMemberUpdate: annal-a')), convergeMs, 's1 to log member-update');

    // Tag change on an agent reaches annal as a member-update.
    await rpcSetTag(s2, 'zone', 'b');
    const update = await seen.wait('member-update', 's2', convergeMs);
    assert.equal(update.member.tags.zone, 'b');

    // A new agent's join, then its graceful leave.
    const s3 = await startAgent({ name: 's3', join: s1.bindAddr });
    await seen.wait('member-join', 's3', convergeMs);
    await rpcLeave(s3);
    await seen.wait('member-leave', 's3', convergeMs);
    assert.equal(annal.members().find((m) => m.name === 's3')?.status, 'left');
    assert.ok(!seen.events.some((e) => e.type === 'member-failed' && e.member.name === 's3'), 'a graceful leave is not a failure');
    await killAgent(s3);

    // kill -9 of an agent: annal reports it failed, as the other agent does.
    const killedAt = Date.now();
    await killAgent(s2, 'SIGKILL');
    await seen.wait('member-failed', 's2', failureDetectMs);
    const detectMs = Date.now() - killedAt;
    await waitFor(async () => (await rpcMember(s1, 's2'))?.status === 'failed', failureDetectMs, 's1 to see s2 failed');
    process.stdout.write(`# annal detected kill -9 of s2 in ${detectMs} ms\n`);

    // annal's graceful leave shows as left (not failed) on the agent.
    await annal.leave();
    await waitFor(async () => (await rpcMember(s1, 'annal-a'))?.status === 'left', convergeMs, 's1 to see annal-a left');
    assert.ok(!s1.log.some((line) => line.includes('EventMemberFailed: annal-a')));
  } finally {
    await annal.shutdown();
    await killAllAgents();
  }
});

test('a serf agent joins annal: both list each other; a crashed annal node shows as failed', { timeout: 60_000 }, async () => {
  const annal = await startAnnal('annal-b', []);
  const seen = recorder(annal);
  try {
    const s1 = await startAgent({ name: 's1', join: `127.0.0.1:${annal.address.port}`, tags: { dc: 'x' } });
    await seen.wait('member-join', 's1', convergeMs);
    assert.equal(annal.members().find((m) => m.name === 's1')?.tags.dc, 'x');
    const listed = await rpcMember(s1, 'annal-b');
    assert.equal(listed?.status, 'alive');
    assert.equal(listed?.tags.rpc_addr, '127.0.0.1:8400');
    // A second agent joining through the first is seen by annal via gossip.
    const s2 = await startAgent({ name: 's2', join: s1.bindAddr });
    await seen.wait('member-join', 's2', convergeMs);
    await waitFor(async () => (await rpcMember(s2, 'annal-b'))?.status === 'alive', convergeMs, 's2 to list annal-b');
    // Queries: annal acks like an agent, honouring node and tag filters.
    assert.deepEqual(await rpcQueryAcks(s1, []), ['annal-b', 's1', 's2']);
    assert.deepEqual(await rpcQueryAcks(s1, ['-node=s2']), ['s2']);
    assert.deepEqual(await rpcQueryAcks(s1, ['-tag=rpc_addr=^127\\.0\\.0\\.1:84']), ['annal-b']);
    // annal stops without leaving (as kill -9 would): the agents detect it as failed.
    await annal.shutdown();
    await waitFor(async () => (await rpcMember(s1, 'annal-b'))?.status === 'failed', failureDetectMs, 's1 to see annal-b failed');
  } finally {
    await annal.shutdown();
    await killAllAgents();
  }
});

test('with -encrypt: the same key joins and gossips; no key or a wrong key is refused with a reason', { timeout: 60_000 }, async () => {
  const key = await keygen();
  const s1 = await startAgent({ name: 's1', encryptKey: key, tags: { role: 'secure' } });
  try {
    await assert.rejects(startAnnal('annal-nokey', [s1.bindAddr]), (error: unknown) => {
      assert.ok(error instanceof JoinFailedError);
      assert.match(error.message, /encrypt/);
      return true;
    });
    await assert.rejects(startAnnal('annal-wrongkey', [s1.bindAddr], await keygen()), (error: unknown) => {
      assert.ok(error instanceof JoinFailedError);
      assert.match(error.message, /decrypt|key/);
      return true;
    });
    assert.equal(await rpcMember(s1, 'annal-nokey'), undefined);

    const annal = await startAnnal('annal-c', [s1.bindAddr], key);
    const seen = recorder(annal);
    try {
      await waitFor(async () => (await rpcMember(s1, 'annal-c'))?.status === 'alive', convergeMs, 's1 to list annal-c');
      const s2 = await startAgent({ name: 's2', join: s1.bindAddr, encryptKey: key });
      await seen.wait('member-join', 's2', convergeMs);
      await rpcSetTag(s1, 'role', 'updated');
      await seen.wait('member-update', 's1', convergeMs);
      annal.setTags({ rpc_addr: '127.0.0.1:7777' });
      await waitFor(async () => (await rpcMember(s2, 'annal-c'))?.tags.rpc_addr === '127.0.0.1:7777', convergeMs, 's2 to see annal-c tags');
      await killAgent(s2, 'SIGKILL');
      await seen.wait('member-failed', 's2', failureDetectMs);
      assert.equal(annal.stats().counters['drop: packet could not be decrypted'] ?? 0, 0);
    } finally {
      await annal.shutdown();
    }
  } finally {
    await killAllAgents();
  }
});
