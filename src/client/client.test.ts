/**
 * Goal: the client library's own behaviour: the batching producer sends a lone record after its
 * linger time, splits batches at maxBatchRecords and maxBatchBytes, bounds batches in flight and
 * rejects every record of a failed batch; a produce stream rejects sends after a failure; an
 * unreachable node, or an annal:// cluster none of whose members answers, is an UnavailableError.
 * Method: a real node (test-node.ts) on 127.0.0.1; batch boundaries observed through the offsets
 * and through the server's ProduceBatch requests (counted by wrapping the real log's appendBatch).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { startTestNode, type TestNode } from '../server/test-node.js';
import { InvalidArgumentError, UnavailableError } from '../util/index.js';
import { AnnalClient } from './client.js';

let node: TestNode;
let batchSizes: number[];
beforeEach(async () => {
  node = await startTestNode({ server: { maxRecordBytes: 4096 } });
  batchSizes = [];
  const appendBatch = node.log.appendBatch.bind(node.log);
  node.log.appendBatch = (records) => {
    batchSizes.push(records.length);
    return appendBatch(records);
  };
});
afterEach(async () => node.stop());

describe('BatchingProducer', () => {
  it('sends a lone record after lingerMs, and splits at maxBatchRecords and maxBatchBytes', async () => {
    const producer = node.client.batchingProducer({ maxBatchRecords: 10, maxBatchBytes: 3000, lingerMs: 5 });
    assert.equal(await producer.send(Buffer.from('alone')), 0);
    assert.deepEqual(batchSizes, [1]);
    const offsets = await Promise.all(Array.from({ length: 25 }, (_, i) => producer.send(Buffer.from(`r${i}`))));
    assert.deepEqual(offsets, Array.from({ length: 25 }, (_, i) => i + 1));
    assert.deepEqual(batchSizes, [1, 10, 10, 5]);
    batchSizes.length = 0;
    const big = Buffer.alloc(1000, 1);
    await Promise.all([producer.send(big), producer.send(big), producer.send(big), producer.send(big)]);
    assert.deepEqual(batchSizes, [3, 1], '3000 bytes per batch at most');
    await producer.close();
  });

  it('rejects every record of a batch the server refuses, with the server error', async () => {
    const producer = node.client.batchingProducer({ maxBatchRecords: 3, lingerMs: 1 });
    const results = await Promise.allSettled([producer.send(Buffer.from('a')), producer.send(Buffer.alloc(0)), producer.send(Buffer.from('c'))]);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.ok(result.reason instanceof InvalidArgumentError);
    }
    assert.equal(node.log.nextOffset(), 0, 'a refused batch is not appended in part');
  });
});

describe('AnnalClient', () => {
  it('reports an unreachable node as UnavailableError', async () => {
    const client = new AnnalClient({ address: '127.0.0.1:1', security: { insecure: true } });
    await assert.rejects(client.produce(Buffer.from('x')), UnavailableError);
    await assert.rejects(client.getServers(), UnavailableError);
    client.close();
  });

  it('reports a cluster none of whose members was ever reached as UnavailableError at once, for writes too (not an unknown outcome)', async () => {
    const client = new AnnalClient({ address: 'annal://127.0.0.1:1,127.0.0.1:2', security: { insecure: true } });
    const startMs = Date.now();
    await assert.rejects(client.produce(Buffer.from('x')), (error: unknown) => error instanceof UnavailableError && /no member of 127\.0\.0\.1:1,127\.0\.0\.1:2 answered/.test(error.message));
    await assert.rejects(client.getServers(), UnavailableError);
    assert.ok(Date.now() - startMs < 10_000, 'no retries until the deadline');
    client.close();
  });

  it('refuses an annal:// address without a host:port', () => {
    assert.throws(() => new AnnalClient({ address: 'annal://', security: { insecure: true } }), InvalidArgumentError);
    assert.throws(() => new AnnalClient({ address: 'annal://host-without-port', security: { insecure: true } }), InvalidArgumentError);
  });

  it('rejects sends on a produce stream after it failed', async () => {
    const stream = node.client.produceStream();
    await assert.rejects(stream.send(Buffer.alloc(0)), InvalidArgumentError);
    await assert.rejects(stream.send(Buffer.from('later')), InvalidArgumentError);
    assert.equal(node.log.nextOffset(), 0);
  });
});
