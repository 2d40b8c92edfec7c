// Goal: security end to end through the real `annal` command: `annal certs` makes certificates
// without Go; `annal agent` refuses to start without TLS files or --insecure and prints the
// command to run; with built-in and with cfssl-made certificates, root produces and consumes,
// nobody gets PERMISSION_DENIED on every client command (members included) and nothing of theirs is appended,
// plaintext clients are refused and the agent logs why; replacing the certificates (annal certs
// again) and the policy takes effect without a restart; `annal dev` runs with mTLS and prints the
// client flags that work.
// Method: agents and client commands as child processes on 127.0.0.1 with port 0, temp dirs,
// every process killed in `after` even on failure; waits are on the agent's log lines.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { killAll, runCli, spawnAgent, type AgentProcess } from './cli-harness.js';

const CONFIG_DIR = fileURLToPath(new URL('../../config/', import.meta.url));
const GENCERT_CFSSL = fileURLToPath(new URL('../../scripts/gencert-cfssl.sh', import.meta.url));
const run = promisify(execFile);
const haveCfssl = await run('cfssl', ['version']).then(
  () => true,
  () => false,
);

function tlsAgentArgs(certs: string, dataDir: string, policyFile = join(CONFIG_DIR, 'policy.csv')): string[] {
  return [
    'agent',
    '--data-dir', dataDir,
    '--node-name', 'secure',
    '--rpc-port', '0',
    '--server-tls-cert-file', join(certs, 'server.pem'),
    '--server-tls-key-file', join(certs, 'server-key.pem'),
    '--server-tls-ca-file', join(certs, 'ca.pem'),
    '--peer-tls-cert-file', join(certs, 'peer.pem'),
    '--peer-tls-key-file', join(certs, 'peer-key.pem'),
    '--peer-tls-ca-file', join(certs, 'ca.pem'),
    '--acl-model-file', join(CONFIG_DIR, 'model.conf'),
    '--acl-policy-file', policyFile,
  ];
}

function clientArgs(certs: string, who: 'root' | 'nobody', addr: string): string[] {
  return ['--addr', addr, '--ca-file', join(certs, 'ca.pem'), '--cert-file', join(certs, `${who}-client.pem`), '--key-file', join(certs, `${who}-client-key.pem`)];
}

/** Resolves with the first agent log entry (JSON) whose msg matches, at or after `fromIndex`. */
function waitForLog(agent: AgentProcess, pattern: RegExp, fromIndex = 0, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const stderr = agent.child.stderr!;
    const finish = (outcome: () => void): void => {
      clearTimeout(timer);
      stderr.off('data', onData);
      outcome();
    };
    const check = (): void => {
      for (const line of agent.stderrLines.slice(fromIndex)) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (typeof entry['msg'] === 'string' && pattern.test(entry['msg'])) return finish(() => resolve(entry));
        } catch {
          // not a JSON log line
        }
      }
    };
    // The harness's line reader runs first on each chunk; check after it has split the lines.
    const onData = (): void => void setImmediate(check);
    const timer = setTimeout(() => finish(() => reject(new Error(`no log line matching ${pattern}:\n${agent.stderrLines.join('\n')}`))), timeoutMs);
    stderr.on('data', onData);
    check();
  });
}

describe('security end to end', { timeout: 180_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'annal-e2e-security-'));
  });
  after(async () => {
    killAll();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to start without TLS files or --insecure and prints the annal certs command', async () => {
    const result = await runCli(['agent', '--data-dir', join(dir, 'refused')]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /annal certs --config-dir \S+ --out \S+/);
    assert.match(result.stderr, /--server-tls-cert-file/);
    assert.match(result.stderr, /--insecure/);
  });

  const sources = [['built-in', false] as const, ['cfssl', true] as const];
  for (const [source, useCfssl] of sources) {
    it(`serves root and denies nobody with ${source} certificates`, { skip: useCfssl && !haveCfssl ? 'cfssl is not installed' : false }, async () => {
      const certs = join(dir, `certs-${source}`);
      if (useCfssl) {
        await run('bash', [GENCERT_CFSSL, '--config-dir', CONFIG_DIR, '--out', certs]);
      } else {
        const made = await runCli(['certs', '--config-dir', CONFIG_DIR, '--out', certs]);
        assert.equal(made.code, 0, made.stderr);
        assert.match(made.stdout, /root-client\.pem/);
      }
      const agent = spawnAgent(tlsAgentArgs(certs, join(dir, `data-${source}`)));
      const addr = await agent.address;
      const root = clientArgs(certs, 'root', addr);
      const nobody = clientArgs(certs, 'nobody', addr);

      const produced = await runCli(['produce', ...root, 'first', 'second']);
      assert.equal(produced.code, 0, produced.stderr);
      assert.equal(produced.stdout, '0\tfirst\n1\tsecond\n');

      for (const [command, action] of [
        [['produce', ...nobody, 'intruder'], 'produce'],
        [['consume', ...nobody, '--offset', '0'], 'consume'],
        [['servers', ...nobody], 'consume'],
        [['members', ...nobody], 'consume'],
      ] as const) {
        const denied = await runCli([...command]);
        assert.equal(denied.code, 1, `${command[0]}: ${denied.stdout}${denied.stderr}`);
        assert.match(denied.stderr, /"nobody"/, command[0]);
        assert.match(denied.stderr, new RegExp(`\\b${action}\\b`), command[0]);
      }

      const members = await runCli(['members', ...root, '--json']);
      assert.equal(members.code, 0, members.stderr);
      const self = JSON.parse(members.stdout) as { name: string; addr: string; status: string; tags: Record<string, string> };
      assert.deepEqual({ ...self, addr: undefined, tags: { rpc_addr: self.tags.rpc_addr } }, { name: 'secure', addr: undefined, status: 'alive', tags: { rpc_addr: addr } });
      assert.match(self.tags.cluster_id ?? '', /^[0-9a-f-]{36}$/);
      assert.match(self.tags.raft_id ?? '', /^secure@[0-9a-f]{8}$/);
      assert.match(self.addr, /^127\.0\.0\.1:\d+$/);

      const plaintext = await runCli(['produce', '--insecure', '--addr', addr, 'plain']);
      assert.equal(plaintext.code, 1, plaintext.stderr);
      await waitForLog(agent, /^refused connection: not a TLS handshake/);

      const consumed = await runCli(['consume', ...root, '--offset', '0', '--json']);
      assert.equal(consumed.code, 0, consumed.stderr);
      assert.deepEqual(consumed.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { value: string }).value), ['first', 'second'], 'nothing of nobody or the plaintext client was appended');

      agent.child.kill('SIGTERM');
      assert.deepEqual(await agent.exited, { code: 0, signal: null });
    });
  }

  it('puts new certificates (annal certs again) and a new policy in force without a restart', async () => {
    const certs = join(dir, 'certs-rotation');
    assert.equal((await runCli(['certs', '--config-dir', CONFIG_DIR, '--out', certs])).code, 0);
    const policyFile = join(dir, 'policy-rotation.csv');
    await copyFile(join(CONFIG_DIR, 'policy.csv'), policyFile);
    const agent = spawnAgent(tlsAgentArgs(certs, join(dir, 'data-rotation'), policyFile));
    const addr = await agent.address;
    assert.equal((await runCli(['produce', ...clientArgs(certs, 'root', addr), 'before'])).code, 0);

    let mark = agent.stderrLines.length;
    const renewed = await runCli(['certs', '--config-dir', CONFIG_DIR, '--out', certs]);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.match(renewed.stdout, /reused the CA/);
    await waitForLog(agent, /^server TLS certificate: reloaded/, mark);
    const after = await runCli(['produce', ...clientArgs(certs, 'root', addr), 'after']);
    assert.equal(after.code, 0, after.stderr);

    const denied = await runCli(['consume', ...clientArgs(certs, 'nobody', addr), '--offset', '0']);
    assert.equal(denied.code, 1);
    mark = agent.stderrLines.length;
    await appendFile(policyFile, 'p, nobody, *, consume\n');
    await waitForLog(agent, /^ACL: reloaded/, mark);
    const allowed = await runCli(['consume', ...clientArgs(certs, 'nobody', addr), '--offset', '0']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stdout, '0\tbefore\n1\tafter\n');

    mark = agent.stderrLines.length;
    await appendFile(policyFile, 'this is not a policy line\n');
    agent.child.kill('SIGHUP');
    await waitForLog(agent, /^ACL: rejected the new files/, mark);
    const stillAllowed = await runCli(['consume', ...clientArgs(certs, 'nobody', addr), '--offset', '1']);
    assert.equal(stillAllowed.code, 0, 'the policy in force stays after a bad edit');

    agent.child.kill('SIGTERM');
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
  });

  it('annal dev makes certificates on first run, serves mTLS and prints client flags that work', async () => {
    const agent = spawnAgent(['dev', '--rpc-port', '18450', '--metrics-port', '19450'], { cwd: dir });
    let banner = '';
    agent.child.stdout!.on('data', (chunk: Buffer) => (banner += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      agent.child.stdout!.on('data', () => {
        if (banner.includes('Ctrl-C')) resolve();
      });
      void agent.exited.then(() => reject(new Error(`dev exited: ${agent.stderrLines.join('\n')}`)));
    });
    const flags = /produce:\s+\S+(?: \S+)? produce (--addr \S+ --ca-file \S+ --cert-file \S+ --key-file \S+)/.exec(banner);
    assert.ok(flags, banner);
    const produced = await runCli(['produce', ...flags[1]!.split(' '), 'hi'], { cwd: dir });
    assert.equal(produced.code, 0, produced.stderr);
    assert.equal(produced.stdout, '0\thi\n');
    const plaintext = await runCli(['produce', '--insecure', '--addr', /--addr (\S+)/.exec(flags[1]!)![1]!, 'x'], { cwd: dir });
    assert.equal(plaintext.code, 1);
    agent.child.kill('SIGINT');
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
  });
});
