/**
 * Loading and checking a node's TLS files (certificate, private key, CA bundle) before they are
 * used. Each check has its own message, so a rotation that puts a bad file in place is refused
 * with a log line that says what is wrong, and the files in force stay in force:
 * - each file reads and holds PEM that parses (a CA file may hold several certificates);
 * - the key belongs to the certificate;
 * - the certificate is signed by one of the CA certificates;
 * - the certificate is inside its validity window now;
 * - OpenSSL accepts the three together (tls.createSecureContext).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { InvalidArgumentError } from '../util/index.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** Validated PEM bytes of one identity and the CA it trusts. */
export interface TlsMaterial {
  certPem: Buffer;
  keyPem: Buffer;
  caPem: Buffer;
  /** The certificate's subject Common Name, for logs. */
  commonName: string;
  /** SHA-256 fingerprint of the certificate, for logs ("which certificate is in force"). */
  fingerprint256: string;
  validTo: Date;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export async function loadTlsMaterial(files: TlsFiles, nowMs: number = Date.now()): Promise<TlsMaterial> {
  const [certPem, keyPem, caPem] = await Promise.all([
    readPem(files.certFile, 'certificate'),
    readPem(files.keyFile, 'private key'),
    readPem(files.caFile, 'CA certificate'),
  ]);
  return checkTlsMaterial({ certPem, keyPem, caPem, files, nowMs });
}

export function checkTlsMaterial(input: {
  certPem: Buffer;
  keyPem: Buffer;
  caPem: Buffer;
  files: TlsFiles;
  nowMs: number;
}): TlsMaterial {
  const { certPem, keyPem, caPem, files, nowMs } = input;
  const certificate = parseCertificate(certPem, files.certFile);
  const caCertificates = parseCaBundle(caPem, files.caFile);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw new InvalidArgumentError(`${files.keyFile}: not a PEM private key (${(error as Error).message})`, { cause: error });
  }
  if (!certificate.checkPrivateKey(key)) {
    throw new InvalidArgumentError(`${files.keyFile} is not the key of the certificate in ${files.certFile}`);
  }
  if (!caCertificates.some((ca) => certificate.checkIssued(ca) && certificate.verify(ca.publicKey))) {
    throw new InvalidArgumentError(`${files.certFile} (${certificate.subject.replace(/\n/g, ', ')}) is not signed by a CA in ${files.caFile}`);
  }
  const validFrom = new Date(certificate.validFrom);
  const validTo = new Date(certificate.validTo);
  if (nowMs < validFrom.getTime() || nowMs > validTo.getTime()) {
    throw new InvalidArgumentError(
      `${files.certFile} is not valid now: valid from ${validFrom.toISOString()} to ${validTo.toISOString()}`,
    );
  }
  try {
    createSecureContext({ cert: certPem, key: keyPem, ca: caPem });
  } catch (error) {
    throw new InvalidArgumentError(`OpenSSL refused ${files.certFile} with ${files.keyFile}: ${(error as Error).message}`, { cause: error });
  }
  return { certPem, keyPem, caPem, commonName: commonNameOf(certificate.subject) ?? '', fingerprint256: certificate.fingerprint256, validTo };
}

async function readPem(path: string, what: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new InvalidArgumentError(`cannot read the ${what} file ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (!bytes.includes('-----BEGIN ')) throw new InvalidArgumentError(`${path}: no PEM block in the ${what} file`);
  return bytes;
}

function parseCertificate(pem: Buffer, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new InvalidArgumentError(`${path}: not a PEM certificate (${(error as Error).message})`, { cause: error });
  }
}

/** The certificates of a CA bundle that loadTlsMaterial accepted. */
export function caCertificatesOf(material: TlsMaterial): X509Certificate[] {
  return parseCaBundle(material.caPem, 'the CA bundle');
}

function parseCaBundle(pem: Buffer, path: string): X509Certificate[] {
  const blocks = pem.toString('utf8').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new InvalidArgumentError(`${path}: no CERTIFICATE block`);
  return blocks.map((block) => parseCertificate(Buffer.from(block), path));
}

/** The CN of a subject as node:crypto prints it ("C=US\nO=annal\nCN=root"). */
export function commonNameOf(subject: string): string | undefined {
  for (const line of subject.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return undefined;
}
