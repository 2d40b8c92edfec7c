// Goal: `annal certs` and the generator read cfssl's CSR/config fields and honour them: subject
// names, key algorithm and size, hosts as DNS or IP SANs, profile usages as keyUsage/extKeyUsage,
// profile and CA expiry; a second run reuses the CA; bad inputs fail with messages naming the
// file and field.
// Method: generate into temp dirs from config/ and from CSR JSON written by the test, then parse
// the PEM with node:crypto's X509Certificate (an independent parser) and check each property.
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../util/index.js';
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority } from './certs.js';
import { runCertsCommand } from './certs-command.js';
import { parseCsr, parseSigningConfig, profileFor } from './csr-config.js';
import { parseGoDurationMs } from './duration.js';
import { CONFIG_DIR, makeCertificates, withTempDir } from './test-fixtures.js';

const HOUR_MS = 3_600_000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

async function certificate(path: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(path));
}

function lifetimeMs(cert: X509Certificate): number {
  return Date.parse(cert.validTo) - Date.parse(cert.validFrom);
}

describe('annal certs from config/', () => {
  it('writes a CA and server, peer, root and nobody certificates that chain to it', async () => {
    await withTempDir(async (dir) => {
      const files = await makeCertificates(dir);
      const ca = await certificate(files.caCert);
      assert.equal(ca.ca, true);
      assert.equal(ca.subject, 'C=US\nST=California\nL=San Francisco\nO=annal\nOU=annal CA\nCN=annal CA');
      assert.equal(ca.issuer, ca.subject, 'self-signed');
      // ca-csr.json: "ca": {"expiry": "87600h"}; notBefore is backdated 5 minutes, seconds truncated.
      assert.ok(Math.abs(lifetimeMs(ca) - (87_600 * HOUR_MS + 5 * 60_000)) <= 2_000);
      const expected: [string, string, string[]][] = [
        [files.serverCert, 'server', [SERVER_AUTH]],
        [files.peerCert, 'peer', [SERVER_AUTH, CLIENT_AUTH]],
        [files.rootClientCert, 'root', [CLIENT_AUTH]],
        [files.nobodyClientCert, 'nobody', [CLIENT_AUTH]],
      ];
      for (const [path, commonName, usages] of expected) {
        const leaf = await certificate(path);
        assert.equal(leaf.ca, false, path);
        assert.ok(leaf.subject.endsWith(`\nCN=${commonName}`), leaf.subject);
        assert.equal(leaf.issuer, ca.subject);
        assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), `${path} is signed by the CA`);
        assert.deepEqual(leaf.keyUsage, usages, `${path} extKeyUsage`);
        assert.ok(Math.abs(lifetimeMs(leaf) - (8_760 * HOUR_MS + 5 * 60_000)) <= 2_000, `${path} lifetime`);
        assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
        assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      }
      const server = await certificate(files.serverCert);
      assert.equal(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
      assert.equal(server.checkHost('localhost'), 'localhost');
      assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
      assert.equal((await certificate(files.rootClientCert)).subjectAltName, undefined);
      const key = createPrivateKey(await readFile(files.serverKey));
      assert.ok(server.checkPrivateKey(key));
      assert.equal((await stat(files.serverKey)).mode & 0o777, 0o600);
      assert.equal((await stat(files.caKey)).mode & 0o777, 0o600);
    });
  });

  it('replaces server and peer hosts with --hosts and reuses the CA on a second run', async () => {
    await withTempDir(async (dir) => {
      const first = await runCertsCommand({ configDir: CONFIG_DIR, outDir: dir });
      assert.equal(first.reusedCa, false);
      const caBefore = await readFile(first.files.caCert, 'utf8');
      const serverBefore = await readFile(first.files.serverCert, 'utf8');
      const second = await runCertsCommand({ configDir: CONFIG_DIR, outDir: dir, hosts: ['node-1.example', '10.0.0.7'] });
      assert.equal(second.reusedCa, true);
      assert.equal(await readFile(second.files.caCert, 'utf8'), caBefore);
      assert.notEqual(await readFile(second.files.serverCert, 'utf8'), serverBefore);
      const ca = await certificate(second.files.caCert);
      for (const path of [second.files.serverCert, second.files.peerCert]) {
        const leaf = await certificate(path);
        assert.equal(leaf.subjectAltName, 'DNS:node-1.example, IP Address:10.0.0.7');
        assert.ok(leaf.verify(ca.publicKey));
      }
      await assert.rejects(
        loadCertificateAuthority(await readFile(second.files.serverCert, 'utf8'), await readFile(second.files.serverKey, 'utf8')),
        /is not a CA certificate/,
      );
      await assert.rejects(
        loadCertificateAuthority(caBefore, await readFile(second.files.serverKey, 'utf8')),
        /the CA key does not belong to the CA certificate/,
      );
      const third = await runCertsCommand({ configDir: CONFIG_DIR, outDir: dir, newCa: true });
      assert.equal(third.reusedCa, false);
      assert.notEqual(await readFile(third.files.caCert, 'utf8'), caBefore);
    });
  });
});

describe('CSR and profile fields', () => {
  const signing = parseSigningConfig(
    {
      signing: {
        default: { expiry: '1h' },
        profiles: {
          web: { expiry: '90m', usages: ['digital signature', 'key encipherment', 'server auth'] },
          inherits: {},
        },
      },
    },
    'test-config',
  );

  it('honours RSA keys and their size, names, and a profile expiry in Go syntax', async () => {
    const ca = await createCertificateAuthority(
      parseCsr({ CN: 'rsa CA', key: { algo: 'rsa', size: 2048 }, names: [{ O: 'org', OU: 'unit' }], ca: { expiry: '2h' } }, 'ca'),
    );
    const caCert = new X509Certificate(ca.certPem);
    assert.equal(caCert.publicKey.asymmetricKeyType, 'rsa');
    assert.equal(caCert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.equal(caCert.subject, 'O=org\nOU=unit\nCN=rsa CA');
    assert.ok(Math.abs(lifetimeMs(caCert) - (2 * HOUR_MS + 5 * 60_000)) <= 2_000);
    const leaf = await issueCertificate(
      ca,
      parseCsr({ CN: 'web', hosts: ['example.test', '192.0.2.1', 'ops@example.test'], key: { algo: 'ecdsa', size: 384 } }, 'leaf'),
      profileFor(signing, 'web'),
    );
    const leafCert = new X509Certificate(leaf.certPem);
    assert.equal(leafCert.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1');
    assert.equal(leafCert.subjectAltName, 'DNS:example.test, IP Address:192.0.2.1, email:ops@example.test');
    assert.deepEqual(leafCert.keyUsage, [SERVER_AUTH]);
    assert.ok(Math.abs(lifetimeMs(leafCert) - (90 * 60_000 + 5 * 60_000)) <= 2_000);
    assert.ok(leafCert.verify(caCert.publicKey));
    assert.ok(leafCert.checkPrivateKey(createPrivateKey(leaf.keyPem)));
    // A profile without fields takes the default's expiry and cfssl's default usages.
    const inherited = new X509Certificate(
      (await issueCertificate(ca, parseCsr({ CN: 'x' }, 'x'), profileFor(signing, 'inherits'))).certPem,
    );
    assert.ok(Math.abs(lifetimeMs(inherited) - (HOUR_MS + 5 * 60_000)) <= 2_000);
    assert.deepEqual(inherited.keyUsage, [SERVER_AUTH, '1.3.6.1.5.5.7.3.2']);
  });

  it('rejects bad inputs with messages that name the file and field', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => parseCsr({ CN: 'x', key: { algo: 'dsa' } }, 'a.json'), /a\.json: key\.algo must be "ecdsa" or "rsa"/],
      [() => parseCsr({ CN: 'x', key: { algo: 'ecdsa', size: 255 } }, 'a.json'), /key\.size for ecdsa must be 256, 384 or 521/],
      [() => parseCsr({ CN: 'x', key: { algo: 'rsa', size: 1024 } }, 'a.json'), /key\.size for rsa must be an integer from 2048/],
      [() => parseCsr({ hosts: [] }, 'a.json'), /a\.json: CN must be a string/],
      [() => parseCsr({ CN: 'x', hosts: 'localhost' }, 'a.json'), /hosts must be an array of strings/],
      [() => parseCsr({ CN: 'x', ca: { expiry: '10 days' } }, 'a.json'), /ca\.expiry: "10 days" is not a positive duration/],
      [() => parseSigningConfig({ signing: { profiles: { p: { expiry: '-1h' } } } }, 'c.json'), /signing\.profiles\.p\.expiry/],
      [() => parseSigningConfig({}, 'c.json'), /c\.json: signing must be a JSON object/],
      [() => profileFor(signing, 'nope'), /signing profile "nope" is not in ca-config\.json/],
    ];
    for (const [run, message] of cases) assert.throws(run, (error: Error) => error instanceof InvalidArgumentError && message.test(error.message));
  });

  it('rejects an unknown usage name when issuing', async () => {
    const ca = await createCertificateAuthority(parseCsr({ CN: 'ca', ca: {} }, 'ca'));
    await assert.rejects(
      issueCertificate(ca, parseCsr({ CN: 'x' }, 'x'), { usages: ['server auth', 'teleport'], expiryMs: HOUR_MS }),
      /unknown usage "teleport"/,
    );
  });

  it('reports a missing or malformed config file by path', async () => {
    await withTempDir(async (dir) => {
      await cp(CONFIG_DIR, dir, { recursive: true });
      await writeFile(join(dir, 'server-csr.json'), '{"CN": ');
      await assert.rejects(runCertsCommand({ configDir: dir, outDir: join(dir, 'out') }), /server-csr\.json is not valid JSON/);
      await assert.rejects(runCertsCommand({ configDir: join(dir, 'missing'), outDir: join(dir, 'out') }), /cannot read .*ca-config\.json/);
    });
  });
});

describe('parseGoDurationMs', () => {
  it('reads cfssl expiry strings', () => {
    assert.equal(parseGoDurationMs('8760h', 'e'), 8_760 * HOUR_MS);
    assert.equal(parseGoDurationMs('1h30m', 'e'), 90 * 60_000);
    assert.equal(parseGoDurationMs('90s', 'e'), 90_000);
    assert.equal(parseGoDurationMs('1500ms', 'e'), 1_500);
    for (const bad of ['', 'h', '8760', '1.5h', '-1h', '1d', '1h ', '0h']) {
      assert.throws(() => parseGoDurationMs(bad, 'e'), InvalidArgumentError, JSON.stringify(bad));
    }
  });
});
