/**
 * A grpc-js client interceptor that carries trace context to the server. Each call gets a CLIENT
 * span (when the tracer records) whose context goes out as `traceparent`; its parent is, in order:
 * a trace context the caller already wrote into the call's metadata (`injectTraceContext`), else
 * `context.active()` (only meaningful when the application installed a context manager), else none.
 *
 *   new LogClient(address, credentials, { interceptors: [createClientInterceptor({ tracer })] });
 */
import { InterceptingCall, status as Status, type Interceptor } from '@grpc/grpc-js';
import { context as contextApi, SpanKind, SpanStatusCode, trace, type Tracer } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from '@opentelemetry/semantic-conventions';
import { codeName } from './grpc-codes.js';
import { extractTraceContext, injectTraceContext } from './propagation.js';

export interface ClientInterceptorOptions {
  tracer: Tracer;
}

/** On the client every non-OK code marks the span as failed (OTel gRPC conventions). */
export function createClientInterceptor(options: ClientInterceptorOptions): Interceptor {
  return (callOptions, nextCall) => {
    const method = callOptions.method_definition.path.slice(1);
    return new InterceptingCall(nextCall(callOptions), {
      start: (metadata, _listener, next) => {
        const given = extractTraceContext(metadata);
        const parent = trace.getSpan(given) ? given : contextApi.active();
        const span = options.tracer.startSpan(
          method,
          { kind: SpanKind.CLIENT, attributes: { [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM_NAME_VALUE_GRPC, [ATTR_RPC_METHOD]: method } },
          parent,
        );
        // The span's context replaces whatever the caller wrote, so the server's parent is this span.
        injectTraceContext(trace.setSpan(parent, span), metadata);
        next(metadata, {
          onReceiveStatus: (status, nextStatus) => {
            if (span.isRecording()) {
              span.setAttribute(ATTR_RPC_STATUS_CODE, codeName(status.code));
              if (status.code !== Status.OK) {
                span.setAttribute(ATTR_ERROR_TYPE, codeName(status.code));
                span.setStatus({ code: SpanStatusCode.ERROR, message: status.details });
              }
              span.end();
            }
            nextStatus(status);
          },
        });
      },
    });
  };
}
