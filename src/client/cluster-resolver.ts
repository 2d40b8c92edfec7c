/**
 * The `annal:` name resolver for grpc-js: `annal://host:port[,host:port...]` names a cluster by any
 * of its members (the seeds). The resolver asks a reachable member for GetServers (the Raft
 * configuration with each member's RPC address and the leader) and hands grpc-js the members as
 * endpoints with the `annal_route` policy (route-balancer.ts), whose configuration names the
 * leader. It asks again every `refreshIntervalMs`, whenever grpc-js asks (a member's connection
 * dropped), and whenever the client asks (a call found no leader or the wrong one).
 *
 * GetServers goes over small channels of its own, one per member and seed (all asked at once),
 * with the client's credentials:
 * a resolver cannot use the channel it resolves for. grpc-js gives a resolver only the channel
 * options, so the client passes its credentials through a registry keyed by a channel option.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import {
  experimental,
  status as Status,
  type ChannelCredentials,
  type ChannelOptions,
} from '@grpc/grpc-js';
import { LogClient, type Server as WireServer } from '../gen/log/v1/log.js';
import { errorFromStatus } from '../wire/index.js';
import { DeadlineExceededError, InvalidArgumentError, PermissionDeniedError, UnauthenticatedError, UnavailableError, type AnnalError } from '../util/index.js';
import { notSentMetadata, registerRoutePolicy, ROUTE_POLICY, routeMetadata, type RouteConfigJson } from './route-balancer.js';

export const CLUSTER_SCHEME = 'annal';
/** Channel option naming the Discovery of the channel's client in the registry. */
export const DISCOVERY_OPTION = 'annal.discovery_id';

/** The seeds of an `annal://a:1,b:2` target, or undefined if `address` is not one. */
export function clusterSeeds(address: string): string[] | undefined {
  if (!address.startsWith(`${CLUSTER_SCHEME}:`)) return undefined;
  const seeds = address
    .slice(CLUSTER_SCHEME.length + 1)
    .replace(/^\/+/, '')
    .split(',')
    .map((seed) => seed.trim())
    .filter((seed) => seed.length > 0);
  if (seeds.length === 0) throw new InvalidArgumentError(`${address}: an annal:// address names at least one host:port`);
  for (const seed of seeds) splitHostPort(seed);
  return seeds;
}

function splitHostPort(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port <= 0 || port > 65535) throw new InvalidArgumentError(`${address} is not host:port`);
  return { host: match[1] ?? match[2]!, port };
}

export interface DiscoveryOptions {
  seeds: string[];
  credentials: ChannelCredentials;
  /** How often the member list is refreshed without a reason, in milliseconds. Default 2000. */
  refreshIntervalMs?: number;
  /** Deadline of one GetServers attempt, in milliseconds. Default 1000. */
  attemptTimeoutMs?: number;
  /** Channel options for the GetServers channels (e.g. the TLS name override). */
  channelOptions?: ChannelOptions;
}

/** The cluster as last seen: members and who leads. */
export interface ClusterView {
  servers: WireServer[];
  /** Where the answer came from. */
  from: string;
}

/** Deadline of a GetServers attempt before any member has answered. */
const FIRST_CONTACT_TIMEOUT_MS = 5000;

const registry = new Map<number, Discovery>();
let nextDiscoveryId = 1;

/** One client's view of the cluster: seeds, credentials, the last answer, and the resolvers it feeds. */
export class Discovery {
  readonly id = nextDiscoveryId++;
  private readonly clients = new Map<string, LogClient>();
  private last: ClusterView | undefined;
  private readonly resolvers = new Set<AnnalResolver>();
  private closed = false;
  private refusal: AnnalError | undefined;

  constructor(readonly options: DiscoveryOptions) {
    registerClusterResolver();
    registry.set(this.id, this);
  }

  get view(): ClusterView | undefined {
    return this.last;
  }

  /**
   * Set while the last discovery found no member willing to answer this client (its certificate
   * is not allowed, or not accepted), or while no member has ever answered (a wrong address, TLS
   * against a plaintext node or the reverse): the reason its calls fail, which grpc-js can only
   * report as UNAVAILABLE ("no member answered") at the pick. Calls fail with it at once instead
   * of being retried. A member that timed out does not count as refusing (it may be slow), and
   * once a member has answered, an unreachable cluster is waited for (retried).
   */
  get refusedBy(): AnnalError | undefined {
    return this.refusal;
  }

  /** Asks every resolver of this client to refresh now (a call found no leader, or the wrong one). */
  refresh(): void {
    for (const resolver of this.resolvers) resolver.updateResolution();
  }

  /**
   * GetServers from every known member and seed at once: the first answer that names a leader,
   * else the first answer once all have settled; rejects with the last error if none answers.
   * Asking all at once keeps a dead member (whose channel may be waiting out its reconnect
   * backoff) from delaying the answer, at the cost of a few small calls per refresh.
   */
  discover(): Promise<ClusterView> {
    const known = (this.last?.servers ?? []).map((server) => server.rpcAddr).filter((addr) => addr.length > 0);
    const addresses = this.closed ? [] : [...new Set([...known, ...this.options.seeds])];
    return new Promise((resolve, reject) => {
      let pending = addresses.length;
      let leaderless: ClusterView | undefined;
      let lastError: unknown = new Error('no address to ask');
      let timedOut = false;
      let settled = false;
      const done = (): void => {
        if (settled || --pending > 0) return;
        settled = true;
        if (leaderless !== undefined) {
          this.refusal = undefined;
          resolve((this.last = leaderless));
        } else {
          // A member that did not answer in time may be slow (a loaded machine, a TLS handshake), not absent.
          this.refusal = refusalOf(lastError, this.last === undefined && !timedOut, this.options.seeds);
          reject(lastError);
        }
      };
      for (const address of addresses) {
        this.getServers(address).then(
          (servers) => {
            if (servers.length === 0) lastError = new Error(`${address} reported no servers`);
            else if (!settled && servers.some((server) => server.isLeader)) {
              settled = true;
              this.refusal = undefined;
              resolve((this.last = { servers, from: address }));
            } else leaderless ??= { servers, from: address };
            done();
          },
          (error: unknown) => {
            lastError = error;
            if (error instanceof DeadlineExceededError) timedOut = true;
            done();
          },
        );
      }
      if (addresses.length === 0) reject(lastError);
    });
  }

  private getServers(address: string): Promise<WireServer[]> {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new LogClient(address, this.options.credentials, { ...this.options.channelOptions, 'grpc.max_reconnect_backoff_ms': 1000 });
      this.clients.set(address, client);
    }
    // The first contact includes the connection's TLS handshake: give it longer.
    const deadline = Date.now() + (this.last === undefined ? FIRST_CONTACT_TIMEOUT_MS : (this.options.attemptTimeoutMs ?? 1000));
    const c = client;
    return new Promise((resolve, reject) => {
      c.getServers({}, routeMetadata('any'), { deadline }, (error, response) => (error ? reject(errorFromStatus(error, error)) : resolve(response.servers)));
    });
  }

  attach(resolver: AnnalResolver): void {
    this.resolvers.add(resolver);
  }

  detach(resolver: AnnalResolver): void {
    this.resolvers.delete(resolver);
  }

  close(): void {
    this.closed = true;
    registry.delete(this.id);
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

function refusalOf(error: unknown, neverAnswered: boolean, seeds: string[]): AnnalError | undefined {
  if (error instanceof PermissionDeniedError || error instanceof UnauthenticatedError) return error;
  if (!neverAnswered) return undefined;
  const reason = error instanceof Error ? error.message : String(error);
  return new UnavailableError(`no member of ${seeds.join(',')} answered: ${reason}`, { cause: error });
}

/** The resolved members: endpoints (IP addresses) and the policy configuration naming the leader. */
async function resolveView(view: ClusterView): Promise<{ endpoints: experimental.Endpoint[]; config: RouteConfigJson }> {
  const endpoints: experimental.Endpoint[] = [];
  const config: RouteConfigJson = { leader: null, names: {} };
  for (const server of view.servers) {
    if (server.rpcAddr.length === 0) continue;
    const { host, port } = splitHostPort(server.rpcAddr);
    const ip = isIP(host) !== 0 ? host : (await lookup(host)).address;
    const address = { host: ip, port };
    const key = experimental.subchannelAddressToString(address);
    endpoints.push({ addresses: [address] });
    config.names[key] = host;
    if (server.isLeader) config.leader = experimental.endpointToString({ addresses: [address] });
  }
  return { endpoints, config };
}

/** Consecutive refreshes are at least this far apart (grpc-js asks on every dropped connection). */
const REFRESH_MIN_INTERVAL_MS = 50;

class AnnalResolver implements experimental.Resolver {
  private readonly discovery: Discovery | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private lastStartMs = 0;
  private destroyed = false;

  constructor(
    private readonly target: experimental.GrpcUri,
    private readonly listener: experimental.ResolverListener,
    options: ChannelOptions,
  ) {
    this.discovery = registry.get(options[DISCOVERY_OPTION] as number);
    this.discovery?.attach(this);
  }

  static getDefaultAuthority(target: experimental.GrpcUri): string {
    return clusterSeeds(`${CLUSTER_SCHEME}:${target.path}`)?.[0] ?? target.path;
  }

  updateResolution(): void {
    if (this.destroyed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      do {
        this.again = false;
        const waitMs = this.lastStartMs + REFRESH_MIN_INTERVAL_MS - Date.now();
        if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
        this.lastStartMs = Date.now();
        await this.resolveOnce();
      } while (this.again && !this.destroyed);
    } finally {
      this.running = false;
    }
    this.schedule();
  }

  private async resolveOnce(): Promise<void> {
    const discovery = this.discovery;
    if (discovery === undefined) {
      this.report(new Error(`the ${CLUSTER_SCHEME}: scheme is resolved for AnnalClient channels only (${experimental.uriToString(this.target)})`));
      return;
    }
    let resolved: Awaited<ReturnType<typeof resolveView>>;
    try {
      resolved = await resolveView(await discovery.discover());
    } catch (error) {
      this.report(error);
      return;
    }
    if (this.destroyed) return;
    const serviceConfig = { loadBalancingConfig: [{ [ROUTE_POLICY]: resolved.config }], methodConfig: [] };
    this.listener(experimental.statusOrFromValue(resolved.endpoints), {}, experimental.statusOrFromValue(serviceConfig), '');
  }

  private report(error: unknown): void {
    if (this.destroyed) return;
    const details = `no member of ${experimental.uriToString(this.target)} answered GetServers: ${error instanceof Error ? error.message : String(error)}`;
    this.listener(experimental.statusOrFromError({ code: Status.UNAVAILABLE, details, metadata: notSentMetadata() }), {}, null, details);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.destroyed) return;
    this.timer = setTimeout(() => this.updateResolution(), this.discovery?.options.refreshIntervalMs ?? 2000);
    this.timer.unref();
  }

  destroy(): void {
    this.destroyed = true;
    clearTimeout(this.timer);
    this.discovery?.detach(this);
  }
}

let registered = false;

function registerClusterResolver(): void {
  if (registered) return;
  registered = true;
  registerRoutePolicy();
  experimental.registerResolver(CLUSTER_SCHEME, AnnalResolver);
}
