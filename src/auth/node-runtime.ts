/**
 * A node's security at run time, for the agent: the ACL (its interceptor goes into the gRPC
 * server's chain), the mTLS listener in front of that server, the peer credentials for
 * server-to-server calls, and one `reload()` for SIGHUP. Built from a `NodeSecurity` of type
 * 'mtls' (node-security.ts); an `--insecure` node has none of this.
 *
 * Order: `start` (ACL and peer files checked; throws on bad files) → build the gRPC server with
 * `interceptor` → `listen` → ... → `close` (stop watching and accepting) → the server's shutdown.
 */
import type { ChannelCredentials, Server as GrpcServer, ServerInterceptor } from '@grpc/grpc-js';
import { assert } from '../util/index.js';
import type { MethodPermission } from './acl-interceptor.js';
import type { ReloadOutcome } from './file-reloader.js';
import type { AuthLogger } from './logger.js';
import type { NodeSecurity } from './node-security.js';
import { PeerCredentials } from './peer-credentials.js';
import { AclEnforcement, TlsServing } from './secure-serving.js';

export interface NodeSecurityRuntimeOptions {
  security: Extract<NodeSecurity, { type: 'mtls' }>;
  logger: AuthLogger;
  /** Extra method → action entries (a Raft or admin service). */
  methodActions?: ReadonlyMap<string, MethodPermission>;
  /** Stat-polling fallback of the file watchers. Default 2000 ms. */
  pollIntervalMs?: number;
}

export class NodeSecurityRuntime {
  private tls: TlsServing | undefined;

  private constructor(
    private readonly options: NodeSecurityRuntimeOptions,
    private readonly acl: AclEnforcement,
    private readonly peer: PeerCredentials | undefined,
  ) {}

  static async start(options: NodeSecurityRuntimeOptions): Promise<NodeSecurityRuntime> {
    const timing = options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs };
    const acl = await AclEnforcement.start({
      files: options.security.acl,
      logger: options.logger,
      ...(options.methodActions === undefined ? {} : { methodActions: options.methodActions }),
      ...timing,
    });
    let peer: PeerCredentials | undefined;
    if (options.security.peer !== undefined) {
      peer = await PeerCredentials.start({ files: options.security.peer, logger: options.logger, ...timing }).catch((error: unknown) => {
        acl.close();
        throw error;
      });
    }
    return new NodeSecurityRuntime(options, acl, peer);
  }

  /** The ACL interceptor, for the gRPC server's interceptor chain. */
  get interceptor(): ServerInterceptor {
    return this.acl.interceptor;
  }

  /** Client credentials for calls to other nodes (undefined without --peer-tls-* files). */
  get peerCredentials(): ChannelCredentials | undefined {
    return this.peer?.credentials;
  }

  /** Serves `grpcServer` with mutual TLS on host:port (0: a free port); resolves with the port. */
  async listen(grpcServer: GrpcServer, host: string, port: number): Promise<number> {
    assert(this.tls === undefined, 'NodeSecurityRuntime.listen called twice');
    this.tls = await TlsServing.start({
      grpcServer,
      host,
      port,
      files: this.options.security.server,
      logger: this.options.logger,
      ...(this.options.pollIntervalMs === undefined ? {} : { pollIntervalMs: this.options.pollIntervalMs }),
    });
    return this.tls.port;
  }

  /** Re-reads every file now (SIGHUP); bad files are logged and the ones in force stay. */
  async reload(): Promise<{ tls: ReloadOutcome | undefined; acl: ReloadOutcome; peer: ReloadOutcome | undefined }> {
    const [tls, acl, peer] = await Promise.all([this.tls?.reload(), this.acl.reload(), this.peer?.reload()]);
    return { tls, acl, peer };
  }

  /** Stops watching files and accepting connections; open sessions end with the gRPC server. */
  close(): void {
    this.tls?.close();
    this.acl.close();
    this.peer?.close();
  }
}
