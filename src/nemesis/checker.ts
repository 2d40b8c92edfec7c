/**
 * Checks a nemesis history against the final logs the nodes hold once the faults have healed and
 * the cluster has converged. Each check names the violation it found; none stops the others.
 *
 * - divergent-log: every node holds the same records (value and term) at the same offsets.
 * - lost-ack: an acknowledged produce's value is at its acknowledged offset on every node.
 * - wrong-offset: ... and not at some other offset instead.
 * - duplicate: no value is in a log twice (values are unique per produce); for an idempotent
 *   producer's write, exactly once on every node however often it was resent (ok: exactly once,
 *   unknown: at most once), since its retries carry the same (producer id, sequence).
 * - failed-visible: a produce that failed (certainly not applied) left nothing in the log.
 * - phantom: every record in the log was produced by someone.
 * - realtime-order: a produce acknowledged before another was invoked has the lower offset.
 * - stale-read: a linearizable read reflects every produce acknowledged before it began.
 * - bad-read: a read (plain, linearizable or tailing) shows what the final log holds at that offset,
 *   so no read ever showed a record that was later lost.
 * - tail-gap: a tailing consumer sees consecutive offsets.
 * - not-linearizable: the produce and linearizable-read history has a linearization under the log
 *   model (Wing & Gong search of src/sim/linearizability.ts).
 */
import { checkLinearizable, type Model, type Operation as LinOperation } from '../sim/linearizability.js';
import type { HistoryEvent, NemesisEvent, Operation } from './history.js';
import { operations } from './history.js';

export interface LogRecord {
  readonly value: string;
  readonly term: number;
}

/** A node's log as read at the end, indexed by offset (offset 0 first). */
export interface FinalLog {
  readonly node: string;
  readonly records: readonly LogRecord[];
}

export type ViolationKind =
  | 'divergent-log'
  | 'lost-ack'
  | 'wrong-offset'
  | 'duplicate'
  | 'failed-visible'
  | 'phantom'
  | 'realtime-order'
  | 'stale-read'
  | 'bad-read'
  | 'tail-gap'
  | 'not-linearizable';

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
}

export interface FaultWindow {
  readonly fault: string;
  readonly targets: readonly string[];
  readonly startMs: number;
  readonly stopMs: number;
  readonly majority: boolean;
  /** From the fault's end to the next acknowledged produce; undefined if none followed. */
  readonly recoveryMs: number | undefined;
}

export interface Counts {
  readonly ok: number;
  readonly fail: number;
  readonly unknown: number;
}

export interface CheckResult {
  readonly valid: boolean;
  readonly violations: readonly Violation[];
  /** Violations per kind (the list keeps at most `detailsMax` of each). */
  readonly violationCounts: Readonly<Partial<Record<ViolationKind, number>>>;
  readonly counts: Readonly<Record<Operation['f'], Counts>>;
  /** Idempotent produces whose value was checked to be held exactly (or, unknown, at most) once on every node. */
  readonly exactlyOnce: number;
  readonly logLength: number;
  readonly linearizability: 'ok' | 'illegal' | 'unknown';
  /** ok / all operations invoked while no fault without a majority was active. */
  readonly availability: number;
  readonly faults: readonly FaultWindow[];
}

export interface CheckOptions {
  /** Violations listed per kind; the rest are only counted. */
  readonly detailsMax?: number;
  /** Step budget of the linearizability search (beyond it the verdict is 'unknown'). */
  readonly linearizabilityStepsMax?: number;
}

export function checkHistory(events: readonly HistoryEvent[], finalLogs: readonly FinalLog[], options: CheckOptions = {}): CheckResult {
  const detailsMax = options.detailsMax ?? 20;
  const violations: Violation[] = [];
  const violationCounts: Partial<Record<ViolationKind, number>> = {};
  const report = (kind: ViolationKind, message: string): void => {
    const count = (violationCounts[kind] ?? 0) + 1;
    violationCounts[kind] = count;
    if (count <= detailsMax) violations.push({ kind, message });
  };
  const ops = operations(events);
  const reference = finalLogs[0]?.records ?? [];

  checkLogsIdentical(finalLogs, report);
  const idempotent = new Set(ops.filter((op) => op.f === 'produce' && op.idempotent === true && typeof op.value === 'string').map((op) => op.value as string));
  const positions = valuePositions(reference, idempotent, report);
  const exactlyOnce = checkExactlyOnce(ops, finalLogs, report);
  checkProduces(ops, finalLogs, positions, report);
  checkRealTimeOrder(ops, report);
  checkReads(ops, reference, report);
  const linearizability = checkLogLinearizable(ops, positions, options.linearizabilityStepsMax ?? 5_000_000);
  if (linearizability === 'illegal') report('not-linearizable', 'no linearization of the produce and linearizable-read history exists under the log model');

  const faults = faultWindows(events, ops);
  return {
    valid: violations.length === 0,
    violations,
    violationCounts,
    counts: countOperations(ops),
    exactlyOnce,
    logLength: reference.length,
    linearizability,
    availability: availability(ops, faults),
    faults,
  };
}

type Report = (kind: ViolationKind, message: string) => void;

function checkLogsIdentical(finalLogs: readonly FinalLog[], report: Report): void {
  const [first, ...rest] = finalLogs;
  if (first === undefined) return;
  for (const other of rest) {
    if (other.records.length !== first.records.length) {
      report('divergent-log', `${other.node} holds ${other.records.length} records, ${first.node} ${first.records.length}`);
    }
    const common = Math.min(other.records.length, first.records.length);
    for (let offset = 0; offset < common; offset++) {
      const a = first.records[offset]!;
      const b = other.records[offset]!;
      if (a.value !== b.value || a.term !== b.term) {
        report('divergent-log', `offset ${offset}: ${first.node} holds ${describe(a)}, ${other.node} ${describe(b)}`);
        break;
      }
    }
  }
}

function describe(record: LogRecord): string {
  return `${JSON.stringify(record.value)} (term ${record.term})`;
}

/** Offset of each value in the reference log; reports values held twice (idempotent ones: checkExactlyOnce, on every node). */
function valuePositions(reference: readonly LogRecord[], idempotent: ReadonlySet<string>, report: Report): Map<string, number> {
  const positions = new Map<string, number>();
  for (const [offset, record] of reference.entries()) {
    const earlier = positions.get(record.value);
    if (earlier === undefined) positions.set(record.value, offset);
    else if (!idempotent.has(record.value)) report('duplicate', `${JSON.stringify(record.value)} is at offsets ${earlier} and ${offset}`);
  }
  return positions;
}

/**
 * An idempotent producer's write is in every node's log exactly once if acknowledged, at most
 * once if its outcome is unknown: its resends carry the same (producer id, sequence), so a second
 * copy means the log appended a retry again. Returns how many writes it checked.
 */
function checkExactlyOnce(ops: readonly Operation[], finalLogs: readonly FinalLog[], report: Report): number {
  const writes = ops.filter((op) => op.f === 'produce' && op.idempotent === true && typeof op.value === 'string' && op.status !== 'fail');
  if (writes.length === 0) return 0;
  for (const log of finalLogs) {
    const offsets = new Map<string, number[]>();
    for (const [offset, record] of log.records.entries()) {
      const at = offsets.get(record.value);
      if (at === undefined) offsets.set(record.value, [offset]);
      else at.push(offset);
    }
    for (const op of writes) {
      const at = offsets.get(op.value as string) ?? [];
      if (at.length <= 1) continue;
      const outcome = op.status === 'ok' ? `acknowledged at offset ${op.offset}` : 'of unknown outcome';
      report('duplicate', `idempotent write ${JSON.stringify(op.value)} (${outcome}) is in ${log.node}'s log ${at.length} times, at offsets ${at.join(', ')}: a retry was appended again`);
    }
  }
  return writes.length;
}

function checkProduces(ops: readonly Operation[], finalLogs: readonly FinalLog[], positions: Map<string, number>, report: Report): void {
  const produced = new Set<string>();
  for (const op of ops) {
    if (op.f !== 'produce' || typeof op.value !== 'string') continue;
    produced.add(op.value);
    if (op.status === 'ok') {
      for (const log of finalLogs) {
        const record = log.records[op.offset!];
        if (record?.value === op.value) continue;
        const elsewhere = log === finalLogs[0] ? positions.get(op.value) : log.records.findIndex((r) => r.value === op.value);
        if (elsewhere !== undefined && elsewhere >= 0) {
          report('wrong-offset', `${JSON.stringify(op.value)} was acknowledged at offset ${op.offset} but ${log.node} holds it at ${elsewhere}`);
        } else {
          report('lost-ack', `${JSON.stringify(op.value)} was acknowledged at offset ${op.offset} (at ${op.completeMs.toFixed(0)} ms) but ${log.node} ${record === undefined ? 'has no record there' : `holds ${describe(record)} there`}`);
        }
      }
    } else if (op.status === 'fail' && positions.has(op.value)) {
      report('failed-visible', `${JSON.stringify(op.value)} failed (${op.error ?? 'no reason'}) but is at offset ${positions.get(op.value)}`);
    }
  }
  for (const [value, offset] of positions) if (!produced.has(value)) report('phantom', `offset ${offset} holds ${JSON.stringify(value)}, which nobody produced`);
}

/**
 * Sorted by invoke time, a produce must have a higher offset than every produce acknowledged
 * before it was invoked: a sweep keeps the highest offset acknowledged so far.
 */
function checkRealTimeOrder(ops: readonly Operation[], report: Report): void {
  const acked = ops.filter((op) => op.f === 'produce' && op.status === 'ok');
  const byInvoke = [...acked].sort((a, b) => a.invokeMs - b.invokeMs);
  const byComplete = [...acked].sort((a, b) => a.completeMs - b.completeMs);
  let highest: Operation | undefined;
  let next = 0;
  for (const op of byInvoke) {
    while (next < byComplete.length && byComplete[next]!.completeMs < op.invokeMs) {
      const done = byComplete[next++]!;
      if (highest === undefined || done.offset! > highest.offset!) highest = done;
    }
    if (highest !== undefined && op.offset! < highest.offset!) {
      report('realtime-order', `${JSON.stringify(op.value)} got offset ${op.offset} though ${JSON.stringify(highest.value)} was acknowledged at offset ${highest.offset} before it was invoked`);
    }
  }
}

function checkReads(ops: readonly Operation[], reference: readonly LogRecord[], report: Report): void {
  const acked = ops.filter((op) => op.f === 'produce' && op.status === 'ok').sort((a, b) => a.completeMs - b.completeMs);
  const lastSeen = new Map<number, number>();
  // For linearizable reads in invoke order: the highest offset acknowledged before the read began.
  const linReads = ops.filter((op) => op.f === 'lin-read' && op.status === 'ok').sort((a, b) => a.invokeMs - b.invokeMs);
  let highest = -1;
  let next = 0;
  for (const read of linReads) {
    while (next < acked.length && acked[next]!.completeMs < read.invokeMs) highest = Math.max(highest, acked[next++]!.offset!);
    if (read.value === null && read.offset! <= highest) {
      report('stale-read', `a linearizable read of offset ${read.offset} on ${read.node} at ${read.invokeMs.toFixed(0)} ms found nothing, but offset ${highest} was acknowledged before it began`);
    }
  }
  for (const op of ops) {
    if (op.status !== 'ok' || op.f === 'produce' || op.value === null || op.value === undefined) continue;
    const record = reference[op.offset!];
    if (record?.value !== op.value) {
      report('bad-read', `a ${op.f} on ${op.node} at ${op.invokeMs.toFixed(0)} ms read ${JSON.stringify(op.value)} at offset ${op.offset}; the final log holds ${record === undefined ? 'nothing' : describe(record)} there`);
    }
    if (op.f === 'tail' && op.session !== undefined) {
      const previous = lastSeen.get(op.session);
      if (previous !== undefined && op.offset !== previous + 1) report('tail-gap', `tailing session ${op.session} on ${op.node} went from offset ${previous} to ${op.offset}`);
      lastSeen.set(op.session, op.offset!);
    }
  }
}

type LogInput = { readonly kind: 'append'; readonly value: string } | { readonly kind: 'read'; readonly offset: number };
type LogOutput = { readonly offset: number } | { readonly value: string | null };

/**
 * The log model of src/sim/linearizability.ts, with the values kept in one array shared by the
 * whole search instead of copied per step: the search is depth-first, so positions below the
 * current length always hold the current path's appends (a backtrack shortens the length, and
 * the next append at a position overwrites it). The state is (length, chained hash).
 */
export function sharedLogModel(): Model<{ length: number; hash: number }, LogInput, LogOutput> {
  const values: string[] = [];
  return {
    name: 'log (shared array)',
    init: () => ({ length: 0, hash: 0x811c9dc5 }),
    step(state, input, output) {
      if (input.kind === 'append') {
        if (output !== undefined && (output as { offset: number }).offset !== state.length) return { ok: false, state };
        values[state.length] = input.value;
        return { ok: true, state: { length: state.length + 1, hash: chain(state.hash, input.value) } };
      }
      if (output === undefined) return { ok: true, state };
      const expected = input.offset < state.length ? values[input.offset]! : null;
      return { ok: (output as { value: string | null }).value === expected, state };
    },
    key: (state) => `${state.length}:${state.hash}`,
  };
}

function chain(hash: number, value: string): number {
  let h = hash;
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 16777619) >>> 0;
  return Math.imul(h ^ 0xff, 16777619) >>> 0;
}

/**
 * Acknowledged produces and linearizable reads. A produce of unknown outcome whose value is in
 * the final log took effect at that offset (values are unique); one whose value is not never
 * took effect (the final log is complete), so it is left out. Failed operations did nothing.
 */
function checkLogLinearizable(ops: readonly Operation[], positions: Map<string, number>, stepsMax: number): 'ok' | 'illegal' | 'unknown' {
  const history: LinOperation<LogInput, LogOutput>[] = [];
  for (const op of ops) {
    if (op.f === 'produce' && typeof op.value === 'string') {
      if (op.status === 'ok') history.push({ input: { kind: 'append', value: op.value }, output: { offset: op.offset! }, callTime: op.invokeMs, returnTime: op.completeMs });
      else if (op.status === 'unknown' && positions.has(op.value)) {
        history.push({ input: { kind: 'append', value: op.value }, output: { offset: positions.get(op.value)! }, callTime: op.invokeMs, returnTime: Infinity });
      }
    } else if (op.f === 'lin-read' && op.status === 'ok') {
      history.push({ input: { kind: 'read', offset: op.offset! }, output: { value: op.value ?? null }, callTime: op.invokeMs, returnTime: op.completeMs });
    }
  }
  return checkLinearizable(sharedLogModel(), history, stepsMax).result;
}

function countOperations(ops: readonly Operation[]): Record<Operation['f'], Counts> {
  const counts: Record<Operation['f'], { ok: number; fail: number; unknown: number }> = {
    produce: { ok: 0, fail: 0, unknown: 0 },
    read: { ok: 0, fail: 0, unknown: 0 },
    'lin-read': { ok: 0, fail: 0, unknown: 0 },
    tail: { ok: 0, fail: 0, unknown: 0 },
  };
  for (const op of ops) counts[op.f][op.status]++;
  return counts;
}

function faultWindows(events: readonly HistoryEvent[], ops: readonly Operation[]): FaultWindow[] {
  const acks = ops
    .filter((op) => op.f === 'produce' && op.status === 'ok')
    .map((op) => op.completeMs)
    .sort((a, b) => a - b);
  const open = new Map<string, NemesisEvent>();
  const windows: FaultWindow[] = [];
  const endMs = events.length > 0 ? events[events.length - 1]!.timeMs : 0;
  const close = (start: NemesisEvent, stopMs: number): void => {
    const firstAck = acks.find((t) => t >= stopMs);
    windows.push({
      fault: start.fault,
      targets: start.targets,
      startMs: start.timeMs,
      stopMs,
      majority: start.majority ?? true,
      recoveryMs: firstAck === undefined ? undefined : firstAck - stopMs,
    });
  };
  for (const event of events) {
    if (event.type !== 'nemesis') continue;
    if (event.phase === 'start') open.set(event.fault, event);
    else {
      const start = open.get(event.fault);
      if (start !== undefined) close(start, event.timeMs);
      open.delete(event.fault);
    }
  }
  for (const start of open.values()) close(start, endMs);
  return windows.sort((a, b) => a.startMs - b.startMs);
}

function availability(ops: readonly Operation[], faults: readonly FaultWindow[]): number {
  const noMajority = faults.filter((fault) => !fault.majority);
  let total = 0;
  let ok = 0;
  for (const op of ops) {
    if (op.f === 'tail') continue;
    if (noMajority.some((fault) => op.invokeMs >= fault.startMs && op.invokeMs <= fault.stopMs)) continue;
    total++;
    if (op.status === 'ok') ok++;
  }
  return total === 0 ? 1 : ok / total;
}
