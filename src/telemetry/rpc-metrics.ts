/**
 * The server's RPC instruments (meter `annal.server`): the four golden signals per method.
 *
 * Labels: `grpc_service` (`log.v1.Log`), `grpc_method` (`Produce`), and on completion `grpc_code`
 * (the status name, `OK`, `OUT_OF_RANGE`, …), the label set go-grpc-prometheus made familiar.
 * Cardinality is bounded by the registered methods times the 17 status codes.
 */
import type { Attributes, Counter, Histogram, UpDownCounter } from '@opentelemetry/api';
import { DURATION_BUCKETS_SECONDS, type MeterSource } from './metrics.js';

export class RpcMetrics {
  /** Time from the call's metadata arriving to its status being sent, in seconds. */
  readonly durationSeconds: Histogram;
  /** Completed calls by method and code. */
  readonly requests: Counter;
  /** Completed calls whose code is not OK, by method and code. */
  readonly errors: Counter;
  /** Request message bytes received (protobuf encoding, without gRPC framing). */
  readonly receivedBytes: Counter;
  /** Response message bytes sent (protobuf encoding, without gRPC framing). */
  readonly sentBytes: Counter;
  /** Calls started and not yet finished. */
  readonly inFlightCalls: UpDownCounter;
  /** Open calls of streaming methods (ConsumeStream tails, ProduceStream pipelines). */
  readonly openStreams: UpDownCounter;

  constructor(source: MeterSource) {
    const meter = source.meter('server');
    this.durationSeconds = meter.createHistogram('annal_rpc_server_duration_seconds', {
      description: 'Duration of gRPC calls, from request metadata to status, by method and status code.',
      unit: 's',
      advice: { explicitBucketBoundaries: [...DURATION_BUCKETS_SECONDS] },
    });
    this.requests = meter.createCounter('annal_rpc_server_requests', {
      description: 'Completed gRPC calls by method and status code.',
    });
    this.errors = meter.createCounter('annal_rpc_server_errors', {
      description: 'Completed gRPC calls with a status code other than OK.',
    });
    this.receivedBytes = meter.createCounter('annal_rpc_server_received_bytes', {
      description: 'Bytes of request messages received (protobuf encoding, without gRPC framing).',
      unit: 'By',
    });
    this.sentBytes = meter.createCounter('annal_rpc_server_sent_bytes', {
      description: 'Bytes of response messages sent (protobuf encoding, without gRPC framing).',
      unit: 'By',
    });
    this.inFlightCalls = meter.createUpDownCounter('annal_rpc_server_in_flight_calls', {
      description: 'gRPC calls started and not yet finished.',
    });
    this.openStreams = meter.createUpDownCounter('annal_rpc_server_open_streams', {
      description: 'Open calls of streaming gRPC methods.',
    });
  }
}

/** The method labels of one gRPC path, `/log.v1.Log/Produce`. */
export function methodAttributes(path: string): Attributes {
  const slash = path.lastIndexOf('/');
  return { grpc_service: path.slice(1, Math.max(1, slash)), grpc_method: path.slice(slash + 1) };
}
