/**
 * The handlers of `log.v1.Log` over a ServedLog.
 *
 * Input rules (each violation is INVALID_ARGUMENT with a message that says what was wrong):
 * - a ProduceRequest must carry a record;
 * - a record's value must not be empty. proglog accepts empty values, but an empty record carries
 *   nothing a consumer can use and is almost always a client bug (an unset field, an empty line),
 *   so annal rejects it rather than store it forever;
 * - a value must not exceed `maxRecordBytes`;
 * - `type` must be 0: other types are reserved for the replicated log's control entries. `offset`
 *   and `term` in a produced record are ignored: the log assigns them;
 * - a ProduceBatch request must carry at least one record and at most `maxBatchRecords`;
 * - bytes that do not decode as the request message (see codec.ts).
 */
import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall, ServerWritableStream, StatusObject } from '@grpc/grpc-js';
import { Metadata, status as Status } from '@grpc/grpc-js';
import { ROOT_CONTEXT, trace, type Span } from '@opentelemetry/api';
import type {
  ConsumeRequest,
  ConsumeResponse,
  GetServersRequest,
  GetServersResponse,
  ProduceBatchRequest,
  ProduceBatchResponse,
  ProduceRequest,
  ProduceResponse,
  Record as WireRecord,
  Server as WireServer,
} from '../gen/log/v1/log.js';
import type { RecordInput } from '../storage/types.js';
import { subjectOfCall } from '../auth/index.js';
import { injectTraceContext, rpcScope, withSpan } from '../telemetry/index.js';
import { InvalidArgumentError, OffsetOutOfRangeError, RecordTooLargeError } from '../util/index.js';
import { DecodeFailure } from './codec.js';
import { offsetWithinNumbers, pumpConsumeStream, SHUTDOWN_STATUS, ShutdownSignal, type ConsumeStreamLimits } from './consume-stream.js';
import { statusFromError } from '../wire/index.js';
import { coalesceWrites } from './coalesced-writes.js';
import { Pipeline } from './pipeline.js';
import type { AppendContext, ServedLog } from './served-log.js';
import type { WideConsumeRequest } from '../wire/index.js';

/** The few logger methods the service uses (pino's Logger has them). */
export interface ServiceLogger {
  error(object: object, message: string): void;
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

export interface LogServiceOptions {
  log: ServedLog;
  /** Largest record value accepted, in bytes. */
  maxRecordBytes: number;
  /** Most records in one ProduceBatch request. */
  maxBatchRecords: number;
  /** Appends (or batches) started but not yet answered per ProduceStream/ProduceBatch call. */
  maxInFlightPerStream: number;
  /** Value bytes of those appends, at most (reading pauses beyond; one request always fits). */
  maxInFlightBytesPerStream: number;
  consume: ConsumeStreamLimits;
  /** How long a read waits for a just-restarted replica to relearn its commit index. Default 3000 ms. */
  catchUpWaitMs?: number;
  /** The cluster as GetServers reports it (a single node reports itself as leader). */
  servers: () => WireServer[];
  logger: ServiceLogger;
}

type Req<T> = T | DecodeFailure;

/** Something a shutdown must end: tailing consumers and open produce streams. */
interface Drainable {
  drain(): void;
}

export class LogServiceHandlers {
  private readonly streams = new Set<Drainable>();
  private draining = false;

  constructor(private readonly options: LogServiceOptions) {}

  /** Number of open streaming calls (tests use it to check that cancelled streams are released). */
  get openStreamCount(): number {
    return this.streams.size;
  }

  /** Shutdown: end tailing streams and stop produce streams after answering what is in flight. */
  drain(): void {
    this.draining = true;
    for (const stream of this.streams) stream.drain();
  }

  /** The handler object for `server.addService(ServedLogService, ...)`. */
  handlers() {
    return {
      produce: (call: ServerUnaryCall<Req<ProduceRequest>, ProduceResponse>, callback: sendUnaryData<ProduceResponse>) =>
        this.produce(call, callback),
      consume: (call: ServerUnaryCall<Req<WideConsumeRequest>, ConsumeResponse>, callback: sendUnaryData<ConsumeResponse>) =>
        this.consume(call, callback),
      consumeStream: (call: ServerWritableStream<Req<WideConsumeRequest>, ConsumeResponse>) => this.consumeStream(call),
      produceStream: (call: ServerDuplexStream<Req<ProduceRequest>, ProduceResponse>) => this.produceStream(call),
      produceBatch: (call: ServerDuplexStream<Req<ProduceBatchRequest>, ProduceBatchResponse>) => this.produceBatch(call),
      getServers: (_call: ServerUnaryCall<Req<GetServersRequest>, GetServersResponse>, callback: sendUnaryData<GetServersResponse>) =>
        callback(null, { servers: this.options.servers() }),
    };
  }

  private produce(call: ServerUnaryCall<Req<ProduceRequest>, ProduceResponse>, callback: sendUnaryData<ProduceResponse>): void {
    let input: RecordInput;
    try {
      input = this.recordFrom(decoded(call.request).record);
    } catch (error) {
      callback(this.status(error));
      return;
    }
    const log = this.options.log;
    const context = appendContext(call);
    withSpan(rpcScope(call.metadata), 'storage.append', (span) => log.append(input, traced(context, span))).then(
      (offset) => callback(null, { offset }),
      (error: unknown) => callback(this.status(error)),
    );
  }

  private consume(call: ServerUnaryCall<Req<WideConsumeRequest>, ConsumeResponse>, callback: sendUnaryData<ConsumeResponse>): void {
    const log = this.options.log;
    let request: WideConsumeRequest;
    let offset: number;
    try {
      request = decoded(call.request);
      offset = offsetWithinNumbers(request.offset, log);
    } catch (error) {
      callback(this.status(error));
      return;
    }
    const read = (retryAfterCatchUp = true): void => {
      try {
        const record = log.read(offset);
        callback(null, { record: record as WireRecord, records: [] });
      } catch (error) {
        // Past the end on a replica that just restarted: the record may be committed already.
        const catchingUp = retryAfterCatchUp && error instanceof OffsetOutOfRangeError && error.offset >= error.nextOffset ? this.caughtUp() : null;
        if (catchingUp === null) callback(this.status(error));
        else void catchingUp.then(() => read(false));
      }
    };
    if (!request.linearizable || this.options.log.linearizableBarrier === undefined) {
      read();
      return;
    }
    this.options.log.linearizableBarrier().then(() => read(), (error: unknown) => callback(this.status(error)));
  }

  private consumeStream(call: ServerWritableStream<Req<WideConsumeRequest>, ConsumeResponse>): void {
    const typedCall = call as unknown as ServerWritableStream<ConsumeRequest, ConsumeResponse>;
    if (this.draining) {
      call.emit('error', SHUTDOWN_STATUS);
      return;
    }
    coalesceWrites(call);
    const controller = new AbortController();
    const stream: Drainable = { drain: () => controller.abort(new ShutdownSignal('server is shutting down')) };
    this.streams.add(stream);
    call.on('cancelled', () => controller.abort(new Error('client cancelled the stream')));
    const ended = (error: unknown): void => {
      this.streams.delete(stream);
      const reason: unknown = controller.signal.reason;
      if (controller.signal.aborted && !(reason instanceof ShutdownSignal)) return; // the client left
      if (controller.signal.aborted) call.emit('error', SHUTDOWN_STATUS);
      else if (error === undefined) call.end();
      else call.emit('error', this.status(error));
    };
    let request: WideConsumeRequest;
    try {
      request = decoded(call.request);
    } catch (error) {
      ended(error);
      return;
    }
    const barrier = request.linearizable ? (this.options.log.linearizableBarrier?.() ?? Promise.resolve()) : (this.caughtUp() ?? Promise.resolve());
    barrier.then(() => pumpConsumeStream(this.options.log, typedCall, request, this.options.consume, controller.signal)).then(
      () => ended(undefined),
      (error: unknown) => ended(error),
    );
  }

  private produceStream(call: ServerDuplexStream<Req<ProduceRequest>, ProduceResponse>): void {
    const log = this.options.log;
    const sizeBytes = (request: Req<ProduceRequest>): number =>
      request instanceof DecodeFailure ? 0 : (request.record?.value.length ?? 0);
    const scope = rpcScope(call.metadata);
    const context = appendContext(call);
    this.servePipeline(call, sizeBytes, (request) => {
      const input = this.recordFrom(decoded(request).record);
      return withSpan(scope, 'storage.append', (span) => log.append(input, traced(context, span))).then(toProduceResponse);
    });
  }

  private produceBatch(call: ServerDuplexStream<Req<ProduceBatchRequest>, ProduceBatchResponse>): void {
    const log = this.options.log;
    const sizeBytes = (request: Req<ProduceBatchRequest>): number => {
      if (request instanceof DecodeFailure) return 0;
      let total = 0;
      for (const record of request.records) total += record.value.length;
      return total;
    };
    const scope = rpcScope(call.metadata);
    const context = appendContext(call);
    this.servePipeline(call, sizeBytes, (request) => {
      const { records, producerId, firstSequence } = decoded(request);
      if (records.length === 0) throw new InvalidArgumentError('ProduceBatch request has no records');
      if (records.length > this.options.maxBatchRecords) {
        throw new InvalidArgumentError(
          `ProduceBatch request has ${records.length} records; the limit is ${this.options.maxBatchRecords}`,
        );
      }
      const inputs = records.map((record) => this.recordFrom(record));
      const attributes = { 'annal.record_count': inputs.length };
      if (producerId !== 0) return withSpan(scope, 'storage.append_batch', (span) => this.appendSequenced(inputs, producerId, firstSequence, traced(context, span)), attributes);
      const appended = withSpan(scope, 'storage.append_batch', (span) => log.appendBatch(inputs, traced(context, span)), attributes);
      return appended.then(({ firstOffset, lastOffset }) => ({
        firstOffset,
        lastOffset,
        count: lastOffset - firstOffset + 1,
        duplicate: false,
      }));
    });
  }

  private async appendSequenced(inputs: RecordInput[], producerId: number, firstSequence: number, context: AppendContext): Promise<ProduceBatchResponse> {
    const log = this.options.log;
    if (log.appendSequenced === undefined) throw new InvalidArgumentError('this node keeps no producer state: produce without producer_id');
    if (!Number.isSafeInteger(firstSequence + inputs.length)) throw new InvalidArgumentError(`first_sequence ${firstSequence} is too large`);
    const { firstOffset, lastOffset, duplicate } = await log.appendSequenced(inputs, producerId, firstSequence, context);
    return { firstOffset, lastOffset, count: lastOffset - firstOffset + 1, duplicate };
  }

  private servePipeline<Request, Response>(
    call: ServerDuplexStream<Request, Response>,
    sizeBytes: (request: Request) => number,
    start: (request: Request) => Promise<Response>,
  ): void {
    if (this.draining) {
      call.emit('error', SHUTDOWN_STATUS);
      return;
    }
    coalesceWrites(call);
    const pipeline = new Pipeline(call, {
      maxInFlight: this.options.maxInFlightPerStream,
      maxInFlightBytes: this.options.maxInFlightBytesPerStream,
      sizeBytes,
      start,
      onUnexpectedError: (error) => this.logUnexpected(error),
    });
    this.streams.add(pipeline);
    void pipeline.run().then(() => this.streams.delete(pipeline));
  }

  /** Validates a produced record (see the rules at the top of this file). */
  private recordFrom(record: WireRecord | undefined): RecordInput {
    if (record === undefined) throw new InvalidArgumentError('ProduceRequest has no record');
    const sizeBytes = record.value.length;
    if (sizeBytes === 0) throw new InvalidArgumentError('record value is empty; annal does not store empty records');
    if (sizeBytes > this.options.maxRecordBytes) throw new RecordTooLargeError(sizeBytes, this.options.maxRecordBytes);
    if (record.type !== 0) {
      throw new InvalidArgumentError(`record type ${record.type} is reserved for the replicated log; produce type 0`);
    }
    return { value: record.value };
  }

  /** Null when the log is caught up, else a promise of that (resolved after catchUpWaitMs at the latest). */
  private caughtUp(): Promise<void> | null {
    const waiting = this.options.log.whenCaughtUp?.() ?? null;
    if (waiting === null) return null;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.catchUpWaitMs ?? 3000);
    });
    return Promise.race([waiting, bound]).finally(() => clearTimeout(timer));
  }

  private status(error: unknown): StatusObject {
    const status = statusFromError(error);
    if (status.code === Status.INTERNAL) this.logUnexpected(error);
    return status;
  }

  private logUnexpected(error: unknown): void {
    this.options.logger.error({ err: error }, 'unexpected error in a log.v1.Log call');
  }
}

/** The certificate subject the ACL authorized (none on a plaintext node), read once if asked for. */
function appendContext(call: { getAuthContext(): ReturnType<ServerUnaryCall<unknown, unknown>['getAuthContext']> }): AppendContext {
  let subject: { value: string | undefined } | undefined;
  return { subject: () => (subject ??= { value: subjectOfCall(call) }).value };
}

/** The context with the span's trace, so that a replicated log forwarding the write continues it. */
function traced(context: AppendContext, span: Span): AppendContext {
  if (!span.isRecording()) return context;
  return {
    ...context,
    trace: () => {
      const metadata = new Metadata();
      injectTraceContext(trace.setSpan(ROOT_CONTEXT, span), metadata);
      return metadata;
    },
  };
}

function toProduceResponse(offset: number): ProduceResponse {
  return { offset };
}

/** The request, or an InvalidArgumentError naming the message and the decoder's reason. */
function decoded<T>(request: Req<T>): T {
  if (request instanceof DecodeFailure) {
    throw new InvalidArgumentError(`malformed ${request.messageName}: ${request.reason}`);
  }
  return request;
}
