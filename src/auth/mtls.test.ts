// Goal: over a real grpc-js server on 127.0.0.1 with mutual TLS and the Casbin ACL, `root` may
// produce and consume, `nobody` is denied on every log.v1.Log RPC before any handler runs, health
// stays open, and connections without a client certificate, with one from another CA, an expired
// or not-yet-valid one, or in plaintext are refused with one log line each while other clients
// keep working.
// Method: certificates from config/ via `annal certs` into a temp dir, plus extra ones issued by
// the library (another CA, shifted validity windows); a stand-in service on log.v1.Log's paths
// counts handler invocations; every client opens its own connection.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { experimental, ServerCredentials, status as Status } from '@grpc/grpc-js';
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority } from './certs.js';
import { profileFor, readCsrFile, readSigningConfigFile } from './csr-config.js';
import { AclEnforcement, SecureServing } from './secure-serving.js';
import {
  bidiCall,
  CONFIG_DIR,
  healthCheck,
  makeCertificates,
  rawClient,
  RecordingLogger,
  serverStreamCall,
  shutdownServer,
  standInServer,
  statusOf,
  unaryCall,
  withTempDir,
  type ClientPems,
  EXAMPLE_ACL,
  servingOptions,
} from './test-fixtures.js';
import type { CertificateFiles } from './certs-command.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const HOUR_MS = 3_600_000;

describe('mTLS listener and ACL interceptor', { timeout: 120_000 }, () => {
  let dir: string;
  let files: CertificateFiles;
  let serving: SecureServing;
  let stopServer: () => Promise<void>;
  let handledCount: () => number;
  const logger = new RecordingLogger();
  const pems: Record<string, ClientPems> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'annal-mtls-'));
    files = await makeCertificates(dir);
    const caPem = await readFile(files.caCert);
    pems['root'] = { caPem, certPem: await readFile(files.rootClientCert), keyPem: await readFile(files.rootClientKey) };
    pems['nobody'] = { caPem, certPem: await readFile(files.nobodyClientCert), keyPem: await readFile(files.nobodyClientKey) };
    pems['none'] = { caPem };
    const signing = await readSigningConfigFile(join(CONFIG_DIR, 'ca-config.json'));
    const clientCsr = await readCsrFile(join(CONFIG_DIR, 'client-csr.json'));
    const otherCa = await createCertificateAuthority(await readCsrFile(join(CONFIG_DIR, 'ca-csr.json')));
    const ca = await loadCertificateAuthority(caPem.toString(), await readFile(files.caKey, 'utf8'));
    const asPems = (pair: { certPem: string; keyPem: string }): ClientPems => ({ caPem, ...pair });
    const nowMs = Date.now();
    pems['otherCa'] = asPems(await issueCertificate(otherCa, clientCsr, profileFor(signing, 'client'), { commonName: 'root' }));
    pems['expired'] = asPems(
      await issueCertificate(ca, clientCsr, profileFor(signing, 'client'), {
        commonName: 'root',
        notBefore: new Date(nowMs - 2 * HOUR_MS),
        notAfter: new Date(nowMs - HOUR_MS),
      }),
    );
    pems['notYetValid'] = asPems(
      await issueCertificate(ca, clientCsr, profileFor(signing, 'client'), {
        commonName: 'root',
        notBefore: new Date(nowMs + HOUR_MS),
        notAfter: new Date(nowMs + 2 * HOUR_MS),
      }),
    );
    const standIn = standInServer();
    handledCount = standIn.handledCount;
    serving = await SecureServing.start(servingOptions(standIn.server, files, logger));
    stopServer = async () => {
      serving.close();
      await shutdownServer(standIn.server);
    };
  });

  after(async () => {
    await stopServer?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('lets root produce and consume on every log.v1.Log RPC', async () => {
    const client = rawClient(serving.port, pems['root']!);
    try {
      assert.deepEqual(await unaryCall(client, '/log.v1.Log/Produce', Buffer.from('a')), Buffer.from('a'));
      assert.deepEqual(await unaryCall(client, '/log.v1.Log/Consume', Buffer.from('b')), Buffer.from('b'));
      assert.deepEqual(await unaryCall(client, '/log.v1.Log/GetServers', Buffer.from('c')), Buffer.from('c'));
      assert.deepEqual(await bidiCall(client, '/log.v1.Log/ProduceStream', [Buffer.from('1'), Buffer.from('2')]), [Buffer.from('1'), Buffer.from('2')]);
      assert.deepEqual(await bidiCall(client, '/log.v1.Log/ProduceBatch', [Buffer.from('3')]), [Buffer.from('3')]);
      assert.deepEqual(await serverStreamCall(client, '/log.v1.Log/ConsumeStream', Buffer.from('d')), [Buffer.from('d')]);
    } finally {
      client.close();
    }
  });

  it('denies nobody on every log.v1.Log RPC with PERMISSION_DENIED naming subject and action, before any handler', async () => {
    const client = rawClient(serving.port, pems['nobody']!);
    const handledBefore = handledCount();
    const calls: [string, string, () => Promise<unknown>][] = [
      ['Produce', 'produce', () => unaryCall(client, '/log.v1.Log/Produce', Buffer.from('x'))],
      ['ProduceStream', 'produce', () => bidiCall(client, '/log.v1.Log/ProduceStream', [Buffer.from('x')])],
      ['ProduceBatch', 'produce', () => bidiCall(client, '/log.v1.Log/ProduceBatch', [Buffer.from('x')])],
      ['Consume', 'consume', () => unaryCall(client, '/log.v1.Log/Consume', Buffer.from('x'))],
      ['ConsumeStream', 'consume', () => serverStreamCall(client, '/log.v1.Log/ConsumeStream', Buffer.from('x'))],
      ['GetServers', 'consume', () => unaryCall(client, '/log.v1.Log/GetServers', Buffer.from('x'))],
    ];
    try {
      for (const [name, action, call] of calls) {
        await assert.rejects(call(), (error: Error & { code?: number; details?: string }) => {
          assert.equal(error.code, Status.PERMISSION_DENIED, `${name}: ${error.message}`);
          assert.match(error.details ?? '', /"nobody"/, name);
          assert.match(error.details ?? '', new RegExp(`\\b${action}\\b`), name);
          return true;
        });
      }
      assert.equal(handledCount(), handledBefore, 'no handler ran for a denied call');
      assert.equal(await healthCheck(client), 1, 'health (SERVING = 1) stays open to any verified client');
    } finally {
      client.close();
    }
  });

  const refusals: [string, string, RegExp][] = [
    ['no client certificate', 'none', /no client certificate/],
    ['a certificate from another CA', 'otherCa', /not signed by the configured CA/],
    ['an expired certificate', 'expired', /expired/],
    ['a not-yet-valid certificate', 'notYetValid', /not valid before/],
  ];
  for (const [what, key, reason] of refusals) {
    it(`refuses a connection with ${what} and logs why once`, async () => {
      const before = logger.matching(reason).length;
      const client = rawClient(serving.port, pems[key]!);
      try {
        await assert.rejects(unaryCall(client, '/log.v1.Log/Produce', Buffer.from('x'), 10_000), (error) => {
          assert.equal(statusOf(error), Status.UNAVAILABLE);
          return true;
        });
      } finally {
        client.close();
      }
      const line = await logger.waitFor(reason, { fromIndex: 0 });
      assert.match(line.message, /^refused connection: /);
      // grpc-js may reconnect within the call's lifetime; each attempt is its own connection and
      // line, but a single connection never logs twice: count lines per remote port.
      const ports = logger.matching(reason).slice(before).map((entry) => (entry.object as { remotePort?: number }).remotePort);
      assert.ok(ports.length >= 1);
      assert.equal(new Set(ports).size, ports.length, 'one line per connection');
    });
  }

  it('refuses a plaintext client and keeps serving verified ones', async () => {
    const plaintext = rawClient(serving.port, 'insecure');
    try {
      await assert.rejects(unaryCall(plaintext, '/log.v1.Log/Produce', Buffer.from('x'), 10_000), (error) => {
        assert.equal(statusOf(error), Status.UNAVAILABLE);
        return true;
      });
    } finally {
      plaintext.close();
    }
    await logger.waitFor(/not a TLS handshake/);
    const root = rawClient(serving.port, pems['root']!);
    try {
      assert.deepEqual(await unaryCall(root, '/log.v1.Log/Produce', Buffer.from('ok')), Buffer.from('ok'));
    } finally {
      root.close();
    }
  });
});

describe('TLS versions and stalled handshakes', { timeout: 60_000 }, () => {
  it('negotiates TLS 1.3, accepts 1.2, and closes a connection that never handshakes without holding up others', async () => {
    await withTempDir(async (dir) => {
      const files = await makeCertificates(dir);
      const logger = new RecordingLogger();
      const { server } = standInServer();
      const serving = await SecureServing.start({
        ...servingOptions(server, files, logger),
        handshakeTimeoutMs: 300,
      });
      const pems = { ca: await readFile(files.caCert), cert: await readFile(files.rootClientCert), key: await readFile(files.rootClientKey) };
      const handshake = (maxVersion: 'TLSv1.2' | 'TLSv1.3') =>
        new Promise<string | null>((resolve, reject) => {
          const socket = tlsConnect({ host: '127.0.0.1', port: serving.port, servername: 'localhost', ALPNProtocols: ['h2'], maxVersion, ...pems }, () => {
            resolve(socket.getProtocol());
            socket.destroy();
          });
          socket.once('error', reject);
        });
      const stalled = netConnect(serving.port, '127.0.0.1');
      const stalledClosed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
      stalled.on('error', () => {});
      try {
        assert.equal(await handshake('TLSv1.3'), 'TLSv1.3');
        assert.equal(await handshake('TLSv1.2'), 'TLSv1.2');
        const root = rawClient(serving.port, { caPem: pems.ca, certPem: pems.cert, keyPem: pems.key });
        assert.deepEqual(await unaryCall(root, '/log.v1.Log/Produce', Buffer.from('ok')), Buffer.from('ok'), 'served while a handshake stalls');
        root.close();
        await stalledClosed;
        await logger.waitFor(/did not finish in time/);
      } finally {
        stalled.destroy();
        serving.close();
        await shutdownServer(server);
      }
    });
  });
});

describe('ACL interceptor without a TLS identity', () => {
  it('answers UNAUTHENTICATED when a call has no verified client certificate, and leaves health open', async () => {
    const { server, handledCount } = standInServer();
    const acl = await AclEnforcement.start({
      files: EXAMPLE_ACL,
      logger: new RecordingLogger(),
    });
    // A plaintext port with only the interceptor: what a misconfigured listener would look like.
    const credentials = experimental.createServerCredentialsWithInterceptors(ServerCredentials.createInsecure(), [acl.interceptor]);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const client = rawClient(port, 'insecure');
    try {
      await assert.rejects(unaryCall(client, '/log.v1.Log/Produce', Buffer.from('x')), (error) => statusOf(error) === Status.UNAUTHENTICATED);
      assert.equal(handledCount(), 0);
      assert.equal(await healthCheck(client), 1);
    } finally {
      client.close();
      acl.close();
      await shutdownServer(server);
    }
  });
});

describe('SecureServing start-up', () => {
  it('refuses to start on a key that does not belong to the certificate', async () => {
    await withTempDir(async (dir) => {
      const files = await makeCertificates(dir);
      const logger = new RecordingLogger();
      const { server } = standInServer();
      await assert.rejects(
        SecureServing.start({
          ...servingOptions(server, files, logger),
          tls: { certFile: files.serverCert, keyFile: files.peerKey, caFile: files.caCert },
        }),
        /is not the key of the certificate/,
      );
      server.forceShutdown();
    });
  });
});
