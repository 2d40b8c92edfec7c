/**
 * Client commands: `annal produce`, `annal consume`, `annal servers`, `annal members`. Human output by default
 * (`<offset>\t<value>` per record), JSON lines with `--json` (`{"offset":0,"value":"..."}`, or
 * `valueBase64` for a value that is not UTF-8). Security is explicit: `--insecure` for a plaintext
 * node, or `--ca-file` (and `--cert-file`/`--key-file` for mutual TLS).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { AnnalClient, type ClientSecurity, type ConsumedRecord, type MemberInfo } from '../client/index.js';
import { OffsetOutOfRangeError, UnavailableError } from '../util/index.js';
import { DEFAULT_PROFILE, profileFor, type ClientProfile } from './client-profile.js';
import { parseAddress, parseOffset, parseUint } from './options.js';
import { UsageError } from './usage-error.js';

interface ClientFlags {
  /** One address or a comma-separated list: members of one cluster (any of them will do). */
  addr?: string;
  /** Talk to the addresses one at a time, as plain nodes (no discovery, no routing, no retries). */
  direct?: boolean;
  profile?: string;
  insecure?: boolean;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  json?: boolean;
}

interface ConsumeFlags extends ClientFlags {
  offset?: number | bigint;
  follow?: boolean;
  linearizable?: boolean;
  maxBatch: number;
}

/** Records sent on a ProduceStream and not yet acknowledged, at most. */
const PRODUCE_WINDOW_RECORDS = 1024;

function clientOptions(command: Command): Command {
  return command
    .option('--addr <host:port>', "address of a cluster member, or a comma-separated list of them (default 127.0.0.1:8400, or the profile's); the client finds the leader and the other members itself", parseAddressCsv)
    .option('--direct', 'talk to the --addr nodes themselves, tried in order, without finding the cluster (no routing, no retries)')
    .option('--profile <file>', `client profile (YAML: addresses and certificate files; default ${DEFAULT_PROFILE} when it exists and no connection flag is given)`)
    .option('--insecure', 'connect without TLS (to a node started with --insecure)')
    .option('--ca-file <path>', 'CA certificate (PEM) to verify the node with')
    .option('--cert-file <path>', 'client certificate (PEM) for mutual TLS')
    .option('--key-file <path>', 'client key (PEM) for mutual TLS')
    .option('--json', 'JSON lines instead of human-readable output');
}

export function addClientCommands(program: Command): void {
  clientOptions(program.command('produce'))
    .description('append records: the arguments, or one per line of stdin when there are none')
    .argument('[values...]', 'record values')
    .action(async (values: string[], flags: ClientFlags) => withClient(flags, (client) => produce(client, values, flags)));

  clientOptions(program.command('consume'))
    .description('print records from an offset; --follow keeps waiting for new ones')
    .option('--offset <offset>', 'first offset to read (default: the lowest in the log)', parseOffset)
    .option('--follow', 'keep waiting for new records (Ctrl-C to stop)')
    .option('--linearizable', 'first confirm with the leader that every acknowledged record is visible (any node)')
    .option('--max-batch <records>', 'records per server message (throughput; 0 = one per message)', parseUint, 256)
    .action(async (flags: ConsumeFlags) =>
      withClient(flags, (client) => consume(client, flags)),
    );

  clientOptions(program.command('servers'))
    .description("list the cluster's servers")
    .action(async (flags: ClientFlags) => withClient(flags, (client) => servers(client, flags)));

  clientOptions(program.command('members'))
    .description("list the gossip cluster's members as the node sees them: name, gossip address, status, tags")
    .action(async (flags: ClientFlags) => withClient(flags, (client) => members(client, flags)));
}

/** Records written to stdout so far: a command that printed nothing may be retried on the next address. */
let recordsPrinted = 0;

async function withClient(given: ClientFlags, run: (client: AnnalClient) => Promise<void>): Promise<void> {
  const connectionFlagGiven = [given.addr, given.insecure, given.caFile, given.certFile, given.keyFile].some((value) => value !== undefined);
  const profile = profileFor(given.profile, connectionFlagGiven);
  const flags: ClientFlags = profile === undefined ? given : { ...profileFlags(profile), json: given.json };
  const list = flags.addr ?? '127.0.0.1:8400';
  if (given.direct !== true) {
    // The cluster by any of its members: writes go to the leader, reads to a follower, and both
    // are retried across a leader change or a member that is down (idempotent writes).
    const client = new AnnalClient({ address: `annal://${list}`, security: security(flags) });
    try {
      await run(client);
      return;
    } finally {
      client.close();
    }
  }
  const addresses = list.split(',');
  for (const [i, address] of addresses.entries()) {
    const client = new AnnalClient({ address, security: security(flags) });
    try {
      await run(client);
      return;
    } catch (error) {
      // Nothing happened on an unavailable node (a write there is not acknowledged and an outcome
      // is unknown only with DEADLINE_EXCEEDED): the next address may serve, unless output began.
      if (error instanceof UnavailableError && i < addresses.length - 1 && recordsPrinted === 0) continue;
      if (error instanceof UnavailableError) throw new UnavailableError(`node ${address} is unavailable: ${error.message}`, { cause: error });
      throw error;
    } finally {
      client.close();
    }
  }
}

function profileFlags(profile: ClientProfile): ClientFlags {
  const flags: ClientFlags = { addr: profile.addresses.join(',') };
  if (profile.insecure === true) flags.insecure = true;
  if (profile.caFile !== undefined) flags.caFile = profile.caFile;
  if (profile.certFile !== undefined) flags.certFile = profile.certFile;
  if (profile.keyFile !== undefined) flags.keyFile = profile.keyFile;
  return flags;
}

function parseAddressCsv(text: string): string {
  return text
    .split(',')
    .map((address) => parseAddress(address.trim()))
    .join(',');
}

function security(flags: ClientFlags): ClientSecurity {
  const read = (path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (error) {
      throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  };
  const tlsRequested = flags.caFile !== undefined || flags.certFile !== undefined || flags.keyFile !== undefined;
  if (flags.insecure === true && tlsRequested) throw new UsageError('--insecure and TLS files exclude each other');
  if (flags.insecure === true) return { insecure: true };
  if (!tlsRequested) throw new UsageError('pass --insecure to connect without TLS, or --ca-file (and --cert-file/--key-file) for TLS');
  const tls: { caPem?: Buffer; certPem?: Buffer; keyPem?: Buffer } = {};
  const caPem = read(flags.caFile);
  const certPem = read(flags.certFile);
  const keyPem = read(flags.keyFile);
  if (caPem) tls.caPem = caPem;
  if (certPem) tls.certPem = certPem;
  if (keyPem) tls.keyPem = keyPem;
  return { tls };
}

async function produce(client: AnnalClient, values: string[], flags: ClientFlags): Promise<void> {
  const stream = client.produceStream();
  const pending: Promise<void>[] = [];
  const sendOne = (value: string): void => {
    const bytes = Buffer.from(value, 'utf8');
    const printed = stream.send(bytes).then((offset) => void printRecord({ offset, value: bytes, term: 0, type: 0 }, flags));
    printed.catch(() => {}); // awaited below; this only keeps a failure after the first from being "unhandled"
    pending.push(printed);
  };
  try {
    if (values.length > 0) {
      for (const value of values) sendOne(value);
    } else {
      if (process.stdin.isTTY) process.stderr.write('reading records from stdin, one per line; end with Ctrl-D\n');
      for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        sendOne(line);
        // Bound memory for large inputs: wait for the oldest acknowledgements to catch up.
        if (pending.length >= PRODUCE_WINDOW_RECORDS) await Promise.all(pending.splice(0, PRODUCE_WINDOW_RECORDS / 2));
      }
    }
    await Promise.all(pending); // acknowledgements arrive in order, so output lines are in order
  } finally {
    await stream.close().catch(() => {});
  }
}

/** Reconnect backoff while following a node that went away: doubles up to the maximum. */
const FOLLOW_RETRY_MS_MIN = 250;
const FOLLOW_RETRY_MS_MAX = 5_000;

async function consume(client: AnnalClient, flags: ConsumeFlags): Promise<void> {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const follow = flags.follow === true;
  const options = { signal: controller.signal, maxBatch: flags.maxBatch, follow, linearizable: flags.linearizable === true };
  let next: number | bigint = flags.offset ?? 0;
  let retryMs = FOLLOW_RETRY_MS_MIN;
  try {
    while (true) {
      try {
        for await (const batch of client.consumeBatches(next, options)) {
          let writable = true;
          for (const record of batch) writable = printRecord(record, flags);
          // A slow reader (a pipe) holds the stream back instead of the output piling up in memory.
          if (!writable) await once(process.stdout, 'drain', { signal: controller.signal });
          if (batch.length > 0) next = batch[batch.length - 1]!.offset + 1;
          retryMs = FOLLOW_RETRY_MS_MIN;
        }
        return;
      } catch (error) {
        if (controller.signal.aborted) return; // Ctrl-C: a normal end
        // Without --offset, start at the lowest retained offset when retention dropped offset 0.
        if (flags.offset === undefined && error instanceof OffsetOutOfRangeError && next < error.lowestOffset) {
          next = error.lowestOffset;
          continue;
        }
        // Following is like `tail -F`: a node that restarts is waited for, from the next offset.
        if (!follow || !(error instanceof UnavailableError)) throw error;
        process.stderr.write(`annal consume: ${flags.addr ?? 'the node'} is unavailable (${error.message}); retrying from offset ${next}\n`);
        await sleep(retryMs, controller.signal);
        retryMs = Math.min(FOLLOW_RETRY_MS_MAX, retryMs * 2);
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

async function servers(client: AnnalClient, flags: ClientFlags): Promise<void> {
  const list = await client.getServers();
  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify(list)}\n`);
    return;
  }
  for (const server of list) process.stdout.write(`${server.id}\t${server.rpcAddr}\t${server.role || (server.isLeader ? 'leader' : 'follower')}\n`);
}

/** A table (name, address, status, tags as k=v,k=v) or, with --json, one JSON object per member. */
async function members(client: AnnalClient, flags: ClientFlags): Promise<void> {
  const list = await client.getMembers();
  if (flags.json === true) {
    for (const member of list) process.stdout.write(`${JSON.stringify(member)}\n`);
    return;
  }
  const rows = [['NAME', 'ADDRESS', 'STATUS', 'TAGS'], ...list.map((member) => [member.name, member.addr, member.status, formatTags(member)])];
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)));
  for (const row of rows) process.stdout.write(`${row.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell)).join('  ')}\n`);
}

function formatTags(member: MemberInfo): string {
  return Object.keys(member.tags)
    .sort()
    .map((key) => `${key}=${member.tags[key]}`)
    .join(',');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Writes one record to stdout; false when stdout's buffer is full (wait for 'drain'). */
function printRecord(record: ConsumedRecord, flags: ClientFlags): boolean {
  recordsPrinted++;
  let text: string | undefined;
  try {
    text = utf8.decode(record.value);
  } catch {
    text = undefined;
  }
  if (flags.json === true) {
    const fields = text === undefined ? { valueBase64: record.value.toString('base64') } : { value: text };
    return process.stdout.write(`${JSON.stringify({ offset: record.offset, ...fields })}\n`);
  }
  return process.stdout.write(`${record.offset}\t${text ?? `base64:${record.value.toString('base64')}`}\n`);
}
