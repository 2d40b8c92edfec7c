/**
 * Goal: the log.v1.Log service's contract over real gRPC: round trips, error codes and messages
 * for bad offsets and bad records, ConsumeStream tailing (woken by a produce, released on cancel),
 * max_batch and stop_at_end, ProduceStream order with many requests in flight, ProduceBatch
 * offsets, GetServers, health, reflection, garbage on the port, malformed protobuf, and graceful
 * shutdown with open streams.
 * Method: a real CommitLog in a temp dir behind a LogServer on 127.0.0.1 (port 0); raw grpc-js
 * clients where the test needs the wire status, the annal client elsewhere.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  credentials,
  loadPackageDefinition,
  makeGenericClientConstructor,
  Metadata,
  ServerCredentials,
  ServerInterceptingCall,
  status as Status,
  type Client,
  type ServerInterceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { AnnalClient } from '../client/index.js';
import type { AdminMember } from './admin-service.js';
import { LogClient, type ConsumeResponse, type ProduceResponse } from '../gen/log/v1/log.js';
import { FRAME_HEADER_BYTES, segmentFileName } from '../storage/index.js';
import { ClosedError, CorruptionError, InvalidArgumentError, OffsetOutOfRangeError, RecordTooLargeError, UnavailableError } from '../util/index.js';
import { startTestNode, waitUntil, type TestNode } from './test-node.js';

let node: TestNode;
beforeEach(async () => {
  node = await startTestNode({ server: { maxRecordBytes: 1024 } });
});
afterEach(async () => {
  assert.deepEqual(node.unexpected, []);
  await node.stop();
});

const value = (i: number): Buffer => Buffer.from(`value-${i}`);

function rawClient(): LogClient {
  return new LogClient(node.server.address, credentials.createInsecure());
}

/**
 * A TCP proxy to `port` that can stop reading from the server: grpc-js clients (Node's http2)
 * accept data even when the application does not read it, so a stalled client is made below
 * HTTP/2. Paused, the server's socket fills and its writes stop completing.
 */
async function stallingProxy(port: number): Promise<{ address: string; pause: () => void; resume: () => void; close: () => Promise<void> }> {
  const upstreams: Socket[] = [];
  const proxy = createServer((downstream) => {
    const upstream = connect(port, '127.0.0.1');
    upstreams.push(upstream);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    downstream.on('error', () => upstream.destroy());
    upstream.on('error', () => downstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    pause: () => upstreams.forEach((upstream) => upstream.pause()),
    resume: () => upstreams.forEach((upstream) => upstream.resume()),
    close: () => new Promise((resolve) => proxy.close(() => resolve())),
  };
}

/** Counts the records the server reads from its log; untilStable waits until reads stop. */
function countReads(testNode: TestNode): { readonly records: number; untilStable: (what: string) => Promise<void> } {
  let records = 0;
  const readBatch = testNode.log.readBatch.bind(testNode.log);
  testNode.log.readBatch = (offset, limits) => {
    const batch = readBatch(offset, limits);
    records += batch.length;
    return batch;
  };
  return {
    get records() {
      return records;
    },
    untilStable: async (what) => {
      let stableChecks = 0;
      let last = -1;
      await waitUntil(
        () => {
          stableChecks = records === last ? stableChecks + 1 : 0;
          last = records;
          return stableChecks >= 10;
        },
        what,
        20_000,
        20,
      );
    },
  };
}

function unary<Res>(invoke: (callback: (error: ServiceError | null, response: Res) => void) => void): Promise<Res> {
  return new Promise((resolve, reject) => invoke((error, response) => (error ? reject(error) : resolve(response))));
}

describe('Produce and Consume', () => {
  it('round-trips records and reports this node in GetServers', async () => {
    for (let i = 0; i < 5; i++) assert.equal(await node.client.produce(value(i)), i);
    for (let i = 0; i < 5; i++) {
      const record = await node.client.consume(i);
      assert.equal(record.offset, i);
      assert.deepEqual(record.value, value(i));
    }
    assert.deepEqual(await node.client.getServers(), [{ id: 'test-node', rpcAddr: node.server.address, isLeader: true, role: 'leader', isVoter: true, matchIndex: 0 }]);
  });

  it('answers OUT_OF_RANGE past the end, naming the offset and the range', async () => {
    await node.client.produce(value(0));
    await node.client.produce(value(1));
    const raw = rawClient();
    await assert.rejects(
      unary((cb) => raw.consume({ offset: 2, maxBatch: 0, stopAtEnd: false, linearizable: false }, cb)),
      (error: ServiceError) => {
        assert.equal(error.code, Status.OUT_OF_RANGE);
        assert.match(error.details, /offset 2 is out of range: the log holds offsets 0\.\.1/);
        return true;
      },
    );
    raw.close();
    await assert.rejects(node.client.consume(7), (error: unknown) => {
      assert.ok(error instanceof OffsetOutOfRangeError);
      assert.equal(error.offset, 7);
      assert.equal(error.lowestOffset, 0);
      assert.equal(error.nextOffset, 2);
      return true;
    });
  });

  it('answers OUT_OF_RANGE for wire offsets above 2^53 - 1, naming them exactly and the range', async () => {
    await node.client.produce(value(0));
    const raw = rawClient();
    for (const offset of [2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
      const request = { offset: offset as unknown as number, maxBatch: 0, stopAtEnd: false, linearizable: false };
      await assert.rejects(unary((cb) => raw.consume(request, cb)), (error: ServiceError) => {
        assert.equal(error.code, Status.OUT_OF_RANGE);
        assert.equal(error.details, `offset ${offset} is out of range: the log holds offsets 0..0`);
        return true;
      });
      for (const stopAtEnd of [false, true]) {
        const call = raw.consumeStream({ ...request, stopAtEnd });
        const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
        call.on('data', () => assert.fail('no record is sent'));
        const error = await ended;
        assert.equal(error.code, Status.OUT_OF_RANGE);
        assert.equal(error.details, `offset ${offset} is out of range: the log holds offsets 0..0`);
      }
      await assert.rejects(node.client.consume(offset), (error: unknown) => {
        assert.ok(error instanceof OffsetOutOfRangeError);
        assert.equal(error.offset, offset, 'the client keeps the offset exact');
        assert.equal(error.nextOffset, 1);
        return true;
      });
    }
    raw.close();
    await assert.rejects(node.client.consume(Number.MAX_SAFE_INTEGER), (error: unknown) => error instanceof OffsetOutOfRangeError && error.offset === Number.MAX_SAFE_INTEGER);
  });

  it('refuses appends past 2^53 - 1 with INVALID_ARGUMENT, never two records at one offset', async () => {
    await node.stop();
    const last = Number.MAX_SAFE_INTEGER - 1;
    node = await startTestNode({ log: { initialOffset: last - 2 } });
    await assert.rejects(node.client.produceBatch([0, 1, 2, 3].map(value)), (error: unknown) => error instanceof InvalidArgumentError && /the log is full/.test(error.message));
    const producer = node.client.produceStream();
    const results = await Promise.allSettled([0, 1, 2, 3].map((i) => producer.send(value(i))));
    await producer.close().catch(() => {});
    assert.deepEqual(results.slice(0, 3).map((r) => (r.status === 'fulfilled' ? r.value : r.reason)), [last - 2, last - 1, last]);
    assert.equal(results[3]!.status, 'rejected');
    assert.ok((results[3] as PromiseRejectedResult).reason instanceof InvalidArgumentError);
    const consumed: number[] = [];
    for await (const record of node.client.consumeStream(last - 2, { follow: false })) consumed.push(record.offset);
    assert.deepEqual(consumed, [last - 2, last - 1, last]);
  });

  it('answers OUT_OF_RANGE below the lowest offset, for Consume and ConsumeStream', async () => {
    await node.stop();
    node = await startTestNode({ log: { initialOffset: 100 } });
    assert.equal(await node.client.produce(value(0)), 100);
    await assert.rejects(node.client.consume(99), (error: unknown) => {
      assert.ok(error instanceof OffsetOutOfRangeError);
      assert.match(error.message, /offset 99 is out of range: the log holds offsets 100\.\.100/);
      return true;
    });
    const stream = node.client.consumeStream(5);
    await assert.rejects(stream.next(), OffsetOutOfRangeError);
  });

  it('rejects empty, oversize, missing and reserved-type records with INVALID_ARGUMENT and stores nothing', async () => {
    const raw = rawClient();
    const cases = [
      { record: { value: Buffer.alloc(0), offset: 0, term: 0, type: 0 }, message: /record value is empty/ },
      { record: { value: Buffer.alloc(1025, 1), offset: 0, term: 0, type: 0 }, message: /1025 bytes exceeds the maximum record size of 1024/ },
      { record: undefined, message: /has no record/ },
      { record: { value: value(0), offset: 0, term: 0, type: 3 }, message: /type 3 is reserved/ },
    ];
    for (const { record, message } of cases) {
      await assert.rejects(unary<ProduceResponse>((cb) => raw.produce({ record }, cb)), (error: ServiceError) => {
        assert.equal(error.code, Status.INVALID_ARGUMENT);
        assert.match(error.details, message);
        return true;
      });
    }
    raw.close();
    await assert.rejects(node.client.produce(Buffer.alloc(2000)), RecordTooLargeError);
    await assert.rejects(node.client.produce(Buffer.alloc(0)), InvalidArgumentError);
    assert.equal(node.log.nextOffset(), 0);
    assert.equal(await node.client.produce(Buffer.alloc(1024, 7)), 0, 'a record of exactly the limit is accepted');
  });
});

describe('ConsumeStream', () => {
  it('tails: a caught-up stream waits without polling, is woken by a produce, and is released on cancel', async () => {
    await node.client.produce(value(0));
    const controller = new AbortController();
    const stream = node.client.consumeStream(0, { signal: controller.signal });
    assert.equal((await stream.next()).value?.offset, 0);
    const pending = stream.next();
    await waitUntil(() => node.log.waiterCount() === 1, 'the stream to wait for an append');
    await node.client.produce(value(1));
    const woken = await pending;
    assert.equal(woken.value?.offset, 1);
    assert.deepEqual(woken.value?.value, value(1));
    const waiting = stream.next();
    await waitUntil(() => node.log.waiterCount() === 1, 'the stream to wait again');
    controller.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    await waitUntil(() => node.log.waiterCount() === 0 && node.server.openStreamCount === 0, 'the server to release the stream');
  });

  it('answers OUT_OF_RANGE for an offset past the next one, and tails from exactly the next offset', async () => {
    for (let i = 0; i < 3; i++) await node.client.produce(value(i));
    await assert.rejects(node.client.consumeStream(4).next(), (error: unknown) => {
      assert.ok(error instanceof OffsetOutOfRangeError);
      assert.equal(error.message, 'offset 4 is out of range: the log holds offsets 0..2');
      return true;
    });
    await waitUntil(() => node.server.openStreamCount === 0, 'the server to release the refused stream');
    const stream = node.client.consumeStream(3);
    const first = stream.next();
    await waitUntil(() => node.log.waiterCount() === 1, 'the stream to wait at the next offset');
    await node.client.produce(value(3));
    assert.equal((await first).value?.offset, 3);
    await stream.return(undefined);
    await waitUntil(() => node.server.openStreamCount === 0, 'the server to release the stream');
  });

  it('packs up to max_batch records per message and ends at the end with stop_at_end', async () => {
    const producer = node.client.produceStream();
    const offsets = await Promise.all(Array.from({ length: 100 }, (_, i) => producer.send(value(i))));
    await producer.close();
    assert.deepEqual(offsets, Array.from({ length: 100 }, (_, i) => i));
    const sizes: number[] = [];
    let expected = 0;
    for await (const batch of node.client.consumeBatches(10, { maxBatch: 32, follow: false })) {
      sizes.push(batch.length);
      for (const record of batch) {
        assert.equal(record.offset, expected + 10);
        assert.deepEqual(record.value, value(expected + 10));
        expected++;
      }
    }
    assert.equal(expected, 90);
    assert.ok(sizes.every((size) => size >= 1 && size <= 32), `batch sizes ${sizes}`);
    assert.ok(sizes.length <= 6, `90 records in batches of 32 need few messages, got ${sizes.length}`);
    const single: number[] = [];
    for await (const record of node.client.consumeStream(95, { follow: false })) single.push(record.offset);
    assert.deepEqual(single, [95, 96, 97, 98, 99]);
    const atEnd: number[] = [];
    for await (const record of node.client.consumeStream(100, { follow: false })) atEnd.push(record.offset);
    assert.deepEqual(atEnd, [], 'at the end: nothing, and the stream ends');
    await assert.rejects(node.client.consumeStream(101, { follow: false }).next(), (error: unknown) => {
      assert.ok(error instanceof OffsetOutOfRangeError);
      assert.equal(error.nextOffset, 100);
      return true;
    });
  });
});

describe('ConsumeStream responses', () => {
  it('keeps the responses a stalled stream has queued intact while another stream encodes more', async () => {
    // Responses are encoded into one reused buffer (codec.ts); each must leave the serializer as
    // its own copy. A stream whose client stalls (a TCP proxy that stops reading, as below) holds
    // framed responses in the server's HTTP/2 queue while a second stream encodes thousands more.
    const count = 12_000;
    const big = (i: number): Buffer => Buffer.alloc(1000, `${i}:`);
    const producer = node.client.produceStream();
    await Promise.all(Array.from({ length: count }, (_, i) => producer.send(big(i))));
    await producer.close();
    const reads = countReads(node);
    const proxy = await stallingProxy(node.server.port);
    const proxied = new AnnalClient({ address: proxy.address, security: { insecure: true } });
    const check = (offset: number, value: Uint8Array, which: string): void =>
      assert.ok(Buffer.from(value).equals(big(offset)), `${which} stream: record ${offset} arrived changed`);
    try {
      const stalled = proxied.consumeBatches(0, { maxBatch: 40, follow: false });
      let next = 0;
      for (const record of (await stalled.next()).value ?? []) check(next++, record.value, 'stalled');
      proxy.pause();
      await reads.untilStable('the server to stop reading for the stalled stream');
      assert.ok(reads.records < count, 'the stalled stream is held back');
      let other = 0;
      for await (const batch of node.client.consumeBatches(0, { maxBatch: 40, follow: false })) {
        for (const record of batch) check(other++, record.value, 'other');
      }
      assert.equal(other, count);
      proxy.resume();
      for await (const batch of stalled) for (const record of batch) check(next++, record.value, 'stalled');
      assert.equal(next, count);
    } finally {
      proxied.close();
      await proxy.close();
    }
  });
});

describe('ConsumeStream backpressure and corruption', () => {
  it('stops reading the log while the connection to the client is stalled, and resumes', async () => {
    // The stream must stop reading the log while its writes stop completing (stallingProxy),
    // instead of buffering it all in memory.
    await node.stop();
    node = await startTestNode({ server: { maxRecordBytes: 1024 * 1024 } });
    const total = 96;
    const valueMiB = Buffer.alloc(1024 * 1024, 0x61);
    const batches = node.client.produceBatchStream();
    for (let i = 0; i < total; i += 8) await batches.send(Array.from({ length: 8 }, () => valueMiB));
    await batches.close();
    const reads = countReads(node);
    const proxy = await stallingProxy(node.server.port);
    const proxied = new AnnalClient({ address: proxy.address, security: { insecure: true } });
    const stream = proxied.consumeBatches(0, { maxBatch: 1, follow: false });
    assert.equal((await stream.next()).value?.[0]?.offset, 0);
    proxy.pause();
    await reads.untilStable('the server to stop reading');
    assert.ok(reads.records < total * 0.75, `the server read ${reads.records} of ${total} MiB records for a stalled client`);
    proxy.resume();
    let received = 1;
    for await (const batch of stream) received += batch.length;
    assert.equal(received, total);
    proxied.close();
    await proxy.close();
  });

  it('streams every intact record before a corrupt one, then DATA_LOSS naming its offset, file and byte', async () => {
    const producer = node.client.produceStream();
    await Promise.all(Array.from({ length: 30 }, (_, i) => producer.send(value(i))));
    await producer.close();
    const store = join(node.dir, segmentFileName(0, '.store'));
    let recordAt = 0;
    for (let i = 0; i < 12; i++) recordAt += FRAME_HEADER_BYTES + value(i).length;
    const fd = openSync(store, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, recordAt + FRAME_HEADER_BYTES);
    byte[0] = byte[0]! ^ 0xff;
    writeSync(fd, byte, 0, 1, recordAt + FRAME_HEADER_BYTES);
    closeSync(fd);
    const raw = rawClient();
    for (const maxBatch of [0, 1, 5, 100]) {
      for (const stopAtEnd of [false, true]) {
        const call = raw.consumeStream({ offset: 3, maxBatch, stopAtEnd, linearizable: false });
        const offsets: number[] = [];
        call.on('data', (response: ConsumeResponse) => {
          for (const record of response.record ? [response.record] : response.records) offsets.push(record.offset);
        });
        const error = await new Promise<ServiceError>((resolve) => call.on('error', resolve));
        const what = `max_batch ${maxBatch}, stop_at_end ${stopAtEnd}`;
        assert.deepEqual(offsets, Array.from({ length: 9 }, (_, i) => 3 + i), what);
        assert.equal(error.code, Status.DATA_LOSS, what);
        assert.equal(error.details, `corrupt data in ${store} at byte ${recordAt}: record for offset 12: checksum mismatch`, what);
      }
    }
    raw.close();
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const batch of node.client.consumeBatches(0, { maxBatch: 8, follow: false })) for (const record of batch) seen.push(record.offset);
    }, (error: unknown) => error instanceof CorruptionError && error.file === store && error.positionBytes === recordAt);
    assert.deepEqual(seen, Array.from({ length: 12 }, (_, i) => i));
    assert.deepEqual((await node.client.consume(13)).value, value(13), 'records after the damaged one are still served by Consume');
  });

  it('answers DATA_LOSS for a corrupted record, naming the file and position, and serves the others', async () => {
    for (let i = 0; i < 3; i++) await node.client.produce(value(i));
    const store = join(node.dir, segmentFileName(0, '.store'));
    const secondValueAt = FRAME_HEADER_BYTES + value(0).length + FRAME_HEADER_BYTES;
    const fd = openSync(store, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, secondValueAt);
    byte[0] = byte[0]! ^ 0xff;
    writeSync(fd, byte, 0, 1, secondValueAt);
    closeSync(fd);
    const raw = rawClient();
    await assert.rejects(
      unary((cb) => raw.consume({ offset: 1, maxBatch: 0, stopAtEnd: false, linearizable: false }, cb)),
      (error: ServiceError) => {
        assert.equal(error.code, Status.DATA_LOSS);
        assert.match(error.details, /corrupt data in .*\.store at byte/);
        return true;
      },
    );
    raw.close();
    await assert.rejects(node.client.consume(1), (error: unknown) => {
      assert.ok(error instanceof CorruptionError);
      assert.equal(error.file, store);
      return true;
    });
    assert.deepEqual((await node.client.consume(0)).value, value(0));
    assert.deepEqual((await node.client.consume(2)).value, value(2));
  });
});

describe('ProduceStream and ProduceBatch', () => {
  it('answers every ProduceStream request in order with many in flight', async () => {
    await node.stop();
    node = await startTestNode({ log: { fsync: { kind: 'always' } }, server: { maxInFlightPerStream: 64 } });
    const producer = node.client.produceStream();
    const count = 3000;
    const offsets = await Promise.all(Array.from({ length: count }, (_, i) => producer.send(value(i))));
    await producer.close();
    assert.deepEqual(offsets, Array.from({ length: count }, (_, i) => i));
    for (const i of [0, 1, 1499, 2999]) assert.deepEqual((await node.client.consume(i)).value, value(i));
  });

  it('starts at most maxInFlightPerStream appends, pausing the stream until they complete', async () => {
    await node.stop();
    node = await startTestNode({ server: { maxInFlightPerStream: 8 } });
    // Hold every append of the real log until the gate opens.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let started = 0;
    const append = node.log.append.bind(node.log);
    node.log.append = (record) => {
      started++;
      return gate.then(() => append(record));
    };
    const producer = node.client.produceStream();
    const answers = Array.from({ length: 100 }, (_, i) => producer.send(value(i)));
    await waitUntil(() => started >= 8, 'eight appends to start');
    let stableChecks = 0;
    // A negative check has no event to wait for: give the server a few event-loop turns (~50 ms).
    await waitUntil(() => ++stableChecks >= 5, 'a moment for more appends to (not) start', 10_000, 10);
    assert.equal(started, 8, 'the ninth append waits for a free slot');
    openGate();
    assert.deepEqual(await Promise.all(answers), Array.from({ length: 100 }, (_, i) => i));
    assert.equal(started, 100);
    await producer.close();
  });

  it('also bounds the bytes in flight per stream', async () => {
    await node.stop();
    node = await startTestNode({ server: { maxInFlightPerStream: 1000, maxInFlightBytesPerStream: 1000 } });
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let started = 0;
    const append = node.log.append.bind(node.log);
    node.log.append = (record) => {
      started++;
      return gate.then(() => append(record));
    };
    const producer = node.client.produceStream();
    const answers = Array.from({ length: 20 }, () => producer.send(Buffer.alloc(300, 1)));
    await waitUntil(() => started >= 4, 'four appends of 300 bytes to start (the fourth crosses 1000 bytes)');
    let stableChecks = 0;
    await waitUntil(() => ++stableChecks >= 5, 'a moment for more appends to (not) start', 10_000, 10);
    assert.equal(started, 4);
    openGate();
    assert.deepEqual(await Promise.all(answers), Array.from({ length: 20 }, (_, i) => i));
    await producer.close();
  });

  it('stops a ProduceStream at a bad record after answering the records before it', async () => {
    const producer = node.client.produceStream();
    const first = producer.send(value(0));
    const bad = producer.send(Buffer.alloc(0));
    const after = producer.send(value(2));
    assert.equal(await first, 0);
    await assert.rejects(bad, InvalidArgumentError);
    await assert.rejects(after, InvalidArgumentError);
    assert.equal(node.log.nextOffset(), 1, 'nothing after the bad record was appended');
  });

  it('rejects an empty ProduceBatch and one over maxBatchRecords with INVALID_ARGUMENT', async () => {
    await node.stop();
    node = await startTestNode({ server: { maxBatchRecords: 4 } });
    const raw = rawClient();
    for (const [records, message] of [
      [[], /has no records/],
      [Array.from({ length: 5 }, (_, i) => ({ value: value(i), offset: 0, term: 0, type: 0 })), /5 records; the limit is 4/],
    ] as const) {
      const call = raw.produceBatch();
      const failure = new Promise<ServiceError>((resolve) => {
        call.on('data', () => {});
        call.on('error', resolve);
      });
      call.write({ records: [...records], producerId: 0, firstSequence: 0 });
      const error = await failure;
      assert.equal(error.code, Status.INVALID_ARGUMENT);
      assert.match(error.details, message);
    }
    raw.close();
    assert.equal(node.log.nextOffset(), 0);
  });

  it('answers UNAVAILABLE once the log is closed, after answering what came before', async () => {
    const producer = node.client.produceStream();
    assert.equal(await producer.send(value(0)), 0);
    await node.log.close();
    await assert.rejects(producer.send(value(1)), (error: unknown) => {
      assert.ok(error instanceof ClosedError, String(error));
      return true;
    });
    const raw = rawClient();
    await assert.rejects(
      unary<ProduceResponse>((cb) => raw.produce({ record: { value: value(2), offset: 0, term: 0, type: 0 } }, cb)),
      (error: ServiceError) => error.code === Status.UNAVAILABLE,
    );
    raw.close();
  });

  it('gives each ProduceBatch its first and last offset, and the batching producer each record its own', async () => {
    assert.deepEqual(await node.client.produceBatch([value(0), value(1), value(2)]), { firstOffset: 0, lastOffset: 2 });
    const batches = node.client.produceBatchStream();
    const results = await Promise.all([
      batches.send(Array.from({ length: 10 }, (_, i) => value(3 + i))),
      batches.send(Array.from({ length: 20 }, (_, i) => value(13 + i))),
    ]);
    await batches.close();
    assert.deepEqual(results, [
      { firstOffset: 3, lastOffset: 12 },
      { firstOffset: 13, lastOffset: 32 },
    ]);
    const producer = node.client.batchingProducer({ maxBatchRecords: 50, lingerMs: 1 });
    const offsets = await Promise.all(Array.from({ length: 333 }, (_, i) => producer.send(value(33 + i))));
    await producer.close();
    assert.deepEqual(offsets, Array.from({ length: 333 }, (_, i) => 33 + i));
    for (const i of [0, 12, 13, 32, 33, 365]) assert.deepEqual((await node.client.consume(i)).value, value(i));
  });
});

describe('health and reflection', () => {
  it('reports SERVING after start and NOT_SERVING when told', async () => {
    const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
    const health = new Health(node.server.address, credentials.createInsecure()) as Client & Record<string, Function>;
    const check = (service: string): Promise<{ status: string }> =>
      unary((cb) => health.check!({ service }, cb));
    assert.equal((await check('log.v1.Log')).status, 'SERVING');
    assert.equal((await check('')).status, 'SERVING');
    node.server.setServing(false);
    assert.equal((await check('log.v1.Log')).status, 'NOT_SERVING');
    health.close();
  });

  it('lists log.v1.Log and annal.admin.v1.Admin and serves their file descriptors over reflection v1 and v1alpha', async () => {
    for (const version of ['v1', 'v1alpha']) {
      const protoPath = fileURLToPath(
        new URL(`../../../node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`, import.meta.url),
      );
      const pkg = loadPackageDefinition(loadSync(protoPath, { keepCase: true })) as any;
      const Reflection = pkg.grpc.reflection[version].ServerReflection;
      const reflection = new Reflection(node.server.address, credentials.createInsecure());
      const call = reflection.ServerReflectionInfo();
      const answers: any[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (response: any) => answers.push(response));
        call.on('end', resolve);
        call.on('error', reject);
      });
      call.write({ list_services: '' });
      call.write({ file_containing_symbol: 'log.v1.Log' });
      call.write({ file_containing_symbol: 'annal.admin.v1.Admin' });
      call.end();
      await done;
      reflection.close();
      const services = answers[0].list_services_response.service.map((s: { name: string }) => s.name);
      assert.ok(services.includes('log.v1.Log'), `${version} services: ${services}`);
      assert.ok(services.includes('annal.admin.v1.Admin'), `${version} services: ${services}`);
      const files = answers[1].file_descriptor_response.file_descriptor_proto as Buffer[];
      assert.ok(files.length >= 1);
      assert.ok(files.some((file) => file.includes('log/v1/log.proto')));
      const adminFiles = answers[2].file_descriptor_response.file_descriptor_proto as Buffer[];
      assert.ok(adminFiles.some((file) => file.includes('annal/admin/v1/admin.proto')));
    }
  });
});

describe('Admin.GetMembers', () => {
  it('lists no members without a membership, and the callback\'s members sorted by name with it', async () => {
    assert.deepEqual(await node.client.getMembers(), []);
    await node.stop();
    const members: AdminMember[] = [
      { name: 'b', addr: '127.0.0.1:2', status: 'failed', tags: { rpc_addr: '127.0.0.1:8402' } },
      { name: 'a', addr: '[::1]:1', status: 'alive', tags: { rpc_addr: '[::1]:8401', role: 'x' } },
    ];
    node = await startTestNode({ server: { members: () => members } });
    assert.deepEqual(await node.client.getMembers(), [members[1], members[0]]);
  });
});

describe('integration points', () => {
  it('runs server interceptors on every call and serves connections injected by an external listener', async () => {
    await node.stop();
    const seen: string[] = [];
    const interceptor: ServerInterceptor = (method, call) => {
      seen.push(method.path);
      return new ServerInterceptingCall(call);
    };
    node = await startTestNode({ server: { interceptors: [interceptor] } });
    assert.equal(await node.client.produce(value(0)), 0);
    assert.deepEqual(seen, ['/log.v1.Log/Produce']);
    // An external front door (as auth's mTLS listener) hands plain sockets to grpc-js.
    const injector = node.server.grpc.createConnectionInjector(ServerCredentials.createInsecure());
    const door = createServer((socket) => injector.injectConnection(socket));
    await new Promise<void>((resolve) => door.listen(0, '127.0.0.1', resolve));
    const viaDoor = new AnnalClient({ address: `127.0.0.1:${(door.address() as AddressInfo).port}`, security: { insecure: true } });
    assert.deepEqual((await viaDoor.consume(0)).value, value(0));
    assert.deepEqual(seen, ['/log.v1.Log/Produce', '/log.v1.Log/Consume']);
    viaDoor.close();
    injector.destroy();
    await new Promise((resolve) => door.close(resolve));
  });
});

describe('bad bytes on the wire', () => {
  it('survives garbage on the port and keeps serving other clients', async () => {
    const port = node.server.port;
    // Not HTTP/2 at all: the server leaves the socket to its unknown-protocol timeout; meanwhile
    // other clients must be served.
    const junk = connect(port, '127.0.0.1');
    junk.on('error', () => {});
    junk.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage'));
    // A valid HTTP/2 preface followed by frames that are junk: GOAWAY and close.
    const closed = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\xff\xfe garbage garbage garbage garbage'));
      });
      socket.resume(); // discard what the server sends (its GOAWAY) so that 'close' can fire
      socket.on('error', () => resolve(true));
      socket.on('close', () => resolve(true));
      socket.setTimeout(10_000, () => {
        socket.destroy();
        resolve(false);
      });
    });
    assert.ok(closed, 'the server closes a connection that sends junk frames');
    assert.equal(await node.client.produce(value(0)), 0);
    assert.deepEqual((await node.client.consume(0)).value, value(0));
    junk.destroy();
  });

  it('answers malformed protobuf with INVALID_ARGUMENT naming the message', async () => {
    const identity = (bytes: Buffer): Buffer => bytes;
    const RawProduce = makeGenericClientConstructor(
      {
        produce: { path: '/log.v1.Log/Produce', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
        produceStream: { path: '/log.v1.Log/ProduceStream', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
      },
      'log.v1.Log',
    );
    const raw = new RawProduce(node.server.address, credentials.createInsecure()) as Client & Record<string, Function>;
    // Field 1, wire type 2, declares 100 bytes but the message ends after 2.
    const truncated = Buffer.from([0x0a, 0x64, 0x01, 0x02]);
    await assert.rejects(unary((cb) => raw.produce!(truncated, new Metadata(), cb)), (error: ServiceError) => {
      assert.equal(error.code, Status.INVALID_ARGUMENT);
      assert.match(error.details, /malformed log\.v1\.ProduceRequest/);
      return true;
    });
    // In a stream: the good request before the bad one is answered, then the stream fails.
    const call = raw.produceStream!();
    const responses: Buffer[] = [];
    const failure = new Promise<ServiceError>((resolve) => {
      call.on('data', (response: Buffer) => responses.push(response));
      call.on('error', resolve);
    });
    call.write(Buffer.from([0x0a, 0x03, 0x0a, 0x01, 0x41])); // ProduceRequest{record{value:"A"}}
    call.write(Buffer.from([0xff, 0xff, 0xff]));
    const error = await failure;
    assert.equal(error.code, Status.INVALID_ARGUMENT);
    assert.equal(responses.length, 1);
    raw.close();
    assert.equal(node.log.nextOffset(), 1);
  });
});

describe('shutdown', () => {
  it('ends tailing streams with UNAVAILABLE, answers in-flight produces, and finishes promptly', async () => {
    await node.client.produce(value(0));
    const tail = node.client.consumeStream(1);
    const tailFirst = tail.next();
    await waitUntil(() => node.log.waiterCount() === 1, 'the tail to wait');
    const producer = node.client.produceStream();
    const acknowledged = await producer.send(value(1));
    assert.equal(acknowledged, 1);
    assert.equal((await tailFirst).value?.offset, 1);
    const tailResult = tail.next();
    await waitUntil(() => node.log.waiterCount() === 1, 'the tail to wait again');
    const started = Date.now();
    const [tailOutcome] = await Promise.allSettled([tailResult, node.server.shutdown()]);
    assert.ok(Date.now() - started < 5000, 'shutdown did not wait for the shutdown timeout');
    assert.equal(tailOutcome.status, 'rejected');
    assert.ok(tailOutcome.reason instanceof UnavailableError, String(tailOutcome.reason));
    await assert.rejects(producer.send(value(2)));
    assert.equal(node.log.waiterCount(), 0);
  });
});
