// Goal: the node's security decision from flags (mTLS + ACL by default, --insecure only when
// asked, a refusal that prints the `annal certs` command otherwise); dev certificates made once
// and reused; peer channel credentials that authenticate as the peer subject and follow their
// files when they are replaced.
// Method: pure flag cases; real files in temp dirs; a real mTLS server for the peer credentials.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Client, status as Status } from '@grpc/grpc-js';
import { writeAtomically } from './certs-command.js';
import { ensureDevCertificates, resolveNodeSecurity } from './node-security.js';
import { PeerCredentials } from './peer-credentials.js';
import { SecureServing } from './secure-serving.js';
import { healthCheck, makeCertificates, RecordingLogger, shutdownServer, standInServer, statusOf, unaryCall, withTempDir, servingOptions } from './test-fixtures.js';

const ALL = {
  serverTlsCertFile: 's.pem',
  serverTlsKeyFile: 's-key.pem',
  serverTlsCaFile: 'ca.pem',
  aclModelFile: 'model.conf',
  aclPolicyFile: 'policy.csv',
};

describe('resolveNodeSecurity', () => {
  it('refuses to start without TLS files or --insecure, printing the annal certs command', () => {
    const result = resolveNodeSecurity({});
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.match(result.message, /annal certs --config-dir config --out certs/);
    assert.match(result.message, /--server-tls-cert-file certs\/server\.pem/);
    assert.match(result.message, /--insecure/);
  });

  it('accepts --insecure alone, and the full set of TLS and ACL files', () => {
    assert.deepEqual(resolveNodeSecurity({ insecure: true }), { ok: true, value: { type: 'insecure' } });
    const secure = resolveNodeSecurity(ALL);
    assert.ok(secure.ok && secure.value.type === 'mtls');
    assert.deepEqual(secure.value.server, { certFile: 's.pem', keyFile: 's-key.pem', caFile: 'ca.pem' });
    assert.equal(secure.value.peer, undefined);
    const withPeer = resolveNodeSecurity({ ...ALL, peerTlsCertFile: 'p.pem', peerTlsKeyFile: 'p-key.pem', peerTlsCaFile: 'ca.pem' });
    assert.ok(withPeer.ok && withPeer.value.type === 'mtls' && withPeer.value.peer?.certFile === 'p.pem');
  });

  it('names what is missing, and refuses --insecure mixed with TLS files', () => {
    const partial = resolveNodeSecurity({ serverTlsCertFile: 's.pem', aclModelFile: 'm', peerTlsCaFile: 'ca.pem' });
    assert.ok(!partial.ok);
    assert.match(partial.message, /--server-tls-key-file, --server-tls-ca-file, --acl-policy-file, --peer-tls-cert-file, --peer-tls-key-file/);
    const mixed = resolveNodeSecurity({ ...ALL, insecure: true });
    assert.ok(!mixed.ok);
    assert.match(mixed.message, /--insecure excludes/);
  });
});

describe('ensureDevCertificates', () => {
  it('makes certificates on first run and reuses them after', async () => {
    await withTempDir(async (dir) => {
      const first = await ensureDevCertificates(join(dir, 'certs'));
      assert.equal(first.created, true);
      const ca = await readFile(first.files.caCert, 'utf8');
      const second = await ensureDevCertificates(join(dir, 'certs'));
      assert.equal(second.created, false);
      assert.equal(await readFile(second.files.caCert, 'utf8'), ca);
      await writeAtomically(second.files.serverCert, 'garbage', 0o644);
      const third = await ensureDevCertificates(join(dir, 'certs'));
      assert.equal(third.created, true, 'unusable certificates are replaced');
    });
  });
});

describe('PeerCredentials', { timeout: 60_000 }, () => {
  it('authenticate as the peer subject and use replaced files for new connections', async () => {
    await withTempDir(async (dir) => {
      const files = await makeCertificates(join(dir, 'a'));
      const other = await makeCertificates(join(dir, 'b'));
      const logger = new RecordingLogger();
      const { server } = standInServer();
      const serving = await SecureServing.start(servingOptions(server, files, logger));
      const peerFiles = { certFile: join(dir, 'a', 'peer.pem'), keyFile: join(dir, 'a', 'peer-key.pem'), caFile: join(dir, 'a', 'ca.pem') };
      const peer = await PeerCredentials.start({ files: peerFiles, logger });
      const connect = () => new Client(`localhost:${serving.port}`, peer.credentials, { 'grpc.use_local_subchannel_pool': 1 });
      try {
        const first = connect();
        assert.equal(await healthCheck(first), 1);
        await assert.rejects(unaryCall(first, '/log.v1.Log/Consume', Buffer.from('x')), (error: Error & { details?: string }) => {
          assert.equal(statusOf(error), Status.PERMISSION_DENIED);
          assert.match(error.details ?? '', /"peer"/);
          return true;
        });
        first.close();
        // Replace the peer files with ones from another CA: the next connection uses them and
        // this server (which trusts only the first CA) refuses it.
        await writeAtomically(peerFiles.keyFile, await readFile(other.peerKey, 'utf8'), 0o600);
        await writeAtomically(peerFiles.certFile, await readFile(other.peerCert, 'utf8'), 0o644);
        await writeAtomically(peerFiles.caFile, await readFile(other.caCert, 'utf8'), 0o644);
        assert.equal((await peer.reload()).type, 'applied');
        const second = connect();
        await assert.rejects(healthCheck(second), (error) => statusOf(error) === Status.UNAVAILABLE);
        second.close();
      } finally {
        peer.close();
        serving.close();
        await shutdownServer(server);
      }
    });
  });
});
