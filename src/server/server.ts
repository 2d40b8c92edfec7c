/**
 * The gRPC server of one node: `log.v1.Log` over a ServedLog, `annal.admin.v1.Admin` (GetMembers
 * from the `members` option; always registered, an empty list without it), `grpc.health.v1.Health`
 * (NOT_SERVING until `start` has bound the port and again from the start of shutdown) and server
 * reflection (v1 and v1alpha, from the committed descriptor set proto/descriptor.binpb, which
 * holds both annal services).
 *
 * Plaintext serving (`start` without `credentials`) goes through auth's ConnectionGate: a net.Server
 * accepts the connections, caps them (in total and per remote address), closes any that has not
 * sent the HTTP/2 preface within `connectionLimits.prefaceTimeoutMs`, and hands the rest to
 * grpc-js (`createConnectionInjector`); grpc-js's own bind has no such bounds. The mTLS listener
 * in auth applies the same gate. HTTP/2 connections without calls for `idleConnectionTimeoutMs`
 * are closed with a GOAWAY (clients reconnect on their next call).
 *
 * Shutdown order: health NOT_SERVING → stop accepting connections and calls (HTTP/2 GOAWAY) →
 * end tailing ConsumeStreams and stop produce streams after answering their in-flight appends →
 * wait for the remaining calls up to `shutdownTimeoutMs`, then cancel what is left. The log is
 * not closed here: its owner (the agent) closes it after the server has stopped.
 */
import { readFileSync } from 'node:fs';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { Server, ServerCredentials, type ChannelOptions, type ServerInterceptor, type ServerOptions } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import {
  ConnectionGate,
  createWideWindowInjector,
  DEFAULT_CONNECTION_LIMITS,
  HTTP2_RECEIVE_WINDOW_BYTES,
  RateLimitedLog,
  type ConnectionLimits,
} from '../auth/index.js';
import { AdminService } from '../gen/annal/admin/v1/admin.js';
import type { Server as WireServer } from '../gen/log/v1/log.js';
import { measureMessageSizes, spanAround, type Telemetry } from '../telemetry/index.js';
import { assert } from '../util/index.js';
import { adminHandlers, type AdminMember } from './admin-service.js';
import { ServedLogService } from './codec.js';
import { HealthWatches } from './health-watches.js';
import { LogServiceHandlers, type ServiceLogger } from './log-service.js';
import type { ServedLog } from './served-log.js';

export const LOG_SERVICE_NAME = 'log.v1.Log';

const MIB = 1024 * 1024;

export interface LogServerOptions {
  log: ServedLog;
  /** This node's id in GetServers. */
  nodeName: string;
  /** Address GetServers reports for this node; defaults to the address `start` bound. */
  advertiseAddr?: string;
  /** Host GetServers reports with the bound port, when `advertiseAddr` is not given. */
  advertiseHost?: string;
  /** Largest record value accepted, in bytes (INVALID_ARGUMENT above it). Default 1 MiB. */
  maxRecordBytes?: number;
  /** Most records in one ProduceBatch request. Default 65536. */
  maxBatchRecords?: number;
  /**
   * Largest request message grpc-js accepts, in bytes; larger ones get RESOURCE_EXHAUSTED from
   * grpc-js itself. Default: max(16 MiB, 2 × maxRecordBytes) + 64 KiB, so a record somewhat over
   * maxRecordBytes still reaches the service and gets its INVALID_ARGUMENT message.
   */
  maxRequestBytes?: number;
  /** Appends in flight per ProduceStream/ProduceBatch call before reading pauses. Default 4096. */
  maxInFlightPerStream?: number;
  /** Value bytes in flight per ProduceStream/ProduceBatch call before reading pauses. Default 64 MiB. */
  maxInFlightBytesPerStream?: number;
  /** Value bytes per ConsumeStream response (one larger record is still sent alone). Default 1 MiB. */
  maxResponseBytes?: number;
  /** Upper bound on a ConsumeStream's max_batch. Default 8192. */
  maxConsumeBatchRecords?: number;
  /** How long shutdown waits for calls to finish before cancelling them. Default 10 s. */
  shutdownTimeoutMs?: number;
  /**
   * Logs, metrics and traces (telemetry/). Its interceptor runs before `interceptors` on every
   * call (access log, RPC metrics, the server span that handlers hang storage spans on), and
   * `interceptors` (access control) then run inside an `authorize` child span. Default: off.
   */
  telemetry?: Telemetry;
  /** The cluster GetServers reports (a replicated log's configuration); default: this node as leader. */
  servers?: () => WireServer[];
  /** The gossip members Admin.GetMembers reports (the agent's membership); none when absent. */
  members?: () => readonly AdminMember[];
  /**
   * Credentials for grpc-js's own bind (benchmarks, tests). Without them `start` serves
   * plaintext through the connection gate (see the top of this file).
   */
  credentials?: ServerCredentials;
  /** Bounds on plaintext connections; defaults in auth's DEFAULT_CONNECTION_LIMITS. */
  connectionLimits?: Partial<ConnectionLimits>;
  /** An HTTP/2 connection with no call open for this long is closed (GOAWAY). Default 5 min. */
  idleConnectionTimeoutMs?: number;
  /** grpc-js server interceptors run on every call (access control), first to last, after telemetry's. */
  interceptors?: ServerInterceptor[];
  logger: ServiceLogger;
}

export class LogServer {
  private readonly grpcServer: Server;
  private readonly service: LogServiceHandlers;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', [LOG_SERVICE_NAME]: 'NOT_SERVING' });
  private readonly healthWatches = new HealthWatches();
  private healthServing = false;
  private storageFailed = false;
  private boundAddress: string | undefined;
  private stopping: Promise<void> | undefined;
  /** The plaintext listener and its gate, when `start` serves without credentials. */
  private plaintext: { tcpServer: TcpServer; gate: ConnectionGate } | undefined;

  constructor(private readonly options: LogServerOptions) {
    const maxRecordBytes = options.maxRecordBytes ?? MIB;
    assert(Number.isSafeInteger(maxRecordBytes) && maxRecordBytes > 0, 'maxRecordBytes must be a positive integer');
    const maxRequestBytes = options.maxRequestBytes ?? Math.max(16 * MIB, 2 * maxRecordBytes) + 64 * 1024;
    const observing = options.telemetry?.serverInterceptors() ?? [];
    const guards = options.interceptors ?? [];
    const channelOptions: ChannelOptions & ServerOptions = {
      interceptors: [
        ...observing,
        ...(observing.length > 0 && guards.length > 0 ? spanAround('authorize', guards) : guards),
        this.healthWatches.interceptor,
      ],
      'grpc.max_receive_message_length': maxRequestBytes,
      'grpc.max_send_message_length': -1,
      // The HTTP/2 receive window. grpc-js 1.14 servers ignore this (grpc-node PR #3058 adds it),
      // so both listeners widen their sessions themselves (auth/receive-window.ts). The client
      // sets the same window for consumers.
      'grpc-node.flow_control_window': HTTP2_RECEIVE_WINDOW_BYTES,
      'grpc.max_connection_idle_ms': options.idleConnectionTimeoutMs ?? 5 * 60_000,
    };
    this.grpcServer = new Server(channelOptions);
    this.service = new LogServiceHandlers({
      log: options.log,
      maxRecordBytes,
      maxBatchRecords: options.maxBatchRecords ?? 65536,
      maxInFlightPerStream: options.maxInFlightPerStream ?? 4096,
      maxInFlightBytesPerStream: options.maxInFlightBytesPerStream ?? 64 * MIB,
      consume: {
        readChunkRecords: 256,
        maxBatchRecords: options.maxConsumeBatchRecords ?? 8192,
        maxResponseBytes: options.maxResponseBytes ?? MIB,
      },
      servers: options.servers ?? (() => this.servers()),
      logger: options.logger,
    });
    // Sizes are measured only when the telemetry interceptor reads them.
    this.grpcServer.addService(observing.length > 0 ? measureMessageSizes(ServedLogService) : ServedLogService, this.service.handlers());
    this.grpcServer.addService(observing.length > 0 ? measureMessageSizes(AdminService) : AdminService, adminHandlers(options.members));
    this.health.addToServer(this.grpcServer);
    new ReflectionService(loadDescriptorSet()).addToServer(this.grpcServer);
  }

  /** Binds `host:port` (port 0 picks a free one), then reports SERVING. Returns the bound address. */
  async start(host: string, port: number): Promise<string> {
    const address = await this.listen(host, port);
    this.setServing(true);
    return address;
  }

  /**
   * Binds `host:port` and answers calls, but health stays NOT_SERVING until `setServing(true)`:
   * for an owner that has more ports to bind before the node counts as up. Returns the address.
   */
  async listen(host: string, port: number): Promise<string> {
    assert(this.boundAddress === undefined, 'LogServer is already listening');
    const credentials = this.options.credentials;
    const boundPort =
      credentials === undefined
        ? await this.listenPlaintext(host, port)
        : await new Promise<number>((resolve, reject) => {
            this.grpcServer.bindAsync(`${formatHost(host)}:${port}`, credentials, (error, actualPort) =>
              error ? reject(error) : resolve(actualPort),
            );
          });
    this.boundAddress = `${formatHost(host)}:${boundPort}`;
    return this.boundAddress;
  }

  /** Connections the plaintext listener has open (tests of the connection bounds). */
  get openConnectionCount(): number {
    return this.plaintext?.gate.openCount ?? 0;
  }

  private async listenPlaintext(host: string, port: number): Promise<number> {
    const injector = createWideWindowInjector(this.grpcServer, ServerCredentials.createInsecure());
    const log = new RateLimitedLog(this.options.logger, { linesPerWindowMax: 20, windowMs: 10_000 });
    const gate = new ConnectionGate({ limits: { ...DEFAULT_CONNECTION_LIMITS, ...this.options.connectionLimits }, log, tls: false });
    const tcpServer = createTcpServer();
    tcpServer.on('connection', (socket: Socket) => {
      socket.on('error', () => {
        // grpc-js's session reports errors; without this handler an ECONNRESET would be thrown.
      });
      if (this.stopping !== undefined || !gate.accept(socket)) {
        socket.destroy();
        return;
      }
      gate.awaitPreface(socket, () => injector.injectConnection(socket));
    });
    await new Promise<void>((resolve, reject) => {
      tcpServer.once('error', reject);
      tcpServer.listen(port, host, () => {
        tcpServer.off('error', reject);
        resolve();
      });
    });
    tcpServer.on('error', (error) => this.options.logger.error({ error: error.message }, 'RPC listener error'));
    this.plaintext = { tcpServer, gate };
    return (tcpServer.address() as AddressInfo).port;
  }

  /**
   * The grpc-js server, for a listener that hands it connections itself (auth's mTLS listener
   * uses `createConnectionInjector`); such a caller calls `serving(address)` instead of `start`.
   */
  get grpc(): Server {
    return this.grpcServer;
  }

  /** Records the address an external listener serves on, and reports SERVING. */
  serving(address: string): void {
    this.useAddress(address);
    this.setServing(true);
  }

  /** Records the address an external listener serves on; health stays as it is (see `listen`). */
  useAddress(address: string): void {
    assert(this.boundAddress === undefined, 'LogServer is already listening');
    this.boundAddress = address;
  }

  /** The bound `host:port`; throws before `start`. */
  get address(): string {
    assert(this.boundAddress !== undefined, 'LogServer is not started');
    return this.boundAddress;
  }

  get port(): number {
    return Number(this.address.slice(this.address.lastIndexOf(':') + 1));
  }

  /** Open streaming calls (for tests: a cancelled stream must not stay registered). */
  get openStreamCount(): number {
    return this.service.openStreamCount;
  }

  setServing(serving: boolean): void {
    this.healthServing = serving;
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', status);
    this.health.setStatus(LOG_SERVICE_NAME, serving && !this.storageFailed ? 'SERVING' : 'NOT_SERVING');
  }

  /**
   * Marks the log's storage as failed (it takes no appends) or recovered: while failed, health
   * answers NOT_SERVING for `log.v1.Log`, so load balancers send produces elsewhere; `""` keeps
   * following setServing, since the process still answers reads of what it holds.
   */
  setStorageFailed(failed: boolean): void {
    this.storageFailed = failed;
    this.health.setStatus(LOG_SERVICE_NAME, this.healthServing && !failed ? 'SERVING' : 'NOT_SERVING');
  }

  /** Graceful shutdown (see the top of this file). Idempotent. */
  shutdown(): Promise<void> {
    this.stopping ??= this.stop();
    return this.stopping;
  }

  private async stop(): Promise<void> {
    // NOT_SERVING goes out on every health Watch (written synchronously), then the watches end so
    // that they do not hold the graceful shutdown open.
    this.setServing(false);
    this.healthWatches.endAll();
    this.plaintext?.tcpServer.close();
    this.plaintext?.gate.closePending();
    const graceful = new Promise<void>((resolve) => this.grpcServer.tryShutdown(() => resolve()));
    this.service.drain();
    const timeoutMs = this.options.shutdownTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    const forced = await Promise.race([graceful.then(() => false), timedOut]);
    clearTimeout(timer);
    if (forced) {
      this.options.logger.warn({ timeoutMs }, 'calls still open after the shutdown timeout; cancelling them');
      this.grpcServer.forceShutdown();
    }
  }

  private servers(): WireServer[] {
    const { advertiseAddr, advertiseHost } = this.options;
    const bound = this.boundAddress;
    const rpcAddr =
      advertiseAddr ?? (advertiseHost !== undefined && bound !== undefined ? `${formatHost(advertiseHost)}:${this.port}` : (bound ?? ''));
    return [{ id: this.options.nodeName, rpcAddr, isLeader: true, role: 'leader', isVoter: true, matchIndex: 0 }];
  }
}

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** proto/descriptor.binpb (built by `npm run proto`), found from dist/src/server/ or src/server/. */
function loadDescriptorSet() {
  const url = new URL('../../../proto/descriptor.binpb', import.meta.url);
  let bytes: Buffer;
  try {
    bytes = readFileSync(url);
  } catch {
    bytes = readFileSync(new URL('../../proto/descriptor.binpb', import.meta.url));
  }
  return loadFileDescriptorSetFromBuffer(bytes);
}
