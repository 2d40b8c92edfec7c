/**
 * Goal: a plaintext node bounds the connections that never speak HTTP/2 and the number it holds:
 * a socket that sends nothing, part of the preface, or not HTTP/2 at all is closed (at the
 * deadline, or at once for junk) with one log line; an HTTP/2 connection with no call is closed
 * after the idle timeout; connections beyond the total and per-address caps are refused with a
 * log line naming the limit; gRPC clients are served throughout.
 * Method: a real CommitLog behind a LogServer on 127.0.0.1 with short limits; raw TCP sockets
 * (from 127.0.0.2 and 127.0.0.3 too, all loopback on Linux) play the attackers; the time a
 * socket stays open is measured from its connect to its 'close' event.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { RecordingLogger } from '../auth/test-fixtures.js';
import { AnnalClient } from '../client/index.js';
import { CommitLog } from '../storage/index.js';
import { LogServer, type LogServerOptions } from './server.js';
import { waitUntil } from './test-node.js';

const PREFACE_MAGIC = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const EMPTY_SETTINGS_FRAME = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);

let dir: string;
let log: CommitLog;
let server: LogServer;
let logger: RecordingLogger;
const sockets: Socket[] = [];

async function startServer(options: Partial<LogServerOptions>): Promise<void> {
  server = new LogServer({ nodeName: 'n', ...options, log, logger });
  await server.start('127.0.0.1', 0);
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'annal-conn-'));
  log = await CommitLog.open(dir, { fsync: { kind: 'never' } });
  logger = new RecordingLogger();
});
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await server.shutdown();
  await log.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw connection (optionally from another loopback address) and how long it stayed open. */
function rawSocket(options: { localAddress?: string; send?: Buffer } = {}): { socket: Socket; openMs: Promise<number> } {
  const startMs = performance.now();
  const socket = connect({ host: '127.0.0.1', port: server.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
  sockets.push(socket);
  socket.on('error', () => {});
  socket.on('data', () => {});
  if (options.send) socket.write(options.send);
  const openMs = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - startMs)));
  return { socket, openMs };
}

async function produceWorks(): Promise<void> {
  const client = new AnnalClient({ address: server.address, security: { insecure: true } });
  try {
    assert.equal(typeof (await client.produce(Buffer.from('ok'))), 'number');
  } finally {
    client.close();
  }
}

describe('plaintext connection bounds', { timeout: 30_000 }, () => {
  it('closes connections that send nothing, part of the preface, or no HTTP/2, and keeps serving', async () => {
    const prefaceTimeoutMs = 400;
    await startServer({ connectionLimits: { prefaceTimeoutMs } });
    const silent = rawSocket();
    const magicOnly = rawSocket({ send: PREFACE_MAGIC });
    // The right bytes one at a time: activity does not extend the deadline.
    const preface = Buffer.concat([PREFACE_MAGIC, EMPTY_SETTINGS_FRAME]);
    const trickle = rawSocket();
    let trickled = 0;
    const trickleTimer = setInterval(() => trickle.socket.write(preface.subarray(trickled, ++trickled)), 50);
    const http1 = rawSocket({ send: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n') });
    await produceWorks();
    try {
      assert.ok((await http1.openMs) < prefaceTimeoutMs, 'junk is refused without waiting for the deadline');
      for (const { openMs } of [silent, magicOnly, trickle]) {
        const ms = await openMs;
        assert.ok(ms >= prefaceTimeoutMs - 20 && ms < prefaceTimeoutMs + 2_000, `closed after ${ms} ms`);
      }
      assert.ok(trickled < preface.length, 'the trickled preface was cut off before it was complete');
    } finally {
      clearInterval(trickleTimer);
    }
    assert.equal(logger.matching(/^closed connection: the HTTP\/2 preface did not finish in time \(400 ms from connect\)$/).length, 3);
    assert.equal(logger.matching(/^refused connection: not an HTTP\/2 client/).length, 1);
    await produceWorks();
    await waitUntil(() => server.openConnectionCount === 0, 'every connection to close');
  });

  it('closes an HTTP/2 connection that opens no call within the idle timeout', async () => {
    await startServer({ idleConnectionTimeoutMs: 300, connectionLimits: { prefaceTimeoutMs: 60_000 } });
    const idle = rawSocket({ send: Buffer.concat([PREFACE_MAGIC, EMPTY_SETTINGS_FRAME]) });
    const ms = await idle.openMs;
    assert.ok(ms >= 280 && ms < 5_000, `closed after ${ms} ms`);
  });

  it('refuses connections beyond the total and per-address caps, naming the limit, and admits again once they close', async () => {
    await startServer({ connectionLimits: { connectionsMax: 3, connectionsPerAddressMax: 2, prefaceTimeoutMs: 60_000 } });
    const held = [rawSocket(), rawSocket()];
    await waitUntil(() => server.openConnectionCount === 2, 'two connections to be accepted');
    const samePeer = rawSocket();
    await samePeer.openMs;
    await logger.waitFor(/^refused connection: 127\.0\.0\.1 already holds 2 open connections, the limit per address \(connectionsPerAddressMax 2\)$/);
    held.push(rawSocket({ localAddress: '127.0.0.2' }));
    await waitUntil(() => server.openConnectionCount === 3, 'a third connection from another address');
    const overTotal = rawSocket({ localAddress: '127.0.0.3' });
    await overTotal.openMs;
    await logger.waitFor(/^refused connection: the node already holds 3 open connections, its limit \(connectionsMax 3\)$/);
    for (const { socket } of held) socket.destroy();
    await waitUntil(() => server.openConnectionCount === 0, 'the held connections to be released');
    await produceWorks();
  });
});
