/**
 * The mutual-TLS front door of a grpc-js server.
 *
 * grpc-js's own TLS port (`bindAsync` with `ServerCredentials.createSsl`) verifies client
 * certificates but keeps its HTTP/2 server private, so a refused handshake leaves no trace, and
 * its certificates only change through a CertificateProvider. Instead this listener owns the TLS
 * server (node:tls) and hands each verified connection to grpc-js through the public
 * `Server.createConnectionInjector`, which runs HTTP/2 and the services on it. That gives:
 * - one log line per refused connection, with the reason (no client certificate, a certificate
 *   from another CA, expired or not yet valid, plaintext, an old TLS version, a handshake that
 *   never finishes), rate-limited so a retrying client cannot flood the log;
 * - certificate rotation for new connections with `setMaterial` (tls.Server.setSecureContext);
 *   connections already open keep their session, so no call is dropped, unless the new CA no
 *   longer vouches for their client certificate: those are closed, one log line each;
 * - TLS 1.2 minimum, TLS 1.3 preferred (Node negotiates the highest both sides support);
 * - the connection bounds of connection-gate.ts: a cap on open connections (in total and per
 *   remote address) and a deadline for the TLS handshake plus the HTTP/2 preface. The TCP
 *   listener is a plain net.Server that hands admitted sockets to the TLS server, so a refused
 *   connection costs no TLS work.
 *
 * Verification: `requestCert: true` with `rejectUnauthorized: false`, then `socket.authorized` is
 * checked on 'secureConnection' and a socket that fails is destroyed before grpc-js sees a byte.
 * This is what Node's TLS server does itself with `rejectUnauthorized: true` (the chain check
 * runs after the handshake, in JavaScript); doing it here keeps `authorizationError`, which says
 * *why* (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...), for the log.
 */
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { createServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { ServerCredentials, experimental, type Server as GrpcServer, type ServerInterceptor } from '@grpc/grpc-js';
import { assert } from '../util/index.js';
import { ConnectionGate, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './connection-gate.js';
import { RateLimitedLog, type AuthLogger } from './logger.js';
import { createWideWindowInjector } from './receive-window.js';
import { caCertificatesOf, type TlsMaterial } from './tls-material.js';

type ConnectionInjector = ReturnType<GrpcServer['createConnectionInjector']>;

export interface MtlsListenerOptions {
  /** The grpc-js server whose services answer on this listener (it needs no bindAsync). */
  grpcServer: GrpcServer;
  host: string;
  /** 0 picks a free port. */
  port: number;
  material: TlsMaterial;
  /** Run on every call of this listener before the handler (the ACL). */
  interceptors?: ServerInterceptor[];
  logger: AuthLogger;
  /**
   * A connection that has not finished its TLS handshake and sent the HTTP/2 preface by then
   * (counted from the TCP accept) is closed. Default: DEFAULT_CONNECTION_LIMITS.prefaceTimeoutMs.
   */
  handshakeTimeoutMs?: number;
  /** Caps on open connections; defaults in DEFAULT_CONNECTION_LIMITS. */
  connectionLimits?: Partial<Pick<ConnectionLimits, 'connectionsMax' | 'connectionsPerAddressMax'>>;
  /** Refusal log lines per 10 s before they are summarised. Default 20. */
  refusalLogLinesMax?: number;
}

export class MtlsListener {
  private readonly tcpServer: TcpServer;
  private readonly tlsServer: TlsServer;
  private readonly gate: ConnectionGate;
  /** Verified connections handed to grpc-js and still open. */
  private readonly sessions = new Set<TLSSocket>();
  private readonly injector: ConnectionInjector;
  private readonly refusalLog: RateLimitedLog;
  private boundPort = 0;
  private closed = false;

  private constructor(options: MtlsListenerOptions) {
    this.refusalLog = new RateLimitedLog(options.logger, {
      linesPerWindowMax: options.refusalLogLinesMax ?? 20,
      windowMs: 10_000,
    });
    // Plaintext from grpc-js's point of view: TLS has already been terminated here.
    const credentials = experimental.createServerCredentialsWithInterceptors(
      ServerCredentials.createInsecure(),
      options.interceptors ?? [],
    );
    this.injector = createWideWindowInjector(options.grpcServer, credentials);
    const limits: ConnectionLimits = {
      ...DEFAULT_CONNECTION_LIMITS,
      ...options.connectionLimits,
      ...(options.handshakeTimeoutMs === undefined ? {} : { prefaceTimeoutMs: options.handshakeTimeoutMs }),
    };
    this.gate = new ConnectionGate({ limits, log: this.refusalLog, tls: true });
    this.tcpServer = createTcpServer();
    this.tcpServer.on('connection', (socket: Socket) => this.onConnection(socket));
    this.tlsServer = createServer({
      ...secureContextOptions(options.material),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ALPNProtocols: ['h2'],
      // Node's is an idle timer, reset by every byte, and cannot be turned off: a backstop that
      // fires after the gate's absolute deadline (which logs the one line for the connection).
      handshakeTimeout: Math.min(2_147_483_647, limits.prefaceTimeoutMs + 1_000),
    });
    this.tlsServer.on('secureConnection', (socket: TLSSocket) => this.onSecureConnection(socket));
    this.tlsServer.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => this.onTlsClientError(error, socket));
  }

  /** Listens on `host:port` and resolves once bound. */
  static async listen(options: MtlsListenerOptions): Promise<MtlsListener> {
    const listener = new MtlsListener(options);
    await new Promise<void>((resolve, reject) => {
      listener.tcpServer.once('error', reject);
      listener.tcpServer.listen(options.port, options.host, () => {
        listener.tcpServer.off('error', reject);
        resolve();
      });
    });
    listener.boundPort = (listener.tcpServer.address() as AddressInfo).port;
    listener.tcpServer.on('error', (error) => options.logger.error({ error: error.message }, 'TLS listener error'));
    return listener;
  }

  get port(): number {
    assert(this.boundPort > 0, 'MtlsListener is not listening');
    return this.boundPort;
  }

  /** Connections accepted and not yet closed (in the handshake, awaiting the preface, or serving). */
  get openConnectionCount(): number {
    return this.gate.openCount;
  }

  /**
   * Puts new certificate, key and CA in force for connections accepted from now on, and closes
   * open connections whose client certificate the new CA does not vouch for (a CA rotation
   * revokes the old identities; a renewal under the same CA closes nothing).
   */
  setMaterial(material: TlsMaterial): void {
    this.tlsServer.setSecureContext(secureContextOptions(material));
    const caCertificates = caCertificatesOf(material);
    for (const socket of this.sessions) {
      if (chainsToCa(socket, caCertificates)) continue;
      const certificate = socket.getPeerCertificate();
      const subject = typeof certificate.subject?.CN === 'string' ? certificate.subject.CN : undefined;
      this.refusalLog.warn(
        { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, subject },
        'closed connection: its client certificate is not signed by the new CA',
      );
      socket.destroy();
    }
  }

  /**
   * Stops accepting connections. Sessions already handed to grpc-js end with the grpc-js server's
   * `tryShutdown`/`forceShutdown`; a connection still in its handshake or before its preface is
   * closed now.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.tcpServer.close();
    this.gate.closePending();
  }

  /** Ends the grpc-js sessions of this listener now (tests; the agent uses the server's shutdown). */
  destroySessions(): void {
    this.injector.destroy();
  }

  private onConnection(socket: Socket): void {
    socket.on('error', () => {
      // The TLS socket on top reports errors (tlsClientError); this keeps a reset from throwing.
    });
    if (this.closed || !this.gate.accept(socket)) {
      socket.destroy();
      return;
    }
    this.tlsServer.emit('connection', socket);
  }

  private onSecureConnection(socket: TLSSocket): void {
    socket.on('error', () => {
      // grpc-js's session reports errors; without this handler an ECONNRESET would be thrown.
    });
    const reason = refusalReason(socket);
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (reason !== undefined) {
      const certificate = socket.getPeerCertificate();
      const subject = typeof certificate.subject?.CN === 'string' ? certificate.subject.CN : undefined;
      this.refused(socket, reason, subject);
      socket.destroy();
      return;
    }
    this.gate.awaitPreface(socket, () => {
      rememberPeerCertificate(socket);
      this.sessions.add(socket);
      socket.once('close', () => this.sessions.delete(socket));
      this.injector.injectConnection(socket);
    });
  }

  private onTlsClientError(error: Error & { code?: string }, socket: TLSSocket): void {
    this.refused(socket, describeHandshakeError(error), undefined, error.code);
    socket.destroy();
  }

  private refused(socket: TLSSocket, reason: string, subject: string | undefined, code?: string): void {
    this.refusalLog.warn(
      { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, subject, code },
      `refused connection: ${reason}`,
    );
  }
}

/**
 * Makes `socket.getPeerCertificate()` return the object it built the first time. Every call on a
 * connection asks for the peer certificate at least twice (grpc-js's getAuthContext for the
 * ACL's subject and for telemetry's), and Node builds a new object each time: the subject and
 * issuer, the raw DER, fingerprints, extensions. A connection's certificate cannot change (HTTP/2
 * forbids TLS renegotiation, and Node disables it on HTTP/2 sockets), so one is enough. The
 * detailed form (`getPeerCertificate(true)`, with the issuer chain) is still built on request.
 */
function rememberPeerCertificate(socket: TLSSocket): void {
  const build = socket.getPeerCertificate.bind(socket);
  const certificate = build();
  socket.getPeerCertificate = ((detailed?: boolean) => (detailed === true ? build(true) : certificate)) as TLSSocket['getPeerCertificate'];
}

/** Whether the client's certificate, or an intermediate it presented, is signed by one of `caCertificates`. */
function chainsToCa(socket: TLSSocket, caCertificates: readonly X509Certificate[]): boolean {
  let certificate = socket.getPeerX509Certificate();
  for (let depth = 0; certificate !== undefined && depth < 8; depth++) {
    const current = certificate;
    if (caCertificates.some((ca) => ca.fingerprint256 === current.fingerprint256)) return true;
    if (caCertificates.some((ca) => current.checkIssued(ca) && current.verify(ca.publicKey))) return true;
    certificate = current.issuerCertificate;
  }
  return false;
}

function secureContextOptions(material: TlsMaterial) {
  return { cert: material.certPem, key: material.keyPem, ca: material.caPem };
}

/** Why a completed handshake is not acceptable, or undefined if it is. */
function refusalReason(socket: TLSSocket): string | undefined {
  if (socket.alpnProtocol !== 'h2') return 'the client did not negotiate HTTP/2 (ALPN "h2"); gRPC needs it';
  if (socket.authorized) return undefined;
  const certificate = socket.getPeerCertificate();
  if (certificate.raw === undefined) return 'no client certificate';
  const code = String(socket.authorizationError ?? 'unknown');
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return `client certificate expired at ${certificate.valid_to} (CERT_HAS_EXPIRED)`;
    case 'CERT_NOT_YET_VALID':
      return `client certificate not valid before ${certificate.valid_from} (CERT_NOT_YET_VALID)`;
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return `client certificate is not signed by the configured CA (${code})`;
    case 'INVALID_PURPOSE':
    case 'UNSUPPORTED_CERTIFICATE_PURPOSE':
      return `client certificate is not for client authentication (${code})`;
    default:
      return `client certificate rejected (${code})`;
  }
}

function describeHandshakeError(error: Error & { code?: string }): string {
  switch (error.code) {
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_HTTP_REQUEST':
      return 'not a TLS handshake (a plaintext client?)';
    case 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE':
      return 'no client certificate';
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_NO_PROTOCOLS_AVAILABLE':
      return 'the client offered only TLS versions below 1.2';
    case 'ERR_TLS_HANDSHAKE_TIMEOUT':
      return 'the TLS handshake did not finish in time';
    case 'ECONNRESET':
      return 'the client closed the connection during the TLS handshake';
    default:
      return `TLS handshake failed: ${error.message.split('\n')[0]}`;
  }
}
