/**
 * ConsumeStream: sends records from the requested offset, then tails the log. A caught-up stream
 * awaits `log.waitForAppend` (a promise woken by the next acknowledged append), so a waiting
 * stream costs no CPU. Writes respect the response stream's backpressure: when `write` returns
 * false the pump waits for 'drain' before reading more from the log, and each step reads at most
 * `maxResponseBytes` of values, so a slow connection holds at most about that much per stream.
 * (A grpc-js client that does not read keeps accepting data into its own memory, so the server
 * is held back only once the connection itself backs up; server.test.ts stalls it with a proxy.)
 *
 * Offsets: the stream may start anywhere in [lowestOffset, nextOffset]; outside that it ends at
 * once with OUT_OF_RANGE naming the log's range (as Consume does). Starting at exactly the next
 * offset tails: the stream waits for that offset to be written. proglog's ConsumeStream also waits
 * for an offset far beyond the end, which leaves a client with a wrong offset waiting silently
 * forever, so annal refuses it. A replicated log's follower may lag the leader by a heartbeat, so
 * there an offset past the end is first waited for, up to PAST_END_WAIT_MS. With `stop_at_end`
 * the stream instead ends OK once it has caught up with the log's end.
 *
 * A damaged record ends the stream with DATA_LOSS naming its offset, file and byte, after every
 * intact record before it has been sent (storage fails a whole batch read; see readIntact).
 */
import { once } from 'node:events';
import { status as Status, type ServerWritableStream } from '@grpc/grpc-js';
import type { ConsumeRequest, ConsumeResponse, Record as WireRecord } from '../gen/log/v1/log.js';
import type { ReadLimits, StoredRecord } from '../storage/types.js';
import { assert, CorruptionError, OffsetOutOfRangeError } from '../util/index.js';
import type { ServedLog } from './served-log.js';
import type { WideConsumeRequest } from '../wire/index.js';

export interface ConsumeStreamLimits {
  /** Records read from the log per step in one-record-per-message mode. */
  readChunkRecords: number;
  /** Upper bound on a client's max_batch (larger requests are clamped). */
  maxBatchRecords: number;
  /** Value bytes per batched response (a single larger record is still sent alone). */
  maxResponseBytes: number;
}

/** Why a stream was stopped by the server rather than by the client or an error. */
export class ShutdownSignal extends Error {
  override readonly name = 'ShutdownSignal';
}

/** How long a replicated log's stream waits for an offset past its end before OUT_OF_RANGE. */
const PAST_END_WAIT_MS = 1000;

/** Resolves once `log` holds offsets up to `offset` (exclusive), or after `waitMs`. */
async function waitForOffset(log: ServedLog, offset: number, waitMs: number, signal: AbortSignal): Promise<void> {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new Error('past-end wait over')), waitMs);
  try {
    await log.waitForAppend(offset - 1, controller.signal);
  } catch {
    // Timed out (answered below by the range check) or aborted (the loop sees the signal).
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Pumps records into `call` until the client cancels, `signal` aborts (server shutdown), or an
 * error occurs. Rejects with the error to send as status; resolves when the call should end OK.
 */
export async function pumpConsumeStream(
  log: ServedLog,
  call: ServerWritableStream<ConsumeRequest, ConsumeResponse>,
  request: WideConsumeRequest,
  limits: ConsumeStreamLimits,
  signal: AbortSignal,
): Promise<void> {
  let next = offsetWithinNumbers(request.offset, log);
  // A replica may lag the leader by a heartbeat: an offset just past its end may exist already.
  if (next > log.nextOffset() && log.whenCaughtUp !== undefined) await waitForOffset(log, next, PAST_END_WAIT_MS, signal);
  if (next < log.lowestOffset() || next > log.nextOffset()) throw new OffsetOutOfRangeError(next, log.lowestOffset(), log.nextOffset());
  const batchRecords = Math.min(request.maxBatch, limits.maxBatchRecords);
  const readLimits =
    batchRecords > 0
      ? { maxCount: batchRecords, maxBytes: limits.maxResponseBytes }
      : { maxCount: limits.readChunkRecords, maxBytes: limits.maxResponseBytes };
  const write = batchRecords > 0 ? writeBatch : writeEach;
  while (!signal.aborted) {
    if (next >= log.nextOffset()) {
      if (request.stopAtEnd) return;
      await log.waitForAppend(next, signal);
      continue;
    }
    const { records, corruption } = readIntact(log, next, readLimits);
    if (corruption !== undefined) {
      // The intact records before the damaged one go out first, then DATA_LOSS names it.
      if (records.length > 0) write(call, records);
      throw corruption;
    }
    // readBatch returns at least one record below nextOffset(), checked just above (same tick).
    assert(records.length > 0, `readBatch(${next}) returned nothing below nextOffset ${log.nextOffset()}`);
    assert(records[0]!.offset === next, `readBatch(${next}) started at ${records[0]!.offset}`);
    next = records[records.length - 1]!.offset + 1;
    if (!write(call, records)) await waitForDrain(call, signal);
  }
}

/**
 * A batch read from `offset`, or, when the batch holds a damaged record (storage fails the whole
 * batch), the intact records before it and the CorruptionError of the first damaged one. The
 * re-read goes record by record within the same limits, so it costs one read per record only on
 * the step that meets the damage.
 */
export function readIntact(log: ServedLog, offset: number, limits: ReadLimits): { records: StoredRecord[]; corruption?: CorruptionError } {
  try {
    return { records: log.readBatch(offset, limits) };
  } catch (error) {
    if (!(error instanceof CorruptionError)) throw error;
  }
  const records: StoredRecord[] = [];
  let valueBytes = 0;
  const end = Math.min(log.nextOffset(), offset + limits.maxCount);
  for (let at = offset; at < end; at++) {
    let record: StoredRecord;
    try {
      record = log.read(at);
    } catch (error) {
      if (error instanceof CorruptionError) return { records, corruption: error };
      throw error;
    }
    if (records.length > 0 && valueBytes + record.value.length > limits.maxBytes) break;
    records.push(record);
    valueBytes += record.value.length;
  }
  // Every record read on its own: the batch failed on a record past the limits (or the damage
  // was repaired in between); what was read is intact.
  return { records };
}

/**
 * The requested offset as a number, or OffsetOutOfRangeError with the log's range for a wire
 * offset above 2^53 - 1, which no log reaches.
 */
export function offsetWithinNumbers(offset: number | bigint, log: ServedLog): number {
  if (typeof offset === 'number') return offset;
  throw new OffsetOutOfRangeError(offset, log.lowestOffset(), log.nextOffset());
}

function writeBatch(call: ServerWritableStream<ConsumeRequest, ConsumeResponse>, records: StoredRecord[]): boolean {
  return call.write({ record: undefined, records: records as WireRecord[] });
}

function writeEach(call: ServerWritableStream<ConsumeRequest, ConsumeResponse>, records: StoredRecord[]): boolean {
  let writable = true;
  // Corked, the chunk reaches the call as one write (see coalesced-writes.ts).
  call.cork();
  for (const record of records) writable = call.write({ record: record as WireRecord, records: [] });
  call.uncork();
  return writable;
}

async function waitForDrain(call: ServerWritableStream<ConsumeRequest, ConsumeResponse>, signal: AbortSignal): Promise<void> {
  await once(call, 'drain', { signal });
}

/** The status a stream ended by server shutdown gets: clients reconnect and resume. */
export const SHUTDOWN_STATUS = {
  code: Status.UNAVAILABLE,
  details: 'server is shutting down; reconnect and resume from the next offset',
} as const;
