/**
 * Goal: the connection gate recognises the HTTP/2 client preface exactly (the magic and a whole
 * SETTINGS frame, nothing else), and the mTLS listener closes a connection that finishes its TLS
 * handshake with a valid certificate but never sends the preface, one that never handshakes,
 * and connections beyond its caps, each with one log line, while verified clients are served.
 * Method: prefaceState on hand-built byte strings and every prefix of a real preface; a real
 * MtlsListener with certificates from `annal certs` in a temp dir and short limits, raw TCP and
 * TLS sockets as the misbehaving clients, a grpc-js client as the well-behaved one.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describe, it } from 'node:test';
import { prefaceState } from './connection-gate.js';
import { MtlsListener } from './mtls-listener.js';
import { makeCertificates, rawClient, RecordingLogger, shutdownServer, standInServer, unaryCall, withTempDir } from './test-fixtures.js';
import { loadTlsMaterial } from './tls-material.js';

const MAGIC = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const settingsFrame = (payloadBytes: number, { type = 0x4, flags = 0, streamId = 0 } = {}): Buffer => {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payloadBytes, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, Buffer.alloc(payloadBytes)]);
};

describe('prefaceState', () => {
  it('is complete only for the magic followed by a whole SETTINGS frame', () => {
    const preface = Buffer.concat([MAGIC, settingsFrame(12)]);
    for (let length = 0; length < preface.length; length++) assert.equal(prefaceState(preface.subarray(0, length)), 'partial', `${length} bytes`);
    assert.equal(prefaceState(preface), 'complete');
    assert.equal(prefaceState(Buffer.concat([preface, Buffer.from('more frames')])), 'complete');
    assert.equal(prefaceState(Buffer.concat([MAGIC, settingsFrame(0)])), 'complete');
  });

  it('is invalid as soon as the bytes cannot become a preface', () => {
    assert.equal(prefaceState(Buffer.from('GET / HTTP/1.1\r\n')), 'invalid');
    assert.equal(prefaceState(Buffer.from('PRI * HTTP/1.1')), 'invalid');
    assert.equal(prefaceState(Buffer.from([0x16, 0x03, 0x01])), 'invalid', 'a TLS ClientHello on a plaintext port');
    assert.equal(prefaceState(Buffer.concat([MAGIC, settingsFrame(0, { type: 0x1 })])), 'invalid', 'HEADERS first');
    assert.equal(prefaceState(Buffer.concat([MAGIC, settingsFrame(0, { flags: 0x1 })])), 'invalid', 'a SETTINGS ACK first');
    assert.equal(prefaceState(Buffer.concat([MAGIC, settingsFrame(0, { streamId: 1 })])), 'invalid', 'SETTINGS on a stream');
    assert.equal(prefaceState(Buffer.concat([MAGIC, settingsFrame(7)])), 'invalid', 'not a whole number of settings');
    assert.equal(prefaceState(Buffer.concat([MAGIC, settingsFrame(6000).subarray(0, 9)])), 'invalid', 'an oversized first SETTINGS');
  });
});

function closedAfterMs(socket: Socket): Promise<number> {
  const startMs = performance.now();
  return new Promise((resolve) => socket.once('close', () => resolve(performance.now() - startMs)));
}

describe('mTLS listener connection bounds', { timeout: 60_000 }, () => {
  it('closes a verified TLS connection that never sends the preface, and one that never handshakes', async () => {
    await withTempDir(async (dir) => {
      const files = await makeCertificates(dir);
      const logger = new RecordingLogger();
      const { server } = standInServer();
      const timeoutMs = 500;
      const listener = await MtlsListener.listen({
        grpcServer: server,
        host: '127.0.0.1',
        port: 0,
        material: await loadTlsMaterial({ certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert }),
        logger,
        handshakeTimeoutMs: timeoutMs,
      });
      const pems = { caPem: await readFile(files.caCert), certPem: await readFile(files.rootClientCert), keyPem: await readFile(files.rootClientKey) };
      const silentTcp = netConnect(listener.port, '127.0.0.1');
      silentTcp.on('error', () => {});
      const silentTcpClosed = closedAfterMs(silentTcp);
      const silentTls = tlsConnect({ host: '127.0.0.1', port: listener.port, servername: 'localhost', ALPNProtocols: ['h2'], ca: pems.caPem, cert: pems.certPem, key: pems.keyPem });
      silentTls.on('error', () => {});
      const silentTlsClosed = closedAfterMs(silentTls);
      const handshaken = new Promise<void>((resolve) => silentTls.once('secureConnect', () => resolve()));
      const root = rawClient(listener.port, pems);
      try {
        await handshaken;
        assert.deepEqual(await unaryCall(root, '/log.v1.Log/Produce', Buffer.from('ok')), Buffer.from('ok'), 'served while two connections stall');
        for (const closed of [silentTcpClosed, silentTlsClosed]) {
          const ms = await closed;
          assert.ok(ms >= timeoutMs - 20 && ms < timeoutMs + 3_000, `closed after ${ms} ms`);
        }
        await logger.waitFor(/^closed connection: the HTTP\/2 preface did not finish in time \(500 ms from connect\)$/);
        await logger.waitFor(/^closed connection: the TLS handshake did not finish in time \(500 ms from connect\)$/);
        assert.equal(logger.matching(/did not finish in time/).length, 2, 'one line per connection');
        assert.deepEqual(await unaryCall(root, '/log.v1.Log/Produce', Buffer.from('again')), Buffer.from('again'));
      } finally {
        root.close();
        silentTcp.destroy();
        silentTls.destroy();
        listener.close();
        await shutdownServer(server);
      }
    });
  });

  it('refuses connections beyond its per-address cap with a log line naming the limit', async () => {
    await withTempDir(async (dir) => {
      const files = await makeCertificates(dir);
      const logger = new RecordingLogger();
      const { server } = standInServer();
      const listener = await MtlsListener.listen({
        grpcServer: server,
        host: '127.0.0.1',
        port: 0,
        material: await loadTlsMaterial({ certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert }),
        logger,
        connectionLimits: { connectionsPerAddressMax: 1 },
      });
      const held = netConnect(listener.port, '127.0.0.1');
      held.on('error', () => {});
      try {
        await new Promise<void>((resolve) => held.once('connect', () => resolve()));
        const until = Date.now() + 5_000;
        while (listener.openConnectionCount !== 1 && Date.now() < until) await new Promise((resolve) => setImmediate(resolve));
        assert.equal(listener.openConnectionCount, 1);
        const refused = netConnect(listener.port, '127.0.0.1');
        refused.on('error', () => {});
        await closedAfterMs(refused);
        await logger.waitFor(/^refused connection: 127\.0\.0\.1 already holds 1 open connection, the limit per address \(connectionsPerAddressMax 1\)$/);
      } finally {
        held.destroy();
        listener.close();
        await shutdownServer(server);
      }
    });
  });
});
