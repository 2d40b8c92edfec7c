/**
 * The CFSSL input files, read with cfssl's field names so one set of JSON drives both
 * `annal certs` and `cfssl gencert`:
 * - a CSR file (`ca-csr.json`, `server-csr.json`, ...): `CN`, `names` [{C, ST, L, O, OU}],
 *   `hosts`, `key` {algo: "ecdsa" | "rsa", size}, and for a CA `ca` {expiry, pathlen};
 * - `ca-config.json`: `signing.default` and `signing.profiles.<name>`, each with `usages` and
 *   `expiry` (Go duration syntax).
 * Validation happens here, once, with messages that name the file and the field; the generator
 * then trusts these types. Defaults follow cfssl: ECDSA P-256 keys, a 5-year CA, 168h leaves.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../util/index.js';
import { parseGoDurationMs } from './duration.js';

export type KeyAlgorithm = 'ecdsa' | 'rsa';

export interface KeySpec {
  algorithm: KeyAlgorithm;
  /** Curve size for ECDSA (256, 384, 521) or modulus length for RSA (2048..8192). */
  sizeBits: number;
}

/** One `names` entry; cfssl writes each present attribute into the subject. */
export interface NameEntry {
  C?: string;
  ST?: string;
  L?: string;
  O?: string;
  OU?: string;
}

export interface CsrSpec {
  commonName: string;
  names: NameEntry[];
  /** DNS names and IP addresses for the subjectAltName extension. */
  hosts: string[];
  key: KeySpec;
  /** Only for a CA (`ca` object): lifetime and optional path length constraint. */
  ca: { expiryMs: number; pathLength: number | undefined } | undefined;
}

export interface SigningProfile {
  /** cfssl usage names: "signing", "key encipherment", "server auth", "client auth", ... */
  usages: string[];
  expiryMs: number;
}

export interface SigningConfig {
  defaultProfile: SigningProfile;
  profiles: ReadonlyMap<string, SigningProfile>;
}

const CA_EXPIRY_DEFAULT = '43800h';
const LEAF_EXPIRY_DEFAULT = '168h';
const LEAF_USAGES_DEFAULT = ['signing', 'key encipherment', 'server auth', 'client auth'];
const ECDSA_SIZES = new Set([256, 384, 521]);
const RSA_SIZE_MIN_BITS = 2048;
const RSA_SIZE_MAX_BITS = 8192;
const NAME_FIELDS = ['C', 'ST', 'L', 'O', 'OU'] as const;

export async function readCsrFile(path: string): Promise<CsrSpec> {
  return parseCsr(await readJson(path), path);
}

export async function readSigningConfigFile(path: string): Promise<SigningConfig> {
  return parseSigningConfig(await readJson(path), path);
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidArgumentError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new InvalidArgumentError(`${path} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

export function parseCsr(json: unknown, source: string): CsrSpec {
  const object = expectObject(json, source);
  const commonName = expectString(object['CN'], `${source}: CN`);
  if (commonName.length === 0) throw new InvalidArgumentError(`${source}: CN must not be empty`);
  const hosts = object['hosts'] === undefined ? [] : expectStringArray(object['hosts'], `${source}: hosts`);
  const names = object['names'] === undefined ? [] : parseNames(object['names'], source);
  const key = object['key'] === undefined ? { algorithm: 'ecdsa' as const, sizeBits: 256 } : parseKey(object['key'], source);
  let ca: CsrSpec['ca'];
  if (object['ca'] !== undefined) {
    const caObject = expectObject(object['ca'], `${source}: ca`);
    const expiry = caObject['expiry'] === undefined ? CA_EXPIRY_DEFAULT : expectString(caObject['expiry'], `${source}: ca.expiry`);
    const pathLength = caObject['pathlen'];
    if (pathLength !== undefined && (!Number.isSafeInteger(pathLength) || (pathLength as number) < 0)) {
      throw new InvalidArgumentError(`${source}: ca.pathlen must be a non-negative integer`);
    }
    ca = { expiryMs: parseGoDurationMs(expiry, `${source}: ca.expiry`), pathLength: pathLength as number | undefined };
  }
  return { commonName, names, hosts, key, ca };
}

function parseNames(json: unknown, source: string): NameEntry[] {
  if (!Array.isArray(json)) throw new InvalidArgumentError(`${source}: names must be an array of objects`);
  return json.map((entry, index) => {
    const object = expectObject(entry, `${source}: names[${index}]`);
    const name: NameEntry = {};
    for (const field of NAME_FIELDS) {
      if (object[field] !== undefined) name[field] = expectString(object[field], `${source}: names[${index}].${field}`);
    }
    return name;
  });
}

function parseKey(json: unknown, source: string): KeySpec {
  const object = expectObject(json, `${source}: key`);
  const algorithm = object['algo'] === undefined ? 'ecdsa' : expectString(object['algo'], `${source}: key.algo`);
  if (algorithm !== 'ecdsa' && algorithm !== 'rsa') {
    throw new InvalidArgumentError(`${source}: key.algo must be "ecdsa" or "rsa", got "${algorithm}"`);
  }
  const sizeBits = object['size'] === undefined ? (algorithm === 'ecdsa' ? 256 : 2048) : object['size'];
  if (algorithm === 'ecdsa' && !ECDSA_SIZES.has(sizeBits as number)) {
    throw new InvalidArgumentError(`${source}: key.size for ecdsa must be 256, 384 or 521, got ${String(sizeBits)}`);
  }
  if (
    algorithm === 'rsa' &&
    (!Number.isSafeInteger(sizeBits) || (sizeBits as number) < RSA_SIZE_MIN_BITS || (sizeBits as number) > RSA_SIZE_MAX_BITS)
  ) {
    throw new InvalidArgumentError(
      `${source}: key.size for rsa must be an integer from ${RSA_SIZE_MIN_BITS} to ${RSA_SIZE_MAX_BITS}, got ${String(sizeBits)}`,
    );
  }
  return { algorithm, sizeBits: sizeBits as number };
}

export function parseSigningConfig(json: unknown, source: string): SigningConfig {
  const signing = expectObject(expectObject(json, source)['signing'], `${source}: signing`);
  const defaultProfile =
    signing['default'] === undefined
      ? { usages: LEAF_USAGES_DEFAULT, expiryMs: parseGoDurationMs(LEAF_EXPIRY_DEFAULT, 'default expiry') }
      : parseProfile(signing['default'], undefined, `${source}: signing.default`);
  const profiles = new Map<string, SigningProfile>();
  if (signing['profiles'] !== undefined) {
    const profilesObject = expectObject(signing['profiles'], `${source}: signing.profiles`);
    for (const [name, profile] of Object.entries(profilesObject)) {
      profiles.set(name, parseProfile(profile, defaultProfile, `${source}: signing.profiles.${name}`));
    }
  }
  return { defaultProfile, profiles };
}

function parseProfile(json: unknown, fallback: SigningProfile | undefined, where: string): SigningProfile {
  const object = expectObject(json, where);
  const usages =
    object['usages'] === undefined ? (fallback?.usages ?? LEAF_USAGES_DEFAULT) : expectStringArray(object['usages'], `${where}.usages`);
  const expiryMs =
    object['expiry'] === undefined
      ? (fallback?.expiryMs ?? parseGoDurationMs(LEAF_EXPIRY_DEFAULT, 'default expiry'))
      : parseGoDurationMs(expectString(object['expiry'], `${where}.expiry`), `${where}.expiry`);
  return { usages, expiryMs };
}

/** The named profile, or the default one when `name` is undefined; unknown names are an error. */
export function profileFor(config: SigningConfig, name: string | undefined): SigningProfile {
  if (name === undefined) return config.defaultProfile;
  const profile = config.profiles.get(name);
  if (profile === undefined) {
    throw new InvalidArgumentError(`signing profile "${name}" is not in ca-config.json (have: ${[...config.profiles.keys()].join(', ')})`);
  }
  return profile;
}

function expectObject(json: unknown, where: string): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new InvalidArgumentError(`${where} must be a JSON object`);
  }
  return json as Record<string, unknown>;
}

function expectString(json: unknown, where: string): string {
  if (typeof json !== 'string') throw new InvalidArgumentError(`${where} must be a string`);
  return json;
}

function expectStringArray(json: unknown, where: string): string[] {
  if (!Array.isArray(json) || !json.every((item) => typeof item === 'string')) {
    throw new InvalidArgumentError(`${where} must be an array of strings`);
  }
  return json as string[];
}
