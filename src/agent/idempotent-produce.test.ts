/**
 * Goal: the leader's side of idempotent produce on a real node: a repeated batch is answered with
 * the offsets it got (duplicate) and appended once, a gap or a partial overlap is refused with the
 * sequence to resend from and nothing appended, consumers read the values produced (type 0, no
 * producer header), and after a restart the table rebuilt from the log answers the same.
 * Method: an in-process agent (a one-voter cluster) on 127.0.0.1, raw ProduceBatch calls with
 * producer fields through the client library's generated client; the annal:// client on top,
 * also under mutual TLS as an identity the ACL allows only to produce.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CONFIG_DIR, makeCertificates } from '../auth/test-fixtures.js';
import { AnnalClient } from '../client/index.js';
import { sendSequencedBatch as sendBatch } from '../client/test-support.js';
import { OutOfOrderSequenceError, PermissionDeniedError, type AnnalError } from '../util/index.js';
import { Agent, type AgentConfig } from './agent.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'annal-idempotent-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

function config(): AgentConfig {
  return { dataDir: join(dir, 'data'), nodeName: 'idem', bindAddr: '127.0.0.1:0', rpcPort: 0, log: {}, maxRecordBytes: 1024 * 1024, logger: quiet };
}

async function records(client: AnnalClient): Promise<{ offset: number; value: string; type: number }[]> {
  const out: { offset: number; value: string; type: number }[] = [];
  for await (const record of client.consumeStream(0, { follow: false })) out.push({ offset: record.offset, value: record.value.toString(), type: record.type });
  return out;
}

describe('idempotent produce on a node', () => {
  it('appends each sequence once, answers repeats with their offsets, refuses gaps, and keeps that across a restart', async () => {
    const producer = 2 ** 40 + 3;
    let agent = await Agent.start(config());
    let client = new AnnalClient({ address: agent.rpcAddress, security: { insecure: true } });
    try {
      assert.deepEqual(await sendBatch(client, producer, 0, ['a', 'b', 'c']), { firstOffset: 0, lastOffset: 2, count: 3, duplicate: false });
      await client.produce(Buffer.from('plain')); // another writer in between, offset 3
      assert.deepEqual(await sendBatch(client, producer, 3, ['d']), { firstOffset: 4, lastOffset: 4, count: 1, duplicate: false });
      assert.deepEqual(await sendBatch(client, producer, 0, ['a', 'b', 'c']), { firstOffset: 0, lastOffset: 2, count: 3, duplicate: true });
      assert.deepEqual(await sendBatch(client, producer, 1, ['b', 'c']), { firstOffset: 1, lastOffset: 2, count: 2, duplicate: true });
      const gap = (await sendBatch(client, producer, 9, ['z']).catch((e: AnnalError) => e)) as OutOfOrderSequenceError;
      assert.ok(gap instanceof OutOfOrderSequenceError, String(gap));
      assert.deepEqual([gap.producerId, gap.sequence, gap.expectedSequence], [producer, 9, 4]);
      const partial = (await sendBatch(client, producer, 2, ['c', 'd', 'e']).catch((e: AnnalError) => e)) as OutOfOrderSequenceError;
      assert.ok(partial instanceof OutOfOrderSequenceError, String(partial));
      assert.equal(partial.expectedSequence, 3, 'the log holds 2 at the end of a run: resend from 3');
      const expected = [
        { offset: 0, value: 'a', type: 0 },
        { offset: 1, value: 'b', type: 0 },
        { offset: 2, value: 'c', type: 0 },
        { offset: 3, value: 'plain', type: 0 },
        { offset: 4, value: 'd', type: 0 },
      ];
      assert.deepEqual(await records(client), expected, 'each record once, as produced');

      client.close();
      await agent.shutdown();
      agent = await Agent.start(config());
      client = new AnnalClient({ address: agent.rpcAddress, security: { insecure: true } });
      assert.deepEqual(await sendBatch(client, producer, 3, ['d']), { firstOffset: 4, lastOffset: 4, count: 1, duplicate: true }, 'rebuilt from the log');
      assert.deepEqual(await sendBatch(client, producer, 4, ['e']), { firstOffset: 5, lastOffset: 5, count: 1, duplicate: false });
      assert.deepEqual((await records(client)).map((r) => r.value), ['a', 'b', 'c', 'plain', 'd', 'e']);
    } finally {
      client.close();
      await agent.shutdown();
    }
  });

  it('an annal:// client on a single node produces through its idempotent producer', async () => {
    const agent = await Agent.start(config());
    const client = new AnnalClient({ address: `annal://${agent.rpcAddress}`, security: { insecure: true } });
    try {
      assert.ok(client.clustered);
      const stream = client.produceStream();
      const offsets = await Promise.all(Array.from({ length: 100 }, (_, i) => stream.send(Buffer.from(`s${i}`))));
      await stream.close();
      assert.deepEqual(offsets, Array.from({ length: 100 }, (_, i) => i));
      const batching = client.batchingProducer({ maxBatchRecords: 7, lingerMs: 1 });
      const more = await Promise.all(Array.from({ length: 20 }, (_, i) => batching.send(Buffer.from(`b${i}`))));
      await batching.close();
      assert.deepEqual(more, Array.from({ length: 20 }, (_, i) => 100 + i));
      assert.equal((await client.consume(119)).value.toString(), 'b19');
    } finally {
      client.close();
      await agent.shutdown();
    }
  });

  it('an identity allowed only to produce finds the cluster (GetServers) and produces idempotently through annal://', async () => {
    const files = await makeCertificates(join(dir, 'certs'));
    copyFileSync(join(CONFIG_DIR, 'model.conf'), join(dir, 'model.conf'));
    writeFileSync(join(dir, 'policy.csv'), 'p, nobody, *, produce\np, root, *, consume\n');
    const agent = await Agent.start({
      ...config(),
      security: {
        type: 'mtls',
        server: { certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert },
        acl: { modelFile: join(dir, 'model.conf'), policyFile: join(dir, 'policy.csv') },
        peer: undefined,
      },
    });
    const tls = (cert: string, key: string) => ({ tls: { caPem: readFileSync(files.caCert), certPem: readFileSync(cert), keyPem: readFileSync(key) } });
    const producer = new AnnalClient({ address: `annal://${agent.rpcAddress}`, security: tls(files.nobodyClientCert, files.nobodyClientKey) });
    const reader = new AnnalClient({ address: agent.rpcAddress, security: tls(files.rootClientCert, files.rootClientKey) });
    try {
      assert.ok(producer.clustered);
      const servers = await producer.getServers();
      assert.deepEqual(servers.map((server) => server.isLeader), [true], 'GetServers answers a produce-only subject');
      const stream = producer.produceStream();
      const offsets = await Promise.all(Array.from({ length: 50 }, (_, i) => stream.send(Buffer.from(`p${i}`))));
      await stream.close();
      assert.deepEqual(offsets, Array.from({ length: 50 }, (_, i) => i));
      assert.equal(await producer.produce(Buffer.from('unary')), 50);
      await assert.rejects(producer.consume(0), PermissionDeniedError, 'produce only: reading stays denied');
      const values: string[] = [];
      for await (const record of reader.consumeStream(0, { follow: false })) values.push(record.value.toString());
      assert.deepEqual(values, [...Array.from({ length: 50 }, (_, i) => `p${i}`), 'unary']);
    } finally {
      producer.close();
      reader.close();
      await agent.shutdown();
    }
  });
});
