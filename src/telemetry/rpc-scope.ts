/**
 * What a gRPC handler gets from the server interceptor for the call it serves: the trace context
 * of the call's server span (to parent child spans such as authorization and storage append, and
 * outgoing calls such as Raft forwarding), and a slot for the authenticated subject that the
 * access log prints.
 *
 * The interceptor files the scope under the call's request Metadata object, which grpc-js hands
 * unchanged to the handler as `call.metadata`:
 *
 *   const scope = rpcScope(call.metadata);
 *   scope.subject = subject;
 *   const offset = await withSpan(scope, 'storage.append', () => log.append(record));
 *
 * A call the interceptor did not see (no telemetry configured) gets a scope whose spans record
 * nothing, so handlers never need to check.
 */
import {
  INVALID_SPAN_CONTEXT,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { Metadata } from '@grpc/grpc-js';

export interface RpcScope {
  /** The context whose span is the call's server span. */
  readonly context: Context;
  /** True when the call's server span records: only then do child spans cost anything. */
  readonly sampled: boolean;
  /** The authenticated subject (client certificate CN), once the handler knows it. */
  subject: string | undefined;
  /**
   * Starts a child span of the server span. Each call may start a bounded number of them (a
   * ProduceStream can carry millions of appends); past the budget this returns a span that
   * records nothing, and the server span counts the ones dropped.
   */
  startSpan(name: string, attributes?: Attributes): Span;
}

/**
 * The scope rides on the Metadata object itself under a private symbol, dying with it. A WeakMap
 * keyed by metadata (whose value, the call's record, leads back to the metadata) made every call
 * an ephemeron the garbage collector had to resolve: GC time per unary call rose about fivefold.
 */
const SCOPE: unique symbol = Symbol('annal.rpcScope');

interface ScopedMetadata {
  [SCOPE]?: RpcScope;
}

const NOOP_TRACER: Tracer = new ProxyTracerProvider().getTracer('annal.noop');
const NON_RECORDING: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

const NOOP_SCOPE: RpcScope = Object.freeze({
  context: ROOT_CONTEXT,
  sampled: false,
  get subject(): string | undefined {
    return undefined;
  },
  set subject(_value: string | undefined) {},
  startSpan: (name: string) => NOOP_TRACER.startSpan(name),
});

/** The scope of the call whose request metadata this is; a no-op scope when none was filed. */
export function rpcScope(metadata: Metadata): RpcScope {
  return (metadata as ScopedMetadata)[SCOPE] ?? NOOP_SCOPE;
}

/** Files a scope under a call's request metadata (the server interceptor does this). */
export function fileRpcScope(metadata: Metadata, scope: RpcScope): void {
  (metadata as ScopedMetadata)[SCOPE] = scope;
}

/**
 * Runs `work` inside a child span of the call: the span ends when the promise settles, with
 * status ERROR and the exception recorded when it rejects.
 */
export function withSpan<T>(
  scope: RpcScope,
  name: string,
  work: (span: Span) => Promise<T>,
  attributes?: Attributes,
): Promise<T> {
  // Unsampled calls, and calls past their child-span budget, skip the span machinery: this sits
  // on the per-append path of every ProduceStream.
  const span = scope.sampled ? scope.startSpan(name, attributes) : NON_RECORDING;
  if (!span.isRecording()) return work(span);
  return traced(span, work);
}

async function traced<T>(span: Span, work: (span: Span) => Promise<T>): Promise<T> {
  try {
    return await work(span);
  } catch (error) {
    markSpanFailed(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Records `error` on `span` and sets its status to ERROR. */
export function markSpanFailed(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof Error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  } else {
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
  }
}
