/**
 * What a node needs to serve gRPC with mutual TLS and the ACL, built from file paths, in two
 * parts that the agent wires at different moments:
 * - `AclEnforcement`: the Casbin authorizer, its interceptor (installed when the gRPC server is
 *   built, after telemetry's so that denied calls are counted too) and a reloader of the model
 *   and policy files;
 * - `TlsServing`: the mTLS listener in front of an existing grpc-js server, and a reloader of
 *   the certificate, key and CA files.
 * Replacing any of these files takes effect for new connections (TLS) and new calls (ACL)
 * without a restart; `reload()` is the SIGHUP hook. Start-up is strict (bad files throw, the
 * agent exits with the message); at run time a bad replacement is logged and the old one stays.
 * `SecureServing` combines both for a server that has no other interceptors (tests, tools).
 */
import type { Server as GrpcServer, ServerInterceptor } from '@grpc/grpc-js';
import type { Enforcer } from 'casbin';
import { createAclInterceptor, LOG_METHOD_ACTIONS, type MethodPermission } from './acl-interceptor.js';
import { Authorizer, loadEnforcer, type AclFiles } from './authorizer.js';
import { FileReloader, type ReloadOutcome } from './file-reloader.js';
import type { AuthLogger } from './logger.js';
import { MtlsListener } from './mtls-listener.js';
import { loadTlsMaterial, type TlsFiles, type TlsMaterial } from './tls-material.js';

interface ReloadTiming {
  /** Stat-polling interval of the reloaders, a fallback to fs.watch. Default 2000 ms. */
  pollIntervalMs?: number;
}

export interface AclEnforcementOptions extends ReloadTiming {
  files: AclFiles;
  logger: AuthLogger;
  /** Extra method → action entries (e.g. a Raft service needing `replicate`), added to log.v1.Log's. */
  methodActions?: ReadonlyMap<string, MethodPermission>;
}

export class AclEnforcement {
  private constructor(
    readonly authorizer: Authorizer,
    readonly interceptor: ServerInterceptor,
    private readonly reloader: FileReloader<Enforcer>,
  ) {}

  static async start(options: AclEnforcementOptions): Promise<AclEnforcement> {
    let authorizer: Authorizer | undefined;
    const reloader = await FileReloader.start({
      name: 'ACL',
      paths: [options.files.modelFile, options.files.policyFile],
      load: () => loadEnforcer(options.files),
      apply: (enforcer) => {
        if (authorizer === undefined) authorizer = new Authorizer(enforcer);
        else authorizer.replace(enforcer);
      },
      logger: options.logger,
      ...timing(options),
    });
    const methodActions = new Map([...LOG_METHOD_ACTIONS, ...(options.methodActions ?? [])]);
    const interceptor = createAclInterceptor({ authorizer: authorizer!, methodActions, logger: options.logger });
    return new AclEnforcement(authorizer!, interceptor, reloader);
  }

  reload(): Promise<ReloadOutcome> {
    return this.reloader.reload();
  }

  close(): void {
    this.reloader.close();
  }
}

export interface TlsServingOptions extends ReloadTiming {
  grpcServer: GrpcServer;
  host: string;
  /** 0 picks a free port. */
  port: number;
  files: TlsFiles;
  logger: AuthLogger;
  /** Interceptors for calls on this listener only (SecureServing puts the ACL here). */
  interceptors?: ServerInterceptor[];
  handshakeTimeoutMs?: number;
}

export class TlsServing {
  private constructor(
    readonly listener: MtlsListener,
    private readonly reloader: FileReloader<TlsMaterial>,
  ) {}

  static async start(options: TlsServingOptions): Promise<TlsServing> {
    const initialMaterial = await loadTlsMaterial(options.files);
    const listener = await MtlsListener.listen({
      grpcServer: options.grpcServer,
      host: options.host,
      port: options.port,
      material: initialMaterial,
      logger: options.logger,
      ...(options.interceptors === undefined ? {} : { interceptors: options.interceptors }),
      ...(options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: options.handshakeTimeoutMs }),
    });
    let initial = true;
    const reloader = await FileReloader.start({
      name: 'server TLS certificate',
      paths: [options.files.certFile, options.files.keyFile, options.files.caFile],
      load: () => (initial ? Promise.resolve(initialMaterial) : loadTlsMaterial(options.files)),
      apply: (material) => {
        if (!initial) listener.setMaterial(material);
        initial = false;
      },
      logger: options.logger,
      ...timing(options),
    }).catch((error: unknown) => {
      listener.close();
      throw error;
    });
    options.logger.info(
      { port: listener.port, subject: initialMaterial.commonName, validTo: initialMaterial.validTo.toISOString() },
      'serving with mutual TLS',
    );
    return new TlsServing(listener, reloader);
  }

  get port(): number {
    return this.listener.port;
  }

  reload(): Promise<ReloadOutcome> {
    return this.reloader.reload();
  }

  /** Stops watching files and accepting connections (open sessions end with the gRPC server). */
  close(): void {
    this.reloader.close();
    this.listener.close();
  }
}

export interface SecureServingOptions extends ReloadTiming {
  grpcServer: GrpcServer;
  host: string;
  port: number;
  tls: TlsFiles;
  acl: AclFiles;
  logger: AuthLogger;
  methodActions?: ReadonlyMap<string, MethodPermission>;
  handshakeTimeoutMs?: number;
}

export interface ReloadOutcomes {
  tls: ReloadOutcome;
  acl: ReloadOutcome;
}

/** mTLS and the ACL on one listener, for a grpc-js server without other interceptors. */
export class SecureServing {
  private constructor(
    readonly acl: AclEnforcement,
    readonly tls: TlsServing,
  ) {}

  static async start(options: SecureServingOptions): Promise<SecureServing> {
    const acl = await AclEnforcement.start({
      files: options.acl,
      logger: options.logger,
      ...(options.methodActions === undefined ? {} : { methodActions: options.methodActions }),
      ...timing(options),
    });
    const tls = await TlsServing.start({
      grpcServer: options.grpcServer,
      host: options.host,
      port: options.port,
      files: options.tls,
      logger: options.logger,
      interceptors: [acl.interceptor],
      ...(options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: options.handshakeTimeoutMs }),
      ...timing(options),
    }).catch((error: unknown) => {
      acl.close();
      throw error;
    });
    return new SecureServing(acl, tls);
  }

  get port(): number {
    return this.tls.port;
  }

  get authorizer(): Authorizer {
    return this.acl.authorizer;
  }

  /** Re-reads the TLS and ACL files now (SIGHUP); a bad file is logged and the old one kept. */
  async reload(): Promise<ReloadOutcomes> {
    const [tls, acl] = await Promise.all([this.tls.reload(), this.acl.reload()]);
    return { tls, acl };
  }

  close(): void {
    this.tls.close();
    this.acl.close();
  }
}

function timing(options: ReloadTiming): ReloadTiming {
  return options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs };
}
