/**
 * Goal: a node whose disk fills says so: an error line in its log, the failure counter
 * `annal_storage_failures_total` in its metrics, and health NOT_SERVING for `log.v1.Log` (while
 * `""` stays SERVING: the node still answers reads); once the disk has space again it reopens its
 * log in place, without a restart, and takes writes again.
 * Method: a real agent whose data dir is a real 8 MiB tmpfs (mount needs root; skipped with the
 * reason otherwise), filled to a few hundred KiB; unary produces of 4 KiB until one fails.
 */
import assert from 'node:assert/strict';
import { rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AnnalClient } from '../client/index.js';
import { credentials, makeGenericClientConstructor, type Client } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { Telemetry } from '../telemetry/index.js';
import { parseSamples, sampleValue } from '../telemetry/testdata/prom-text.js';
import { Agent } from './agent.js';
import { mountTmpfs, type Tmpfs } from '../storage/testdata/tmpfs.js';

let tmpfs: Tmpfs;
let mountDir = '';
let skipReason: string | undefined;

before(() => {
  tmpfs = mountTmpfs('annal-agent-tmpfs-');
  ({ dir: mountDir, skipReason } = tmpfs);
});
after(() => tmpfs.remove());

describe('Agent on a full disk', () => {
  it('logs an error line, counts the storage failure, reports log.v1.Log NOT_SERVING, and recovers in place once there is space', async (t) => {
    if (skipReason !== undefined) return t.skip(skipReason);
    const errors: { object: object; message: string }[] = [];
    const logger = {
      error: (object: object, message: string) => errors.push({ object, message }),
      warn: () => {},
      info: () => {},
      debug: () => {},
    };
    const telemetry = await Telemetry.start({ metrics: true });
    const agent = await Agent.start({
      dataDir: join(mountDir, 'data'),
      nodeName: 'full-disk',
      bindAddr: '127.0.0.1:0',
      rpcPort: 0,
      log: { maxStoreBytes: 256 * 1024 },
      maxRecordBytes: 64 * 1024,
      logger,
      telemetry,
    });
    const filler = join(mountDir, 'filler');
    const client = new AnnalClient({ address: agent.rpcAddress, security: { insecure: true } });
    const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
    const health = new Health(agent.rpcAddress, credentials.createInsecure()) as unknown as Client & {
      check(request: { service: string }, callback: (error: Error | null, response: { status: string }) => void): void;
    };
    const check = (service: string): Promise<string> =>
      new Promise((resolve, reject) => health.check({ service }, (error, response) => (error ? reject(error) : resolve(response.status))));
    try {
      assert.equal(await check('log.v1.Log'), 'SERVING');
      const stat = statfsSync(mountDir);
      writeFileSync(filler, Buffer.alloc(Math.max(0, stat.bavail * stat.bsize - 400 * 1024)));
      let failure: Error | undefined;
      let acknowledged = 0;
      for (let i = 0; i < 1000 && failure === undefined; i++) {
        await client.produce(Buffer.alloc(4096, i)).then(() => acknowledged++, (error: Error) => (failure = error));
      }
      assert.ok(failure !== undefined, 'a produce failed once the disk was full');
      const line = errors.find((e) => /storage failed/.test(e.message));
      assert.ok(line, `an error line names the storage failure (got ${JSON.stringify(errors)})`);
      assert.match(JSON.stringify(line.object), /ENOSPC|short write/);
      const samples = parseSamples(await telemetry.scrape());
      assert.ok(sampleValue(samples, 'annal_storage_failures_total')! >= 1);
      assert.equal(await check('log.v1.Log'), 'NOT_SERVING');
      assert.equal(await check(''), 'SERVING');
      // Space again: the node reopens its log in place (no restart) and takes writes.
      rmSync(filler, { force: true });
      const deadline = Date.now() + 60_000;
      while ((await check('log.v1.Log')) !== 'SERVING') {
        assert.ok(Date.now() < deadline, 'log.v1.Log SERVING again once the disk has space');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(errors.some((e) => /raft stopped/.test(e.message)));
      const offset = await client.produce(Buffer.from('after the disk had space'));
      assert.equal(offset, acknowledged, 'the next offset after every acknowledged record (the failed one was cut)');
      assert.equal((await client.consume(0)).value.length, 4096, 'records from before the failure are intact');
    } finally {
      health.close();
      client.close();
      await agent.shutdown().catch(() => {});
      await telemetry.shutdown();
      rmSync(filler, { force: true });
    }
  });
});
