import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  credentials, Client, Server, ServerCredentials, type sendUnaryData, type ServerReadableStream, type ServiceDefinition,
} from '@grpc/grpc-js';
import { enablePipelinedWrites } from './pipelined-writes.js';

const identity = (value: Buffer): Buffer => value;
const SERVICE: ServiceDefinition = {
  collect: {
    path: '/annal.test.Pipelined/Collect',
    requestStream: true,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/**
 * A server that records each message of a client stream with the event-loop turn it arrived in
 * (client and server share this process's loop, so a turn is also one of the client's).
 */
async function startServer(): Promise<{ port: number; arrivals: { value: number; turn: number }[][]; stop: () => Promise<void> }> {
  let turn = 0;
  let counting = true;
  const tick = (): void => {
    turn += 1;
    if (counting) setImmediate(tick);
  };
  tick();
  const arrivals: { value: number; turn: number }[][] = [];
  const server = new Server();
  server.addService(SERVICE, {
    collect: (call: ServerReadableStream<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      const seen: { value: number; turn: number }[] = [];
      arrivals.push(seen);
      call.on('data', (message: Buffer) => seen.push({ value: message.readUInt32BE(0), turn }));
      call.on('end', () => callback(null, Buffer.from(String(seen.length))));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    port,
    arrivals,
    stop: () =>
      new Promise((resolve) => {
        counting = false;
        server.tryShutdown(() => resolve());
      }),
  };
}

function collect(client: Client, count: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const call = client.makeClientStreamRequest<Buffer, Buffer>(SERVICE.collect!.path, identity, identity, (error, response) =>
      error ? reject(error) : resolve(response!.toString()),
    );
    for (let i = 0; i < count; i++) {
      const message = Buffer.alloc(1024);
      message.writeUInt32BE(i, 0);
      call.write(message);
    }
    call.end();
  });
}

test('pipelined writes: messages queued on a client stream leave together, in order, and the stream half closes once', async () => {
  assert.equal(enablePipelinedWrites(), true, 'applies to the installed grpc-js (if not, check its RetryingCall again and extend the supported versions)');
  assert.equal(enablePipelinedWrites(), true, 'idempotent');
  const server = await startServer();
  const client = new Client(`127.0.0.1:${server.port}`, credentials.createInsecure());
  try {
    const count = 400;
    // Two streams on one channel, the second after the first: each attempt dispatches its own messages.
    assert.equal(await collect(client, count), String(count));
    assert.equal(await collect(client, count), String(count));
    for (const seen of server.arrivals) {
      assert.deepEqual(seen.map((arrival) => arrival.value), Array.from({ length: count }, (_, i) => i), 'every message, once, in order');
      // One message per turn is what grpc-js does without the change (about `count` turns).
      const turns = new Set(seen.map((arrival) => arrival.turn)).size;
      assert.ok(turns <= count / 8, `${count} messages arrived over ${turns} event-loop turns`);
    }
  } finally {
    client.close();
    await server.stop();
  }
});

test('pipelined writes: a stream with no message and one with a single message still complete', async () => {
  enablePipelinedWrites();
  const server = await startServer();
  const client = new Client(`127.0.0.1:${server.port}`, credentials.createInsecure());
  try {
    assert.equal(await collect(client, 0), '0');
    assert.equal(await collect(client, 1), '1');
    assert.deepEqual(server.arrivals.map((seen) => seen.map((arrival) => arrival.value)), [[], [0]]);
  } finally {
    client.close();
    await server.stop();
  }
});
