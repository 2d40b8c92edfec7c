/**
 * Goal: a policy change reaches streams that are already open: a ProduceStream whose subject
 * loses `produce` ends with PERMISSION_DENIED and appends nothing sent after the change, a
 * tailing ConsumeStream whose subject loses `consume` ends the same way and the server releases
 * it, and streams the new policy still allows carry on.
 * Method: an in-process agent with mutual TLS and the ACL from `annal certs` files in a temp dir;
 * the policy file is rewritten and `reloadSecurity()` (the SIGHUP hook) puts it in force; the
 * annal client over real TLS as `root` and `nobody`.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CONFIG_DIR, makeCertificates } from '../auth/test-fixtures.js';
import type { CertificateFiles } from '../auth/index.js';
import { AnnalClient } from '../client/index.js';
import { waitUntil } from '../server/test-node.js';
import { PermissionDeniedError } from '../util/index.js';
import { Agent } from './agent.js';

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

describe('ACL changes and open streams', { timeout: 60_000 }, () => {
  let dir: string;
  let files: CertificateFiles;
  let agent: Agent;
  const policyFile = (): string => join(dir, 'policy.csv');
  const clientFor = (who: 'root' | 'nobody'): AnnalClient =>
    new AnnalClient({
      address: `localhost:${agent.server.port}`,
      security: {
        tls: {
          caPem: readFileSync(files.caCert),
          certPem: readFileSync(who === 'root' ? files.rootClientCert : files.nobodyClientCert),
          keyPem: readFileSync(who === 'root' ? files.rootClientKey : files.nobodyClientKey),
        },
      },
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-acl-streams-'));
    files = await makeCertificates(join(dir, 'certs'));
    copyFileSync(join(CONFIG_DIR, 'model.conf'), join(dir, 'model.conf'));
    writeFileSync(policyFile(), 'p, root, *, produce\np, root, *, consume\n');
    agent = await Agent.start({
      dataDir: join(dir, 'data'),
      nodeName: 'acl',
      bindAddr: '127.0.0.1:0',
      rpcPort: 0,
      log: { fsync: { kind: 'never' } },
      maxRecordBytes: 1024,
      logger: quiet,
      security: {
        type: 'mtls',
        server: { certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert },
        acl: { modelFile: join(dir, 'model.conf'), policyFile: policyFile() },
        peer: undefined,
      },
    });
  });
  after(async () => {
    await agent?.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ends a ProduceStream and a tailing ConsumeStream whose subject loses the action, and keeps the others', async () => {
    const root = clientFor('root');
    const nobody = clientFor('nobody');
    try {
      const producer = root.produceStream();
      assert.deepEqual(await Promise.all(['a', 'b', 'c'].map((v) => producer.send(Buffer.from(v)))), [0, 1, 2]);
      const tail = root.consumeStream(0);
      for (let offset = 0; offset < 3; offset++) assert.equal((await tail.next()).value?.offset, offset);

      writeFileSync(policyFile(), 'p, root, *, consume\np, nobody, *, produce\n');
      await agent.reloadSecurity();
      await assert.rejects(producer.send(Buffer.from('after revocation')), (error: unknown) => {
        assert.ok(error instanceof PermissionDeniedError, String(error));
        assert.match(error.message, /subject "root" is no longer permitted to produce on "\*": the ACL changed while the stream was open/);
        return true;
      });
      await producer.close().catch(() => {});
      assert.equal(agent.log.nextOffset(), 3, 'nothing sent after the change was appended');

      assert.equal(await nobody.produce(Buffer.from('d')), 3, 'the new grant applies');
      const fourth = await tail.next();
      assert.equal(fourth.value?.offset, 3, 'the ConsumeStream root may still read keeps tailing');

      writeFileSync(policyFile(), 'p, nobody, *, produce\n');
      await agent.reloadSecurity();
      await assert.rejects(tail.next(), (error: unknown) => {
        assert.ok(error instanceof PermissionDeniedError, String(error));
        assert.match(error.message, /subject "root" is no longer permitted to consume/);
        return true;
      });
      await waitUntil(() => agent.server.openStreamCount === 0, 'the server to release the revoked streams');
      assert.equal(await nobody.produce(Buffer.from('e')), 4);
    } finally {
      root.close();
      nobody.close();
    }
  });
});
