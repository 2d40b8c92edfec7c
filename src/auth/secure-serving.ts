/**
 * Everything a node needs to serve gRPC with mutual TLS and the ACL, built from file paths:
 * the TLS listener (mtls-listener.ts), the ACL interceptor, and a FileReloader each for the TLS
 * files and the ACL files, so that replacing any of them on disk takes effect for new
 * connections (TLS) and new calls (ACL) without a restart. `reload()` is the SIGHUP hook.
 *
 * Start-up is strict: bad files at start throw (the agent exits with the message); at run time a
 * bad replacement is logged and the files in force stay.
 */
import type { Server as GrpcServer } from '@grpc/grpc-js';
import type { Enforcer } from 'casbin';
import { createAclInterceptor, LOG_METHOD_ACTIONS } from './acl-interceptor.js';
import { Authorizer, loadEnforcer, type AclFiles, type Action } from './authorizer.js';
import { FileReloader, type ReloadOutcome } from './file-reloader.js';
import type { AuthLogger } from './logger.js';
import { MtlsListener } from './mtls-listener.js';
import { loadTlsMaterial, type TlsFiles, type TlsMaterial } from './tls-material.js';

export interface SecureServingOptions {
  grpcServer: GrpcServer;
  host: string;
  /** 0 picks a free port. */
  port: number;
  tls: TlsFiles;
  acl: AclFiles;
  logger: AuthLogger;
  /** Extra method → action entries (e.g. a Raft service needing `replicate`), added to log.v1.Log's. */
  methodActions?: ReadonlyMap<string, Action>;
  /** Stat-polling interval of the reloaders, a fallback to fs.watch. Default 2000 ms. */
  pollIntervalMs?: number;
  handshakeTimeoutMs?: number;
}

export interface ReloadOutcomes {
  tls: ReloadOutcome;
  acl: ReloadOutcome;
}

export class SecureServing {
  private constructor(
    readonly listener: MtlsListener,
    readonly authorizer: Authorizer,
    private readonly tlsReloader: FileReloader<TlsMaterial>,
    private readonly aclReloader: FileReloader<Enforcer>,
  ) {}

  static async start(options: SecureServingOptions): Promise<SecureServing> {
    let authorizer: Authorizer | undefined;
    const aclReloader = await FileReloader.start({
      name: 'ACL',
      paths: [options.acl.modelFile, options.acl.policyFile],
      load: () => loadEnforcer(options.acl),
      apply: (enforcer) => {
        if (authorizer === undefined) authorizer = new Authorizer(enforcer);
        else authorizer.replace(enforcer);
      },
      logger: options.logger,
      ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
    });
    const initialMaterial = await loadTlsMaterial(options.tls).catch((error: unknown) => {
      aclReloader.close();
      throw error;
    });
    const methodActions = new Map([...LOG_METHOD_ACTIONS, ...(options.methodActions ?? [])]);
    const listener = await MtlsListener.listen({
      grpcServer: options.grpcServer,
      host: options.host,
      port: options.port,
      material: initialMaterial,
      interceptors: [createAclInterceptor({ authorizer: authorizer!, methodActions, logger: options.logger })],
      logger: options.logger,
      ...(options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: options.handshakeTimeoutMs }),
    }).catch((error: unknown) => {
      aclReloader.close();
      throw error;
    });
    let first = true;
    const tlsReloader = await FileReloader.start({
      name: 'server TLS certificate',
      paths: [options.tls.certFile, options.tls.keyFile, options.tls.caFile],
      load: () => (first ? Promise.resolve(initialMaterial) : loadTlsMaterial(options.tls)),
      apply: (material) => {
        if (!first) listener.setMaterial(material);
        first = false;
      },
      logger: options.logger,
      ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
    });
    return new SecureServing(listener, authorizer!, tlsReloader, aclReloader);
  }

  get port(): number {
    return this.listener.port;
  }

  /** Re-reads the TLS and ACL files now (SIGHUP); a bad file is logged and the old one kept. */
  async reload(): Promise<ReloadOutcomes> {
    const [tls, acl] = await Promise.all([this.tlsReloader.reload(), this.aclReloader.reload()]);
    return { tls, acl };
  }

  /** Stops watching files and accepting connections (open sessions end with the gRPC server). */
  close(): void {
    this.tlsReloader.close();
    this.aclReloader.close();
    this.listener.close();
  }
}
