// Goal: certificates made by the real CFSSL tools (Debian golang-cfssl) from config/ work with
// annal: same file names, accepted by annal's checks and by Node's TLS, root allowed and nobody
// denied over mTLS; and annal's generator can reuse a cfssl-made CA (SEC1 EC key).
// Method: run `npm run gencert:cfssl`'s script into a temp dir, then serve the stand-in log with
// those files and call it with cfssl-made client certificates. Skipped only if cfssl is absent
// (CI installs it).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { status as Status } from '@grpc/grpc-js';
import { certificateFiles, runCertsCommand } from './certs-command.js';
import { SecureServing } from './secure-serving.js';
import { loadTlsMaterial } from './tls-material.js';
import {
  CONFIG_DIR,
  rawClient,
  RecordingLogger,
  shutdownServer,
  standInServer,
  statusOf,
  unaryCall,
  withTempDir,
  servingOptions,
} from './test-fixtures.js';

const run = promisify(execFile);
const SCRIPT = new URL('../../../scripts/gencert-cfssl.sh', import.meta.url).pathname;
const haveCfssl = await run('cfssl', ['version']).then(
  () => true,
  () => false,
);

describe('certificates made by cfssl', { skip: haveCfssl ? false : 'cfssl is not installed (apt-get install golang-cfssl)' }, () => {
  it('have the same file names and serve mTLS: root allowed, nobody denied', async () => {
    await withTempDir(async (dir) => {
      await run('bash', [SCRIPT, '--config-dir', CONFIG_DIR, '--out', dir]);
      const files = certificateFiles(dir);
      const expected = Object.values(files).map((path) => path.slice(dir.length + 1)).sort();
      assert.deepEqual((await readdir(dir)).sort(), expected);
      assert.match(await readFile(files.serverKey, 'utf8'), /BEGIN EC PRIVATE KEY/, 'cfssl writes SEC1 keys');
      const root = new X509Certificate(await readFile(files.rootClientCert));
      assert.match(root.subject, /CN=root$/);
      const material = await loadTlsMaterial({ certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert });
      assert.equal(material.commonName, 'server');

      const logger = new RecordingLogger();
      const { server } = standInServer();
      const serving = await SecureServing.start(servingOptions(server, files, logger));
      const caPem = await readFile(files.caCert);
      const rootClient = rawClient(serving.port, { caPem, certPem: await readFile(files.rootClientCert), keyPem: await readFile(files.rootClientKey) });
      const nobodyClient = rawClient(serving.port, {
        caPem,
        certPem: await readFile(files.nobodyClientCert),
        keyPem: await readFile(files.nobodyClientKey),
      });
      try {
        assert.deepEqual(await unaryCall(rootClient, '/log.v1.Log/Produce', Buffer.from('v')), Buffer.from('v'));
        await assert.rejects(unaryCall(nobodyClient, '/log.v1.Log/Consume', Buffer.from('v')), (error) => statusOf(error) === Status.PERMISSION_DENIED);
      } finally {
        rootClient.close();
        nobodyClient.close();
        serving.close();
        await shutdownServer(server);
      }
    });
  });

  it('leave a CA that `annal certs` reuses to issue new leaves', async () => {
    await withTempDir(async (dir) => {
      await run('bash', [SCRIPT, '--config-dir', CONFIG_DIR, '--out', dir]);
      const caBefore = await readFile(join(dir, 'ca.pem'), 'utf8');
      const result = await runCertsCommand({ configDir: CONFIG_DIR, outDir: dir });
      assert.equal(result.reusedCa, true);
      assert.equal(await readFile(result.files.caCert, 'utf8'), caBefore);
      await loadTlsMaterial({ certFile: result.files.peerCert, keyFile: result.files.peerKey, caFile: result.files.caCert });
    });
  });

  it('honour --hosts like annal certs', async () => {
    await withTempDir(async (dir) => {
      await run('bash', [SCRIPT, '--config-dir', CONFIG_DIR, '--out', dir, '--hosts', 'node-1.example,10.0.0.7']);
      const server = new X509Certificate(await readFile(join(dir, 'server.pem')));
      assert.equal(server.subjectAltName, 'DNS:node-1.example, IP Address:10.0.0.7');
    });
  });
});
