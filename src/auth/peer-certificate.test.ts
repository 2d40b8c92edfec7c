/**
 * Goal: a connection's peer certificate is built once, not on every call: the calls of one
 * connection see the very same certificate object (grpc-js's getAuthContext asks the socket on
 * every call), with the right subject; another connection gets its own.
 * Method: auth's mTLS listener in front of a grpc-js server whose unary handler keeps what
 * `getAuthContext()` returned; real TLS clients from `annal certs` files.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PeerCertificate } from 'node:tls';
import { Server, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import type { CertificateFiles } from './certs-command.js';
import { MtlsListener } from './mtls-listener.js';
import { loadTlsMaterial } from './tls-material.js';
import { makeCertificates, rawClient, RecordingLogger, shutdownServer, STAND_IN_LOG_SERVICE, unaryCall } from './test-fixtures.js';

describe('peer certificate per connection', { timeout: 30_000 }, () => {
  const seen: (PeerCertificate | undefined)[] = [];
  let files: CertificateFiles;
  let server: Server;
  let listener: MtlsListener;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-peer-certificate-'));
    files = await makeCertificates(join(dir, 'certs'));
    server = new Server();
    const produce = (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      seen.push(call.getAuthContext().sslPeerCertificate);
      callback(null, call.request);
    };
    server.addService({ Produce: STAND_IN_LOG_SERVICE.Produce }, { Produce: produce } as never);
    const material = await loadTlsMaterial({ certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert });
    listener = await MtlsListener.listen({ grpcServer: server, host: '127.0.0.1', port: 0, material, logger: new RecordingLogger() });
  });

  after(async () => {
    listener.close();
    await shutdownServer(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives every call of a connection the same certificate object, and another connection its own', async () => {
    const pems = { caPem: readFileSync(files.caCert), certPem: readFileSync(files.rootClientCert), keyPem: readFileSync(files.rootClientKey) };
    const first = rawClient(listener.port, pems);
    const second = rawClient(listener.port, pems);
    try {
      for (let i = 0; i < 3; i++) await unaryCall(first, '/log.v1.Log/Produce', Buffer.from('x'));
      await unaryCall(second, '/log.v1.Log/Produce', Buffer.from('y'));
    } finally {
      first.close();
      second.close();
    }
    assert.equal(seen.length, 4);
    assert.ok(seen.every((certificate) => certificate?.subject.CN === 'root'));
    assert.equal(seen[1], seen[0]);
    assert.equal(seen[2], seen[0]);
    assert.notEqual(seen[3], seen[0]);
  });
});
