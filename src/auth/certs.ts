/**
 * Certificate generation without a Go toolchain: the same inputs as `cfssl gencert` (see
 * csr-config.ts), X.509 encoding by @peculiar/x509 over node:crypto's WebCrypto (no hand-rolled
 * ASN.1). Mirrors what cfssl produces where it matters to TLS peers:
 * - CA: self-signed, basicConstraints CA:TRUE (critical), keyUsage certSign + cRLSign
 *   (critical), subject key identifier; lifetime from the CSR's `ca.expiry`.
 * - Leaves: basicConstraints CA:FALSE, keyUsage and extKeyUsage from the profile's cfssl usage
 *   names, SANs from `hosts` (IP literals become IP SANs, the rest DNS names), subject and
 *   authority key identifiers, lifetime from the profile's `expiry`.
 * - notBefore is backdated 5 minutes, as cfssl does, to absorb clock skew between machines.
 * Private keys are written as PKCS#8 PEM (Node's tls reads it; cfssl writes SEC1/PKCS#1, which
 * Node reads as well, so either tool's files work everywhere).
 */
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { assert, InvalidArgumentError } from '../util/index.js';
import type { CsrSpec, KeySpec, NameEntry, SigningProfile } from './csr-config.js';

x509.cryptoProvider.set(webcrypto as never);

const BACKDATE_MS = 5 * 60_000;
const SERIAL_BYTES = 16;

/** A CA that can sign: its PEM and the WebCrypto key and algorithm to sign with. */
export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
  certificate: x509.X509Certificate;
  signingKey: webcrypto.CryptoKey;
  signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams;
}

export interface IssuedPair {
  certPem: string;
  keyPem: string;
}

/** Overrides for tests and for `--hosts`: validity window and identity. */
export interface IssueOverrides {
  /** Replaces the CSR's CN (how `root` and `nobody` come from one client-csr.json). */
  commonName?: string;
  /** Replaces the CSR's hosts. */
  hosts?: string[];
  /** Start of validity; default now minus 5 minutes. */
  notBefore?: Date;
  /** End of validity; default now plus the profile's (or CA's) expiry. */
  notAfter?: Date;
}

const KEY_USAGE_BY_NAME: Readonly<Record<string, x509.KeyUsageFlags>> = {
  signing: x509.KeyUsageFlags.digitalSignature,
  'digital signature': x509.KeyUsageFlags.digitalSignature,
  'content commitment': x509.KeyUsageFlags.nonRepudiation,
  'key encipherment': x509.KeyUsageFlags.keyEncipherment,
  'key agreement': x509.KeyUsageFlags.keyAgreement,
  'data encipherment': x509.KeyUsageFlags.dataEncipherment,
  'cert sign': x509.KeyUsageFlags.keyCertSign,
  'crl sign': x509.KeyUsageFlags.cRLSign,
  'encipher only': x509.KeyUsageFlags.encipherOnly,
  'decipher only': x509.KeyUsageFlags.decipherOnly,
};

const EXT_KEY_USAGE_BY_NAME: Readonly<Record<string, string>> = {
  any: '2.5.29.37.0',
  'server auth': x509.ExtendedKeyUsage.serverAuth,
  'client auth': x509.ExtendedKeyUsage.clientAuth,
  'code signing': x509.ExtendedKeyUsage.codeSigning,
  'email protection': x509.ExtendedKeyUsage.emailProtection,
  's/mime': x509.ExtendedKeyUsage.emailProtection,
  'ipsec end system': '1.3.6.1.5.5.7.3.5',
  'ipsec tunnel': '1.3.6.1.5.5.7.3.6',
  'ipsec user': '1.3.6.1.5.5.7.3.7',
  timestamping: x509.ExtendedKeyUsage.timeStamping,
  'ocsp signing': x509.ExtendedKeyUsage.ocspSigning,
  'microsoft sgc': '1.3.6.1.4.1.311.10.3.3',
  'netscape sgc': '2.16.840.1.113730.4.1',
};

/** `gencert -initca`: a new key and a self-signed CA certificate from a CSR with a `ca` block. */
export async function createCertificateAuthority(csr: CsrSpec, overrides: IssueOverrides = {}): Promise<CertificateAuthority> {
  const keys = await generateKeyPair(csr.key);
  const expiryMs = csr.ca?.expiryMs ?? 43_800 * 3_600_000;
  const { notBefore, notAfter } = validity(expiryMs, overrides);
  const signingAlgorithm = signingAlgorithmFor(csr.key);
  const name = subjectName(overrides.commonName ?? csr.commonName, csr.names);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumberHex(),
    name,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, csr.ca?.pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  return { certPem: certificate.toString('pem') + '\n', keyPem, certificate, signingKey: keys.privateKey, signingAlgorithm };
}

/** Loads an existing CA (annal's or cfssl's PEM) so it can sign new leaves. */
export async function loadCertificateAuthority(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const certificate = new x509.X509Certificate(certPem);
  if (certificate.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw new InvalidArgumentError(`${certificate.subject} is not a CA certificate (basicConstraints CA:TRUE is missing)`);
  }
  const keyObject = createPrivateKey(keyPem);
  const keySpec = keySpecOf(keyObject);
  const importAlgorithm =
    keySpec.algorithm === 'ecdsa'
      ? { name: 'ECDSA', namedCurve: `P-${keySpec.sizeBits}` }
      : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const der = keyObject.export({ format: 'der', type: 'pkcs8' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, importAlgorithm, false, ['sign']);
  const keyPublicDer = createPublicKey(keyObject).export({ format: 'der', type: 'spki' });
  if (!keyPublicDer.equals(Buffer.from(certificate.publicKey.rawData))) {
    throw new InvalidArgumentError('the CA key does not belong to the CA certificate');
  }
  return { certPem, keyPem, certificate, signingKey: signingKey as webcrypto.CryptoKey, signingAlgorithm: signingAlgorithmFor(keySpec) };
}

/** `gencert -ca ... -profile P`: a new key and a leaf certificate signed by `ca`. */
export async function issueCertificate(
  ca: CertificateAuthority,
  csr: CsrSpec,
  profile: SigningProfile,
  overrides: IssueOverrides = {},
): Promise<IssuedPair> {
  const keys = await generateKeyPair(csr.key);
  const { notBefore, notAfter } = validity(profile.expiryMs, overrides);
  const hosts = overrides.hosts ?? csr.hosts;
  const { keyUsage, extendedKeyUsages } = usagesOf(profile.usages);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
  ];
  if (keyUsage !== 0) extensions.push(new x509.KeyUsagesExtension(keyUsage, true));
  if (extendedKeyUsages.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(extendedKeyUsages, false));
  if (hosts.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(hosts.map(generalNameOf), false));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumberHex(),
    subject: subjectName(overrides.commonName ?? csr.commonName, csr.names),
    issuer: ca.certificate.subjectName,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ca.signingAlgorithm,
    extensions,
  });
  return { certPem: certificate.toString('pem') + '\n', keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

function usagesOf(names: readonly string[]): { keyUsage: number; extendedKeyUsages: string[] } {
  let keyUsage = 0;
  const extendedKeyUsages: string[] = [];
  for (const name of names) {
    const flag = KEY_USAGE_BY_NAME[name];
    const oid = EXT_KEY_USAGE_BY_NAME[name];
    if (flag !== undefined) keyUsage |= flag;
    else if (oid !== undefined) extendedKeyUsages.push(oid);
    else throw new InvalidArgumentError(`unknown usage "${name}" in ca-config.json (cfssl names such as "signing", "server auth")`);
  }
  return { keyUsage, extendedKeyUsages };
}

function generalNameOf(host: string): x509.JsonGeneralName {
  if (isIP(host) !== 0) return { type: 'ip', value: host };
  if (host.includes('@')) return { type: 'email', value: host };
  if (host.length === 0 || /\s/.test(host)) throw new InvalidArgumentError(`"${host}" is not a host name or IP address`);
  return { type: 'dns', value: host };
}

/** Subject in cfssl's attribute order: C, ST, L, O, OU for each `names` entry, then CN. */
function subjectName(commonName: string, names: readonly NameEntry[]): x509.JsonName {
  const attributes: x509.JsonName = [];
  for (const entry of names) {
    for (const field of ['C', 'ST', 'L', 'O', 'OU'] as const) {
      const value = entry[field];
      if (value !== undefined && value.length > 0) attributes.push({ [field]: [value] });
    }
  }
  attributes.push({ CN: [commonName] });
  return attributes;
}

function validity(expiryMs: number, overrides: IssueOverrides): { notBefore: Date; notAfter: Date } {
  const nowMs = Date.now();
  const notBefore = overrides.notBefore ?? new Date(nowMs - BACKDATE_MS);
  const notAfter = overrides.notAfter ?? new Date(nowMs + expiryMs);
  assert(notAfter.getTime() > notBefore.getTime(), 'certificate notAfter must be after notBefore');
  return { notBefore, notAfter };
}

/** A random positive serial (RFC 5280: at most 20 octets, positive; 16 random bytes as cfssl). */
function serialNumberHex(): string {
  const bytes = randomBytes(SERIAL_BYTES);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

async function generateKeyPair(key: KeySpec): Promise<webcrypto.CryptoKeyPair> {
  const algorithm =
    key.algorithm === 'ecdsa'
      ? { name: 'ECDSA', namedCurve: `P-${key.sizeBits}` }
      : { name: 'RSASSA-PKCS1-v1_5', modulusLength: key.sizeBits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
  return (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** cfssl's choice: SHA-256 for RSA and P-256, SHA-384 for P-384, SHA-512 for P-521. */
function signingAlgorithmFor(key: KeySpec): webcrypto.Algorithm | webcrypto.EcdsaParams {
  if (key.algorithm === 'rsa') return { name: 'RSASSA-PKCS1-v1_5' };
  const hash = key.sizeBits === 256 ? 'SHA-256' : key.sizeBits === 384 ? 'SHA-384' : 'SHA-512';
  return { name: 'ECDSA', hash } as webcrypto.EcdsaParams;
}

function keySpecOf(keyObject: KeyObject): KeySpec {
  const details = keyObject.asymmetricKeyDetails;
  if (keyObject.asymmetricKeyType === 'rsa') return { algorithm: 'rsa', sizeBits: details?.modulusLength ?? 0 };
  if (keyObject.asymmetricKeyType === 'ec') {
    const sizeBits = { prime256v1: 256, secp384r1: 384, secp521r1: 521 }[details?.namedCurve ?? ''];
    if (sizeBits !== undefined) return { algorithm: 'ecdsa', sizeBits };
  }
  throw new InvalidArgumentError(`unsupported CA key type ${keyObject.asymmetricKeyType ?? '?'} (want RSA or ECDSA P-256/384/521)`);
}

async function exportPrivateKeyPem(privateKey: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', privateKey as webcrypto.CryptoKey));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
}
