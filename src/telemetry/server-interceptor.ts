/**
 * A grpc-js server interceptor (Server option `interceptors`) that observes every call:
 *
 * - a server span continuing the caller's `traceparent`, named after the method
 *   (`log.v1.Log/Produce`), with OTel RPC attributes; filed as the call's RpcScope for handlers;
 * - the RPC instruments: duration, requests and errors by method and code, bytes, in-flight calls
 *   and open streams;
 * - one access-log line at info when the call ends: method, code, duration, subject, peer,
 *   request/response bytes and message counts, trace id.
 *
 * A call ends with the status the server sends, or with CANCELLED (DEADLINE_EXCEEDED when its
 * deadline had passed) when the client goes away first; it is counted exactly once either way.
 */
import {
  ServerInterceptingCall,
  status as Status,
  type Metadata,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
} from '@grpc/grpc-js';
import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import { assert } from '../util/index.js';
import { expectSerialization, requestSizeBytes, serializedSizeBytes } from './message-size.js';
import { fileRpcScope, type RpcScope } from './rpc-scope.js';
import type { MethodStats, RpcMetrics } from './rpc-metrics.js';
import { codeName } from './grpc-codes.js';
import { extractTraceContext } from './propagation.js';

export interface ServerInterceptorOptions {
  metrics: RpcMetrics;
  tracer: Tracer;
  /** Receives the access-log lines (info) and nothing else. */
  accessLogger: Logger;
  /** Child spans one call may start (see RpcScope.startSpan). Default 64. */
  childSpansPerCallMax?: number;
}

/** Server-side codes that mean the server failed (OTel gRPC conventions); others are the caller's. */
const SERVER_FAULT_CODES: ReadonlySet<number> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** Stands in for the server span until the call's metadata arrives. */
const NON_RECORDING: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

export function createServerInterceptor(options: ServerInterceptorOptions): ServerInterceptor {
  const childSpansMax = options.childSpansPerCallMax ?? 64;
  return (method, call) => {
    const record = new CallRecord(method, call, options.metrics.method(method.path), options, childSpansMax);
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            record.begin(metadata);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message, nextMessage) => {
            record.received(message);
            nextMessage(message);
          },
          onCancel: () => record.cancelled(),
        }),
      sendMessage: (message, next) => {
        expectSerialization();
        next(message);
        record.sent(serializedSizeBytes());
      },
      sendStatus: (status, next) => {
        // A handler may still send a status after the client cancelled (e.g. ending a stream on
        // 'end'); grpc-js then drops it and reports the cancel on the next tick. Finishing on the
        // next tick, queued before grpc-js can queue a later cancel, lets an earlier cancel win.
        const code = status.code ?? Status.UNKNOWN;
        process.nextTick(() => record.finish(code, status.details));
        next(status);
      },
    });
  };
}

/** The telemetry state of one call, from its metadata to its status. */
class CallRecord implements RpcScope {
  subject: string | undefined;
  context = ROOT_CONTEXT;
  private span: Span = NON_RECORDING;
  private startedMs = 0;
  private begun = false;
  private finished = false;
  private requestBytes = 0;
  private responseBytes = 0;
  private requestMessages = 0;
  private responseMessages = 0;
  private childSpansLeft: number;
  private childSpansDropped = 0;
  private readonly streaming: boolean;
  /** What startSpan returns past the budget: carries the server span's context, records nothing. */
  private unrecordedChildSpan: Span | undefined;

  constructor(
    private readonly method: ServerMethodDefinition<unknown, unknown>,
    private readonly call: ServerInterceptingCallInterface,
    private readonly stats: MethodStats,
    private readonly options: ServerInterceptorOptions,
    childSpansMax: number,
  ) {
    this.streaming = method.requestStream || method.responseStream;
    this.childSpansLeft = childSpansMax;
    // Read while the connection is surely open: at the end of a call its socket may be gone.
    this.subject = peerCertificateSubject(call);
  }

  private get unrecordedChild(): Span {
    this.unrecordedChildSpan ??= trace.wrapSpanContext(this.span.spanContext());
    return this.unrecordedChildSpan;
  }

  get sampled(): boolean {
    return this.span.isRecording();
  }

  begin(metadata: Metadata): void {
    if (this.begun) return;
    this.begun = true;
    this.startedMs = performance.now();
    const peer = splitPeer(this.call.getPeer());
    this.span = this.options.tracer.startSpan(
      this.method.path.slice(1),
      {
        kind: SpanKind.SERVER,
        attributes: {
          [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM_NAME_VALUE_GRPC,
          [ATTR_RPC_METHOD]: this.method.path.slice(1),
          [ATTR_NETWORK_PEER_ADDRESS]: peer.address,
          ...(peer.port === undefined ? {} : { [ATTR_NETWORK_PEER_PORT]: peer.port }),
        },
      },
      extractTraceContext(metadata),
    );
    this.context = trace.setSpan(ROOT_CONTEXT, this.span);
    fileRpcScope(metadata, this);
    this.stats.inFlightCalls++;
    if (this.streaming) this.stats.openStreams++;
  }

  startSpan(name: string, attributes?: Attributes): Span {
    if (this.childSpansLeft === 0 || !this.span.isRecording()) {
      if (this.span.isRecording()) this.childSpansDropped++;
      return this.unrecordedChild;
    }
    this.childSpansLeft--;
    return this.options.tracer.startSpan(name, attributes ? { attributes } : {}, this.context);
  }

  received(message: unknown): void {
    this.requestMessages++;
    this.requestBytes += requestSizeBytes(message);
  }

  /** One response went out; its encoded size is `sizeBytes` (0 when unknown). */
  sent(sizeBytes: number): void {
    this.responseMessages++;
    this.responseBytes += sizeBytes;
  }

  cancelled(): void {
    const deadline = this.call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    this.finish(Date.now() >= deadlineMs ? Status.DEADLINE_EXCEEDED : Status.CANCELLED, 'cancelled by the client');
  }

  finish(code: number, details: string | undefined): void {
    if (this.finished || !this.begun) return;
    this.finished = true;
    const durationMs = performance.now() - this.startedMs;
    const codeStats = this.stats.code(code);
    this.options.metrics.durationSeconds.record(durationMs / 1000, codeStats.labels);
    codeStats.requests++;
    this.stats.receivedBytes += this.requestBytes;
    this.stats.sentBytes += this.responseBytes;
    assert(this.stats.inFlightCalls > 0, 'a finishing call must have been counted in flight');
    this.stats.inFlightCalls--;
    if (this.streaming) this.stats.openStreams--;
    this.endSpan(code, details);
    this.options.accessLogger.info(
      {
        method: this.method.path,
        code: codeName(code),
        durationMs: Math.round(durationMs * 1000) / 1000,
        subject: this.subject,
        peer: this.call.getPeer(),
        requestBytes: this.requestBytes,
        responseBytes: this.responseBytes,
        ...(this.streaming ? { requestMessages: this.requestMessages, responseMessages: this.responseMessages } : {}),
        ...(this.span.isRecording() ? { traceId: this.span.spanContext().traceId } : {}),
      },
      'rpc',
    );
  }

  private endSpan(code: number, details: string | undefined): void {
    if (!this.span.isRecording()) return;
    this.span.setAttribute(ATTR_RPC_STATUS_CODE, codeName(code));
    this.span.setAttribute('annal.request_bytes', this.requestBytes);
    this.span.setAttribute('annal.response_bytes', this.responseBytes);
    if (this.subject !== undefined) this.span.setAttribute('annal.subject', this.subject);
    if (this.childSpansDropped > 0) this.span.setAttribute('annal.child_spans_dropped', this.childSpansDropped);
    if (SERVER_FAULT_CODES.has(code)) {
      this.span.setAttribute(ATTR_ERROR_TYPE, codeName(code));
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: details ?? codeName(code) });
    }
    this.span.end();
  }
}

function splitPeer(peer: string): { address: string; port: number | undefined } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(peer);
  return match ? { address: match[1]!, port: Number(match[2]) } : { address: peer, port: undefined };
}

/**
 * The CN of a verified TLS client certificate, which annal's ACL uses as the subject. grpc-js's
 * getAuthContext throws on a TLS socket that was already destroyed (it reads the certificate of
 * a closed connection): that call has no subject to report, and must not take the process down.
 */
function peerCertificateSubject(call: ServerInterceptingCallInterface): string | undefined {
  let context;
  try {
    context = call.getAuthContext();
  } catch {
    return undefined;
  }
  const subject = context.sslPeerCertificate?.subject as { CN?: string | string[] } | undefined;
  const commonName = subject?.CN;
  return Array.isArray(commonName) ? commonName[0] : commonName;
}
