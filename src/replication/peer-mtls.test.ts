/**
 * Goal: over mutual TLS with the ACL, annal.raft.v1.Raft is open to the peer certificate's
 * subject (policy.csv grants `peer` replicate) and closed to a client certificate: `root` may
 * produce and consume but not replicate, so its Stream and Forward calls get PERMISSION_DENIED
 * and nothing it sends reaches Raft.
 * Method: certificates from `annal certs` (auth's test fixtures) in a temp dir; the PeerService
 * served by SecureServing with RAFT_METHOD_ACTIONS; PeerTransports with the peer credentials
 * (PeerCredentials, as the agent builds them) and with root's client certificate.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { credentials as grpcCredentials, status as Status } from '@grpc/grpc-js';
import { PeerCredentials, SecureServing } from '../auth/index.js';
import { makeCertificates, rawClient, servingOptions, statusOf } from '../auth/test-fixtures.js';
import { PermissionDeniedError } from '../util/index.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CertificateFiles } from '../auth/index.js';
import type { Message } from '../raft/index.js';
import { RAFT_METHOD_ACTIONS, RaftPeerService } from './peer-protocol.js';
import { TestPeer } from './peer-test-node.js';
import { encodeMessageBatch } from './peer-wire.js';

const heartbeat = (from: string, commit: number): Message => ({ type: 'heartbeat', from, to: 'n2', term: 1, commit, context: null });

describe('the Raft service over mTLS with the ACL', { timeout: 60_000 }, () => {
  let dir: string;
  let files: CertificateFiles;
  let leader: TestPeer;
  let serving: SecureServing;
  const addresses = new Map<string, string>();
  const forwarded: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'annal-peer-mtls-'));
    files = await makeCertificates(dir);
    leader = await TestPeer.start({
      id: 'n2',
      addresses,
      unbound: true,
      service: {
        forward: async (request) => {
          forwarded.push(request.subject);
          return { firstOffset: 0, lastOffset: request.values.length - 1 };
        },
      },
    });
    serving = await SecureServing.start({ ...servingOptions(leader.server, files, leader.logger), methodActions: RAFT_METHOD_ACTIONS });
    addresses.set('n2', `127.0.0.1:${serving.port}`);
  });

  after(async () => {
    serving.close();
    leader.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a node with the peer certificate', async () => {
    const peerCredentials = await PeerCredentials.start({
      files: { certFile: files.peerCert, keyFile: files.peerKey, caFile: files.caCert },
      logger: leader.logger,
    });
    const n1 = await TestPeer.start({ id: 'n1', addresses, credentials: peerCredentials.credentials });
    try {
      n1.transport.send([heartbeat('n1', 1)]);
      await leader.inbox.waitFor((message) => message.type === 'heartbeat' && message.commit === 1);
      const result = await n1.transport.forward('n2', { values: [Buffer.from('v')], subject: 'root' }, { deadlineMs: Date.now() + 10_000 });
      assert.deepEqual(result, { firstOffset: 0, lastOffset: 0, duplicate: false });
      assert.deepEqual(forwarded, ['root']);
    } finally {
      n1.close();
      peerCredentials.close();
    }
  });

  it('refuses the root client certificate on Stream and Forward with PERMISSION_DENIED', async () => {
    const [ca, key, cert] = await Promise.all([readFile(files.caCert), readFile(files.rootClientKey), readFile(files.rootClientCert)]);
    const intruder = await TestPeer.start({ id: 'n9', addresses, credentials: grpcCredentials.createSsl(ca, key, cert) });
    const received = leader.inbox.messages.length;
    try {
      intruder.transport.send([heartbeat('n9', 99)]);
      const line = await intruder.logger.waitFor(/stream to peer n2 .* ended: PERMISSION_DENIED/);
      assert.equal(line.level, 'error');
      assert.match(line.message, /subject "root" is not permitted to replicate/);
      await assert.rejects(intruder.transport.forward('n2', { values: [Buffer.from('v')], subject: 'root' }, { deadlineMs: Date.now() + 10_000 }), PermissionDeniedError);
      const sequenced = { values: [Buffer.from('v')], subject: 'root', producerId: 9, firstSequence: 0 };
      await assert.rejects(intruder.transport.forward('n2', sequenced, { deadlineMs: Date.now() + 10_000 }), PermissionDeniedError, 'an idempotent batch needs replicate too');
      const client = rawClient(serving.port, { caPem: ca, certPem: cert, keyPem: key });
      try {
        const status = await new Promise<unknown>((resolve) => {
          const call = client.makeClientStreamRequest(RaftPeerService.stream.path, (b: Buffer) => b, (b: Buffer) => b, (error) => resolve(error));
          call.write(encodeMessageBatch([heartbeat('n9', 100)]));
          call.end();
        });
        assert.equal(statusOf(status), Status.PERMISSION_DENIED);
      } finally {
        client.close();
      }
      assert.equal(leader.inbox.messages.length, received, 'nothing from root reached Raft');
      assert.equal(forwarded.length, 1, 'the forward handler never ran for root');
    } finally {
      intruder.close();
    }
  });
});
