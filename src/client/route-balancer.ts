/**
 * The `annal_route` load-balancing policy for grpc-js: one pick_first child (grpc-js's
 * LeafLoadBalancer) per cluster member, all kept connected, and a picker that routes each call by
 * its `annal-route` metadata (set by the client on every call):
 *
 * - `write` (Produce, ProduceStream, ProduceBatch): the leader. While its connection is being made
 *   the call waits; when the leader is unknown or unreachable the call fails at once with
 *   UNAVAILABLE, so the client's retry asks the cluster again instead of waiting on a dead node.
 * - `read` (Consume, ConsumeStream): round-robin over the connected followers, the leader when
 *   none is connected.
 * - anything else (linearizable reads, GetServers): round-robin over every connected member.
 *
 * The resolver (cluster-resolver.ts) passes the members as endpoints and the leader's address and
 * each member's host name in this policy's configuration; each member's TLS connection is checked
 * against its own host name (`grpc.ssl_target_name_override` per child), not the first seed's.
 */
import {
  connectivityState as ConnectivityState,
  experimental,
  Metadata,
  status as Status,
  type ChannelOptions,
} from '@grpc/grpc-js';

type Endpoint = experimental.Endpoint;
type Picker = experimental.Picker;
type PickArgs = experimental.PickArgs;
type PickResult = experimental.PickResult;

export const ROUTE_POLICY = 'annal_route';
/** Call metadata naming a call's route. */
export const ROUTE_METADATA_KEY = 'annal-route';
/** Status metadata of a call this client failed before sending it anywhere (no member to pick). */
export const NOT_SENT_METADATA_KEY = 'annal-not-sent';

/** Metadata for a status that says the call never left the client. */
export function notSentMetadata(): Metadata {
  const metadata = new Metadata();
  metadata.set(NOT_SENT_METADATA_KEY, '1');
  return metadata;
}

/**
 * Whether a failed call certainly never reached a server: failed at the pick, by this policy or
 * the resolver (the marker above) or by grpc-js itself (no connection could be made).
 */
export function neverSent(status: { details: string; metadata?: Metadata | undefined }): boolean {
  return (status.metadata?.get(NOT_SENT_METADATA_KEY).length ?? 0) > 0 || /^No connection established/.test(status.details);
}
export type Route = 'write' | 'read' | 'any';

/** Metadata for a call on `route` (a fresh object: grpc-js takes ownership of a call's metadata). */
export function routeMetadata(route: Route): Metadata {
  const metadata = new Metadata();
  metadata.set(ROUTE_METADATA_KEY, route);
  return metadata;
}

export interface RouteConfigJson {
  /** `host:port` of the leader's endpoint as resolved, or null when no member says it leads. */
  leader: string | null;
  /** Each endpoint's host name as the cluster advertises it (for TLS), by resolved `host:port`. */
  names: Record<string, string>;
}

class RouteConfig implements experimental.TypedLoadBalancingConfig {
  constructor(readonly json: RouteConfigJson) {}
  getLoadBalancerName(): string {
    return ROUTE_POLICY;
  }
  toJsonObject(): object {
    return { [ROUTE_POLICY]: this.json };
  }
  static createFromJson(obj: unknown): RouteConfig {
    const value = (obj ?? {}) as Partial<RouteConfigJson>;
    return new RouteConfig({ leader: typeof value.leader === 'string' ? value.leader : null, names: value.names ?? {} });
  }
}

interface Child {
  key: string;
  leaf: experimental.LeafLoadBalancer;
}

class RoutePicker implements Picker {
  private nextRead = 0;
  private nextAny = 0;
  constructor(
    private readonly leader: Picker | null,
    private readonly leaderState: ConnectivityState | null,
    private readonly followers: Picker[],
    private readonly all: Picker[],
    private readonly queue: Picker,
  ) {}

  pick(args: PickArgs): PickResult {
    const route = args.metadata.get(ROUTE_METADATA_KEY)[0];
    if (route === 'write') {
      if (this.leader !== null && this.leaderState === ConnectivityState.READY) return this.leader.pick(args);
      if (this.leaderState === ConnectivityState.CONNECTING || this.leaderState === ConnectivityState.IDLE) return this.queue.pick(args);
      return failedPick(this.leader === null ? 'no member of the cluster is known to lead' : 'the leader is unreachable');
    }
    if (route === 'read' && this.followers.length > 0) return this.followers[this.nextRead++ % this.followers.length]!.pick(args);
    if (route === 'read' && this.leader !== null && this.leaderState === ConnectivityState.READY) return this.leader.pick(args);
    return this.all[this.nextAny++ % this.all.length]!.pick(args);
  }
}

function failedPick(details: string): PickResult {
  return {
    pickResultType: experimental.PickResultType.TRANSIENT_FAILURE,
    subchannel: null,
    status: { code: Status.UNAVAILABLE, details, metadata: notSentMetadata() },
    onCallStarted: null,
    onCallEnded: null,
  };
}

class RouteBalancer implements experimental.LoadBalancer {
  private children = new Map<string, Child>();
  private config = new RouteConfig({ leader: null, names: {} });
  private state: ConnectivityState = ConnectivityState.IDLE;
  private updating = false;
  private lastError: string | null = null;
  private readonly childHelper: experimental.ChannelControlHelper;

  constructor(private readonly helper: experimental.ChannelControlHelper) {
    this.childHelper = experimental.createChildChannelControlHelper(helper, {
      updateState: (state, _picker, errorMessage) => {
        // A member that dropped its connection may have left or moved: ask the resolver again.
        if (state === ConnectivityState.TRANSIENT_FAILURE || state === ConnectivityState.IDLE) helper.requestReresolution();
        if (errorMessage !== null) this.lastError = errorMessage;
        this.update();
      },
    });
  }

  updateAddressList(
    endpoints: experimental.StatusOr<Endpoint[]>,
    config: experimental.TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean {
    if (!(config instanceof RouteConfig)) return false;
    if (!endpoints.ok) {
      if (this.children.size === 0) this.publish(ConnectivityState.TRANSIENT_FAILURE, new experimental.UnavailablePicker(endpoints.error), endpoints.error.details);
      return true;
    }
    this.config = config;
    const next = new Map<string, Child>();
    this.updating = true;
    for (const endpoint of endpoints.value) {
      const key = experimental.endpointToString(endpoint);
      const name = config.json.names[key];
      const childOptions = name !== undefined ? { ...options, 'grpc.ssl_target_name_override': name } : options;
      let child = this.children.get(key);
      if (child === undefined) {
        child = { key, leaf: new experimental.LeafLoadBalancer(endpoint, this.childHelper, childOptions, resolutionNote) };
        child.leaf.startConnecting();
      }
      next.set(key, child);
    }
    for (const [key, child] of this.children) if (!next.has(key)) child.leaf.destroy();
    this.children = next;
    this.updating = false;
    this.update();
    return true;
  }

  private update(): void {
    if (this.updating) return;
    const children = [...this.children.values()];
    for (const child of children) if (child.leaf.getConnectivityState() === ConnectivityState.IDLE) child.leaf.exitIdle();
    const ready = children.filter((child) => child.leaf.getConnectivityState() === ConnectivityState.READY);
    const leader = this.config.json.leader === null ? undefined : this.children.get(this.config.json.leader);
    if (ready.length > 0) {
      const followers = ready.filter((child) => child !== leader).map((child) => child.leaf.getPicker());
      const picker = new RoutePicker(
        leader?.leaf.getPicker() ?? null,
        leader?.leaf.getConnectivityState() ?? null,
        followers,
        ready.map((child) => child.leaf.getPicker()),
        new experimental.QueuePicker(this),
      );
      this.publish(ConnectivityState.READY, picker, null);
    } else if (children.some((child) => child.leaf.getConnectivityState() === ConnectivityState.CONNECTING)) {
      this.publish(ConnectivityState.CONNECTING, new experimental.QueuePicker(this), null);
    } else if (children.length > 0) {
      const message = `no member of the cluster is reachable; last error: ${this.lastError ?? 'none'}`;
      this.publish(ConnectivityState.TRANSIENT_FAILURE, new experimental.UnavailablePicker({ details: message, metadata: notSentMetadata() }), message);
    } else {
      this.publish(ConnectivityState.IDLE, new experimental.QueuePicker(this), null);
    }
  }

  private publish(state: ConnectivityState, picker: Picker, errorMessage: string | null): void {
    this.state = state;
    this.helper.updateState(state, picker, errorMessage);
  }

  exitIdle(): void {
    for (const child of this.children.values()) child.leaf.exitIdle();
  }

  resetBackoff(): void {
    // The children's pick_first balancers keep their own backoff.
  }

  destroy(): void {
    for (const child of this.children.values()) child.leaf.destroy();
    this.children.clear();
  }

  getTypeName(): string {
    return ROUTE_POLICY;
  }

  /** The policy's state (for tests and debugging). */
  get connectivityState(): ConnectivityState {
    return this.state;
  }
}

let registered = false;

/** Registers the policy with grpc-js (once per process). */
export function registerRoutePolicy(): void {
  if (registered) return;
  registered = true;
  experimental.registerLoadBalancerType(ROUTE_POLICY, RouteBalancer, RouteConfig);
}
