/**
 * Goal: annal as a user runs it: records produced through the CLI come back through the CLI;
 * `kill -9` of an agent under load loses no acknowledged record; SIGTERM exits 0 and leaves a log
 * that reopens cleanly; `consume --follow` survives an agent restart; `annal dev` prints how to
 * use it; bad invocations fail with one clear line and the right exit code.
 * Method: real `node dist/src/cli/main.js` processes on 127.0.0.1 with --rpc-port 0 (the address
 * comes from the agent's log) and temp data dirs; the in-process client only where the test needs
 * to know exactly which records were acknowledged.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AnnalClient } from '../src/client/index.js';
import { CLI, killAll, runCli, spawnAgent } from './cli-harness.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-e2e-'));
});
afterEach(() => {
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A port that was free a moment ago (for a test that restarts an agent on the same port). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const agentArgs = (dataDir: string): string[] => ['agent', '--insecure', '--data-dir', dataDir, '--rpc-port', '0', '--node-name', 'e2e'];

describe('annal CLI end to end', () => {
  it('produces through the CLI and consumes the same records back', async () => {
    const agent = spawnAgent(agentArgs(join(dir, 'data')));
    const addr = await agent.address;
    const byArgs = await runCli(['produce', '--insecure', '--addr', addr, 'hello', 'world']);
    assert.equal(byArgs.code, 0, byArgs.stderr);
    assert.equal(byArgs.stdout, '0\thello\n1\tworld\n');
    const byStdin = await runCli(['produce', '--insecure', '--addr', addr, '--json'], { input: 'a\nb\nc\n' });
    assert.equal(byStdin.code, 0, byStdin.stderr);
    assert.deepEqual(byStdin.stdout.trim().split('\n').map((line) => JSON.parse(line)), [
      { offset: 2, value: 'a' },
      { offset: 3, value: 'b' },
      { offset: 4, value: 'c' },
    ]);
    const consumed = await runCli(['consume', '--insecure', '--addr', addr, '--offset', '1', '--json']);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.deepEqual(consumed.stdout.trim().split('\n').map((line) => JSON.parse(line).value), ['world', 'a', 'b', 'c']);
    const servers = await runCli(['servers', '--insecure', '--addr', addr]);
    assert.equal(servers.stdout, `e2e\t${addr}\tleader\n`);
    const past = await runCli(['consume', '--insecure', '--addr', addr, '--offset', '9']);
    assert.equal(past.code, 1);
    assert.match(past.stderr, /^annal consume: offset 9 is out of range: the log holds offsets 0\.\.4\n$/);
    for (const follow of [[], ['--follow']]) {
      const top = await runCli(['consume', '--insecure', '--addr', addr, '--offset', '18446744073709551615', ...follow]);
      assert.equal(top.code, 1, top.stderr);
      assert.equal(top.stderr, 'annal consume: offset 18446744073709551615 is out of range: the log holds offsets 0..4\n');
    }
    const beyond = await runCli(['consume', '--insecure', '--addr', addr, '--offset', '18446744073709551616']);
    assert.equal(beyond.code, 2);
    assert.match(beyond.stderr, /expected an offset from 0 to 18446744073709551615/);
    const empty = await runCli(['produce', '--insecure', '--addr', addr], { input: 'x\n\ny\n' });
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /record value is empty/);
    assert.equal(empty.stdout, '5\tx\n', 'the record before the bad line was acknowledged and printed');
    agent.child.kill('SIGTERM');
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
  });

  it('keeps every acknowledged record through kill -9 under load', async () => {
    const dataDir = join(dir, 'data');
    const agent = spawnAgent(agentArgs(dataDir));
    const client = new AnnalClient({ address: await agent.address, security: { insecure: true } });
    const acknowledged = new Map<number, string>();
    const producer = client.produceStream();
    let sent = 0;
    let killed = false;
    // Keep up to 256 records in flight until well after the kill; stop at the first failure.
    const produceLoop = (async () => {
      const inFlight = new Set<Promise<void>>();
      while (true) {
        const value = `record-${sent++}`;
        const done = producer.send(Buffer.from(value)).then((offset) => {
          acknowledged.set(offset, value);
          if (acknowledged.size === 3000 && !killed) {
            killed = true;
            agent.child.kill('SIGKILL');
          }
        });
        inFlight.add(done);
        void done.finally(() => inFlight.delete(done)).catch(() => {});
        if (inFlight.size >= 256) await Promise.race(inFlight);
      }
    })();
    await assert.rejects(produceLoop);
    assert.equal((await agent.exited).signal, 'SIGKILL');
    client.close();
    assert.ok(acknowledged.size >= 3000);

    const restarted = spawnAgent(agentArgs(dataDir));
    const reader = new AnnalClient({ address: await restarted.address, security: { insecure: true } });
    const stored = new Map<number, string>();
    for await (const record of reader.consumeStream(0, { follow: false, maxBatch: 1000 })) stored.set(record.offset, record.value.toString());
    reader.close();
    for (const [offset, value] of acknowledged) assert.equal(stored.get(offset), value, `acknowledged offset ${offset}`);
    // Offsets are dense: whatever survived beyond the acknowledged ones is a prefix of what was sent.
    assert.deepEqual([...stored.keys()], Array.from({ length: stored.size }, (_, i) => i));
    restarted.child.kill('SIGTERM');
    assert.equal((await restarted.exited).code, 0);
  });

  it('exits 0 on SIGTERM and leaves a log that reopens with nothing to repair', async () => {
    const dataDir = join(dir, 'data');
    const agent = spawnAgent(agentArgs(dataDir));
    const addr = await agent.address;
    const produced = await runCli(['produce', '--insecure', '--addr', addr], { input: Array.from({ length: 100 }, (_, i) => `v${i}`).join('\n') });
    assert.equal(produced.code, 0, produced.stderr);
    agent.child.kill('SIGTERM');
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
    const again = spawnAgent(agentArgs(dataDir));
    await again.address;
    const opened = again.stderrLines.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'log opened');
    assert.equal(opened.nextOffset, 100);
    assert.ok(!again.stderrLines.some((line) => line.includes('log recovery')), again.stderrLines.join('\n'));
    again.child.kill('SIGINT');
    assert.deepEqual(await again.exited, { code: 0, signal: null });
  });

  it('annal dev runs a 3-node cluster, prints how to produce and consume, and writes a client profile the CLI reads', async () => {
    const agent = spawnAgent(['dev', '--insecure', '--rpc-port', '18400', '--metrics-port', '19400'], { cwd: dir });
    let banner = '';
    agent.child.stdout!.on('data', (chunk: Buffer) => (banner += chunk.toString()));
    const addr = await new Promise<string>((resolve, reject) => {
      agent.child.stdout!.on('data', () => {
        const match = /serving log\.v1\.Log on (\S+)/.exec(banner);
        if (match && banner.includes('Ctrl-C')) resolve(match[1]!);
      });
      void agent.exited.then(() => reject(new Error(`dev exited: ${agent.stderrLines.join('\n')}`)));
    });
    assert.match(banner, /produce: .* produce --insecure --addr/);
    assert.match(banner, /follow: .* consume --insecure --addr \S+ --offset 0 --follow/);
    assert.ok(banner.includes(join(dir, 'annal-data')), banner);
    assert.equal(addr.split(',').length, 3, 'three nodes');
    const produced = await runCli(['produce', '--insecure', '--addr', addr, 'hi']);
    assert.equal(produced.stdout, '0\thi\n');
    // From the directory that holds annal-data/client.yaml, no flags are needed, on any node.
    const withProfile = await runCli(['produce', 'again'], { cwd: dir });
    assert.equal(withProfile.stdout, '1\tagain\n', withProfile.stderr);
    const servers = await runCli(['servers'], { cwd: dir });
    assert.equal(servers.stdout.trim().split('\n').length, 3, servers.stdout);
    assert.equal(servers.stdout.split('\n').filter((line) => line.endsWith('\tleader')).length, 1, servers.stdout);
    for (const node of addr.split(',')) {
      const read = await runCli(['consume', '--insecure', '--addr', node, '--offset', '1', '--linearizable']);
      assert.equal(read.stdout, '1\tagain\n', `${node}: ${read.stderr}`);
    }
    agent.child.kill('SIGINT');
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
    assert.equal(agent.stderrLines.filter((line) => /exited \(code/.test(line)).length, 0, 'every node stopped cleanly');
  });

  it('consume --follow waits through an agent restart and resumes at the next offset', async () => {
    const dataDir = join(dir, 'data');
    const port = await freePort();
    const args = ['agent', '--insecure', '--data-dir', dataDir, '--rpc-port', String(port), '--node-name', 'e2e'];
    const first = spawnAgent(args);
    const addr = await first.address;
    await runCli(['produce', '--insecure', '--addr', addr, 'before']);
    const follower = spawn(process.execPath, [CLI, 'consume', '--insecure', '--addr', addr, '--follow', '--max-batch', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const lineWaiters: (() => void)[] = [];
    createInterface({ input: follower.stdout }).on('line', (line) => {
      lines.push(line);
      for (const wake of lineWaiters.splice(0)) wake();
    });
    let stderr = '';
    follower.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const followerExit = new Promise<number | null>((resolve) => follower.on('exit', (code) => resolve(code)));
    const waitForLines = async (count: number): Promise<void> => {
      while (lines.length < count) await new Promise<void>((resolve) => lineWaiters.push(resolve));
    };
    try {
      await waitForLines(1);
      first.child.kill('SIGTERM');
      assert.equal((await first.exited).code, 0);
      const second = spawnAgent(args);
      await second.address;
      await runCli(['produce', '--insecure', '--addr', addr, 'after']);
      await waitForLines(2);
      assert.deepEqual(lines, ['0\tbefore', '1\tafter']);
      // The client resumes by itself within its retry deadline; past it the command says so and keeps waiting.
      assert.ok(stderr === '' || /unavailable .*retrying from offset 1/.test(stderr), stderr);
      follower.kill('SIGINT');
      assert.equal(await followerExit, 0);
      second.child.kill('SIGTERM');
      assert.equal((await second.exited).code, 0);
    } finally {
      follower.kill('SIGKILL');
    }
  });

  it('consume exits quietly when its reader goes away (| head -1), as Unix tools do, and a slow reader gets every line', async () => {
    const agent = spawnAgent(agentArgs(join(dir, 'data')));
    const addr = await agent.address;
    const client = new AnnalClient({ address: addr, security: { insecure: true } });
    const values = Array.from({ length: 1000 }, (_, i) => Buffer.from(`record-${i}`));
    for (let i = 0; i < 20; i++) await client.produceBatch(values);
    client.close();
    for (const maxBatch of ['0', '256']) {
      const child = spawn(process.execPath, [CLI, 'consume', '--insecure', '--addr', addr, '--max-batch', maxBatch], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const firstLine = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
      assert.equal(firstLine, '0\trecord-0');
      child.stdout.destroy(); // the reader goes away, as head does after one line
      assert.equal(await exited, 141, `max-batch ${maxBatch}: ${stderr}`);
      assert.equal(stderr, '', 'no stack trace, no message');
    }
    // A slow reader gets every line: writes to a pipe are asynchronous, and the command must
    // neither exit with output still queued nor pile the whole log up in memory.
    const slow = spawn(process.execPath, [CLI, 'consume', '--insecure', '--addr', addr], { stdio: ['ignore', 'pipe', 'pipe'] });
    slow.stdout.pause();
    const slowExited = new Promise<number | null>((resolve) => slow.on('exit', (code) => resolve(code)));
    await new Promise((resolve) => setTimeout(resolve, 500)); // long enough to have read the whole log
    let lineCount = 0;
    const counted = new Promise<void>((resolve) => createInterface({ input: slow.stdout }).on('line', () => lineCount++).on('close', resolve));
    slow.stdout.resume();
    assert.equal(await slowExited, 0);
    await counted;
    assert.equal(lineCount, 20_000);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('a second agent on a taken gossip address fails before it reports serving, naming --bind-addr', async () => {
    const gossipPort = await freePort();
    const bindAddr = `127.0.0.1:${gossipPort}`;
    const first = spawnAgent([...agentArgs(join(dir, 'first')), '--bind-addr', bindAddr]);
    await first.address;
    const second = spawnAgent([...agentArgs(join(dir, 'second')), '--bind-addr', bindAddr]);
    assert.equal((await second.exited).code, 1);
    const last = second.stderrLines[second.stderrLines.length - 1]!;
    assert.match(last, new RegExp(`^annal agent: cannot start gossip on ${bindAddr.replace(/\./g, '\\.')} \\(choose another with --bind-addr\\): .*EADDRINUSE`));
    assert.ok(!second.stderrLines.some((line) => line.includes('serving log.v1.Log')), second.stderrLines.join('\n'));
    first.child.kill('SIGTERM');
    assert.equal((await first.exited).code, 0);
  });

  it('rejects bad invocations with one line and the right exit code', async () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'not a directory');
    const cases: { args: string[]; code: number; message: RegExp }[] = [
      { args: ['agent', '--insecure', '--data-dir', dir, '--bogus'], code: 2, message: /^annal agent: unknown option '--bogus'/ },
      { args: ['agent', '--insecure', '--data-dir', dir, '--fsync', 'sometimes'], code: 2, message: /--fsync <policy>.*'sometimes' is invalid/ },
      { args: ['agent', '--insecure', '--data-dir', file, '--rpc-port', '0', '--log-level', 'silent'], code: 1, message: /^annal agent: data dir .*file exists and is not a directory$/ },
      { args: ['consume', '--addr', '127.0.0.1:1'], code: 2, message: /pass --insecure/ },
      { args: ['consume', '--insecure', '--addr', 'nope'], code: 2, message: /--addr <host:port>.*invalid/ },
    ];
    // `agent` with neither TLS files nor --insecure prints several lines on purpose (the commands
    // that make certificates): e2e/security.test.ts covers it.
    for (const { args, code, message } of cases) {
      const result = await runCli(args);
      assert.equal(result.code, code, `${args.join(' ')}: ${result.stderr}`);
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line for ${args.join(' ')}: ${result.stderr}`);
      assert.match(lines[0]!, message);
    }
  });

  it('reads flags from a YAML config file, with flags on the command line winning', async () => {
    const config = join(dir, 'annal.yaml');
    writeFileSync(config, `data-dir: ${join(dir, 'from-config')}\nnode-name: from-config\ninsecure: true\nrpc-port: 0\n`);
    const agent = spawnAgent(['agent', '--config-file', config, '--node-name', 'from-flag']);
    const servers = await runCli(['servers', '--insecure', '--addr', await agent.address, '--json']);
    assert.equal(JSON.parse(servers.stdout)[0].id, 'from-flag');
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    writeFileSync(config, 'data-dir: /tmp/x\ninsecure: true\nrpc-prot: 1\n');
    const typo = await runCli(['agent', '--config-file', config]);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /unknown setting "rpc-prot"/);
  });
});
