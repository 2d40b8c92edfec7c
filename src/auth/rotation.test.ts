// Goal: replacing the server's certificate, key and CA files, or the ACL policy, takes effect for
// new connections and calls without a restart; an open stream keeps going through a renewal
// under the same CA, and its connection is closed (one log line) when the new CA no longer
// vouches for its client certificate; a bad new file is rejected with a log line and the files
// in force stay; reload() (the SIGHUP hook) re-reads on demand.
// Method: SecureServing watches copies of the files in a temp dir; the test replaces them the
// way `annal certs` does (write to a temporary name, rename) and waits for the reloader's log
// line (an event, not a sleep) before checking with fresh connections.
import assert from 'node:assert/strict';
import { copyFile, readFile, rm, mkdtemp, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metadata, status as Status, type Client } from '@grpc/grpc-js';
import { writeAtomically, type CertificateFiles } from './certs-command.js';
import { SecureServing } from './secure-serving.js';
import {
  CONFIG_DIR,
  makeCertificates,
  rawClient,
  RecordingLogger,
  shutdownServer,
  standInServer,
  statusOf,
  unaryCall,
  type ClientPems,
} from './test-fixtures.js';

async function pemsFor(files: CertificateFiles, who: 'root' | 'nobody'): Promise<ClientPems> {
  return {
    caPem: await readFile(files.caCert),
    certPem: await readFile(who === 'root' ? files.rootClientCert : files.nobodyClientCert),
    keyPem: await readFile(who === 'root' ? files.rootClientKey : files.nobodyClientKey),
  };
}

async function expectRefused(port: number, pems: ClientPems): Promise<void> {
  const client = rawClient(port, pems);
  try {
    await assert.rejects(unaryCall(client, '/log.v1.Log/Produce', Buffer.from('x'), 10_000), (error) => statusOf(error) === Status.UNAVAILABLE);
  } finally {
    client.close();
  }
}

async function expectProduce(port: number, pems: ClientPems): Promise<void> {
  const client = rawClient(port, pems);
  try {
    assert.deepEqual(await unaryCall(client, '/log.v1.Log/Produce', Buffer.from('ok')), Buffer.from('ok'));
  } finally {
    client.close();
  }
}

/** An open ProduceStream whose echoes can be awaited one by one. */
function openEchoStream(client: Client) {
  const call = client.makeBidiStreamRequest('/log.v1.Log/ProduceStream', (value: Buffer) => value, (value: Buffer) => value, new Metadata());
  const replies: Buffer[] = [];
  let wake: (() => void) | undefined;
  call.on('data', (reply: Buffer) => {
    replies.push(reply);
    wake?.();
  });
  return {
    async roundTrip(value: string): Promise<Buffer> {
      const reply = new Promise<void>((resolve) => (wake = resolve));
      call.write(Buffer.from(value));
      await reply;
      return replies.shift()!;
    },
    end: () =>
      new Promise<void>((resolve, reject) => {
        call.on('end', resolve);
        call.on('error', reject);
        call.end();
      }),
    /** Resolves with the error that ends the call. */
    failed: new Promise<unknown>((resolve) => call.on('error', resolve)),
  };
}

describe('rotation without restart', { timeout: 120_000 }, () => {
  let root: string;
  let live: string;
  let first: CertificateFiles;
  let second: CertificateFiles;
  let serving: SecureServing;
  let stop: () => Promise<void>;
  const logger = new RecordingLogger();
  const liveTls = () => ({ certFile: join(live, 'server.pem'), keyFile: join(live, 'server-key.pem'), caFile: join(live, 'ca.pem') });
  const policyFile = () => join(live, 'policy.csv');

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'annal-rotation-'));
    live = join(root, 'live');
    await mkdir(live);
    first = await makeCertificates(join(root, 'first'));
    second = await makeCertificates(join(root, 'second'));
    await copyFile(first.serverCert, liveTls().certFile);
    await copyFile(first.serverKey, liveTls().keyFile);
    await copyFile(first.caCert, liveTls().caFile);
    await copyFile(join(CONFIG_DIR, 'model.conf'), join(live, 'model.conf'));
    await copyFile(join(CONFIG_DIR, 'policy.csv'), policyFile());
    const { server } = standInServer();
    serving = await SecureServing.start({
      grpcServer: server,
      host: '127.0.0.1',
      port: 0,
      tls: liveTls(),
      acl: { modelFile: join(live, 'model.conf'), policyFile: policyFile() },
      logger,
      pollIntervalMs: 500,
    });
    stop = async () => {
      serving.close();
      await shutdownServer(server);
    };
  });

  after(async () => {
    await stop?.();
    await rm(root, { recursive: true, force: true });
  });

  it('puts a new certificate, key and CA in force for new connections, closing those of the old CA', async () => {
    const firstRoot = await pemsFor(first, 'root');
    const secondRoot = await pemsFor(second, 'root');
    await expectProduce(serving.port, firstRoot);
    await expectRefused(serving.port, secondRoot);
    const openClient = rawClient(serving.port, firstRoot);
    const stream = openEchoStream(openClient);
    try {
      assert.deepEqual(await stream.roundTrip('before'), Buffer.from('before'));
      const mark = logger.lines.length;
      await writeAtomically(liveTls().keyFile, await readFile(second.serverKey, 'utf8'), 0o600);
      await writeAtomically(liveTls().certFile, await readFile(second.serverCert, 'utf8'), 0o644);
      await writeAtomically(liveTls().caFile, await readFile(second.caCert, 'utf8'), 0o644);
      // Partial states (new key, old certificate) may be seen and rejected on the way; wait until
      // the complete new set is in force.
      await waitForTls(serving, logger, mark);
      assert.equal(statusOf(await stream.failed), Status.UNAVAILABLE, 'the stream of a client the new CA does not vouch for ends');
      const line = await logger.waitFor(/^closed connection: its client certificate is not signed by the new CA$/, { fromIndex: mark });
      assert.equal((line.object as { subject?: string }).subject, 'root');
      await expectProduce(serving.port, secondRoot);
      await expectRefused(serving.port, firstRoot);
    } finally {
      openClient.close();
    }
  });

  it('keeps open streams through a renewal of the server certificate under the same CA', async () => {
    const secondRoot = await pemsFor(second, 'root');
    const openClient = rawClient(serving.port, secondRoot);
    const stream = openEchoStream(openClient);
    try {
      assert.deepEqual(await stream.roundTrip('before'), Buffer.from('before'));
      const renewed = await makeCertificates(join(root, 'second')); // `annal certs` again: same CA, new certificates
      const mark = logger.lines.length;
      await writeAtomically(liveTls().keyFile, await readFile(renewed.serverKey, 'utf8'), 0o600);
      await writeAtomically(liveTls().certFile, await readFile(renewed.serverCert, 'utf8'), 0o644);
      await waitForTls(serving, logger, mark);
      assert.deepEqual(await stream.roundTrip('after'), Buffer.from('after'), 'the stream opened before the renewal still works');
      assert.equal(logger.matching(/not signed by the new CA/).length, 1, 'only the first rotation closed a connection');
      await stream.end();
    } finally {
      openClient.close();
    }
  });

  it('rejects a bad certificate file with a log line and keeps the one in force', async () => {
    const mark = logger.lines.length;
    const good = await readFile(liveTls().certFile, 'utf8');
    await writeAtomically(liveTls().certFile, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n', 0o644);
    const line = await logger.waitFor(/server TLS certificate: rejected the new files/, { fromIndex: mark });
    assert.equal(line.level, 'error');
    assert.match(String((line.object as { error?: string }).error), /not a PEM certificate/);
    await expectProduce(serving.port, await pemsFor(second, 'root'));
    const outcome = await serving.reload();
    assert.equal(outcome.tls.type, 'rejected', 'SIGHUP re-reads and rejects again');
    await writeAtomically(liveTls().certFile, good, 0o644);
    const restored = await serving.reload();
    assert.equal(restored.tls.type, 'applied');
  });

  it('puts a new policy in force for new calls, and rejects a malformed one', async () => {
    const nobody = rawClient(serving.port, await pemsFor(second, 'nobody'));
    try {
      await assert.rejects(unaryCall(nobody, '/log.v1.Log/Consume', Buffer.from('x')), (error) => statusOf(error) === Status.PERMISSION_DENIED);
      let mark = logger.lines.length;
      const policy = await readFile(policyFile(), 'utf8');
      await writeAtomically(policyFile(), `${policy}p, nobody, *, consume\n`, 0o644);
      await logger.waitFor(/^ACL: reloaded/, { fromIndex: mark });
      // Same connection, new call: the new policy applies.
      assert.deepEqual(await unaryCall(nobody, '/log.v1.Log/Consume', Buffer.from('x')), Buffer.from('x'));
      await assert.rejects(unaryCall(nobody, '/log.v1.Log/Produce', Buffer.from('x')), (error) => statusOf(error) === Status.PERMISSION_DENIED);

      mark = logger.lines.length;
      await writeAtomically(policyFile(), 'p, nobody, *\n', 0o644);
      const line = await logger.waitFor(/^ACL: rejected the new files/, { fromIndex: mark });
      assert.match(String((line.object as { error?: string }).error), /policy\.csv:1: "p, nobody, \*" is not "p, subject, object, action"/);
      assert.deepEqual(await unaryCall(nobody, '/log.v1.Log/Consume', Buffer.from('y')), Buffer.from('y'), 'the previous policy stays');
    } finally {
      nobody.close();
    }
  });
});

/** Waits until a TLS reload after `mark` has been applied (rejections of partial states are fine). */
async function waitForTls(serving: SecureServing, logger: RecordingLogger, mark: number): Promise<void> {
  await logger.waitFor(/server TLS certificate: reloaded/, { fromIndex: mark });
  // A reload that started before the last write finished may have loaded an older state; one
  // forced reload reads the final files.
  const outcome = await serving.reload();
  assert.equal(outcome.tls.type, 'applied');
}
