/**
 * An annal node: config → CommitLog → gRPC server → gossip membership. Start-up order: check the
 * data dir, open and recover the log (logging what recovery did), bind the RPC port, join the
 * gossip cluster on `bindAddr` with the `rpc_addr` tag (so nobody learns of a node that cannot
 * serve yet), then report SERVING: a port that cannot be bound fails start-up before health or
 * the log says the node serves. Shutdown order is the reverse: leave the cluster first (others
 * record us as left, not failed, and stop routing to us), then health NOT_SERVING and stop
 * accepting, end streams and finish in-flight calls (the server), then close the log, which
 * flushes and fsyncs what it has. Raft joins here later, through gossip.ts's ClusterHooks.
 *
 * Security: with `security` of type 'mtls' the ACL interceptor joins the server's chain
 * (after the caller's interceptors, so telemetry also sees denied calls) and auth's mTLS listener
 * serves the port instead of a grpc-js bind; `reloadSecurity()` re-reads the certificate and ACL
 * files (SIGHUP), which are also watched. Shutdown stops that listener before the server drains.
 */
import { mkdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { ServerCredentials, ServerInterceptor } from '@grpc/grpc-js';
import { NodeSecurityRuntime, type NodeSecurity } from '../auth/index.js';
import { JoinFailedError, type Membership } from '../membership/index.js';
import { LogServer, MeteredLog, type ServiceLogger } from '../server/index.js';
import { CommitLog, DEFAULT_LOG_CONFIG, FRAME_HEADER_BYTES, formatFsyncPolicy, type LogConfig } from '../storage/index.js';
import type { Telemetry } from '../telemetry/index.js';
import { AnnalError, InvalidArgumentError, UnavailableError } from '../util/index.js';
import { adminMembers, startGossip, type GossipConfig, type GossipLogger } from './gossip.js';

export interface AgentLogger extends ServiceLogger {
  debug(object: object, message: string): void;
  /** A logger whose lines carry `fields` (pino's child); gossip logs under `component: 'membership'`. */
  child?(fields: object): GossipLogger;
}

export interface AgentConfig {
  /** Directory holding this node's data; the commit log lives in `<dataDir>/log`. */
  dataDir: string;
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
    readonly log: CommitLog,
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
    // Storage metrics exist only once the log is open; fsync timings reach them through this slot.
    let recordSync: ((event: { durationMs: number }) => void) | undefined;
    const log = await CommitLog.open(join(config.dataDir, 'log'), {
      maxRecordBytes: config.maxRecordBytes,
      onSync: (event) => recordSync?.(event),
      ...config.log,
    });
    for (const action of log.recovery.actions) logger.warn({ action }, 'log recovery');
    logger.info(
      {
        dataDir: config.dataDir,
        segments: log.recovery.segmentCount,
        lowestOffset: log.lowestOffset(),
        nextOffset: log.nextOffset(),
        fsync: formatFsyncPolicy(log.config.fsync),
      },
      'log opened',
    );
    const security =
      config.security?.type === 'mtls' ? await NodeSecurityRuntime.start({ security: config.security, logger }).catch(async (error: unknown) => {
        await log.close();
        throw error;
      }) : undefined;
    const interceptors = [...(config.interceptors ?? []), ...(security === undefined ? [] : [security.interceptor])];
    const { telemetry } = config;
    // Admin.GetMembers reads the membership, which starts only after the server listens.
    let membership: Membership | undefined;
    const storageMetrics = telemetry?.metricsEnabled ? telemetry.storageMetrics(() => log) : undefined;
    if (storageMetrics) recordSync = (event) => storageMetrics.fsyncDurationSeconds.record(event.durationMs / 1000);
    const server = new LogServer({
      log: storageMetrics ? new MeteredLog(log, storageMetrics) : log,
      ...(telemetry !== undefined ? { telemetry } : {}),
      nodeName: config.nodeName,
      // A wildcard bind address is no address to give clients: advertise the host name instead.
      ...(isWildcard(host) ? { advertiseHost: hostname() } : {}),
      maxRecordBytes: config.maxRecordBytes,
      logger,
      members: () => (membership === undefined ? [] : adminMembers(membership)),
      ...(config.shutdownTimeoutMs !== undefined ? { shutdownTimeoutMs: config.shutdownTimeoutMs } : {}),
      ...(config.credentials !== undefined ? { credentials: config.credentials } : {}),
      ...(interceptors.length > 0 ? { interceptors } : {}),
    });
    const undo = async (): Promise<void> => {
      security?.close();
      await server.shutdown();
      await log.close();
    };
    const rpcAddress = await listenRpc(server, security, host, config.rpcPort).catch(async (error: unknown) => {
      await undo();
      throw error;
    });
    if (config.gossip !== undefined) {
      membership = await joinCluster(config, config.gossip, advertisedRpcAddress(host, rpcAddress)).catch(async (error: unknown) => {
        await undo();
        throw error;
      });
    }
    server.setServing(true);
    logger.info({ rpcAddress, nodeName: config.nodeName }, 'serving log.v1.Log');
    return new Agent(config, log, server, rpcAddress, security, membership);
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
    if (this.membership !== undefined) {
      logger.info({}, 'shutting down: leaving the cluster');
      // A failed leave must not keep the server and log from closing: others then see us fail.
      await this.membership.leave().catch((error: unknown) => logger.warn({ err: String(error) }, 'leaving the cluster failed'));
    }
    logger.info({}, 'shutting down: no new calls; ending streams');
    this.security?.close();
    await this.server.shutdown();
    await this.log.close();
    logger.info({ nextOffset: this.log.nextOffset() }, 'log closed; shutdown complete');
  }
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
async function joinCluster(config: AgentConfig, gossip: GossipConfig, rpcAddr: string): Promise<Membership> {
  try {
    return await startGossip({
      nodeName: config.nodeName,
      bindAddr: config.bindAddr,
      rpcAddr,
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
