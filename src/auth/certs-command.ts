/**
 * `annal certs`: writes the CA, server, peer, `root` client and `nobody` client certificates from
 * the CFSSL JSON in a config dir, under the same file names as scripts/gencert-cfssl.sh.
 *
 * An existing CA in the output dir (ca.pem + ca-key.pem) is reused, so running the command again
 * rotates the leaf certificates without invalidating every client: that is how certificates are
 * renewed on a running cluster (servers pick the new files up; see file-reloader.ts). `newCa`
 * replaces the CA too. Every file is written to a temporary name and renamed into place, so a
 * watcher never reads half a file; keys are created with mode 0600.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../util/index.js';
import {
  createCertificateAuthority,
  issueCertificate,
  loadCertificateAuthority,
  type CertificateAuthority,
  type IssuedPair,
} from './certs.js';
import { profileFor, readCsrFile, readSigningConfigFile } from './csr-config.js';

export interface CertsCommandOptions {
  /** Folder with ca-csr.json, ca-config.json, server-csr.json, client-csr.json, peer-csr.json. */
  configDir: string;
  /** Where the PEM files go; created if missing. */
  outDir: string;
  /** Replaces the hosts of the server and peer certificates (DNS names or IP addresses). */
  hosts?: string[];
  /** Make a new CA even if the output dir has one. */
  newCa?: boolean;
}

export interface CertsCommandResult {
  /** Absolute or as-given paths of the files written, by role. */
  files: CertificateFiles;
  /** Whether an existing CA was reused. */
  reusedCa: boolean;
}

export interface CertificateFiles {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  peerCert: string;
  peerKey: string;
  rootClientCert: string;
  rootClientKey: string;
  nobodyClientCert: string;
  nobodyClientKey: string;
}

/** The file names both `annal certs` and gencert-cfssl.sh write inside `dir`. */
export function certificateFiles(dir: string): CertificateFiles {
  return {
    caCert: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca-key.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server-key.pem'),
    peerCert: join(dir, 'peer.pem'),
    peerKey: join(dir, 'peer-key.pem'),
    rootClientCert: join(dir, 'root-client.pem'),
    rootClientKey: join(dir, 'root-client-key.pem'),
    nobodyClientCert: join(dir, 'nobody-client.pem'),
    nobodyClientKey: join(dir, 'nobody-client-key.pem'),
  };
}

export async function runCertsCommand(options: CertsCommandOptions): Promise<CertsCommandResult> {
  const config = (name: string) => join(options.configDir, name);
  // Read in parallel, but report the first failure in this order, so the error does not depend
  // on which read lost the race.
  const reads = await Promise.allSettled([
    readSigningConfigFile(config('ca-config.json')),
    readCsrFile(config('ca-csr.json')),
    readCsrFile(config('server-csr.json')),
    readCsrFile(config('client-csr.json')),
    readCsrFile(config('peer-csr.json')),
  ] as const);
  for (const read of reads) if (read.status === 'rejected') throw read.reason;
  const [signing, caCsr, serverCsr, clientCsr, peerCsr] = reads.map((read) => (read as PromiseFulfilledResult<unknown>).value) as [
    Awaited<ReturnType<typeof readSigningConfigFile>>,
    ...Awaited<ReturnType<typeof readCsrFile>>[],
  ];
  const profiles = {
    server: profileFor(signing, 'server'),
    client: profileFor(signing, 'client'),
    peer: profileFor(signing, 'peer'),
  };
  await mkdir(options.outDir, { recursive: true });
  const files = certificateFiles(options.outDir);
  const existing = options.newCa === true ? undefined : await readExistingCa(files);
  const ca = existing ?? (await createCertificateAuthority(caCsr));
  const hostsOverride = options.hosts !== undefined && options.hosts.length > 0 ? { hosts: options.hosts } : {};
  const [server, peer, rootClient, nobodyClient] = await Promise.all([
    issueCertificate(ca, serverCsr, profiles.server, hostsOverride),
    issueCertificate(ca, peerCsr, profiles.peer, hostsOverride),
    issueCertificate(ca, clientCsr, profiles.client, { commonName: 'root' }),
    issueCertificate(ca, clientCsr, profiles.client, { commonName: 'nobody' }),
  ]);
  if (existing === undefined) await writePair(files.caCert, files.caKey, ca);
  await writePair(files.serverCert, files.serverKey, server);
  await writePair(files.peerCert, files.peerKey, peer);
  await writePair(files.rootClientCert, files.rootClientKey, rootClient);
  await writePair(files.nobodyClientCert, files.nobodyClientKey, nobodyClient);
  return { files, reusedCa: existing !== undefined };
}

async function readExistingCa(files: CertificateFiles): Promise<CertificateAuthority | undefined> {
  const [hasCert, hasKey] = await Promise.all([exists(files.caCert), exists(files.caKey)]);
  if (!hasCert && !hasKey) return undefined;
  if (hasCert !== hasKey) {
    throw new InvalidArgumentError(
      `found ${hasCert ? files.caCert : files.caKey} without ${hasCert ? files.caKey : files.caCert}; restore it or pass --new-ca`,
    );
  }
  const [certPem, keyPem] = await Promise.all([readFile(files.caCert, 'utf8'), readFile(files.caKey, 'utf8')]);
  try {
    return await loadCertificateAuthority(certPem, keyPem);
  } catch (error) {
    throw new InvalidArgumentError(`cannot reuse the CA in ${files.caCert}: ${(error as Error).message}; pass --new-ca to replace it`, {
      cause: error,
    });
  }
}

/** Key first, then certificate: a watcher that sees the new certificate also finds its key. */
async function writePair(certPath: string, keyPath: string, pair: IssuedPair): Promise<void> {
  await writeAtomically(keyPath, pair.keyPem, 0o600);
  await writeAtomically(certPath, pair.certPem, 0o644);
}

export async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, text, { mode, flag: 'wx' });
  await rename(temporary, path);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** What `annal certs` prints: the files written and how to use them. */
export function formatCertsReport(result: CertsCommandResult, configDir: string): string {
  const { files } = result;
  return [
    result.reusedCa ? `reused the CA in ${files.caCert} and issued new certificates:` : `made a new CA and certificates:`,
    `  CA:            ${files.caCert} ${files.caKey}`,
    `  server:        ${files.serverCert} ${files.serverKey}`,
    `  peer:          ${files.peerCert} ${files.peerKey}`,
    `  root client:   ${files.rootClientCert} ${files.rootClientKey}`,
    `  nobody client: ${files.nobodyClientCert} ${files.nobodyClientKey}`,
    '',
    'agent flags:',
    `  --server-tls-cert-file ${files.serverCert} --server-tls-key-file ${files.serverKey} --server-tls-ca-file ${files.caCert}`,
    `  --peer-tls-cert-file ${files.peerCert} --peer-tls-key-file ${files.peerKey} --peer-tls-ca-file ${files.caCert}`,
    `  --acl-model-file ${join(configDir, 'model.conf')} --acl-policy-file ${join(configDir, 'policy.csv')}`,
    'client flags (as root):',
    `  --ca-file ${files.caCert} --cert-file ${files.rootClientCert} --key-file ${files.rootClientKey}`,
    '',
  ].join('\n');
}
