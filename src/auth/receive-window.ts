/**
 * Connection injectors whose HTTP/2 sessions accept a wide receive window.
 *
 * grpc-js (1.14) servers leave Node's HTTP/2 defaults in place: a 64 KiB window for the
 * connection and for each stream (its `grpc-node.flow_control_window` option applies to clients
 * only). A client may then have at most 64 KiB in flight towards the server before it waits for
 * a WINDOW_UPDATE, which the server sends only after its event loop has consumed the data: a
 * produce stream of 1 KiB records moved about 60 records per round trip, and the server sent a
 * WINDOW_UPDATE (one socket write, one TLS record) every 32 KiB.
 *
 * Both listeners (plaintext through the connection gate, and mTLS) hand their sockets to grpc-js
 * through `createConnectionInjector`, whose HTTP/2 server is not exposed. This finds the HTTP/2
 * server the injector just created among the grpc-js server's own (`http2Servers`, a private
 * field) and widens every new session on it: the connection window with a WINDOW_UPDATE
 * (`setLocalWindowSize`) and each stream's through SETTINGS_INITIAL_WINDOW_SIZE. A grpc-js
 * without that field gets the injector unchanged (Node's default windows).
 *
 * Memory: what a client sends beyond what the service has consumed is buffered by the session,
 * up to the connection window, so one connection holds at most about `windowBytes` of unread
 * requests (the produce pipelines bound what they hold after reading separately).
 */
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';

/** Receive window per connection and per stream: at 1 KiB per record, 8 Ki records in flight. */
export const HTTP2_RECEIVE_WINDOW_BYTES = 8 * 1024 * 1024;

type ConnectionInjector = ReturnType<GrpcServer['createConnectionInjector']>;

/** `grpcServer.createConnectionInjector(credentials)`, with sessions that accept `windowBytes` in flight. */
export function createWideWindowInjector(
  grpcServer: GrpcServer,
  credentials: ServerCredentials,
  windowBytes = HTTP2_RECEIVE_WINDOW_BYTES,
): ConnectionInjector {
  const servers = (grpcServer as unknown as { http2Servers?: unknown }).http2Servers;
  const known = servers instanceof Map ? new Set<unknown>(servers.keys()) : undefined;
  const injector = grpcServer.createConnectionInjector(credentials);
  if (known === undefined) return injector;
  for (const server of (servers as Map<unknown, unknown>).keys()) {
    if (known.has(server)) continue;
    (server as Http2Server).on('session', (session: ServerHttp2Session) => widen(session, windowBytes));
  }
  return injector;
}

function widen(session: ServerHttp2Session, windowBytes: number): void {
  try {
    session.setLocalWindowSize(windowBytes);
    session.settings({ initialWindowSize: windowBytes });
  } catch {
    // The session was destroyed in between (a client that left at once): nothing to widen.
  }
}
