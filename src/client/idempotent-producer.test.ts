/**
 * Goal: the idempotent producer's attempt watchdog: a batch left unanswered for attemptTimeoutMs
 * ends the attempt and is resent on a new stream (a leader that stopped answering), while a slow
 * but answering server never trips it, however long the stream runs (one timer follows the oldest
 * unanswered batch rather than one set per send).
 * Method: a real gRPC server on 127.0.0.1 whose log.v1.Log ProduceBatch handler answers each
 * request after a chosen delay, or not at all on the first stream; the AnnalClient on a plain
 * address with `idempotent`; the handler counts every (stream, sequence) it receives.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { LogService, type ProduceBatchRequest, type ProduceBatchResponse } from '../gen/log/v1/log.js';
import { OutOfOrderSequenceError, type AnnalError } from '../util/index.js';
import { statusFromError } from '../wire/index.js';
import { AnnalClient } from './client.js';

interface StandIn {
  address: string;
  /** Per stream opened, the first sequences it carried. */
  streams: number[][];
  close(): void;
}

/**
 * A ProduceBatch server answering each request `delayMs` after it arrives, never on the streams
 * `silent` names, and ending the stream with the error `refuse` gives for a request.
 */
async function standIn(
  delayMs: number,
  silent: (stream: number) => boolean,
  refuse: (stream: number, request: ProduceBatchRequest) => AnnalError | undefined = () => undefined,
): Promise<StandIn> {
  const server = new Server();
  const streams: number[][] = [];
  server.addService(LogService, {
    produceBatch: (call: ServerDuplexStream<ProduceBatchRequest, ProduceBatchResponse>) => {
      const stream = streams.length;
      const seen: number[] = [];
      streams.push(seen);
      call.on('data', (request: ProduceBatchRequest) => {
        seen.push(request.firstSequence);
        if (silent(stream)) return;
        const refusal = refuse(stream, request);
        if (refusal !== undefined) {
          call.emit('error', statusFromError(refusal));
          return;
        }
        const count = request.records.length;
        const answer = (): void => void call.write({ firstOffset: request.firstSequence, lastOffset: request.firstSequence + count - 1, count, duplicate: false });
        // At once when there is no delay: answers (and a refusal) leave in request order, as from annal.
        if (delayMs === 0) answer();
        else setTimeout(answer, delayMs);
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { address: `127.0.0.1:${port}`, streams, close: () => server.forceShutdown() };
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

describe('the idempotent producer\'s attempt watchdog', () => {
  it('never trips while every batch is answered within attemptTimeoutMs, on a stream that lasts several times longer', async () => {
    const server = await standIn(150, () => false);
    // A second and a half per attempt: a loaded machine stalls for less than that.
    const client = new AnnalClient({ address: server.address, security: { insecure: true }, idempotent: true, retry: { attemptTimeoutMs: 1500 } });
    cleanups.push(() => client.close(), () => server.close());
    const stream = client.produceStream();
    const sends: Promise<number>[] = [];
    // A batch every 50 ms for four seconds, each answered 150 ms after it arrives: batches are
    // always in flight and the head keeps changing.
    for (let i = 0; i < 80; i++) {
      sends.push(stream.send(Buffer.from(`r${i}`)));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(await Promise.all(sends), Array.from({ length: 80 }, (_, i) => i));
    await stream.close();
    assert.equal(server.streams.length, 1, 'no attempt was ended: one stream');
    assert.deepEqual(server.streams[0], Array.from({ length: 80 }, (_, i) => i), 'each batch sent once');
  });

  it('ends an attempt left unanswered for attemptTimeoutMs and resends its batches, in order, on a new stream', async () => {
    const server = await standIn(0, (stream) => stream === 0);
    const client = new AnnalClient({ address: server.address, security: { insecure: true }, idempotent: true, retry: { attemptTimeoutMs: 200 } });
    cleanups.push(() => client.close(), () => server.close());
    const stream = client.produceStream();
    const offsets = await Promise.all([stream.send(Buffer.from('a')), stream.send(Buffer.from('b')), stream.send(Buffer.from('c'))]);
    assert.deepEqual(offsets, [0, 1, 2]);
    await stream.close();
    assert.equal(server.streams.length, 2, 'the silent stream was given up for a new one');
    assert.deepEqual(server.streams, [[0, 1, 2], [0, 1, 2]]);
  });
});

describe('the idempotent producer after an out-of-order refusal', () => {
  it('resends from its oldest unanswered batch when the leader expected an earlier sequence (a batch overtook those before it)', async () => {
    // Stream 0 answers sequence 0, then refuses 1 saying it expects 0 (stale: 0 was answered since).
    const server = await standIn(0, () => false, (stream, request) =>
      stream === 0 && request.firstSequence === 1 ? new OutOfOrderSequenceError(request.producerId, 1, 0) : undefined,
    );
    const client = new AnnalClient({ address: server.address, security: { insecure: true }, idempotent: true });
    cleanups.push(() => client.close(), () => server.close());
    const stream = client.produceStream();
    const offsets = await Promise.all([stream.send(Buffer.from('a')), stream.send(Buffer.from('b')), stream.send(Buffer.from('c'))]);
    assert.deepEqual(offsets, [0, 1, 2]);
    await stream.close();
    assert.equal(server.streams.length, 2);
    assert.deepEqual(server.streams[1], [1, 2], 'resent from the refused batch, in order');
  });
});
