/**
 * A typed client for `log.v1.Log`. Every failure is one of util/errors' classes (mapped from the
 * gRPC status by wire/status.ts), e.g. OffsetOutOfRangeError with the log's range.
 *
 * Addresses: `annal://host:port[,host:port...]` names a cluster by any of its members. The client
 * then learns the members and the leader (cluster-resolver.ts), sends writes to the leader and
 * spreads reads over the followers (route-balancer.ts), and retries: every write goes through an
 * idempotent producer (idempotent-producer.ts), so a write resent after a leader change or a lost
 * connection is appended once, in order, and a write whose outcome stays unknown past the retry
 * deadline fails with OutcomeUnknownError; reads and GetServers are retried on another member. A
 * plain `host:port` talks to that one node, as proglog's client does, without retries, unless
 * `idempotent` is set: its writes then go through an idempotent producer on that node (which
 * forwards them to the leader when it does not lead), resent there after a lost answer.
 *
 * - `produce(value)`: one unary call per record (simplest; one round trip and one fsync wait each).
 * - `produceStream()`: a pipelined ProduceStream; many records in flight share fsyncs.
 * - `produceBatch(values)`: many records in one ProduceBatch request (one fsync per batch).
 * - `batchingProducer()`: collects single records into ProduceBatch requests.
 * - `consume(offset)`, `consumeStream(from, { signal, maxBatch, follow })`, `getServers()`.
 * - `getMembers()`: the gossip membership as the node sees it (`annal.admin.v1.Admin`, same channel).
 */
import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  status as Status,
  type CallOptions,
  type ChannelOptions,
  type Interceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import {
  ConsumeResponse,
  LogClient,
  LogService,
  ProduceResponse,
  ProduceBatchResponse,
  type Record as WireRecord,
  type Server as WireServer,
} from '../gen/log/v1/log.js';
import { AdminClient } from '../gen/annal/admin/v1/admin.js';
import { enablePipelinedWrites, errorFromStatus } from '../wire/index.js';
import { clusterSeeds, Discovery, DISCOVERY_OPTION } from './cluster-resolver.js';
import { DEFAULT_RETRY, IdempotentProducer, type RetryOptions } from './idempotent-producer.js';
import { routeMetadata, type Route } from './route-balancer.js';
import { decodeConsumeResponseFast, decodeProduceBatchResponseFast, decodeProduceResponseFast } from '../wire/index.js';
import { encodeProduceBatchRequest, encodeProduceRequest } from '../wire/index.js';
import { createClientInterceptor } from '../telemetry/client.js';
import { assert, ClosedError, LeadershipLostError, NotLeaderError, RaftBusyError, UnavailableError } from '../util/index.js';
import { BatchingProducer, type BatchingProducerOptions } from './batching-producer.js';
import { channelCredentials, type ClientSecurity } from './credentials.js';
import { PipelinedStream } from './pending.js';

/** A record as read from the log. */
export interface ConsumedRecord {
  offset: number;
  value: Buffer;
  term: number;
  type: number;
}

export interface ServerInfo {
  id: string;
  rpcAddr: string;
  isLeader: boolean;
  /** Raft role: leader, follower or learner (a single-node server reports leader). */
  role: string;
  isVoter: boolean;
  /** On the leader's answer, how far the member's log matches the leader's (Raft index); else 0. */
  matchIndex: number;
}

/** A gossip member as a node reports it (Serf semantics). */
export interface MemberInfo {
  name: string;
  /** Gossip address, `host:port`. */
  addr: string;
  /** alive | leaving | left | failed */
  status: string;
  /** Serf tags; annal nodes carry `rpc_addr`. */
  tags: Record<string, string>;
}

export interface AnnalClientOptions {
  /** `annal://host:port[,host:port...]` (a cluster, by any of its members) or `host:port` (one node). */
  address: string;
  security: ClientSecurity;
  /** Deadline for unary calls, in milliseconds; 0 means none. Default 30 s. */
  callTimeoutMs?: number;
  /** Largest response accepted, in bytes. Default 64 MiB (a batched ConsumeStream response). */
  maxResponseBytes?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
  /**
   * grpc-js client interceptors. Default: one that sends W3C `traceparent` for a client span from
   * the global OpenTelemetry tracer (a no-op unless the application registered an SDK), so traces
   * continue on the server.
   */
  interceptors?: Interceptor[];
  /** Retries of an `annal://` client (see idempotent-producer.ts for what each bound means). */
  retry?: Partial<RetryOptions>;
  /** How often an `annal://` client refreshes its view of the cluster, in milliseconds. Default 2000. */
  refreshIntervalMs?: number;
  /**
   * Writes through an idempotent producer (producer id and sequences; resent after a lost answer
   * without duplicates). Always so on `annal://`; on a plain `host:port` only when set: an annal
   * node that does not lead forwards such batches to its leader, a proglog server lacks them.
   */
  idempotent?: boolean;
}

export interface ConsumeStreamOptions {
  /** Aborting ends the iteration with the signal's reason (an AbortError by default). */
  signal?: AbortSignal;
  /** Ask the server to pack up to this many records per message (0: one record per message). */
  maxBatch?: number;
  /** Keep waiting for new records after catching up (default true); false ends at the log's end. */
  follow?: boolean;
  /** Start only once the node has confirmed with the leader that it sees every acknowledged record. */
  linearizable?: boolean;
}

export interface ProduceBatchResult {
  firstOffset: number;
  lastOffset: number;
}

/**
 * An offset for the generated ConsumeRequest encoder. Its field is typed number, but the encoder
 * writes it with BinaryWriter.uint64, which takes a bigint exactly; a number above 2^53 - 1 would
 * already have lost its low digits.
 */
function wireOffset(offset: number | bigint): number {
  return offset as number;
}

function decodeProduceResponse(bytes: Buffer): ProduceResponse {
  return decodeProduceResponseFast(bytes) ?? ProduceResponse.decode(bytes);
}

function decodeProduceBatchResponse(bytes: Buffer): ProduceBatchResponse {
  return decodeProduceBatchResponseFast(bytes) ?? ProduceBatchResponse.decode(bytes);
}

function decodeConsumeResponse(bytes: Buffer): ConsumeResponse {
  return decodeConsumeResponseFast(bytes) ?? ConsumeResponse.decode(bytes);
}

/** The generated client with the fast codecs for the produce path (hot path). */
const FastLogClient = makeGenericClientConstructor(
  {
    ...LogService,
    produce: { ...LogService.produce, requestSerialize: encodeProduceRequest, responseDeserialize: decodeProduceResponse },
    produceStream: { ...LogService.produceStream, requestSerialize: encodeProduceRequest, responseDeserialize: decodeProduceResponse },
    produceBatch: { ...LogService.produceBatch, requestSerialize: encodeProduceBatchRequest, responseDeserialize: decodeProduceBatchResponse },
    consume: { ...LogService.consume, responseDeserialize: decodeConsumeResponse },
    consumeStream: { ...LogService.consumeStream, responseDeserialize: decodeConsumeResponse },
  },
  'log.v1.Log',
) as unknown as typeof LogClient;

export class AnnalClient {
  readonly raw: LogClient;
  private readonly callTimeoutMs: number;
  private admin: AdminClient | undefined;
  /** Set for an `annal://` address: the cluster view that routes and retries use. */
  private readonly discovery: Discovery | undefined;
  private readonly retry: RetryOptions;
  /** Whether writes go through idempotent producers. */
  private readonly idempotent: boolean;
  private sharedProducer: IdempotentProducer | undefined;
  private readonly producers = new Set<IdempotentProducer>();

  constructor(options: AnnalClientOptions) {
    enablePipelinedWrites(); // a ProduceStream's queued records leave together, not one per event-loop turn
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    const credentials = channelCredentials(options.security);
    const seeds = clusterSeeds(options.address);
    if (seeds !== undefined) {
      this.discovery = new Discovery({
        seeds,
        credentials,
        ...(options.refreshIntervalMs !== undefined ? { refreshIntervalMs: options.refreshIntervalMs } : {}),
        ...(options.channelOptions !== undefined ? { channelOptions: options.channelOptions } : {}),
      });
    }
    this.raw = new FastLogClient(options.address, credentials, {
      'grpc.max_receive_message_length': options.maxResponseBytes ?? 64 * 1024 * 1024,
      'grpc.max_send_message_length': -1,
      // HTTP/2 receive window: the 64 KiB default stalls a ConsumeStream of 1 MiB batches on
      // window updates; 8 MiB keeps several batches on the wire (measured ~1.3x on loopback).
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
      ...options.channelOptions,
      ...(this.discovery !== undefined ? { [DISCOVERY_OPTION]: this.discovery.id } : {}),
      interceptors: options.interceptors ?? [createClientInterceptor({ tracer: trace.getTracer('annal.client') })],
    });
    this.idempotent = this.discovery !== undefined || options.idempotent === true;
  }

  /** Whether this client talks to a cluster (`annal://`): routed calls, idempotent retried writes. */
  get clustered(): boolean {
    return this.discovery !== undefined;
  }

  /** Appends one record; resolves with its offset once the server acknowledged it. */
  produce(value: Uint8Array): Promise<number> {
    if (this.idempotent) {
      this.sharedProducer ??= this.newProducer('independent');
      return this.sharedProducer.send([value]).then(({ firstOffset }) => firstOffset);
    }
    return new Promise((resolve, reject) => {
      this.raw.produce(produceRequest(value), new Metadata(), this.unaryOptions(), (error, response) =>
        error ? reject(mapError(error)) : resolve(response.offset),
      );
    });
  }

  /**
   * Opens a pipelined produce stream: `send(value)` writes immediately and resolves with the
   * offset. On an idempotent client (`annal://`) it is an idempotent producer of its own (its
   * records keep their order across leader changes); otherwise a ProduceStream call.
   */
  produceStream(): ProduceStreamHandle {
    if (this.idempotent) {
      const producer = this.newProducer();
      return new ProduceStreamHandle({
        get inFlight() {
          return producer.inFlight;
        },
        send: (value) => producer.send([value]).then(({ firstOffset }) => firstOffset),
        close: () => this.closeProducer(producer),
        cancel: () => producer.cancel(),
      });
    }
    const stream = new PipelinedStream(this.raw.produceStream(), (response: ProduceResponse) => response.offset);
    return new ProduceStreamHandle({
      get inFlight() {
        return stream.inFlight;
      },
      send: (value) => stream.send(produceRequest(value)),
      close: () => stream.close(),
      cancel: () => stream.cancel(),
    });
  }

  /** Opens a ProduceBatch stream: `send(values)` resolves with the batch's offsets (an idempotent producer on an idempotent client). */
  produceBatchStream(): ProduceBatchHandle {
    if (this.idempotent) {
      const producer = this.newProducer();
      return new ProduceBatchHandle({
        get inFlight() {
          return producer.inFlight;
        },
        send: (values) => producer.send(values),
        close: () => this.closeProducer(producer),
        cancel: () => producer.cancel(),
      });
    }
    const stream = new PipelinedStream(this.raw.produceBatch(), (response: ProduceBatchResponse) => ({
      firstOffset: response.firstOffset,
      lastOffset: response.lastOffset,
    }));
    return new ProduceBatchHandle({
      get inFlight() {
        return stream.inFlight;
      },
      send: (values) => stream.send({ records: values.map(wireRecord), producerId: 0, firstSequence: 0 }),
      close: () => stream.close(),
      cancel: () => stream.cancel(),
    });
  }

  private newProducer(onRefusal: 'stream' | 'independent' = 'stream'): IdempotentProducer {
    const producer = new IdempotentProducer(
      () => this.raw.produceBatch(this.metadata('write')),
      { ...this.retry, maxInFlightBatches: 256, onRefusal },
      () => this.discovery?.refresh(),
      () => this.discovery?.refusedBy,
    );
    this.producers.add(producer);
    return producer;
  }

  private async closeProducer(producer: IdempotentProducer): Promise<void> {
    try {
      await producer.close();
    } finally {
      this.producers.delete(producer);
    }
  }

  /** Appends `values` as one batch on a one-shot ProduceBatch call. */
  async produceBatch(values: readonly Uint8Array[]): Promise<ProduceBatchResult> {
    const stream = this.produceBatchStream();
    try {
      return await stream.send(values);
    } finally {
      await stream.close().catch(() => {});
    }
  }

  /** A producer that groups single records into ProduceBatch requests (see batching-producer.ts). */
  batchingProducer(options: Partial<BatchingProducerOptions> = {}): BatchingProducer {
    return new BatchingProducer(this.produceBatchStream(), options);
  }

  /**
   * Reads the record at `offset`; OffsetOutOfRangeError outside the log's range. Offsets are
   * uint64 on the wire: a bigint reaches the server exactly (no log reaches 2^53 - 1, so one
   * above it is always out of range). With `linearizable`, the read reflects every record
   * acknowledged before the call (ReadIndex through the leader).
   */
  consume(offset: number | bigint, options: { linearizable?: boolean } = {}): Promise<ConsumedRecord> {
    const linearizable = options.linearizable ?? false;
    return this.retried(() => new Promise((resolve, reject) => {
      const request = { offset: wireOffset(offset), maxBatch: 0, stopAtEnd: false, linearizable };
      this.raw.consume(request, this.metadata(linearizable ? 'any' : 'read'), this.unaryOptions(), (error, response) => {
        if (error) reject(mapError(error));
        else if (response.record === undefined) reject(mapError({ code: Status.INTERNAL, details: 'Consume response has no record' }));
        else resolve(response.record);
      });
    }));
  }

  /** Records from `from` on, one at a time; tails the log unless `follow` is false. */
  async *consumeStream(from: number | bigint, options: ConsumeStreamOptions = {}): AsyncGenerator<ConsumedRecord> {
    for await (const batch of this.consumeBatches(from, options)) yield* batch;
  }

  /**
   * Like consumeStream, but yields each response's records together (cheaper per record). On an
   * `annal://` client a stream that fails with a retryable error resumes on another member from
   * the next offset, as long as it makes progress within the retry deadline.
   */
  async *consumeBatches(from: number | bigint, options: ConsumeStreamOptions = {}): AsyncGenerator<ConsumedRecord[]> {
    let next = from;
    let backoffMs = this.retry.initialBackoffMs;
    let progressAtMs = Date.now();
    for (;;) {
      try {
        for await (const batch of this.consumeBatchesOnce(next, options)) {
          const last = batch[batch.length - 1];
          if (last !== undefined) {
            next = last.offset + 1;
            progressAtMs = Date.now();
            backoffMs = this.retry.initialBackoffMs;
          }
          yield batch;
        }
        return;
      } catch (error) {
        if (this.discovery === undefined || options.signal?.aborted === true) throw error;
        const refused = error instanceof UnavailableError ? this.discovery.refusedBy : undefined;
        if (refused !== undefined) throw refused;
        if (!retryable(error) || Date.now() - progressAtMs > this.retry.retryDeadlineMs) throw error;
        this.discovery.refresh();
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, this.retry.maxBackoffMs);
      }
    }
  }

  private async *consumeBatchesOnce(from: number | bigint, options: ConsumeStreamOptions): AsyncGenerator<ConsumedRecord[]> {
    const { signal, maxBatch = 0, follow = true, linearizable = false } = options;
    signal?.throwIfAborted();
    const request = { offset: wireOffset(from), maxBatch, stopAtEnd: !follow, linearizable };
    const call = this.discovery !== undefined ? this.raw.consumeStream(request, this.metadata(linearizable ? 'any' : 'read')) : this.raw.consumeStream(request);
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const response of call as AsyncIterable<ConsumeResponse>) {
        yield recordsOf(response);
      }
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw mapError(error as ServiceError);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  async getServers(): Promise<ServerInfo[]> {
    return this.retried(() => new Promise((resolve, reject) => {
      this.raw.getServers({}, this.metadata('any'), this.unaryOptions(), (error, response) =>
        error ? reject(mapError(error)) : resolve(response.servers.map(toServerInfo)),
      );
    }));
  }

  /** Every gossip member the node knows (itself included), sorted by name; empty without membership. */
  getMembers(): Promise<MemberInfo[]> {
    return this.retried(() => this.getMembersOnce());
  }

  private async getMembersOnce(): Promise<MemberInfo[]> {
    // The Admin client rides on the Log client's channel (one connection, its credentials; the
    // address and credentials given here are ignored with channelOverride).
    this.admin ??= new AdminClient(this.raw.getChannel().getTarget(), credentials.createInsecure(), { channelOverride: this.raw.getChannel() });
    const admin = this.admin;
    return new Promise((resolve, reject) => {
      admin.getMembers({}, this.metadata('any'), this.unaryOptions(), (error, response) =>
        error ? reject(mapError(error)) : resolve(response.members.map((m) => ({ name: m.name, addr: m.addr, status: m.status, tags: { ...m.tags } }))),
      );
    });
  }

  /** Closes the channel; producers still open are cancelled (their unanswered writes reject). */
  close(): void {
    for (const producer of this.producers) producer.cancel();
    this.producers.clear();
    this.sharedProducer?.cancel();
    this.discovery?.close();
    this.raw.close();
  }

  /** Call metadata: the route on an `annal://` client (the picker reads it), empty otherwise. */
  private metadata(route: Route): Metadata {
    return this.discovery !== undefined ? routeMetadata(route) : new Metadata();
  }

  /** Runs an idempotent call, retrying it on another member (annal:// only) while the error says nothing was done. */
  private async retried<T>(call: () => Promise<T>): Promise<T> {
    const deadlineMs = Date.now() + this.retry.retryDeadlineMs;
    let backoffMs = this.retry.initialBackoffMs;
    for (;;) {
      try {
        return await call();
      } catch (error) {
        if (this.discovery === undefined) throw error;
        const refused = error instanceof UnavailableError ? this.discovery.refusedBy : undefined;
        if (refused !== undefined) throw refused;
        if (!retryable(error) || Date.now() + backoffMs > deadlineMs) throw error;
        this.discovery.refresh();
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, this.retry.maxBackoffMs);
      }
    }
  }

  private unaryOptions(): Partial<CallOptions> {
    return this.callTimeoutMs > 0 ? { deadline: Date.now() + this.callTimeoutMs } : {};
  }
}

/**
 * A pipelined ProduceStream. `send` writes at once and never waits, so a caller producing
 * without bound should keep its own window (e.g. wait for older sends when `inFlight` is large);
 * the server answers in order and pauses reading beyond its own in-flight limit.
 */
/** What a produce handle writes through: a ProduceStream/ProduceBatch call, or an idempotent producer. */
interface Sink<Input, Result> {
  readonly inFlight: number;
  send(input: Input): Promise<Result>;
  close(): Promise<void>;
  cancel(): void;
}

export class ProduceStreamHandle {
  constructor(private readonly stream: Sink<Uint8Array, number>) {}

  /** Records sent and not yet acknowledged. */
  get inFlight(): number {
    return this.stream.inFlight;
  }

  /** Sends one record without waiting for earlier ones; resolves with its offset. */
  send(value: Uint8Array): Promise<number> {
    return this.stream.send(value);
  }

  /** Ends the stream after every sent record is acknowledged. */
  close(): Promise<void> {
    return this.stream.close();
  }

  cancel(): void {
    this.stream.cancel();
  }
}

/** A pipelined ProduceBatch stream. */
export class ProduceBatchHandle {
  constructor(private readonly stream: Sink<readonly Uint8Array[], ProduceBatchResult>) {}

  get inFlight(): number {
    return this.stream.inFlight;
  }

  send(values: readonly Uint8Array[]): Promise<ProduceBatchResult> {
    assert(values.length > 0, 'a batch needs at least one record');
    return this.stream.send(values);
  }

  close(): Promise<void> {
    return this.stream.close();
  }

  cancel(): void {
    this.stream.cancel();
  }
}

function wireRecord(value: Uint8Array): WireRecord {
  return { value: value as Buffer, offset: 0, term: 0, type: 0 };
}

function produceRequest(value: Uint8Array): { record: WireRecord } {
  return { record: wireRecord(value) };
}

/** Errors after which an idempotent call may be sent again, to this member or another. */
function retryable(error: unknown): boolean {
  return error instanceof UnavailableError || error instanceof NotLeaderError || error instanceof LeadershipLostError || error instanceof RaftBusyError || error instanceof ClosedError;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function recordsOf(response: ConsumeResponse): ConsumedRecord[] {
  if (response.records.length > 0) return response.records;
  return response.record === undefined ? [] : [response.record];
}

function toServerInfo(server: WireServer): ServerInfo {
  return { id: server.id, rpcAddr: server.rpcAddr, isLeader: server.isLeader, role: server.role, isVoter: server.isVoter, matchIndex: server.matchIndex };
}

function mapError(error: { code: number; details: string; metadata?: Metadata }): Error {
  return errorFromStatus(error, error);
}
