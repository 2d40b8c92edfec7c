/**
 * Shared pieces for auth's tests (not a test file itself): certificate directories, a recording
 * logger that can be awaited, a stand-in service on log.v1.Log's method paths (so the ACL table
 * is exercised without the real log), and clients that always open a fresh connection.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Client,
  credentials as grpcCredentials,
  Metadata,
  Server,
  status as Status,
  type ServiceDefinition,
  type ServiceError,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { certificateFiles, runCertsCommand, type CertificateFiles } from './certs-command.js';
import type { AuthLogger } from './logger.js';

export const CONFIG_DIR = new URL('../../../config/', import.meta.url).pathname;

export interface LogLine {
  level: 'error' | 'warn' | 'info';
  object: object;
  message: string;
}

/** Records every line; `waitFor` resolves when a matching line arrives (or has arrived). */
export class RecordingLogger implements AuthLogger {
  readonly lines: LogLine[] = [];
  private waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];

  error(object: object, message: string): void {
    this.push({ level: 'error', object, message });
  }
  warn(object: object, message: string): void {
    this.push({ level: 'warn', object, message });
  }
  info(object: object, message: string): void {
    this.push({ level: 'info', object, message });
  }

  matching(pattern: RegExp): LogLine[] {
    return this.lines.filter((line) => pattern.test(line.message));
  }

  /** Resolves with the first line at or after `fromIndex` whose message matches; rejects after timeoutMs. */
  waitFor(pattern: RegExp, options: { fromIndex?: number; timeoutMs?: number } = {}): Promise<LogLine> {
    const match = (line: LogLine) => pattern.test(line.message);
    const seen = this.lines.slice(options.fromIndex ?? 0).find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line matching ${pattern} within ${options.timeoutMs ?? 20_000} ms`)), options.timeoutMs ?? 20_000);
      this.waiters.push({
        match,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  private push(line: LogLine): void {
    this.lines.push(line);
    const ready = this.waiters.filter((waiter) => waiter.match(line));
    this.waiters = this.waiters.filter((waiter) => !waiter.match(line));
    for (const waiter of ready) waiter.resolve(line);
  }
}

export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'annal-auth-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `annal certs` from config/ into `dir` and returns the file paths. */
/** The example ACL in config/ (root may produce and consume; nobody may not). */
export const EXAMPLE_ACL = { modelFile: join(CONFIG_DIR, 'model.conf'), policyFile: join(CONFIG_DIR, 'policy.csv') };

/** SecureServing options for `grpcServer` on 127.0.0.1 (a free port) with `files`' server pair and the example ACL. */
export function servingOptions(grpcServer: Server, files: CertificateFiles, logger: AuthLogger) {
  return {
    grpcServer,
    host: '127.0.0.1',
    port: 0,
    tls: { certFile: files.serverCert, keyFile: files.serverKey, caFile: files.caCert },
    acl: EXAMPLE_ACL,
    logger,
  };
}

export async function makeCertificates(dir: string, options: { newCa?: boolean } = {}): Promise<CertificateFiles> {
  await runCertsCommand({ configDir: CONFIG_DIR, outDir: dir, ...options });
  return certificateFiles(dir);
}

const identity = (value: Buffer) => value;
function method(path: string, requestStream: boolean, responseStream: boolean) {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

/** log.v1.Log's paths with opaque byte messages: enough to test who may call what. */
export const STAND_IN_LOG_SERVICE = {
  Produce: method('/log.v1.Log/Produce', false, false),
  ProduceStream: method('/log.v1.Log/ProduceStream', true, true),
  Consume: method('/log.v1.Log/Consume', false, false),
  ConsumeStream: method('/log.v1.Log/ConsumeStream', false, true),
  GetServers: method('/log.v1.Log/GetServers', false, false),
  ProduceBatch: method('/log.v1.Log/ProduceBatch', true, true),
} satisfies ServiceDefinition;

/** A grpc-js server with the stand-in log (which counts handler invocations) and health. */
export function standInServer(): { server: Server; handledCount: () => number } {
  let handled = 0;
  const server = new Server();
  const unary = (call: { request: Buffer }, callback: (error: null, value: Buffer) => void) => {
    handled += 1;
    callback(null, call.request);
  };
  const echoStream = (call: NodeJS.ReadWriteStream & { on: Function; write: Function; end: Function }) => {
    handled += 1;
    call.on('data', (chunk: Buffer) => call.write(chunk));
    call.on('end', () => call.end());
  };
  const serverStream = (call: { request: Buffer; write: (value: Buffer) => void; end: () => void }) => {
    handled += 1;
    call.write(call.request);
    call.end();
  };
  server.addService(STAND_IN_LOG_SERVICE, {
    Produce: unary,
    Consume: unary,
    GetServers: unary,
    ProduceStream: echoStream,
    ProduceBatch: echoStream,
    ConsumeStream: serverStream,
  } as never);
  new HealthImplementation({ '': 'SERVING' }).addToServer(server);
  return { server, handledCount: () => handled };
}

export interface ClientPems {
  caPem: Buffer | string;
  certPem?: Buffer | string;
  keyPem?: Buffer | string;
}

/** A raw client on its own connection (no subchannel sharing between test clients). */
export function rawClient(port: number, pems: ClientPems | 'insecure'): Client {
  const credentials =
    pems === 'insecure'
      ? grpcCredentials.createInsecure()
      : grpcCredentials.createSsl(
          Buffer.from(pems.caPem),
          pems.keyPem === undefined ? null : Buffer.from(pems.keyPem),
          pems.certPem === undefined ? null : Buffer.from(pems.certPem),
        );
  return new Client(`localhost:${port}`, credentials, { 'grpc.use_local_subchannel_pool': 1 });
}

export function unaryCall(client: Client, path: string, request: Buffer, timeoutMs = 15_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, identity, identity, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, value) =>
      error ? reject(error) : resolve(value!),
    );
  });
}

/** Opens a bidi stream, sends `messages`, half-closes and collects the replies. */
export function bidiCall(client: Client, path: string, messages: Buffer[], timeoutMs = 15_000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(path, identity, identity, new Metadata(), { deadline: Date.now() + timeoutMs });
    const replies: Buffer[] = [];
    call.on('data', (reply: Buffer) => replies.push(reply));
    call.on('error', reject);
    call.on('end', () => resolve(replies));
    for (const message of messages) call.write(message);
    call.end();
  });
}

export function serverStreamCall(client: Client, path: string, request: Buffer, timeoutMs = 15_000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const call = client.makeServerStreamRequest(path, identity, identity, request, new Metadata(), { deadline: Date.now() + timeoutMs });
    const replies: Buffer[] = [];
    call.on('data', (reply: Buffer) => replies.push(reply));
    call.on('error', reject);
    call.on('end', () => resolve(replies));
  });
}

/** grpc.health.v1.Health/Check with an empty request; resolves with the status enum value. */
export async function healthCheck(client: Client): Promise<number> {
  const reply = await unaryCall(client, '/grpc.health.v1.Health/Check', Buffer.alloc(0));
  // HealthCheckResponse { ServingStatus status = 1 }: tag 0x08, then a one-byte varint.
  return reply.length === 0 ? 0 : reply[1]!;
}

export function statusOf(error: unknown): Status | undefined {
  return (error as ServiceError).code;
}

export async function shutdownServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
}
