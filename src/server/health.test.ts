/**
 * Goal: health at start-up and during shutdown. `listen` binds but stays NOT_SERVING until the
 * owner says so (an agent binds its other ports first). A health Watch sees NOT_SERVING as soon as shutdown starts, then
 * its stream ends with UNAVAILABLE, and the open watch does not hold the graceful shutdown until
 * `shutdownTimeoutMs` (set far beyond the test's own timeout here, so a regression hangs and fails).
 * Method: a real node (test-node.ts) on 127.0.0.1, a grpc-health-check client over loopback.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { credentials, makeGenericClientConstructor, status as Status, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { LogServer } from './server.js';
import { startTestNode } from './test-node.js';

it('tells health watchers NOT_SERVING at shutdown and ends their streams without waiting for the timeout', { timeout: 30_000 }, async () => {
  const node = await startTestNode({ server: { shutdownTimeoutMs: 600_000 } });
  const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
  const health = new Health(node.server.address, credentials.createInsecure()) as unknown as Client & {
    watch(request: { service: string }): ClientReadableStream<{ status: string }>;
  };
  try {
    const watch = health.watch({ service: 'log.v1.Log' });
    const statuses: string[] = [];
    const ended = new Promise<{ code?: number }>((resolve) => {
      watch.on('error', resolve);
      watch.on('end', () => resolve({}));
    });
    const firstStatus = new Promise<void>((resolve) => watch.once('data', () => resolve()));
    watch.on('data', (message: { status: string }) => statuses.push(message.status));
    await firstStatus;
    assert.deepEqual(statuses, ['SERVING']);

    await node.stop();
    const end = await ended;
    assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
    assert.equal(end.code, Status.UNAVAILABLE);
  } finally {
    health.close();
  }
});

it('stays NOT_SERVING after listen until setServing(true)', { timeout: 30_000 }, async () => {
  const node = await startTestNode();
  const Health = makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');
  const second = new LogServer({ nodeName: 'second', log: node.log, logger: { error: () => {}, warn: () => {}, info: () => {} } });
  const address = await second.listen('127.0.0.1', 0);
  const health = new Health(address, credentials.createInsecure()) as unknown as Client & {
    check(request: { service: string }, callback: (error: Error | null, response: { status: string }) => void): void;
  };
  const check = (service: string): Promise<string> =>
    new Promise((resolve, reject) => health.check({ service }, (error, response) => (error ? reject(error) : resolve(response.status))));
  try {
    assert.equal(await check(''), 'NOT_SERVING');
    assert.equal(await check('log.v1.Log'), 'NOT_SERVING');
    second.setServing(true);
    assert.equal(await check('log.v1.Log'), 'SERVING');
  } finally {
    health.close();
    await second.shutdown();
    await node.stop();
  }
});
