/**
 * Goal: the agent's start-up and shutdown order: it serves what it stores, a graceful shutdown
 * closes the log so that a new agent on the same data dir sees every record, and an unusable data
 * dir fails start-up with a clear error.
 * Method: real agents in-process on 127.0.0.1 with port 0 and temp dirs; the annal client.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AnnalClient } from '../client/index.js';
import { InvalidArgumentError } from '../util/index.js';
import { Agent, hostOf, type AgentConfig } from './agent.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-agent-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

function config(overrides: Partial<AgentConfig> = {}): AgentConfig {
  return {
    dataDir: join(dir, 'data'),
    nodeName: 'agent-test',
    bindAddr: '127.0.0.1:0',
    rpcPort: 0,
    log: {},
    maxRecordBytes: 1024 * 1024,
    logger: quiet,
    ...overrides,
  };
}

describe('Agent', () => {
  it('serves, shuts down gracefully, and a new agent on the same dir has every record', async () => {
    const first = await Agent.start(config());
    const client = new AnnalClient({ address: first.rpcAddress, security: { insecure: true } });
    const producer = client.produceStream();
    const offsets = await Promise.all(Array.from({ length: 50 }, (_, i) => producer.send(Buffer.from(`r${i}`))));
    await producer.close();
    assert.deepEqual(offsets, Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual(await client.getServers(), [{ id: 'agent-test', rpcAddr: first.rpcAddress, isLeader: true, role: 'leader', isVoter: true, matchIndex: 52 }], 'bootstrap config, no-op, 50 records');
    client.close();
    await first.shutdown();
    await first.shutdown(); // idempotent

    const second = await Agent.start(config());
    const reader = new AnnalClient({ address: second.rpcAddress, security: { insecure: true } });
    const values: string[] = [];
    for await (const record of reader.consumeStream(0, { follow: false, maxBatch: 16 })) values.push(record.value.toString());
    assert.deepEqual(values, Array.from({ length: 50 }, (_, i) => `r${i}`));
    reader.close();
    await second.shutdown();
  });

  it('refuses a data dir that is a file, with a message naming it', async () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    await assert.rejects(Agent.start(config({ dataDir: file })), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.match(error.message, /data dir .*not-a-dir exists and is not a directory/);
      return true;
    });
  });

  it('advertises the host name rather than a wildcard bind address', async () => {
    const agent = await Agent.start(config({ bindAddr: '0.0.0.0:0' }));
    const port = agent.server.port;
    const client = new AnnalClient({ address: `127.0.0.1:${port}`, security: { insecure: true } });
    assert.deepEqual(await client.getServers(), [{ id: 'agent-test', rpcAddr: `${hostname()}:${port}`, isLeader: true, role: 'leader', isVoter: true, matchIndex: 2 }]);
    client.close();
    await agent.shutdown();
  });

  it('refuses a max record size that cannot fit in a segment', async () => {
    await assert.rejects(Agent.start(config({ maxRecordBytes: 4096, log: { maxStoreBytes: 4096 } })), /does not fit in a segment of 4096 bytes/);
  });

  it('parses host:port bind addresses', () => {
    assert.equal(hostOf('127.0.0.1:8401'), '127.0.0.1');
    assert.equal(hostOf('[::1]:8401'), '::1');
    assert.throws(() => hostOf('nohost'), InvalidArgumentError);
  });
});
