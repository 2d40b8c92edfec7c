// Goal: `annal agent` processes form a gossip cluster as a user runs them: three agents joined by
// --start-join-addrs (repeatable, comma lists, an unreachable address among them, and a YAML
// list) all show every member alive with its rpc_addr in `annal members --json` (and the table
// without it); kill -9 fails (the others show `failed` within a bounded wait) and SIGTERM leaves
// (the other shows `left`, exit 0, leaving logged before the server stops); a real `serf agent` joining an annal agent lists it alive with
// its rpc_addr tag; a start-join that reaches nobody (or only members without our gossip key),
// and a bad key, fail with one line.
// Method: real `node dist/src/cli/main.js` processes on 127.0.0.1 with --gossip-profile local
// (serf's -profile=local timings), gossip ports free for TCP and UDP, RPC port 0 (read from the
// log); membership polled through the client in-process (cheap) with bounded waits, the CLI run
// once per check; every process killed at the end even on failure.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AnnalClient, type MemberInfo } from '../src/client/index.js';
import { killAll, runCli, spawnAgent, type AgentProcess } from './cli-harness.js';
import { freePort, killAllAgents, rpcMember, startAgent, waitFor } from './serf-agent.js';

/** Generous bounds for a loaded 2-core machine; typical values are well under a second and ~5 s. */
const convergeMs = 15_000;
/** kill -9 → failed with the local profile: typically ~5 s (see e2e/serf.test.ts for the worst case). */
const failureDetectMs = 30_000;

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-e2e-members-'));
});
after(async () => {
  killAll();
  await killAllAgents();
  rmSync(dir, { recursive: true, force: true });
});

interface Node {
  name: string;
  gossip: string;
  process: AgentProcess;
  rpc: string;
  client: AnnalClient;
}

async function startNode(name: string, extraArgs: string[], gossipPort?: number): Promise<Node> {
  const gossip = `127.0.0.1:${gossipPort ?? (await freePort())}`;
  const args = ['agent', '--insecure', '--data-dir', join(dir, name), '--node-name', name, '--rpc-port', '0', '--bind-addr', gossip, ...extraArgs];
  const process = spawnAgent(args);
  const rpc = await process.address;
  return { name, gossip, process, rpc, client: new AnnalClient({ address: rpc, security: { insecure: true }, callTimeoutMs: 5_000 }) };
}

async function statusOf(node: Node, member: string): Promise<string | undefined> {
  const members = await node.client.getMembers().catch(() => [] as MemberInfo[]);
  return members.find((m) => m.name === member)?.status;
}

async function membersJson(node: Node): Promise<MemberInfo[]> {
  const result = await runCli(['members', '--insecure', '--addr', node.rpc, '--json']);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim().split('\n').map((line) => JSON.parse(line) as MemberInfo);
}

describe('annal agent gossip membership', () => {
  it('three agents see each other; kill -9 shows as failed, SIGTERM as left; a serf agent lists annal', { timeout: 90_000 }, async () => {
    const n1 = await startNode('n1', ['--gossip-profile', 'local']);
    // n2 from a YAML config file with a list; n3 with a repeated flag, a comma list and one address that refuses.
    const config = join(dir, 'n2.yaml');
    writeFileSync(config, `start-join-addrs: [${n1.gossip}]\ngossip-profile: local\n`);
    const n2 = await startNode('n2', ['--config-file', config]);
    const n3 = await startNode('n3', ['--gossip-profile', 'local', '--start-join-addrs', `127.0.0.1:1,${n2.gossip}`, '--start-join-addrs', n1.gossip]);
    const nodes = [n1, n2, n3];
    try {
      for (const node of nodes) {
        await waitFor(async () => (await node.client.getMembers()).filter((m) => m.status === 'alive').length === 3, convergeMs, `${node.name} to see 3 alive`);
      }
      const expected = nodes.map((node) => ({ name: node.name, addr: node.gossip, status: 'alive', tags: { rpc_addr: node.rpc } }));
      for (const node of nodes) {
        const listed = await membersJson(node);
        // Each agent also tags its Raft id: its node name and the incarnation of its data dir.
        for (const member of listed) assert.match(member.tags.raft_id ?? '', new RegExp(`^${member.name}@[0-9a-f]{8}$`));
        const withoutRaftId = listed.map(({ tags: { raft_id: _raftId, cluster_id: _clusterId, ...tags }, ...member }) => ({ ...member, tags }));
        assert.deepEqual(withoutRaftId, expected, `annal members --json on ${node.name}`);
      }
      const table = await runCli(['members', '--insecure', '--addr', n1.rpc]);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.trim().split('\n');
      assert.match(lines[0]!, /^NAME\s+ADDRESS\s+STATUS\s+TAGS$/);
      assert.deepEqual(
        lines.slice(1).map((line) => line.split(/\s+/).map((cell) => cell.replace(/^cluster_id=[^,]+,raft_id=[^,]+,/, ''))),
        expected.map((m) => [m.name, m.addr, 'alive', `rpc_addr=${m.tags.rpc_addr}`]),
      );

      // kill -9 first, while two members remain to confirm the suspicion (a lone survivor must
      // wait out Lifeguard's maximum suspicion timeout, ~18 s with these timings): both show failed.
      n3.process.child.kill('SIGKILL');
      await n3.process.exited;
      const started = Date.now();
      for (const node of [n1, n2]) await waitFor(async () => (await statusOf(node, 'n3')) === 'failed', failureDetectMs, `${node.name} to show n3 failed`);
      process.stderr.write(`# kill -9 → failed on n1 and n2 in ${Date.now() - started} ms\n`);
      assert.equal((await membersJson(n1)).find((m) => m.name === 'n3')?.status, 'failed');

      // SIGTERM: n2 leaves first, exits 0, and n1 records it as left (not failed).
      n2.process.child.kill('SIGTERM');
      assert.deepEqual(await n2.process.exited, { code: 0, signal: null });
      await waitFor(async () => (await statusOf(n1, 'n2')) === 'left', convergeMs, 'n1 to show n2 left');
      const leaveLine = n2.process.stderrLines.findIndex((line) => line.includes('shutting down: leaving the cluster'));
      const stopLine = n2.process.stderrLines.findIndex((line) => line.includes('shutting down: no new calls'));
      assert.ok(leaveLine >= 0 && leaveLine < stopLine, 'n2 left the cluster before it stopped serving');
      assert.ok(n1.process.stderrLines.some((line) => /"component":"membership".*"event":"member-leave".*"member":"n2"/.test(line)), 'n1 logged the leave');

      // A real serf agent joining n1 lists it alive with its rpc_addr tag, and n1 lists the agent.
      const serf = await startAgent({ name: 'serf-1', join: n1.gossip, profile: 'local' });
      await waitFor(async () => (await rpcMember(serf, 'n1'))?.status === 'alive', convergeMs, 'serf to list n1 alive');
      assert.equal((await rpcMember(serf, 'n1'))?.tags.rpc_addr, n1.rpc);
      await waitFor(async () => (await statusOf(n1, 'serf-1')) === 'alive', convergeMs, 'n1 to list serf-1 alive');

      // An agent with a gossip key cannot join this unencrypted cluster, and says so.
      const keyed = await runCli([
        'agent', '--insecure', '--data-dir', join(dir, 'keyed'), '--rpc-port', '0', '--bind-addr', '127.0.0.1:0', '--log-level', 'silent',
        '--gossip-profile', 'local', '--gossip-encrypt-key', Buffer.alloc(32, 7).toString('base64'), '--start-join-addrs', n1.gossip,
      ]);
      assert.equal(keyed.code, 1, keyed.stderr);
      assert.match(keyed.stderr, new RegExp(`^annal agent: could not join the cluster: ${n1.gossip}: [^\n]+\n$`));
    } finally {
      for (const node of nodes) node.client.close();
    }
  });

  it('fails with one line when no start-join address answers, and refuses a bad key', { timeout: 30_000 }, async () => {
    const base = ['agent', '--insecure', '--data-dir', join(dir, 'lonely'), '--rpc-port', '0', '--bind-addr', '127.0.0.1:0', '--log-level', 'silent'];
    const refused = await runCli([...base, '--start-join-addrs', '127.0.0.1:1,127.0.0.1:2']);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /^annal agent: could not join the cluster: 127\.0\.0\.1:1: [^;\n]+; 127\.0\.0\.1:2: [^;\n]+\n$/);
    const badKey = await runCli([...base, '--gossip-encrypt-key', 'c2hvcnQ=']);
    assert.equal(badKey.code, 2);
    assert.match(badKey.stderr, /--gossip-encrypt-key.*16, 24 or 32-byte key/);
    const badAddr = await runCli([...base, '--start-join-addrs', 'nohost']);
    assert.equal(badAddr.code, 2);
    assert.match(badAddr.stderr, /--start-join-addrs.*"nohost" is not host:port/);
  });
});
