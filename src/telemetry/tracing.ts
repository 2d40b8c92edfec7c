/**
 * Traces: a tracer provider that exports spans over OTLP/HTTP (JSON) when an endpoint is
 * configured. W3C trace context travels in gRPC metadata (propagation.ts).
 *
 * Context is passed explicitly (no AsyncLocalStorage context manager): the server interceptor
 * puts each call's context where the handler finds it (rpc-scope.ts), and callers pass it on.
 * An async-hooks context manager costs on every promise, and the storage hot path is promises.
 *
 * Sampling is decided once per trace at its root (ParentBased(TraceIdRatioBased(ratio))): a call
 * that arrives with a sampled `traceparent` is traced whatever the local ratio, so a client's
 * decision holds across nodes.
 */
import { ProxyTracerProvider, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { Resource } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { assert, InvalidArgumentError } from '../util/index.js';

export interface TracingOptions {
  resource: Resource;
  /**
   * OTLP/HTTP base URL (`http://collector:4318`); spans go to `<url>/v1/traces`. Unset: the
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (+ `/v1/traces`)
   * environment variables; none of them: tracing is off.
   */
  otlpEndpoint?: string;
  /** Fraction (0..1) of new traces recorded. Default 1: whoever sets an endpoint wants traces. */
  sampleRatio?: number;
  /** Replaces the OTLP exporter (tests, or another backend). */
  exporter?: SpanExporter;
  env?: NodeJS.ProcessEnv;
}

/** Where tracers come from. */
export interface TracerSource {
  /** The tracer of one component, named `annal.<component>`. */
  tracer(component: string): Tracer;
}

export class Tracing implements TracerSource {
  private readonly provider: BasicTracerProvider | undefined;
  /** The URL spans are exported to; undefined when tracing is off. */
  readonly exportUrl: string | undefined;

  constructor(options: TracingOptions) {
    const sampleRatio = options.sampleRatio ?? 1;
    assert(sampleRatio >= 0 && sampleRatio <= 1, `sampleRatio must be in [0, 1], got ${sampleRatio}`);
    this.exportUrl = options.exporter ? 'custom exporter' : resolveTracesUrl(options.otlpEndpoint, options.env ?? process.env);
    if (this.exportUrl === undefined) return;
    const exporter = options.exporter ?? new OTLPTraceExporter({ url: this.exportUrl });
    this.provider = new BasicTracerProvider({
      resource: options.resource,
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampleRatio) }),
      // Bounded: when the collector is slow, spans beyond the queue are dropped, not buffered.
      spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: 4096, maxExportBatchSize: 512, scheduledDelayMillis: 1000 })],
    });
  }

  get enabled(): boolean {
    return this.provider !== undefined;
  }

  tracer(component: string): Tracer {
    // Without a provider the API's proxy hands out a no-op tracer (not the global one: we never
    // register globals, so two nodes in one process keep separate pipelines).
    return this.provider ? this.provider.getTracer(`annal.${component}`) : NOOP_TRACER;
  }

  /** Exports every finished span now (tests, shutdown). */
  async forceFlush(): Promise<void> {
    await this.provider?.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.provider?.shutdown();
  }
}

/**
 * A tracer whose spans record nothing but still carry a parent's span context along. A fresh
 * proxy provider with no delegate, so a global provider registered by someone else is not used.
 */
const NOOP_TRACER: Tracer = new ProxyTracerProvider().getTracer('annal.noop');

/** `--otlp-endpoint`, else the standard environment variables; undefined when none is set. */
export function resolveTracesUrl(endpoint: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const perSignal = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'];
  const base = endpoint ?? (perSignal ? undefined : env['OTEL_EXPORTER_OTLP_ENDPOINT']);
  if (base === undefined || base === '') return perSignal || undefined;
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new InvalidArgumentError(`bad OTLP endpoint ${JSON.stringify(base)}: want a URL like http://localhost:4318`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`bad OTLP endpoint ${JSON.stringify(base)}: OTLP/HTTP needs http: or https:`);
  }
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** Parses `--trace-sample-ratio`: a number in [0, 1]. */
export function parseSampleRatio(text: string): number {
  const ratio = Number(text);
  if (text.trim() === '' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new InvalidArgumentError(`bad trace sample ratio ${JSON.stringify(text)}: want a number from 0 to 1`);
  }
  return ratio;
}
