/**
 * The history of a nemesis run: one JSON object per line, in the order the runner observed them.
 *
 * - An operation is an `invoke` event followed, on the same `process`, by exactly one completion:
 *   `ok` (it took effect, with its result), `fail` (it certainly did not take effect) or `unknown`
 *   (it may or may not have: a timeout, a lost connection, a crashed node). A process runs one
 *   operation at a time, so a completion belongs to its process's last invoke.
 * - A tailing consumer's records are `ok` events of kind `tail` without an invoke (a stream has no
 *   call per record); `session` names one stream, whose offsets must be consecutive.
 * - `nemesis` events mark a fault's start and stop.
 * - `timeMs` is monotonic (performance.now() relative to the start of the run) and never goes
 *   backwards in the file.
 */
export type OperationKind = 'produce' | 'read' | 'lin-read' | 'tail';

export interface OperationEvent {
  readonly type: 'invoke' | 'ok' | 'fail' | 'unknown';
  readonly process: number;
  readonly f: OperationKind;
  readonly timeMs: number;
  /** The node the operation was sent to. */
  readonly node?: string;
  /** produce: the value written. read/tail ok: the value read, or null for past the end. */
  readonly value?: string | null;
  /** produce ok: the acknowledged offset. read/tail: the offset read. */
  readonly offset?: number;
  readonly session?: number;
  readonly error?: string;
  /**
   * produce invoke: written by an idempotent producer, whose retries resend the same (producer
   * id, sequence), so the log must hold the value exactly once however often it was sent.
   */
  readonly idempotent?: boolean;
}

export interface NemesisEvent {
  readonly type: 'nemesis';
  readonly phase: 'start' | 'stop';
  readonly fault: string;
  readonly targets: readonly string[];
  readonly timeMs: number;
  /** Whether a majority of the voters stayed up and connected while this fault lasted. */
  readonly majority?: boolean;
}

export type HistoryEvent = OperationEvent | NemesisEvent;

/** A completed operation: an invoke and its completion. */
export interface Operation {
  readonly process: number;
  readonly f: OperationKind;
  readonly node?: string;
  readonly status: 'ok' | 'fail' | 'unknown';
  readonly invokeMs: number;
  /** Infinity for an operation that never completed (status unknown). */
  readonly completeMs: number;
  /** produce: the value written; reads: the value read (null: nothing at that offset yet). */
  readonly value?: string | null;
  readonly offset?: number;
  readonly session?: number;
  readonly error?: string;
  readonly idempotent?: boolean;
}

export function encodeEvent(event: HistoryEvent): string {
  return JSON.stringify(event);
}

export class HistoryFormatError extends Error {
  override readonly name = 'HistoryFormatError';
}

/** Parses JSON lines (blank lines ignored); throws HistoryFormatError naming the bad line. */
export function parseHistory(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  let previousMs = -Infinity;
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let event: HistoryEvent;
    try {
      event = JSON.parse(line) as HistoryEvent;
    } catch (error) {
      throw new HistoryFormatError(`history line ${i + 1} is not JSON: ${(error as Error).message}`);
    }
    if (!['invoke', 'ok', 'fail', 'unknown', 'nemesis'].includes(event.type) || typeof event.timeMs !== 'number') {
      throw new HistoryFormatError(`history line ${i + 1} is not an event: ${line}`);
    }
    if (event.timeMs < previousMs) throw new HistoryFormatError(`history line ${i + 1} goes back in time (${event.timeMs} < ${previousMs})`);
    previousMs = event.timeMs;
    events.push(event);
  }
  return events;
}

/**
 * Pairs invokes with completions. An invoke left open at the end is unknown (its process was
 * stopped mid-call); a completion without an invoke is a format error, except tail records.
 */
export function operations(events: readonly HistoryEvent[]): Operation[] {
  const open = new Map<number, OperationEvent>();
  const out: Operation[] = [];
  for (const event of events) {
    if (event.type === 'nemesis') continue;
    if (event.type === 'invoke') {
      if (open.has(event.process)) throw new HistoryFormatError(`process ${event.process} invoked at ${event.timeMs} ms with an operation still open`);
      open.set(event.process, event);
      continue;
    }
    if (event.f === 'tail') {
      out.push(completed(event, event, event.type));
      continue;
    }
    const invoke = open.get(event.process);
    if (invoke === undefined) throw new HistoryFormatError(`process ${event.process} completed at ${event.timeMs} ms without an invoke`);
    open.delete(event.process);
    out.push(completed(invoke, event, event.type));
  }
  for (const invoke of open.values()) out.push(completed(invoke, undefined, 'unknown'));
  return out;
}

function completed(invoke: OperationEvent, completion: OperationEvent | undefined, status: Operation['status']): Operation {
  const isRead = invoke.f !== 'produce';
  return {
    process: invoke.process,
    f: invoke.f,
    ...(invoke.node !== undefined ? { node: invoke.node } : {}),
    status,
    invokeMs: invoke.timeMs,
    completeMs: status === 'unknown' || completion === undefined ? Infinity : completion.timeMs,
    ...(isRead ? (completion?.value !== undefined ? { value: completion.value } : {}) : invoke.value !== undefined ? { value: invoke.value } : {}),
    ...(isRead ? (invoke.offset !== undefined ? { offset: invoke.offset } : {}) : completion?.offset !== undefined ? { offset: completion.offset } : {}),
    ...(invoke.session !== undefined ? { session: invoke.session } : {}),
    ...(completion?.error !== undefined ? { error: completion.error } : {}),
    ...(invoke.idempotent === true ? { idempotent: true } : {}),
  };
}
