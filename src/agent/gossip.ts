/**
 * The agent's gossip membership: Membership (membership/) on the agent's bind address with the
 * `rpc_addr` tag, its events logged through the agent's logger (child `component: 'membership'`),
 * its counts exported as metrics, and the join/leave hook where Raft will add and remove servers.
 */
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import {
  lanTimings,
  localTimings,
  Membership,
  type Member,
  type MembershipHandler,
  type MembershipLogger,
  type MembershipTimings,
} from '../membership/index.js';
import type { AdminMember } from '../server/index.js';
import type { Telemetry } from '../telemetry/index.js';
import { InvalidArgumentError } from '../util/index.js';

/** Named timing sets, as serf's `-profile`: `lan` (serf's defaults) or `local` (loopback, tests). */
export const GOSSIP_PROFILES: Readonly<Record<string, MembershipTimings>> = { lan: lanTimings, local: localTimings };
export type GossipProfile = 'lan' | 'local';

export interface GossipConfig {
  /** Gossip addresses of members to join at start (`host:port`); empty on the first node. */
  startJoinAddrs: readonly string[];
  /** serf's `-encrypt` key: base64 of 16, 24 or 32 bytes (the same on every member). */
  encryptKey?: string;
  /** Default `lan`. */
  profile?: GossipProfile;
  /** `host:port` others reach our gossip at; needed with a wildcard bind (default: a private IPv4 of this host). */
  advertiseAddr?: string;
}

/** What the agent's gossip logs through: the agent logger's `component: 'membership'` child. */
export interface GossipLogger {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/**
 * Where cluster changes reach the rest of the node. Raft plugs in here: on the leader,
 * `join` adds the member as a voter at `member.tags.rpc_addr` and `leave` (a graceful leave or a
 * failure) removes it. Until then the hook only records what it would act on, at debug level.
 * Never called about this node itself.
 */
export class ClusterHooks implements MembershipHandler {
  constructor(private readonly logger: GossipLogger) {}

  join(member: Member): void {
    this.logger.debug({ member: member.name, rpcAddr: member.tags.rpc_addr }, 'cluster hook: join (no Raft yet: nothing to add)');
  }

  leave(member: Member): void {
    this.logger.debug({ member: member.name, status: member.status }, 'cluster hook: leave (no Raft yet: nothing to remove)');
  }
}

export async function startGossip(options: {
  nodeName: string;
  bindAddr: string;
  /** The RPC address clients and peers use (the `rpc_addr` tag). */
  rpcAddr: string;
  config: GossipConfig;
  logger: GossipLogger;
  telemetry: Telemetry | undefined;
}): Promise<Membership> {
  const { config, logger } = options;
  const profile = config.profile ?? 'lan';
  const timings = GOSSIP_PROFILES[profile];
  if (timings === undefined) throw new InvalidArgumentError(`unknown gossip profile "${profile}": expected lan or local`);
  let bindAddr = options.bindAddr;
  let advertiseAddr = config.advertiseAddr;
  const wildcard = /^(0\.0\.0\.0|\[::\]):(\d+)$/.exec(bindAddr);
  if (wildcard && advertiseAddr === undefined) {
    // The advertised port must be known before binding: port 0 is resolved here (racy only
    // against another process taking it in between, which then fails start-up with a clear error).
    const port = wildcard[2] === '0' ? await freeUdpTcpPort(wildcard[1]!) : Number(wildcard[2]);
    bindAddr = `${wildcard[1]}:${port}`;
    advertiseAddr = `${privateIpv4(bindAddr)}:${port}`;
  }
  const membership = await Membership.start({
    nodeName: options.nodeName,
    bindAddr,
    ...(advertiseAddr !== undefined ? { advertiseAddr } : {}),
    tags: { rpc_addr: options.rpcAddr },
    startJoinAddrs: config.startJoinAddrs,
    ...(config.encryptKey !== undefined ? { encryptKey: config.encryptKey } : {}),
    timings,
    handler: new ClusterHooks(logger),
    logger: libraryLogger(logger),
  });
  membership.subscribe(({ type, member }) =>
    logger.info({ event: type, member: member.name, addr: memberAddr(member), status: member.status, tags: member.tags }, type),
  );
  if (options.telemetry?.metricsEnabled) exportGossipMetrics(options.telemetry, membership);
  // Events of the start-up join came before this subscription (the hook saw them): name the members here.
  const self = membership.address;
  logger.info(
    {
      gossipAddr: formatHostPort(self.host, self.port),
      members: membership.members().map((member) => `${member.name}:${member.status}`),
      profile,
      encrypted: config.encryptKey !== undefined,
    },
    'gossip membership started',
  );
  return membership;
}

/** Members as Admin.GetMembers reports them. */
export function adminMembers(membership: Membership): AdminMember[] {
  return membership.members().map((member) => ({ name: member.name, addr: memberAddr(member), status: member.status, tags: member.tags }));
}

export function memberAddr(member: Pick<Member, 'addr' | 'port'>): string {
  return formatHostPort(member.addr, member.port);
}

function formatHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The library's own lines; its per-event info line repeats our structured one, so it goes to debug. */
function libraryLogger(logger: GossipLogger): MembershipLogger {
  return (level, message) => logger[level === 'info' ? 'debug' : level]({}, message);
}

/**
 * With a wildcard bind the gossip address others reach must be a real IP; like serf, take the
 * first non-internal IPv4 address of this host.
 */
function privateIpv4(bindAddr: string): string {
  const ip = Object.values(networkInterfaces())
    .flat()
    .find((info) => info !== undefined && info.family === 'IPv4' && !info.internal)?.address;
  if (ip === undefined) {
    throw new InvalidArgumentError(`bind address ${bindAddr} is a wildcard and this host has no non-loopback IPv4 address to advertise; set --advertise-addr`);
  }
  return ip;
}

/** A port free for both TCP and UDP on `host` a moment ago (gossip uses both). */
async function freeUdpTcpPort(host: string): Promise<number> {
  const bareHost = host.replace(/^\[|\]$/g, '');
  for (let attempt = 0; attempt < 10; attempt++) {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, bareHost, () => resolve((server.address() as AddressInfo).port));
    });
    const udp = createSocket(bareHost.includes(':') ? 'udp6' : 'udp4');
    const udpFree = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, bareHost, () => resolve(true));
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (udpFree) await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (udpFree) return port;
  }
  throw new InvalidArgumentError(`no port free for both TCP and UDP on ${host}; give --bind-addr a port`);
}

/** `annal_membership_members{status}` and `annal_membership_dropped_messages`, read at scrape time. */
function exportGossipMetrics(telemetry: Telemetry, membership: Membership): void {
  const meter = telemetry.meter('membership');
  const members = meter.createObservableGauge('annal_membership_members', { description: 'Gossip members this node knows, by status (itself included).' });
  const dropped = meter.createObservableCounter('annal_membership_dropped_messages', {
    description: 'Gossip packets and messages dropped as malformed, hostile or undecryptable.',
  });
  meter.addBatchObservableCallback(
    (result) => {
      const byStatus: Record<string, number> = { alive: 0, leaving: 0, left: 0, failed: 0 };
      for (const member of membership.members()) byStatus[member.status] = (byStatus[member.status] ?? 0) + 1;
      for (const [status, count] of Object.entries(byStatus)) result.observe(members, count, { status });
      let drops = 0;
      for (const [reason, count] of Object.entries(membership.stats().counters)) if (reason.startsWith('drop')) drops += count;
      result.observe(dropped, drops);
    },
    [members, dropped],
  );
}
