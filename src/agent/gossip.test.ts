/**
 * Goal: agents form a gossip cluster: each lists every member with its rpc_addr tag over
 * Admin.GetMembers (what `annal members` prints); a graceful shutdown leaves the cluster before the
 * server stops (others see `left` while its RPC port still answers); a start-join that fails at
 * every address names each address and why and releases the data dir; a bad gossip config fails
 * start-up cleanly; the member gauges reach the metrics; events are logged under
 * `component: 'membership'` and reach the cluster hook (where Raft will add/remove servers).
 * Method: three real agents in-process on 127.0.0.1 (port 0 for RPC and gossip, the `local`
 * gossip profile), temp dirs, the annal client; waits on member events with bounded timeouts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AnnalClient, type MemberInfo } from '../client/index.js';
import { JoinFailedError, type MemberEvent } from '../membership/index.js';
import { Telemetry } from '../telemetry/index.js';
import { AnnalError } from '../util/index.js';
import { Agent, type AgentConfig } from './agent.js';

interface GossipLoggerLike {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
  child(fields: object): GossipLoggerLike;
}

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

let dir: string;
const agents: Agent[] = [];
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-gossip-'));
});
after(async () => {
  await Promise.all(agents.map((agent) => agent.membership?.shutdown()));
  await Promise.all(agents.map((agent) => agent.shutdown()));
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, startJoinAddrs: string[], overrides: Partial<AgentConfig> = {}): AgentConfig {
  return {
    dataDir: join(dir, name),
    nodeName: name,
    bindAddr: '127.0.0.1:0',
    rpcPort: 0,
    log: {},
    maxRecordBytes: 1024 * 1024,
    logger: quiet,
    gossip: { startJoinAddrs, profile: 'local' },
    ...overrides,
  };
}

async function start(name: string, startJoinAddrs: string[], overrides: Partial<AgentConfig> = {}): Promise<Agent> {
  const agent = await Agent.start(config(name, startJoinAddrs, overrides));
  agents.push(agent);
  return agent;
}

function gossipAddr(agent: Agent): string {
  const { host, port } = agent.membership!.address;
  return `${host}:${port}`;
}

/** Resolves with the first event from `agent` that `match` accepts; rejects after `timeoutMs`. */
function nextEvent(agent: Agent, match: (event: MemberEvent) => boolean, timeoutMs = 15_000): Promise<MemberEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no matching member event on ${agent.config.nodeName} within ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = agent.membership!.subscribe((event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(event);
    });
  });
}

async function membersOf(agent: Agent): Promise<MemberInfo[]> {
  const client = new AnnalClient({ address: agent.rpcAddress, security: { insecure: true } });
  try {
    return await client.getMembers();
  } finally {
    client.close();
  }
}

describe('Agent gossip', () => {
  it('forms a cluster whose every member lists all three with rpc_addr, and leaves before it stops serving', async () => {
    // a's log: the member events (info, component membership) and the cluster hook's calls (debug).
    const aLines: { component?: string; message: string; member?: string }[] = [];
    const record = (fields: object, message: string): void => void aLines.push({ ...(fields as { member?: string }), message });
    const recording = (base: object): GossipLoggerLike => ({
      debug: (fields, message) => record({ ...base, ...fields }, message),
      info: (fields, message) => record({ ...base, ...fields }, message),
      warn: () => {},
      error: () => {},
      child: (fields) => recording({ ...base, ...fields }),
    });
    const a = await start('a', [], { logger: recording({}) });
    const cSeen = nextEvent(a, (event) => event.type === 'member-join' && event.member.name === 'c');
    const telemetry = await Telemetry.start({ metrics: true });
    const b = await start('b', [gossipAddr(a)], { telemetry });
    const c = await start('c', [gossipAddr(b)]); // joins through b; a learns of c by gossip
    await cSeen;
    const expected = [a, b, c].map((agent) => ({
      name: agent.config.nodeName,
      addr: gossipAddr(agent),
      status: 'alive',
      tags: { rpc_addr: agent.rpcAddress },
    }));
    for (const agent of [a, b, c]) {
      // b's view of c's join may trail a's by a gossip round: wait for it on the node itself.
      if ((await membersOf(agent)).length < 3) await nextEvent(agent, (event) => event.type === 'member-join');
      // Tags also carry each node's Raft id and, once it has joined the Raft cluster, its id.
      const listed = await membersOf(agent);
      for (const member of listed) assert.match(member.tags.raft_id ?? '', new RegExp(`^${member.name}@[0-9a-f]{8}$`));
      assert.deepEqual(listed.map((member) => ({ ...member, tags: { rpc_addr: member.tags.rpc_addr } })), expected, `members as ${agent.config.nodeName} sees them`);
    }

    const scrape = await telemetry.scrape();
    assert.match(scrape, /^annal_membership_members\{status="alive"[^}]*\} 3$/m, scrape);
    assert.match(scrape, /^annal_membership_members\{status="failed"[^}]*\} 0$/m);
    assert.match(scrape, /^annal_membership_dropped_messages(_total)?\{[^}]*\} 0$/m);

    // c leaves first: a records it as left while c's RPC port still answers.
    const cLeft = nextEvent(a, (event) => event.type === 'member-leave' && event.member.name === 'c');
    const stopped = c.shutdown();
    const event = await cLeft;
    assert.equal(event.member.status, 'left');
    assert.equal((await membersOf(c)).length, 3, 'c still serves RPC after others saw it leave');
    await stopped;
    const seenByA = (message: string): string[] => aLines.filter((line) => line.message === message).map((line) => line.member ?? '?');
    assert.deepEqual(seenByA('member-join'), ['b', 'c']);
    assert.deepEqual(seenByA('member-leave'), ['c']);
    assert.ok(aLines.filter((line) => line.message.startsWith('member-')).every((line) => line.component === 'membership'));
    assert.deepEqual(seenByA('member joined'), ['b', 'c']);
    assert.deepEqual(seenByA('member left or failed'), ['c']);
    const afterLeave = await membersOf(a);
    assert.deepEqual(
      afterLeave.map((member) => [member.name, member.status]),
      [['a', 'alive'], ['b', 'alive'], ['c', 'left']],
    );
    await b.shutdown();
    await telemetry.shutdown();
  });

  it('fails start-up when no start-join address answers, naming each, and frees the data dir', async () => {
    const unreachable = ['127.0.0.1:1', '127.0.0.1:2'];
    await assert.rejects(Agent.start(config('lonely', unreachable)), (error: unknown) => {
      assert.ok(error instanceof JoinFailedError, String(error));
      for (const address of unreachable) assert.match(error.message, new RegExp(`${address}: \\S`));
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
    // The log was closed: the same data dir opens again (no gossip this time).
    const again = await Agent.start(config('lonely', [], { gossip: undefined }));
    assert.equal(again.membership, undefined);
    assert.deepEqual(await membersOf(again), []);
    await again.shutdown();
  });

  it('with a wildcard bind, advertises a private IPv4 for gossip and the host name for RPC', async () => {
    const ipv4 = Object.values(networkInterfaces())
      .flat()
      .find((info) => info !== undefined && info.family === 'IPv4' && !info.internal)?.address;
    if (ipv4 === undefined) {
      await assert.rejects(Agent.start(config('wild', [], { bindAddr: '0.0.0.0:0' })), /no non-loopback IPv4 address/);
      return;
    }
    const agent = await start('wild', [], { bindAddr: '0.0.0.0:0' });
    const { host, port } = agent.membership!.address;
    assert.equal(host, ipv4);
    assert.ok(port > 0);
    const [listed] = await membersOf(agent);
    const self = { ...listed!, tags: { rpc_addr: listed!.tags.rpc_addr } };
    assert.deepEqual(self, { name: 'wild', addr: `${ipv4}:${port}`, status: 'alive', tags: { rpc_addr: `${hostname()}:${agent.server.port}` } });
  });

  it('refuses a gossip bind address that is taken, naming it and the flag, before it reports serving', async () => {
    const first = await start('taken-1', []);
    const messages: string[] = [];
    const recording = { ...quiet, info: (_fields: object, message: string) => messages.push(message) };
    await assert.rejects(Agent.start(config('taken-2', [], { bindAddr: gossipAddr(first), logger: recording })), (error: unknown) => {
      assert.ok(error instanceof AnnalError, String(error));
      assert.match(error.message, new RegExp(`^cannot start gossip on ${gossipAddr(first)} \\(choose another with --bind-addr\\): .*EADDRINUSE`));
      return true;
    });
    assert.ok(messages.includes('log opened'), 'the second agent got as far as its log');
    assert.ok(!messages.includes('serving log.v1.Log'), `it never said it serves: ${messages.join(', ')}`);
  });
});
