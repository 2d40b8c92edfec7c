/**
 * Parsers for flag values. Each throws commander's InvalidArgumentError, which commander reports
 * as one line naming the flag ("option '--rpc-port <port>' argument 'x' is invalid. ...").
 * The same parsers check values from the YAML config file.
 */
import { InvalidArgumentError } from 'commander';
import { parseFsyncPolicy, type FsyncPolicy } from '../storage/index.js';

export function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new InvalidArgumentError('expected a port number 0-65535');
  return port;
}

export function parseUint(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value)) throw new InvalidArgumentError('expected a non-negative integer');
  return value;
}

const UINT64_MAX = 2n ** 64n - 1n;

/**
 * `--offset`: any uint64, as on the wire. A number when it is a safe integer, the exact bigint
 * above 2^53 - 1 (the node then answers that it is out of range, naming the log's range).
 */
export function parseOffset(text: string): number | bigint {
  if (!/^\d+$/.test(text) || BigInt(text) > UINT64_MAX) throw new InvalidArgumentError(`expected an offset from 0 to ${UINT64_MAX}`);
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : BigInt(text);
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3 };

/** Bytes as an integer with an optional unit: 1048576, 1MiB, 64mib, 512KiB, 1GB. */
export function parseBytes(text: string): number {
  const match = /^(\d+)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = match ? BYTE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new InvalidArgumentError('expected a byte count such as 1048576, 512KiB or 64MiB');
  const value = Number(match[1]) * unit;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError('expected a positive byte count');
  return value;
}

export function parseFsync(text: string): FsyncPolicy {
  try {
    return parseFsyncPolicy(text);
  } catch {
    throw new InvalidArgumentError('expected always, never or interval:<ms>');
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function parseLogLevel(text: string): string {
  if (!LOG_LEVELS.includes(text)) throw new InvalidArgumentError(`expected one of ${LOG_LEVELS.join(', ')}`);
  return text;
}

/** `host:port` with a numeric port (IPv6 hosts in brackets). */
export function parseAddress(text: string): string {
  const match = /^(\[[^\]]+\]|[^:\s]+):(\d+)$/.exec(text);
  if (!match || Number(match[2]) > 65535) throw new InvalidArgumentError('expected host:port');
  return text;
}

export function parseNonEmpty(text: string): string {
  if (text.trim() === '') throw new InvalidArgumentError('must not be empty');
  return text;
}

/** `--trace-sample-ratio`: a number from 0 to 1. */
export function parseRatio(text: string): number {
  const ratio = Number(text);
  if (text.trim() === '' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) throw new InvalidArgumentError('expected a number from 0 to 1');
  return ratio;
}

/** `--otlp-endpoint`: an http(s) URL (spans go to <url>/v1/traces). */
export function parseHttpUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError('expected a URL like http://localhost:4318');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('expected an http:// or https:// URL');
  return text;
}

/**
 * `--start-join-addrs`: `host:port` addresses, repeatable and/or comma-separated; each use adds
 * to the list (`previous` is commander's accumulated value, undefined from the config file).
 */
export function parseAddressList(text: string, previous: string[] | undefined): string[] {
  const addresses = text.split(',').map((part) => part.trim()).filter((part) => part !== '');
  if (addresses.length === 0) throw new InvalidArgumentError('expected host:port[,host:port...]');
  for (const address of addresses) {
    try {
      parseAddress(address);
    } catch {
      throw new InvalidArgumentError(`"${address}" is not host:port`);
    }
  }
  return [...(previous ?? []), ...addresses];
}

/** `--gossip-encrypt-key`: base64 of a 16, 24 or 32-byte AES key, as serf's `-encrypt`. */
export function parseEncryptKey(text: string): string {
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
  if (![16, 24, 32].includes(bytes.length)) throw new InvalidArgumentError('expected base64 of a 16, 24 or 32-byte key (`serf keygen` makes one)');
  return text;
}

/** A duration that drives a timer: a number with a unit, ms, s, m, h or d (`500ms`, `30s`, `5m`), at most 24 days. */
export function parseDurationMs(text: string): number {
  const ms = durationMs(text);
  if (ms > 2_147_483_647) throw new InvalidArgumentError(`duration "${text}" is too long: at most 24 days`);
  return ms;
}

/** A duration compared with ages (retention): the same units, no upper bound. */
export function parseAgeMs(text: string): number {
  return durationMs(text);
}

function durationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
  const ms = match === null ? NaN : Number(match[1]) * scale[match[2] as keyof typeof scale];
  if (!Number.isFinite(ms) || ms < 1 || !Number.isSafeInteger(Math.round(ms))) {
    throw new InvalidArgumentError(`invalid duration "${text}": expected a number and a unit, ms, s, m, h or d (e.g. 30s, 5m, 7d)`);
  }
  return Math.round(ms);
}
