/**
 * Goal: the transport carries bursts in few writes and accepts a wide window in flight:
 * - a chunk of records for a per-record ConsumeStream leaves the server in a handful of TLS
 *   records, not one TLS record (and one socket write) per message;
 * - the acknowledgements of a ProduceStream come back complete and in order when many are
 *   written at once;
 * - both listeners' HTTP/2 sessions let a client have HTTP2_RECEIVE_WINDOW_BYTES in flight (the
 *   connection window and each stream's), not Node's default 64 KiB.
 * Method: a real LogServer over a CommitLog behind auth's mTLS listener with the example ACL, a
 * TCP relay between client and server that counts the TLS records the server sends (each starts
 * with a 5-byte header giving its length), and raw node:http2 sessions reading the settings and
 * windows the server announces.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import { createConnection, createServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { AclEnforcement, HTTP2_RECEIVE_WINDOW_BYTES, TlsServing, type CertificateFiles } from '../auth/index.js';
import { EXAMPLE_ACL, makeCertificates } from '../auth/test-fixtures.js';
import { AnnalClient } from '../client/index.js';
import { CommitLog } from '../storage/index.js';
import { LogServer } from './server.js';

const quiet = { error: () => {}, warn: () => {}, info: () => {} };
const PREFILLED_RECORDS = 256;

/** A TCP relay to `port` that counts the TLS records flowing from the server to the client. */
async function tlsRecordCounter(port: number): Promise<{ port: number; serverRecords: () => number; close: () => void }> {
  let records = 0;
  const sockets = new Set<Socket>();
  const relay: TcpServer = createServer((client) => {
    const server = createConnection(port, '127.0.0.1');
    sockets.add(client).add(server);
    let pending = Buffer.alloc(0);
    server.on('data', (bytes: Buffer) => {
      pending = Buffer.concat([pending, bytes]);
      while (pending.length >= 5) {
        const recordBytes = 5 + pending.readUInt16BE(3);
        if (pending.length < recordBytes) break;
        records++;
        pending = pending.subarray(recordBytes);
      }
      client.write(bytes);
    });
    client.on('data', (bytes: Buffer) => server.write(bytes));
    for (const [from, to] of [[client, server], [server, client]] as const) {
      from.on('close', () => to.destroy());
      from.on('error', () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as AddressInfo).port,
    serverRecords: () => records,
    close: () => {
      for (const socket of sockets) socket.destroy();
      relay.close();
    },
  };
}

/** The window settings a server announces to a new HTTP/2 session, once its SETTINGS carry `initialWindowSize`. */
async function announcedWindows(session: ClientHttp2Session): Promise<{ streamWindowBytes: number; connectionWindowBytes: number }> {
  try {
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (session.remoteSettings.initialWindowSize === HTTP2_RECEIVE_WINDOW_BYTES) resolve();
      };
      session.on('remoteSettings', check);
      session.once('error', reject);
      setTimeout(() => reject(new Error(`initialWindowSize stayed ${session.remoteSettings.initialWindowSize}`)), 10_000).unref();
    });
    // The server queued its WINDOW_UPDATE when the session began; its answer to a PING comes after it.
    await new Promise<void>((resolve, reject) => session.ping((error) => (error ? reject(error) : resolve())));
    return { streamWindowBytes: session.remoteSettings.initialWindowSize!, connectionWindowBytes: session.state.remoteWindowSize! };
  } finally {
    session.destroy();
  }
}

describe('transport writes and windows', { timeout: 60_000 }, () => {
  let dir: string;
  let files: CertificateFiles;
  let log: CommitLog;
  let server: LogServer;
  let acl: AclEnforcement;
  let tls: TlsServing;
  let plaintext: LogServer;
  let plaintextLog: CommitLog;
  const security = () => ({
    tls: { caPem: readFileSync(files.caCert), certPem: readFileSync(files.rootClientCert), keyPem: readFileSync(files.rootClientKey) },
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-transport-'));
    files = await makeCertificates(join(dir, 'certs'));
    log = await CommitLog.open(join(dir, 'data'), { fsync: { kind: 'never' } });
    await log.appendBatch(Array.from({ length: PREFILLED_RECORDS }, (_, i) => ({ value: Buffer.alloc(100, i % 251) })));
    acl = await AclEnforcement.start({ files: EXAMPLE_ACL, logger: quiet });
    server = new LogServer({ log, nodeName: 'transport', logger: quiet, interceptors: [acl.interceptor] });
    tls = await TlsServing.start({
      grpcServer: server.grpc,
      host: '127.0.0.1',
      port: 0,
      files: { certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert },
      logger: quiet,
    });
    server.serving(`127.0.0.1:${tls.port}`);
    plaintextLog = await CommitLog.open(join(dir, 'plain'), { fsync: { kind: 'never' } });
    plaintext = new LogServer({ log: plaintextLog, nodeName: 'plain', logger: quiet });
    await plaintext.start('127.0.0.1', 0);
  });

  after(async () => {
    tls.close();
    acl.close();
    await server.shutdown();
    await plaintext.shutdown();
    await log.close();
    await plaintextLog.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends a chunk of per-record ConsumeStream messages in a few TLS records', async () => {
    const relay = await tlsRecordCounter(tls.port);
    const client = new AnnalClient({ address: `127.0.0.1:${relay.port}`, security: security() });
    try {
      const offsets: number[] = [];
      for await (const record of client.consumeStream(0, { follow: false })) offsets.push(Number(record.offset));
      assert.deepEqual(offsets, Array.from({ length: PREFILLED_RECORDS }, (_, i) => i));
      // One TLS record per message would be 256 and more; the handshake, settings, headers,
      // trailers and the coalesced data take a few dozen at most.
      assert.ok(relay.serverRecords() < PREFILLED_RECORDS / 4, `the server sent ${relay.serverRecords()} TLS records`);
    } finally {
      client.close();
      relay.close();
    }
  });

  it('answers a burst of pipelined produces completely and in order', async () => {
    const client = new AnnalClient({ address: `127.0.0.1:${tls.port}`, security: security() });
    try {
      const stream = client.produceStream();
      const offsets = await Promise.all(Array.from({ length: 2000 }, (_, i) => stream.send(Buffer.from(`record ${i}`))));
      await stream.close();
      assert.deepEqual(offsets.map(Number), Array.from({ length: 2000 }, (_, i) => PREFILLED_RECORDS + i));
      assert.equal(log.read(PREFILLED_RECORDS + 1999).value.toString(), 'record 1999');
    } finally {
      client.close();
    }
  });

  it('lets a client have HTTP2_RECEIVE_WINDOW_BYTES in flight on the plaintext listener', async () => {
    const windows = await announcedWindows(http2Connect(`http://${plaintext.address}`));
    assert.deepEqual(windows, { streamWindowBytes: HTTP2_RECEIVE_WINDOW_BYTES, connectionWindowBytes: HTTP2_RECEIVE_WINDOW_BYTES });
  });

  it('lets a client have HTTP2_RECEIVE_WINDOW_BYTES in flight on the mTLS listener', async () => {
    const session = http2Connect(`https://127.0.0.1:${tls.port}`, {
      createConnection: () =>
        tlsConnect({
          host: '127.0.0.1',
          port: tls.port,
          ALPNProtocols: ['h2'],
          ca: readFileSync(files.caCert),
          cert: readFileSync(files.rootClientCert),
          key: readFileSync(files.rootClientKey),
          servername: 'localhost',
        }),
    });
    const windows = await announcedWindows(session);
    assert.deepEqual(windows, { streamWindowBytes: HTTP2_RECEIVE_WINDOW_BYTES, connectionWindowBytes: HTTP2_RECEIVE_WINDOW_BYTES });
  });
});
