/**
 * Client profiles: a YAML file naming the nodes and the client certificate, which `annal dev`
 * writes (`annal-data/client.yaml`) so that `annal produce hello` needs no flags. A client command
 * reads `--profile <file>`, or else `./annal-data/client.yaml` when it exists and no connection
 * flag (`--addr`, `--insecure`, `--ca-file`, `--cert-file`, `--key-file`) was given.
 *
 *   addresses: [127.0.0.1:8400, 127.0.0.1:8410, 127.0.0.1:8420]
 *   ca-file: certs/ca.pem            # relative paths are relative to the profile's directory
 *   cert-file: certs/root-client.pem
 *   key-file: certs/root-client-key.pem
 *   insecure: false
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { UsageError } from './usage-error.js';

export const DEFAULT_PROFILE = join('annal-data', 'client.yaml');

export interface ClientProfile {
  addresses: string[];
  insecure?: boolean;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export function readProfile(path: string): ClientProfile {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read client profile ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message.split('\n')[0]}`);
  }
  if (typeof document !== 'object' || document === null) throw new UsageError(`client profile ${path} is not a YAML mapping`);
  const fields = document as Record<string, unknown>;
  const addresses = fields.addresses;
  if (!Array.isArray(addresses) || addresses.length === 0 || !addresses.every((a) => typeof a === 'string' && /^.+:\d+$/.test(a))) {
    throw new UsageError(`client profile ${path}: "addresses" must be a list of host:port`);
  }
  const file = (key: string): string | undefined => {
    const value = fields[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new UsageError(`client profile ${path}: "${key}" must be a path`);
    return isAbsolute(value) ? value : resolve(dirname(path), value);
  };
  const profile: ClientProfile = { addresses: addresses as string[] };
  if (fields.insecure === true) profile.insecure = true;
  const caFile = file('ca-file');
  const certFile = file('cert-file');
  const keyFile = file('key-file');
  if (caFile !== undefined) profile.caFile = caFile;
  if (certFile !== undefined) profile.certFile = certFile;
  if (keyFile !== undefined) profile.keyFile = keyFile;
  return profile;
}

/** Writes a profile whose paths are relative to its own directory (it keeps working if moved with them). */
export function writeProfile(path: string, profile: ClientProfile): void {
  const rel = (file: string | undefined): string | undefined => (file === undefined ? undefined : relative(dirname(path), file));
  const document: Record<string, unknown> = { addresses: profile.addresses };
  if (profile.insecure === true) document.insecure = true;
  for (const [key, value] of [['ca-file', rel(profile.caFile)], ['cert-file', rel(profile.certFile)], ['key-file', rel(profile.keyFile)]] as const) {
    if (value !== undefined) document[key] = value;
  }
  writeFileSync(path, `# annal client profile: read by annal produce/consume/servers/members\n${stringifyYaml(document)}`);
}

/** The profile to use: the explicit one, or the default file when no connection flag was given. */
export function profileFor(explicit: string | undefined, connectionFlagGiven: boolean): ClientProfile | undefined {
  if (explicit !== undefined) return readProfile(explicit);
  if (connectionFlagGiven || !existsSync(DEFAULT_PROFILE)) return undefined;
  return readProfile(DEFAULT_PROFILE);
}
