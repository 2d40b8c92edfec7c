/**
 * W3C trace context (`traceparent`, `tracestate`) in gRPC metadata. Only the OTel API and the
 * W3C propagator: the client library imports this without loading the SDK.
 */
import { ROOT_CONTEXT, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Metadata } from '@grpc/grpc-js';

const propagator = new W3CTraceContextPropagator();

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key);
    if (values.length === 0) return undefined;
    return values.length === 1 ? String(values[0]) : values.map(String);
  },
};

const metadataSetter: TextMapSetter<Metadata> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

/** The trace context a caller sent in `traceparent`/`tracestate`; ROOT_CONTEXT when absent or malformed. */
export function extractTraceContext(metadata: Metadata): Context {
  return propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
}

/** Writes `traceparent` (and `tracestate`) for `context`'s span; nothing when it has no valid span. */
export function injectTraceContext(context: Context, metadata: Metadata): void {
  propagator.inject(context, metadata, metadataSetter);
}
