/**
 * How a node's security flags become a decision, for the agent and the CLI: mutual TLS with the
 * ACL (the default), or `--insecure` (plaintext, no ACL) asked for explicitly. Without either the
 * node refuses to start and says which command makes certificates. Also the embedded default's
 * certificates (`annal dev`): made on first run in its data dir and reused after.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { AclFiles } from './authorizer.js';
import { certificateFiles, runCertsCommand, type CertificateFiles } from './certs-command.js';
import { loadTlsMaterial, type TlsFiles } from './tls-material.js';

/** config/ as shipped in the package (CSR JSON, model.conf, policy.csv). */
export const PACKAGED_CONFIG_DIR = new URL('../../../config/', import.meta.url).pathname.replace(/\/$/, '');

export interface NodeSecurityFlags {
  insecure?: boolean;
  serverTlsCertFile?: string;
  serverTlsKeyFile?: string;
  serverTlsCaFile?: string;
  peerTlsCertFile?: string;
  peerTlsKeyFile?: string;
  peerTlsCaFile?: string;
  aclModelFile?: string;
  aclPolicyFile?: string;
}

export type NodeSecurity =
  | { type: 'insecure' }
  | { type: 'mtls'; server: TlsFiles; acl: AclFiles; peer: TlsFiles | undefined };

export type NodeSecurityResult = { ok: true; value: NodeSecurity } | { ok: false; message: string };

const SERVER_FLAGS = ['--server-tls-cert-file', '--server-tls-key-file', '--server-tls-ca-file'] as const;
const PEER_FLAGS = ['--peer-tls-cert-file', '--peer-tls-key-file', '--peer-tls-ca-file'] as const;
const ACL_FLAGS = ['--acl-model-file', '--acl-policy-file'] as const;

export function resolveNodeSecurity(flags: NodeSecurityFlags): NodeSecurityResult {
  const server = [flags.serverTlsCertFile, flags.serverTlsKeyFile, flags.serverTlsCaFile];
  const peer = [flags.peerTlsCertFile, flags.peerTlsKeyFile, flags.peerTlsCaFile];
  const acl = [flags.aclModelFile, flags.aclPolicyFile];
  const anyGiven = [...server, ...peer, ...acl].some((value) => value !== undefined);
  if (flags.insecure === true) {
    return anyGiven ? { ok: false, message: '--insecure excludes the TLS and ACL file flags; pass one or the other' } : { ok: true, value: { type: 'insecure' } };
  }
  if (!anyGiven) return { ok: false, message: missingSecurityMessage() };
  const missing = [...missingOf(SERVER_FLAGS, server), ...missingOf(ACL_FLAGS, acl)];
  const peerGiven = peer.some((value) => value !== undefined);
  if (peerGiven) missing.push(...missingOf(PEER_FLAGS, peer));
  if (missing.length > 0) return { ok: false, message: `missing ${missing.join(', ')} (see \`annal certs --help\`; or pass --insecure)` };
  return {
    ok: true,
    value: {
      type: 'mtls',
      server: { certFile: server[0]!, keyFile: server[1]!, caFile: server[2]! },
      acl: { modelFile: acl[0]!, policyFile: acl[1]! },
      peer: peerGiven ? { certFile: peer[0]!, keyFile: peer[1]!, caFile: peer[2]! } : undefined,
    },
  };
}

function missingOf(names: readonly string[], values: (string | undefined)[]): string[] {
  return names.filter((_name, index) => values[index] === undefined);
}

/** What the agent prints when started with neither TLS files nor --insecure. */
export function missingSecurityMessage(configDir = 'config', certsDir = 'certs'): string {
  const file = (name: string) => join(certsDir, name);
  return [
    'annal serves only mutual TLS with an ACL unless --insecure is given, and no TLS files were given.',
    'Make certificates (a CA, server, peer, and root/nobody clients) with:',
    `  annal certs --config-dir ${configDir} --out ${certsDir}`,
    'then start the node with:',
    `  annal agent --server-tls-cert-file ${file('server.pem')} --server-tls-key-file ${file('server-key.pem')} --server-tls-ca-file ${file('ca.pem')} \\`,
    `    --peer-tls-cert-file ${file('peer.pem')} --peer-tls-key-file ${file('peer-key.pem')} --peer-tls-ca-file ${file('ca.pem')} \\`,
    `    --acl-model-file ${join(configDir, 'model.conf')} --acl-policy-file ${join(configDir, 'policy.csv')} --data-dir ...`,
    'or pass --insecure for a plaintext node without access control (local development only).',
  ].join('\n');
}

/** The client flags that authenticate as `who` with certificates from `files`. */
export function clientTlsFlags(files: CertificateFiles, who: 'root' | 'nobody' = 'root'): string {
  const cert = who === 'root' ? files.rootClientCert : files.nobodyClientCert;
  const key = who === 'root' ? files.rootClientKey : files.nobodyClientKey;
  return `--ca-file ${files.caCert} --cert-file ${cert} --key-file ${key}`;
}

export interface DevCertificates {
  files: CertificateFiles;
  /** True when this call made them (first run); false when usable ones were already there. */
  created: boolean;
}

/**
 * The embedded default's certificates in `dir`: reused when the server certificate there is
 * still valid and signed by the CA there, otherwise (first run, expired) made afresh from
 * config/ (the packaged one unless `configDir` is given).
 */
export async function ensureDevCertificates(dir: string, configDir = PACKAGED_CONFIG_DIR): Promise<DevCertificates> {
  const files = certificateFiles(dir);
  const present = await Promise.all(Object.values(files).map((path) => access(path).then(() => true, () => false)));
  if (present.every(Boolean)) {
    const usable = await loadTlsMaterial({ certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert }).then(
      () => true,
      () => false,
    );
    if (usable) return { files, created: false };
  }
  await runCertsCommand({ configDir, outDir: dir, newCa: true });
  return { files, created: true };
}
