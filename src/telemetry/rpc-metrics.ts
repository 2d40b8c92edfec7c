/**
 * The server's RPC instruments (meter `annal.server`): the four golden signals per method.
 *
 * Labels: `grpc_service` (`log.v1.Log`), `grpc_method` (`Produce`), and on completion `grpc_code`
 * (the status name, `OK`, `OUT_OF_RANGE`, …), the label set go-grpc-prometheus made familiar.
 * Cardinality is bounded by the registered methods times the 17 status codes.
 *
 * Only the duration histogram is recorded through the SDK per call. Counts, bytes and gauges are
 * plain numbers per method (MethodStats) that observable instruments read at scrape time: an SDK
 * record hashes its attribute set every time, which showed up as the largest metrics cost in a
 * CPU profile of unary Produce.
 */
import type { Attributes, Histogram } from '@opentelemetry/api';
import { status as Status } from '@grpc/grpc-js';
import { codeName } from './grpc-codes.js';
import { DURATION_BUCKETS_SECONDS, type MeterSource } from './metrics.js';

/** Completed calls of one method with one status code. */
export class CodeStats {
  requests = 0;
  constructor(
    readonly code: number,
    readonly labels: Attributes,
  ) {}
}

/** Tallies of one method. Invariant: every field is a non-negative integer. */
export class MethodStats {
  readonly labels: Attributes;
  /** Calls started and not yet finished. */
  inFlightCalls = 0;
  /** Open calls, when the method streams. */
  openStreams = 0;
  receivedBytes = 0;
  sentBytes = 0;
  private readonly byCode = new Map<number, CodeStats>();

  constructor(path: string) {
    this.labels = methodAttributes(path);
  }

  code(code: number): CodeStats {
    let stats = this.byCode.get(code);
    if (stats === undefined) {
      stats = new CodeStats(code, { ...this.labels, grpc_code: codeName(code) });
      this.byCode.set(code, stats);
    }
    return stats;
  }

  codes(): IterableIterator<CodeStats> {
    return this.byCode.values();
  }
}

export class RpcMetrics {
  /** Time from the call's metadata arriving to its status being sent, in seconds. */
  readonly durationSeconds: Histogram;
  private readonly methods = new Map<string, MethodStats>();

  constructor(source: MeterSource) {
    const meter = source.meter('server');
    this.durationSeconds = meter.createHistogram('annal_rpc_server_duration_seconds', {
      description: 'Duration of gRPC calls, from request metadata to status, by method and status code.',
      unit: 's',
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS_SECONDS] },
    });
    const requests = meter.createObservableCounter('annal_rpc_server_requests', {
      description: 'Completed gRPC calls by method and status code.',
    });
    const errors = meter.createObservableCounter('annal_rpc_server_errors', {
      description: 'Completed gRPC calls with a status code other than OK.',
    });
    const receivedBytes = meter.createObservableCounter('annal_rpc_server_received_bytes', {
      description: 'Bytes of request messages received (encoded messages, without gRPC framing).',
      unit: 'By',
    });
    const sentBytes = meter.createObservableCounter('annal_rpc_server_sent_bytes', {
      description: 'Bytes of response messages sent (encoded messages, without gRPC framing).',
      unit: 'By',
    });
    const inFlightCalls = meter.createObservableUpDownCounter('annal_rpc_server_in_flight_calls', {
      description: 'gRPC calls started and not yet finished.',
    });
    const openStreams = meter.createObservableUpDownCounter('annal_rpc_server_open_streams', {
      description: 'Open calls of streaming gRPC methods.',
    });
    meter.addBatchObservableCallback(
      (result) => {
        for (const [, method] of this.methods) {
          result.observe(inFlightCalls, method.inFlightCalls, method.labels);
          result.observe(openStreams, method.openStreams, method.labels);
          result.observe(receivedBytes, method.receivedBytes, method.labels);
          result.observe(sentBytes, method.sentBytes, method.labels);
          for (const code of method.codes()) {
            result.observe(requests, code.requests, code.labels);
            if (code.code !== Status.OK) result.observe(errors, code.requests, code.labels);
          }
        }
      },
      [requests, errors, receivedBytes, sentBytes, inFlightCalls, openStreams],
    );
  }

  /** The tallies of the method at `path` (created on first use). */
  method(path: string): MethodStats {
    let stats = this.methods.get(path);
    if (stats === undefined) {
      stats = new MethodStats(path);
      this.methods.set(path, stats);
    }
    return stats;
  }
}

/** The method labels of one gRPC path, `/log.v1.Log/Produce`. */
export function methodAttributes(path: string): Attributes {
  const slash = path.lastIndexOf('/');
  return { grpc_service: path.slice(1, Math.max(1, slash)), grpc_method: path.slice(slash + 1) };
}
