/**
 * An annal node: config → Raft storage on the commit log → replicated log → gRPC server (the
 * Log and Admin services and the Raft peer service on one port) → gossip membership. Start-up
 * order: check the data dir, open and recover the Raft storage (logging what recovery did, and
 * bootstrapping a one-voter cluster if asked on a new data dir), bind the RPC port, start Raft,
 * join the gossip cluster on `bindAddr` with the `rpc_addr`, `raft_id` and `cluster_id` tags, then
 * report SERVING: a port that cannot be bound fails start-up before health or the log says the
 * node serves. Gossip drives the Raft configuration from then on
 * (replication/cluster-membership.ts). Shutdown order is the reverse: a leader first hands
 * leadership to an up-to-date follower (so clients see no election timeout), then the node leaves
 * gossip (the leader removes it from the configuration), health NOT_SERVING and stop accepting,
 * end streams and finish in-flight calls (the server), then close Raft and the log, which flushes
 * and fsyncs what it has.
 *
 * A replica whose Raft stopped (a storage write failed: a full disk, an I/O error) is reopened in
 * place once that works again (replication/replica-keeper.ts): closed, its data dir opened afresh
 * (recovery re-validates the files as after a crash) with backoff, and the new replica served.
 *
 * Security: with `security` of type 'mtls' the ACL interceptor joins the server's chain (after the
 * caller's interceptors, so telemetry also sees denied calls; the Raft service needs `replicate`)
 * and auth's mTLS listener serves the port instead of a grpc-js bind; peers are called with the
 * `--peer-tls-*` certificate. `reloadSecurity()` re-reads the certificate and ACL files (SIGHUP),
 * which are also watched. Shutdown stops that listener before the server drains.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { credentials as grpcCredentials, type ServerCredentials, type ServerInterceptor } from '@grpc/grpc-js';
import { NodeSecurityRuntime, type NodeSecurity } from '../auth/index.js';
import { JoinFailedError, type Member, type Membership } from '../membership/index.js';
import { CLUSTER_ID_TAG, RAFT_ID_TAG, RAFT_METHOD_ACTIONS, RaftPeerService, Replica, ReplicaKeeper, type RaftTiming, type RetentionPolicy } from '../replication/index.js';
import { LogServer, MeteredLog, type ServedLog, type ServiceLogger } from '../server/index.js';
import { DEFAULT_LOG_CONFIG, FRAME_HEADER_BYTES, formatFsyncPolicy, type LogConfig } from '../storage/index.js';
import type { Telemetry } from '../telemetry/index.js';
import { AnnalError, InvalidArgumentError, UnavailableError } from '../util/index.js';
import { adminMembers, memberAddr, startGossip, type GossipConfig, type GossipLogger } from './gossip.js';
import { exportRaftMetrics, replicaInstruments } from './raft-metrics.js';

export interface AgentLogger extends ServiceLogger {
  debug(object: object, message: string): void;
  /** A logger whose lines carry `fields` (pino's child); gossip logs under `component: 'membership'`. */
  child?(fields: object): GossipLogger;
}

export interface AgentConfig {
  /** Directory holding this node's data; the Raft log (the commit log) lives in `<dataDir>/raft`. */
  dataDir: string;
  /**
   * Start a new one-voter cluster if the data dir holds none (ignored on one that does). Default:
   * true when there are no gossip start-join addresses (a node on its own), false otherwise.
   */
  bootstrap?: boolean;
  /** Remove a voter that gossip reports failed for this long, never below 3 voters. Default: never. */
  removeFailedAfterMs?: number;
  /** How much of the log the cluster keeps (whole segments, the same on every replica). Default: all. */
  retention?: RetentionPolicy;
  /** Raft timing (replication/replica.ts DEFAULT_RAFT_TIMING). */
  raftTiming?: Partial<RaftTiming>;
  /** How long a leader's shutdown waits for leadership to move to a follower. Default 3000 ms. */
  handOffTimeoutMs?: number;
  nodeName: string;
  /** Gossip address `host:port` (UDP and TCP; port 0 picks one); the RPC server listens on the same host. */
  bindAddr: string;
  /**
   * Gossip membership on `bindAddr` (start-join addresses, key, timing profile). Undefined: no
   * gossip (a lone node; Admin.GetMembers then lists nobody). `annal agent` always sets it.
   */
  gossip?: GossipConfig;
  /** RPC port; 0 picks a free one. */
  rpcPort: number;
  /** Storage settings (fsync policy, segment limits, initial offset). */
  log: Partial<LogConfig>;
  /** Largest record value the server accepts, in bytes. */
  maxRecordBytes: number;
  /** How long shutdown waits for open calls before cancelling them. */
  shutdownTimeoutMs?: number;
  /**
   * Mutual TLS and the ACL from files, or `{ type: 'insecure' }` (plaintext, no ACL). Undefined
   * means insecure too, or grpc-js `credentials` when given (tests).
   */
  security?: NodeSecurity;
  /** grpc-js server credentials for a plain bind when `security` is not mTLS (tests). */
  credentials?: ServerCredentials;
  /** grpc-js server interceptors for every call, before the ACL's. */
  interceptors?: ServerInterceptor[];
  /**
   * Metrics, traces and the access log (telemetry/): its interceptor runs first on every call
   * (so denied calls are logged and counted too) and it gets the storage instruments. The caller
   * owns it: starts it before and shuts it down after the agent. Default: off.
   */
  telemetry?: Telemetry;
  logger: AgentLogger;
}

export class Agent {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: AgentConfig,
    /** The replica the agent serves now: replaced when a stopped one is reopened in place. */
    private readonly keeper: ReplicaKeeper,
    readonly server: LogServer,
    /** The RPC address clients use, `host:port`. */
    readonly rpcAddress: string,
    /** mTLS listener, ACL and peer credentials; undefined for an insecure node. */
    readonly security: NodeSecurityRuntime | undefined,
    /** Gossip membership; undefined when the config has no `gossip`. */
    readonly membership: Membership | undefined,
  ) {}

  static async start(config: AgentConfig): Promise<Agent> {
    const { logger } = config;
    const host = hostOf(config.bindAddr);
    const maxStoreBytes = config.log.maxStoreBytes ?? DEFAULT_LOG_CONFIG.maxStoreBytes;
    if (config.maxRecordBytes > maxStoreBytes - FRAME_HEADER_BYTES) {
      throw new InvalidArgumentError(
        `max record size ${config.maxRecordBytes} bytes does not fit in a segment of ${maxStoreBytes} bytes (${FRAME_HEADER_BYTES} bytes of each record are framing)`,
      );
    }
    prepareDataDir(config.dataDir);
    if (existsSync(join(config.dataDir, 'log')) && !existsSync(join(config.dataDir, 'raft'))) {
      throw new InvalidArgumentError(
        `data dir ${config.dataDir} holds a single-node log (${join(config.dataDir, 'log')}) from an annal without replication; start with another --data-dir (or move that one away)`,
      );
    }
    const security =
      config.security?.type === 'mtls' ? await NodeSecurityRuntime.start({ security: config.security, logger, methodActions: RAFT_METHOD_ACTIONS }) : undefined;
    if (config.security?.type === 'mtls' && security?.peerCredentials === undefined) {
      logger.warn({}, 'no --peer-tls-* files: this node cannot call other nodes (replication and forwarding need a certificate holding `replicate`)');
    }
    // Storage metrics exist only once the log is open; fsync timings and failures reach them through these slots.
    let recordSync: ((event: { durationMs: number }) => void) | undefined;
    let countFailure: (() => void) | undefined;
    let storageFailed = false;
    let markUnhealthy: (() => void) | undefined;
    const onFailure = (error: Error): void => {
      logger.error({ err: error.message, dataDir: config.dataDir }, 'storage failed: the log takes no appends until its storage is recovered');
      storageFailed = true;
      countFailure?.();
      markUnhealthy?.();
    };
    const replicaOptions: Parameters<typeof Replica.open>[0] = {
      dataDir: config.dataDir,
      nodeName: config.nodeName,
      bootstrap: config.bootstrap ?? (config.gossip?.startJoinAddrs.length ?? 0) === 0,
      log: { maxRecordBytes: config.maxRecordBytes, onSync: (event) => recordSync?.(event), onFailure, ...config.log },
      peerCredentials: security?.peerCredentials ?? grpcCredentials.createInsecure(),
      ...(config.removeFailedAfterMs !== undefined ? { removeFailedAfterMs: config.removeFailedAfterMs } : {}),
      ...(config.raftTiming !== undefined ? { timing: config.raftTiming } : {}),
      ...(config.retention !== undefined ? { retention: config.retention } : {}),
      ...(config.telemetry?.metricsEnabled === true ? { metrics: replicaInstruments(config.telemetry) } : {}),
      logger: config.logger.child?.({ component: 'replication' }) ?? config.logger,
    };
    const replica = await Replica.open(replicaOptions).catch((error: unknown) => {
      security?.close();
      throw error;
    });
    const keeper = new ReplicaKeeper(replica, {
      open: () => Replica.open(replicaOptions),
      logger: replicaOptions.logger,
      onReopened: (next, stopped) => {
        storageFailed = false;
        server.setStorageFailed(false);
        if (next.raftId !== stopped.raftId) keeper.onClusterId?.(next.clusterId ?? ''); // rejoined as a new member: new gossip tags
      },
    });
    const log = replica.log;
    logger.info(
      {
        dataDir: config.dataDir,
        raftId: replica.raftId,
        clusterId: replica.clusterId,
        lowestOffset: log.lowestOffset(),
        nextOffset: log.nextOffset(),
        fsync: formatFsyncPolicy({ ...DEFAULT_LOG_CONFIG.fsync, ...config.log.fsync }),
      },
      'log opened',
    );
    const interceptors = [...(config.interceptors ?? []), ...(security === undefined ? [] : [security.interceptor])];
    const { telemetry } = config;
    // Admin.GetMembers reads the membership, which starts only after the server listens.
    let membership: Membership | undefined;
    const storageMetrics = telemetry?.metricsEnabled ? telemetry.storageMetrics(() => keeper.current.storageStats()) : undefined;
    if (storageMetrics) {
      recordSync = (event) => storageMetrics.fsyncDurationSeconds.record(event.durationMs / 1000);
      countFailure = () => storageMetrics.failures++;
    }
    if (telemetry?.metricsEnabled) exportRaftMetrics(telemetry, () => keeper.current);
    const live = currentOf<ServedLog>(() => keeper.current.log);
    const served: ServedLog = storageMetrics ? new MeteredLog(live, storageMetrics) : live;
    const server = new LogServer({
      log: served,
      ...(telemetry !== undefined ? { telemetry } : {}),
      nodeName: config.nodeName,
      // A wildcard bind address is no address to give clients: advertise the host name instead.
      ...(isWildcard(host) ? { advertiseHost: hostname() } : {}),
      maxRecordBytes: config.maxRecordBytes,
      logger,
      servers: () => keeper.current.servers(),
      members: () => (membership === undefined ? [] : adminMembers(membership)),
      ...(config.shutdownTimeoutMs !== undefined ? { shutdownTimeoutMs: config.shutdownTimeoutMs } : {}),
      ...(config.credentials !== undefined ? { credentials: config.credentials } : {}),
      ...(interceptors.length > 0 ? { interceptors } : {}),
    });
    // grpc-js keeps the handler functions it is given: each looks up the current replica per call.
    const peerHandlers = replica.peerHandlers();
    type Handler = (...args: unknown[]) => unknown;
    const liveHandlers = Object.fromEntries(
      Object.keys(peerHandlers).map((name) => [name, (...args: unknown[]) => (keeper.current.peerHandlers() as unknown as Record<string, Handler>)[name]!(...args)]),
    ) as unknown as typeof peerHandlers;
    server.grpc.addService(RaftPeerService, liveHandlers);
    markUnhealthy = () => server.setStorageFailed(true);
    if (storageFailed) markUnhealthy();
    const undo = async (): Promise<void> => {
      security?.close();
      await server.shutdown();
      await keeper.close();
    };
    const rpcAddress = await listenRpc(server, security, host, config.rpcPort).catch(async (error: unknown) => {
      await undo();
      throw error;
    });
    keeper.start(advertisedRpcAddress(host, rpcAddress));
    const onMembers = (members: Member[]): void => {
      keeper.updateMembers(members.map((member) => ({ name: member.name, status: member.status, gossipAddr: memberAddr(member), tags: member.tags })));
    };
    if (config.gossip !== undefined) {
      const rpcAddr = advertisedRpcAddress(host, rpcAddress);
      const tags = (): Record<string, string> => ({
        [RAFT_ID_TAG]: keeper.current.raftId,
        ...(keeper.current.clusterId !== undefined ? { [CLUSTER_ID_TAG]: keeper.current.clusterId } : {}),
      });
      membership = await joinCluster(config, config.gossip, rpcAddr, tags(), onMembers).catch(
        async (error: unknown) => {
          await undo();
          throw error;
        },
      );
      const joined = membership;
      // The join's state exchange has run: another member already using our name shows now.
      const clash = joined.nameClaimedFrom();
      if (clash !== undefined) {
        await joined.shutdown().catch(() => {});
        await undo();
        throw new InvalidArgumentError(
          `node name "${config.nodeName}" is already used by the member at ${clash}: give this node another --node-name (names identify Raft members)`,
        );
      }
      keeper.onClusterId = () => joined.setTags({ ...tags(), rpc_addr: rpcAddr });
      // After a restart, peers known from before rejoin gossip even without --start-join-addrs.
      const known = replica.knownGossipAddrs().filter((address) => !config.gossip!.startJoinAddrs.includes(address));
      if (known.length > 0) {
        membership.join(known).catch((error: unknown) => logger.warn({ err: String(error), addresses: known }, 'could not rejoin known peers by gossip'));
      }
    }
    server.setServing(true);
    logger.info({ rpcAddress, nodeName: config.nodeName }, 'serving log.v1.Log');
    return new Agent(config, keeper, server, rpcAddress, security, membership);
  }

  /** The replica the node serves (a new one after a stopped replica was reopened in place). */
  get replica(): Replica {
    return this.keeper.current;
  }

  /** The log the node serves (the replicated log). */
  get log(): Replica['log'] {
    return this.replica.log;
  }

  /** Re-reads the TLS and ACL files now (SIGHUP); bad files are logged and the old ones stay. */
  async reloadSecurity(): Promise<void> {
    await this.security?.reload();
  }

  /** Graceful shutdown (see the top of this file). Idempotent. */
  shutdown(): Promise<void> {
    this.stopping ??= this.stop();
    return this.stopping;
  }

  private async stop(): Promise<void> {
    const { logger } = this.config;
    const handedOff = await this.replica.handOffLeadership(this.config.handOffTimeoutMs ?? 3000);
    if (handedOff) logger.info({}, 'leadership handed over');
    if (this.membership !== undefined) {
      logger.info({}, 'shutting down: leaving the cluster');
      // A failed leave must not keep the server and log from closing: others then see us fail.
      await this.membership.leave().catch((error: unknown) => logger.warn({ err: String(error) }, 'leaving the cluster failed'));
    }
    logger.info({}, 'shutting down: no new calls; ending streams');
    this.security?.close();
    this.replica.drainPeers();
    await this.server.shutdown();
    const nextOffset = this.log.nextOffset();
    await this.keeper.close();
    logger.info({ nextOffset }, 'log closed; shutdown complete');
  }
}

/**
 * An object whose every property is read from `current()` at the time of use (methods bound to
 * it): the server and the peer service keep one reference while the replica behind it changes.
 */
function currentOf<T extends object>(current: () => T): T {
  return new Proxy({} as T, {
    get(_target, property) {
      const target = current();
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
    has: (_target, property) => Reflect.has(current(), property),
    ownKeys: () => Reflect.ownKeys(current()),
    getOwnPropertyDescriptor: (_target, property) => {
      const descriptor = Reflect.getOwnPropertyDescriptor(current(), property);
      return descriptor === undefined ? undefined : { ...descriptor, configurable: true };
    },
  });
}

/** Binds `server` on `host:port` (through the mTLS listener when secure); returns the bound address. */
async function listenRpc(server: LogServer, security: NodeSecurityRuntime | undefined, host: string, port: number): Promise<string> {
  try {
    if (security === undefined) return await server.listen(host, port);
    const boundPort = await security.listen(server.grpc, host, port);
    const address = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
    server.useAddress(address);
    return address;
  } catch (error) {
    // Bad TLS files already say which file and why; anything else is the port.
    if (error instanceof AnnalError) throw error;
    throw new InvalidArgumentError(`cannot listen on ${host}:${port} (choose another with --rpc-port): ${(error as Error).message}`, { cause: error });
  }
}

/** Gossip on `config.bindAddr` with the `rpc_addr` tag; joins `gossip.startJoinAddrs`. */
async function joinCluster(
  config: AgentConfig,
  gossip: GossipConfig,
  rpcAddr: string,
  extraTags: Record<string, string>,
  onMembers: (members: Member[]) => void,
): Promise<Membership> {
  try {
    return await startGossip({
      nodeName: config.nodeName,
      bindAddr: config.bindAddr,
      rpcAddr,
      extraTags,
      onMembers,
      config: gossip,
      logger: config.logger.child?.({ component: 'membership' }) ?? config.logger,
      telemetry: config.telemetry,
    });
  } catch (error) {
    // JoinFailedError names every address and why, a bad setting names its flag; a bind failure
    // (UnavailableError) gets the address and the flag to change here.
    if (error instanceof JoinFailedError || (error instanceof AnnalError && !(error instanceof UnavailableError))) throw error;
    throw new InvalidArgumentError(`cannot start gossip on ${config.bindAddr} (choose another with --bind-addr): ${(error as Error).message}`, { cause: error });
  }
}

/** The RPC address others should use: GetServers' (the host name in place of a wildcard host). */
function advertisedRpcAddress(host: string, rpcAddress: string): string {
  return isWildcard(host) ? `${hostname()}:${rpcAddress.slice(rpcAddress.lastIndexOf(':') + 1)}` : rpcAddress;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** The host part of `host:port` (IPv6 in brackets). */
export function hostOf(address: string): string {
  const match = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address);
  if (!match) throw new InvalidArgumentError(`invalid address "${address}": expected host:port`);
  return match[1]!;
}

function prepareDataDir(dataDir: string): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(dataDir).isDirectory();
  } catch {
    try {
      mkdirSync(dataDir, { recursive: true });
    } catch (error) {
      throw new InvalidArgumentError(`cannot create data dir ${dataDir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
        cause: error,
      });
    }
    return;
  }
  if (!isDirectory) throw new InvalidArgumentError(`data dir ${dataDir} exists and is not a directory`);
}
