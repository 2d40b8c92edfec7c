/**
 * One node's telemetry, assembled from flags: logs (always), metrics (when `--metrics-addr` is set
 * or `metrics: true`), traces (when an OTLP endpoint is configured). Components take what they
 * need from it: `meter('raft')`, `tracer('raft')`, `logger('raft')`, the gRPC interceptors, the
 * storage instruments.
 *
 * Nothing here registers OpenTelemetry globals: two nodes in one process (`annal dev`, tests) keep
 * separate pipelines, and a library embedding annal keeps its own.
 */
import type { Interceptor, ServerInterceptor } from '@grpc/grpc-js';
import type { Meter, Tracer } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import { assert } from '../util/index.js';
import { createClientInterceptor } from './client-interceptor.js';
import { componentLogger, silentLogger } from './logger.js';
import { startMetricsServer, type MetricsEndpoint } from './metrics-server.js';
import { Metrics, NoopMetrics, type MeterSource } from './metrics.js';
import { RpcMetrics } from './rpc-metrics.js';
import { RuntimeMetrics } from './runtime-metrics.js';
import { createServerInterceptor } from './server-interceptor.js';
import { StorageMetrics, type StorageStats } from './storage-metrics.js';
import { Tracing, type TracerSource } from './tracing.js';

export interface TelemetryOptions {
  /** Root logger; components get children of it. Default: silent. */
  logger?: Logger;
  /** `service.name` of metrics and traces. Default `annal`. */
  serviceName?: string;
  /** `service.instance.id`: the node name, so a trace shows which node served a span. */
  nodeName?: string;
  /** `host:port` for `GET /metrics` (port 0: a free port). Unset: no endpoint. */
  metricsAddr?: string;
  /** Collect metrics even without an endpoint (tests read them with `scrape()`). Default: metricsAddr is set. */
  metrics?: boolean;
  /** OTLP/HTTP base URL for traces; see TracingOptions.otlpEndpoint for the environment fallback. */
  otlpEndpoint?: string;
  /** Fraction (0..1) of new traces recorded. Default 1. */
  traceSampleRatio?: number;
  /** Exports spans here instead of OTLP (tests); turns tracing on. */
  spanExporter?: SpanExporter;
  /** Environment for the OTEL_EXPORTER_OTLP_* fallback. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

export class Telemetry implements MeterSource, TracerSource {
  private rpc: RpcMetrics | undefined;
  private constructor(
    readonly rootLogger: Logger,
    private readonly metrics: Metrics | NoopMetrics,
    private readonly tracing: Tracing,
    private readonly runtime: RuntimeMetrics | undefined,
    /** The scrape endpoint, when `metricsAddr` was given. */
    readonly metricsEndpoint: MetricsEndpoint | undefined,
  ) {}

  /** Builds the pipelines and binds the metrics endpoint (if any). */
  static async start(options: TelemetryOptions = {}): Promise<Telemetry> {
    const logger = options.logger ?? silentLogger();
    const resource = resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName ?? 'annal',
      ...(options.nodeName ? { [ATTR_SERVICE_INSTANCE_ID]: options.nodeName } : {}),
    });
    const metricsOn = options.metrics ?? options.metricsAddr !== undefined;
    const metrics = metricsOn ? new Metrics({ resource }) : new NoopMetrics();
    const tracing = new Tracing({
      resource,
      ...(options.otlpEndpoint !== undefined ? { otlpEndpoint: options.otlpEndpoint } : {}),
      ...(options.traceSampleRatio !== undefined ? { sampleRatio: options.traceSampleRatio } : {}),
      ...(options.spanExporter !== undefined ? { exporter: options.spanExporter } : {}),
      ...(options.env !== undefined ? { env: options.env } : {}),
    });
    const runtime = metrics instanceof Metrics ? new RuntimeMetrics(metrics) : undefined;
    let endpoint: MetricsEndpoint | undefined;
    const telemetry = new Telemetry(logger, metrics, tracing, runtime, undefined);
    if (options.metricsAddr !== undefined && metrics instanceof Metrics) {
      try {
        endpoint = await startMetricsServer({
          addr: options.metricsAddr,
          scrape: () => metrics.scrape(),
          logger: componentLogger(logger, 'metrics'),
        });
      } catch (error) {
        await telemetry.shutdown();
        throw error;
      }
    }
    return endpoint ? new Telemetry(logger, metrics, tracing, runtime, endpoint) : telemetry;
  }

  /** Everything off: silent logs (unless given a logger), no-op instruments, no spans. */
  static disabled(logger: Logger = silentLogger()): Telemetry {
    return new Telemetry(logger, new NoopMetrics(), new Tracing({ resource: resourceFromAttributes({}), env: {} }), undefined, undefined);
  }

  get metricsEnabled(): boolean {
    return this.metrics instanceof Metrics;
  }

  get tracingEnabled(): boolean {
    return this.tracing.enabled;
  }

  /** Where spans are exported (a URL), or undefined when tracing is off. */
  get traceExportUrl(): string | undefined {
    return this.tracing.exportUrl;
  }

  logger(component: string): Logger {
    return componentLogger(this.rootLogger, component);
  }

  meter(component: string): Meter {
    return this.metrics.meter(component);
  }

  tracer(component: string): Tracer {
    return this.tracing.tracer(component);
  }

  /** The server's RPC instruments (created once: instruments are registered per meter). */
  rpcMetrics(): RpcMetrics {
    this.rpc ??= new RpcMetrics(this.metrics);
    return this.rpc;
  }

  /**
   * Interceptors for the gRPC server: empty when metrics, traces and the info-level access log
   * are all off, so a node with telemetry off pays nothing per call.
   */
  serverInterceptors(): ServerInterceptor[] {
    const accessLogger = this.logger('access');
    if (!this.metricsEnabled && !this.tracingEnabled && !accessLogger.isLevelEnabled('info')) return [];
    return [createServerInterceptor({ metrics: this.rpcMetrics(), tracer: this.tracer('server'), accessLogger })];
  }

  /** Interceptors for gRPC clients this node creates (forwarding, peers): trace propagation. */
  clientInterceptors(): Interceptor[] {
    return [createClientInterceptor({ tracer: this.tracer('client') })];
  }

  /** Storage instruments reading the log returned by `stats` at scrape time. */
  storageMetrics(stats: () => StorageStats | undefined): StorageMetrics {
    return new StorageMetrics(this.metrics, stats);
  }

  /** The Prometheus exposition now; throws when metrics are off. */
  async scrape(): Promise<string> {
    assert(this.metrics instanceof Metrics, 'metrics are off: start Telemetry with metricsAddr or metrics: true');
    return this.metrics.scrape();
  }

  /** Exports finished spans now. */
  async flushTraces(): Promise<void> {
    await this.tracing.forceFlush();
  }

  /** Closes the endpoint, flushes and stops the pipelines. Idempotent enough for shutdown paths. */
  async shutdown(): Promise<void> {
    await this.metricsEndpoint?.close();
    this.runtime?.stop();
    // An unreachable collector must not turn a clean shutdown into a failure: the spans that
    // could not be exported are lost either way, so say so and carry on.
    await this.tracing.shutdown().catch((error: unknown) => {
      this.rootLogger.warn({ component: 'tracing', err: error, exportUrl: this.tracing.exportUrl }, 'could not export the last spans at shutdown');
    });
    if (this.metrics instanceof Metrics) await this.metrics.shutdown();
  }
}
