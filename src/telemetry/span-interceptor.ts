/**
 * A child span around other server interceptors' metadata handling, for decisions made there
 * rather than in the handler, such as authorization (auth's ACL interceptor):
 *
 *   interceptors: [telemetry interceptor, ...spanAround('authorize', [aclInterceptor])]
 *
 * grpc-js passes incoming metadata through interceptors in array order, so the first returned
 * interceptor starts the span (the call's RpcScope is already filed by the telemetry interceptor
 * before it), the wrapped ones run, and the last ends it when the call gets through. If a wrapped
 * interceptor answers the call itself (a denial), the status passes back through the first one,
 * which ends the span with the status code as `rpc.status_code`.
 */
import { ServerInterceptingCall, status as Status, type Metadata, type ServerInterceptor } from '@grpc/grpc-js';
import type { Span } from '@opentelemetry/api';
import { ATTR_RPC_STATUS_CODE } from '@opentelemetry/semantic-conventions';
import { rpcScope } from './rpc-scope.js';
import { codeName } from './grpc-codes.js';

/** The open span of one `spanAround`, kept on the call's request metadata under its own symbol. */
type WithOpenSpan = Metadata & { [key: symbol]: Span | undefined };

export function spanAround(name: string, interceptors: ServerInterceptor[]): ServerInterceptor[] {
  // Not a WeakMap keyed by metadata: see rpc-scope.ts on what those ephemerons cost the GC.
  const OPEN = Symbol(`annal.spanAround.${name}`);
  const open = {
    get: (metadata: Metadata): Span | undefined => (metadata as WithOpenSpan)[OPEN],
    set: (metadata: Metadata, span: Span): void => {
      (metadata as WithOpenSpan)[OPEN] = span;
    },
    delete: (metadata: Metadata): void => {
      (metadata as WithOpenSpan)[OPEN] = undefined;
    },
  };
  const start: ServerInterceptor = (_method, call) => {
    let requestMetadata: Metadata | undefined;
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            requestMetadata = metadata;
            open.set(metadata, rpcScope(metadata).startSpan(name));
            nextMetadata(metadata);
          },
        }),
      sendStatus: (status, next) => {
        // Still open: the wrapped interceptors answered the call before `end` saw it.
        const span = requestMetadata === undefined ? undefined : open.get(requestMetadata);
        if (span !== undefined) {
          open.delete(requestMetadata!);
          span.setAttribute(ATTR_RPC_STATUS_CODE, codeName(status.code ?? Status.UNKNOWN));
          span.end();
        }
        next(status);
      },
    });
  };
  const end: ServerInterceptor = (_method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const span = open.get(metadata);
            if (span !== undefined) {
              open.delete(metadata);
              span.setAttribute(ATTR_RPC_STATUS_CODE, 'OK');
              span.end();
            }
            nextMetadata(metadata);
          },
        }),
    });
  return [start, ...interceptors, end];
}
