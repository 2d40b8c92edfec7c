// Goal: the nemesis checker passes a correct history and catches each kind of violation it
// claims to: a lost acknowledgement, a duplicate, a reordering, a stale linearizable read, a read
// of a record later lost, a failed write that shows up, diverging replicas, a tail that skips, and
// a history with no linearization. Method: small hand-written histories and final logs; each
// broken one differs from the correct one in one place.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable, logModel, type LogInput, type LogOutput, type Operation } from '../sim/linearizability.js';
import { Prng } from '../util/index.js';
import { checkHistory, sharedLogModel, type FinalLog, type LogRecord, type ViolationKind } from './checker.js';
import { encodeEvent, parseHistory, type HistoryEvent } from './history.js';

/** A tiny history builder: each call appends events at increasing times. */
class Builder {
  readonly events: HistoryEvent[] = [];
  private nowMs = 0;

  at(timeMs: number): this {
    this.nowMs = timeMs;
    return this;
  }

  produce(process: number, value: string, outcome: number | 'fail' | 'unknown', durationMs = 1, idempotent = false): this {
    this.events.push({ type: 'invoke', process, f: 'produce', value, node: 'n1', timeMs: this.nowMs, ...(idempotent ? { idempotent } : {}) });
    this.nowMs += durationMs;
    if (outcome === 'fail') this.events.push({ type: 'fail', process, f: 'produce', timeMs: this.nowMs, error: 'not the leader' });
    else if (outcome === 'unknown') this.events.push({ type: 'unknown', process, f: 'produce', timeMs: this.nowMs, error: 'deadline' });
    else this.events.push({ type: 'ok', process, f: 'produce', offset: outcome, timeMs: this.nowMs });
    this.nowMs += 1;
    return this;
  }

  read(process: number, f: 'read' | 'lin-read', offset: number, value: string | null): this {
    this.events.push({ type: 'invoke', process, f, offset, node: 'n2', timeMs: this.nowMs });
    this.nowMs += 1;
    this.events.push({ type: 'ok', process, f, value, timeMs: this.nowMs });
    this.nowMs += 1;
    return this;
  }

  tail(session: number, offset: number, value: string): this {
    this.events.push({ type: 'ok', process: 100 + session, f: 'tail', session, offset, value, node: 'n3', timeMs: this.nowMs });
    this.nowMs += 1;
    return this;
  }

  fault(fault: string, startMs: number, stopMs: number): this {
    this.events.push({ type: 'nemesis', phase: 'start', fault, targets: ['n1'], timeMs: startMs });
    this.events.push({ type: 'nemesis', phase: 'stop', fault, targets: ['n1'], timeMs: stopMs });
    this.events.sort((a, b) => a.timeMs - b.timeMs);
    return this;
  }
}

const log = (...values: string[]): LogRecord[] => values.map((value) => ({ value, term: 2 }));
const everywhere = (records: LogRecord[]): FinalLog[] => ['n1', 'n2', 'n3'].map((node) => ({ node, records }));

function good(): Builder {
  return new Builder()
    .produce(1, 'a', 0)
    .produce(2, 'b', 1)
    .read(3, 'lin-read', 1, 'b')
    .read(3, 'read', 0, 'a')
    .tail(1, 0, 'a')
    .tail(1, 1, 'b')
    .produce(1, 'c', 'unknown')
    .produce(2, 'd', 'fail')
    .read(3, 'lin-read', 3, null);
}

function kinds(events: HistoryEvent[], logs: FinalLog[]): ViolationKind[] {
  return [...new Set(checkHistory(events, logs).violations.map((v) => v.kind))].sort();
}

describe('nemesis checker', () => {
  it('passes a correct history, with an unknown write that took effect and a failed one that did not', () => {
    const result = checkHistory(good().events, everywhere(log('a', 'b', 'c')));
    assert.deepEqual(result.violations, []);
    assert.equal(result.valid, true);
    assert.equal(result.linearizability, 'ok');
    assert.deepEqual(result.counts.produce, { ok: 2, fail: 1, unknown: 1 });
    assert.equal(result.logLength, 3);
  });

  it('catches a lost acknowledgement, on the one node that lost it', () => {
    const logs = everywhere(log('a', 'b', 'c'));
    const result = checkHistory(good().events, [logs[0]!, logs[1]!, { node: 'n3', records: log('a') }]);
    assert.ok(result.violations.some((v) => v.kind === 'lost-ack' && v.message.includes('n3')), JSON.stringify(result.violations));
    assert.ok(result.violations.some((v) => v.kind === 'divergent-log'));
    assert.deepEqual(kinds(good().events, everywhere(log('a', 'c'))), ['bad-read', 'lost-ack']);
    assert.deepEqual(kinds(good().events, everywhere(log('b', 'a', 'c'))), ['bad-read', 'wrong-offset']);
  });

  it('catches a duplicate', () => {
    assert.deepEqual(kinds(good().events, everywhere(log('a', 'b', 'c', 'b'))), ['duplicate']);
  });

  it("checks exactly-once for idempotent producers: a retry appended again is caught on the node holding it", () => {
    // p1 wrote a, then b (resent after a lost answer: both attempts carried the same sequence),
    // then c, whose outcome stayed unknown (it took effect once).
    const events = new Builder().produce(1, 'a', 0, 1, true).produce(1, 'b', 1, 50, true).produce(1, 'c', 'unknown', 1, true).events;
    const correct = checkHistory(events, everywhere(log('a', 'b', 'c')));
    assert.deepEqual(correct.violations, []);
    assert.equal(correct.exactlyOnce, 3);
    // The resend of b appended a second copy on every node.
    const twice = checkHistory(events, everywhere(log('a', 'b', 'b', 'c')));
    assert.deepEqual([...new Set(twice.violations.map((v) => v.kind))], ['duplicate']);
    assert.match(twice.violations[0]!.message, /idempotent write "b" \(acknowledged at offset 1\) is in n1's log 2 times, at offsets 1, 2/);
    // The unknown write c twice, on one node only.
    const logs = everywhere(log('a', 'b', 'c'));
    const result = checkHistory(events, [logs[0]!, logs[1]!, { node: 'n3', records: log('a', 'b', 'c', 'c') }]);
    assert.deepEqual([...new Set(result.violations.map((v) => v.kind))].sort(), ['divergent-log', 'duplicate']);
    assert.ok(result.violations.some((v) => v.kind === 'duplicate' && v.message.includes("unknown outcome) is in n3's log 2 times")), JSON.stringify(result.violations));
    // A plain (non-idempotent) value twice is a duplicate too, reported once from the reference log.
    assert.deepEqual(kinds(good().events, everywhere(log('a', 'b', 'c', 'b'))), ['duplicate']);
  });

  it('catches a reordering: acknowledged before another was invoked, yet at a higher offset', () => {
    const events = new Builder().produce(1, 'a', 1).produce(2, 'b', 0).events;
    assert.deepEqual(kinds(events, everywhere(log('b', 'a'))), ['not-linearizable', 'realtime-order']);
    // Concurrent produces may land in either order.
    const concurrent: HistoryEvent[] = [
      { type: 'invoke', process: 1, f: 'produce', value: 'a', timeMs: 0 },
      { type: 'invoke', process: 2, f: 'produce', value: 'b', timeMs: 1 },
      { type: 'ok', process: 1, f: 'produce', offset: 1, timeMs: 2 },
      { type: 'ok', process: 2, f: 'produce', offset: 0, timeMs: 3 },
    ];
    assert.deepEqual(kinds(concurrent, everywhere(log('b', 'a'))), []);
  });

  it('catches a stale linearizable read, and lets a plain read lag', () => {
    const stale = new Builder().produce(1, 'a', 0).produce(1, 'b', 1).read(2, 'lin-read', 1, null).events;
    assert.deepEqual(kinds(stale, everywhere(log('a', 'b'))), ['not-linearizable', 'stale-read']);
    const lagging = new Builder().produce(1, 'a', 0).produce(1, 'b', 1).read(2, 'read', 1, null).events;
    assert.deepEqual(kinds(lagging, everywhere(log('a', 'b'))), []);
  });

  it('catches a read of a record that was later lost or replaced', () => {
    const events = new Builder().produce(1, 'a', 'unknown').read(2, 'read', 0, 'a').tail(1, 0, 'a').events;
    assert.deepEqual(kinds(events, everywhere(log('x'))), ['bad-read', 'phantom']);
  });

  it('catches a failed write that reached the log, and a record nobody wrote', () => {
    const events = new Builder().produce(1, 'a', 0).produce(1, 'b', 'fail').events;
    assert.deepEqual(kinds(events, everywhere(log('a', 'b'))), ['failed-visible']);
    assert.deepEqual(kinds(events, everywhere(log('a', 'z'))), ['phantom']);
  });

  it('catches replicas that differ in a term only (not byte-identical)', () => {
    const events = new Builder().produce(1, 'a', 0).events;
    const result = checkHistory(events, [
      { node: 'n1', records: [{ value: 'a', term: 2 }] },
      { node: 'n2', records: [{ value: 'a', term: 3 }] },
    ]);
    assert.deepEqual(result.violations.map((v) => v.kind), ['divergent-log']);
  });

  it('catches a tailing consumer that skips an offset', () => {
    const events = new Builder().produce(1, 'a', 0).produce(1, 'b', 1).produce(1, 'c', 2).tail(7, 0, 'a').tail(7, 2, 'c').events;
    assert.deepEqual(kinds(events, everywhere(log('a', 'b', 'c'))), ['tail-gap']);
  });

  it('measures recovery after each fault and availability outside faults without a majority', () => {
    const b = new Builder().produce(1, 'a', 0).at(100).produce(1, 'b', 'unknown').at(300).produce(1, 'c', 1, 5);
    b.fault('kill', 50, 200);
    b.events.push({ type: 'nemesis', phase: 'start', fault: 'power-loss-all', targets: [], timeMs: 310, majority: false });
    b.events.push({ type: 'nemesis', phase: 'stop', fault: 'power-loss-all', targets: [], timeMs: 320 });
    const result = checkHistory(b.events, everywhere(log('a', 'c')));
    assert.deepEqual(result.violations, []);
    assert.equal(result.faults.length, 2);
    assert.equal(result.faults[0]!.recoveryMs, 305 - 200);
    assert.equal(result.faults[1]!.recoveryMs, undefined);
    assert.equal(result.availability, 2 / 3);
  });

  it('round-trips through JSON lines and refuses a history that goes back in time', () => {
    const text = good().events.map(encodeEvent).join('\n') + '\n';
    assert.deepEqual(parseHistory(text), good().events);
    assert.throws(() => parseHistory(text + encodeEvent({ type: 'nemesis', phase: 'start', fault: 'kill', targets: [], timeMs: 0 })), /back in time/);
    assert.throws(() => parseHistory('{"type":"ok"\n'), /line 1 is not JSON/);
  });
});

describe('the shared-array log model', () => {
  it('agrees with the simulator\'s log model on random histories, linearizable or not', () => {
    const prng = new Prng(11);
    let illegal = 0;
    for (let round = 0; round < 200; round++) {
      const history: Operation<LogInput, LogOutput>[] = [];
      const values: string[] = [];
      let t = 0;
      for (let i = 0; i < 12; i++) {
        const start = t + prng.int(0, 3);
        const end = start + prng.int(1, 6);
        t = start;
        if (prng.chance(0.5)) {
          values.push(`v${i}`);
          // Mostly right offsets, sometimes a swapped one: some histories are not linearizable.
          const offset = prng.chance(0.9) ? values.length - 1 : prng.int(0, values.length);
          history.push({ input: { kind: 'append', value: `v${i}` }, output: prng.chance(0.1) ? undefined : { offset }, callTime: start, returnTime: prng.chance(0.1) ? Infinity : end });
        } else {
          const offset = prng.int(0, values.length);
          const value = prng.chance(0.8) ? (values[offset] ?? null) : null;
          history.push({ input: { kind: 'read', offset }, output: { value }, callTime: start, returnTime: end });
        }
      }
      history.forEach((op, i) => {
        if (op.returnTime === Infinity) history[i] = { ...op, output: undefined };
      });
      const expected = checkLinearizable(logModel, history).result;
      assert.equal(checkLinearizable(sharedLogModel(), history).result, expected, JSON.stringify(history));
      if (expected === 'illegal') illegal++;
    }
    assert.ok(illegal > 10, `only ${illegal} illegal histories: the comparison proves little`);
  });
});
