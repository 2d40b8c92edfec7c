/**
 * The metrics of one node: an OpenTelemetry MeterProvider whose only reader is a Prometheus
 * exporter that never opens its own port; `scrape()` renders the text exposition format and
 * metrics-server.ts serves it at `GET /metrics`.
 *
 * Components add instruments through `meter(component)`: one meter per component, named
 * `annal.<component>` (`annal.server`, `annal.storage`, `annal.raft`, `annal.membership`), which
 * Prometheus shows as the `otel_scope_name` label. Instrument names follow Prometheus conventions
 * and carry their unit: `annal_<component>_<what>_<unit>`, e.g. `annal_rpc_server_duration_seconds`,
 * `annal_storage_size_bytes`; counters get `_total` from the exporter.
 */
import { createNoopMeter, type Meter } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { assert } from '../util/index.js';

/** Seconds buckets from 50 µs to 10 s: an fsync is ~0.1–10 ms, a tailing stream can last minutes. */
export const DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

const COMPONENT_NAME = /^[a-z][a-z0-9_.-]*$/;

/** Where instruments come from; `NoopMetrics` hands out a meter whose instruments do nothing. */
export interface MeterSource {
  /** The meter of one component, named `annal.<component>`. */
  meter(component: string): Meter;
}

export class Metrics implements MeterSource {
  private readonly provider: MeterProvider;
  private readonly exporter: PrometheusExporter;
  private readonly serializer: PrometheusSerializer;
  private readonly meters = new Map<string, Meter>();

  constructor(options: { resource: Resource }) {
    // The exporter is only a MetricReader here: metrics-server.ts owns the listening socket.
    this.exporter = new PrometheusExporter({ preventServerStart: true });
    this.serializer = new PrometheusSerializer();
    this.provider = new MeterProvider({ resource: options.resource, readers: [this.exporter] });
  }

  meter(component: string): Meter {
    assert(COMPONENT_NAME.test(component), `bad component name ${JSON.stringify(component)}`);
    let meter = this.meters.get(component);
    if (meter === undefined) {
      meter = this.provider.getMeter(`annal.${component}`);
      this.meters.set(component, meter);
    }
    return meter;
  }

  /** Collects every instrument (running observable callbacks) and renders Prometheus text format 0.0.4. */
  async scrape(): Promise<string> {
    const { resourceMetrics, errors } = await this.exporter.collect();
    if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed');
    return this.serializer.serialize(resourceMetrics);
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}

/** Metrics switched off: instruments are no-ops and cost a function call. */
export class NoopMetrics implements MeterSource {
  private readonly noop = createNoopMeter();
  meter(component: string): Meter {
    assert(COMPONENT_NAME.test(component), `bad component name ${JSON.stringify(component)}`);
    return this.noop;
  }
}
