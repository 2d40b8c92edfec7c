/**
 * A tiny gRPC service for the telemetry tests, served by a real grpc-js server on 127.0.0.1 with
 * the telemetry interceptor. Messages are JSON (the interceptor does not care about the codec).
 *
 * `Append` behaves like a produce: an `authorize` child span, then a real CommitLog append inside
 * a `storage.append` child span; `fail` in the request makes it answer that status code instead.
 * `Chat` is a bidi stream that answers each message with its sequence number until n < 0.
 */
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  Server,
  ServerCredentials,
  status as Status,
  type Client,
  type ClientDuplexStream,
  type Interceptor,
  type ServerDuplexStream,
  type ServerInterceptor,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
} from '@grpc/grpc-js';
import type { CommitLog } from '../../storage/index.js';
import { measureMessageSizes } from '../message-size.js';
import { rpcScope, withSpan } from '../rpc-scope.js';
import { AppendTimer, type StorageMetrics } from '../storage-metrics.js';
import type { Telemetry } from '../telemetry.js';

export interface AppendRequest {
  value: string;
  subject?: string;
  /** Answer with this gRPC status code instead of appending. */
  fail?: number;
}
export interface AppendResponse {
  offset: number;
}

const json = {
  serialize: (value: unknown): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): unknown => JSON.parse(bytes.toString('utf8')),
};

export const EchoService: ServiceDefinition = {
  append: {
    path: '/test.Echo/Append',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
  chat: {
    path: '/test.Echo/Chat',
    requestStream: true,
    responseStream: true,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

export interface EchoClient extends Client {
  append(request: AppendRequest, metadata: Metadata, callback: (error: Error | null, response?: AppendResponse) => void): void;
  chat(): ClientDuplexStream<{ n: number }, { seq: number }>;
}

const EchoClientConstructor = makeGenericClientConstructor(EchoService, 'Echo');

function handlers(log: CommitLog, storage: StorageMetrics | undefined) {
  // Every append timed: the tests count histogram samples.
  const timer = storage ? new AppendTimer(storage, 1) : undefined;
  return {
    append: (call: ServerUnaryCall<AppendRequest, AppendResponse>, callback: sendUnaryData<AppendResponse>) => {
      const scope = rpcScope(call.metadata);
      scope.subject = call.request.subject;
      const authorize = scope.startSpan('authorize', { 'annal.subject': call.request.subject ?? '' });
      authorize.end();
      if (call.request.fail !== undefined) {
        callback({ code: call.request.fail, details: `failing as asked (${call.request.fail})` });
        return;
      }
      const append = () => log.append({ value: Buffer.from(call.request.value) });
      withSpan(scope, 'storage.append', () => (timer ? timer.run(1, append) : append())).then(
        (offset) => callback(null, { offset }),
        (error: Error) => callback({ code: Status.INTERNAL, details: error.message }),
      );
    },
    chat: (call: ServerDuplexStream<{ n: number }, { seq: number }>) => {
      let seq = 0;
      // A negative n ends the call. Half-close alone does not, so a client cancel (which grpc-js
      // also reports as a half-close) races nothing: the call ends only through the cancel.
      call.on('data', (message: { n: number }) => (message.n < 0 ? call.end() : call.write({ seq: seq++ })));
      call.on('error', () => undefined);
    },
  };
}

export interface EchoServer {
  address: string;
  server: Server;
  close(): Promise<void>;
}

export interface EchoServerOptions {
  /** Records append durations. */
  storage?: StorageMetrics;
  /** Interceptors after the telemetry one (e.g. an access check wrapped in spanAround). */
  interceptors?: ServerInterceptor[];
}

export async function startEchoServer(telemetry: Telemetry, log: CommitLog, options: EchoServerOptions = {}): Promise<EchoServer> {
  const server = new Server({ interceptors: [...telemetry.serverInterceptors(), ...(options.interceptors ?? [])] });
  server.addService(measureMessageSizes(EchoService), handlers(log, options.storage));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    server,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

export function echoClient(address: string, interceptors: Interceptor[] = []): EchoClient {
  return new EchoClientConstructor(address, credentials.createInsecure(), { interceptors }) as unknown as EchoClient;
}

/** One Append call; resolves with the response or the gRPC error. */
export function callAppend(
  client: EchoClient,
  request: AppendRequest,
  metadata = new Metadata(),
): Promise<{ response?: AppendResponse; error?: Error & { code?: number } }> {
  return new Promise((resolve) => {
    client.append(request, metadata, (error, response) => resolve(error ? { error } : { response: response! }));
  });
}
