/**
 * Simulated clients: they append unique values and read them back (by offset, and the latest
 * value as a register) through ReadIndex, recording every operation's call and return on the
 * cluster's logical clock. At the end the history must be linearizable under the log model and
 * the register model, and every definite outcome must match the committed log: an acknowledged
 * append committed exactly once at its index, a failed one never.
 */
import type { NodeId } from '../raft/index.js';
import { SafetyViolation } from './checker.js';
import type { ProposeOutcome, SimCluster } from './cluster.js';
import {
  checkLinearizable,
  logModel,
  registerModel,
  type LogInput,
  type LogOutput,
  type Operation,
  type RegisterInput,
  type RegisterOutput,
} from './linearizability.js';

interface AppendRecord {
  readonly value: string;
  readonly callTime: number;
  returnTime: number;
  outcome: ProposeOutcome | null;
}

interface ReadRecord {
  readonly offset: number;
  readonly callTime: number;
  readonly returnTime: number;
  readonly valueAtOffset: string | null;
  readonly lastValue: string | null;
}

export class Workload {
  readonly appends: AppendRecord[] = [];
  readonly reads: ReadRecord[] = [];
  private ackedCount = 0;
  /** Virtual call times (ms) of operations that have not returned yet. */
  private readonly openCalls = new Set<{ readonly callMs: number }>();
  private finalReadTime: number | null = null;

  constructor(private readonly cluster: SimCluster) {}

  append(target: NodeId, prefix: string, onOk?: (index: number) => void): void {
    const record: AppendRecord = { value: `${prefix}${this.appends.length}`, callTime: this.cluster.logicalTime(), returnTime: Infinity, outcome: null };
    this.appends.push(record);
    const open = { callMs: this.cluster.nowMs };
    this.openCalls.add(open);
    this.cluster.propose(target, record.value, (outcome) => {
      this.openCalls.delete(open);
      if (record.outcome !== null) throw new SafetyViolation(`proposal ${record.value} resolved twice`);
      record.outcome = outcome;
      record.returnTime = this.cluster.logicalTime();
      if (outcome.type === 'ok') {
        this.ackedCount = Math.max(this.ackedCount, outcome.offset + 1);
        onOk?.(outcome.index);
      }
    });
  }

  read(target: NodeId, offset: number): void {
    const callTime = this.cluster.logicalTime();
    const open = { callMs: this.cluster.nowMs };
    this.openCalls.add(open);
    this.cluster.read(target, (stateMachine) => {
      this.openCalls.delete(open);
      if (stateMachine === null) return;
      this.reads.push({
        offset,
        callTime,
        returnTime: this.cluster.logicalTime(),
        valueAtOffset: stateMachine.values[offset] ?? null,
        lastValue: stateMachine.values[stateMachine.values.length - 1] ?? null,
      });
    });
  }

  /**
   * Reads every offset through one ReadIndex at `target` (call after the cluster caught up). The
   * final state then observes every append that took effect, so pending appends that nobody
   * observed provably never took effect and are dropped from the history.
   */
  finalRead(target: NodeId, onDone: () => void): void {
    const callTime = this.cluster.logicalTime();
    this.cluster.read(target, (stateMachine) => {
      if (stateMachine === null) return;
      const returnTime = this.cluster.logicalTime();
      this.finalReadTime = callTime;
      const lastValue = stateMachine.values[stateMachine.values.length - 1] ?? null;
      for (let offset = 0; offset <= stateMachine.values.length; offset++) {
        this.reads.push({ offset, callTime, returnTime, valueAtOffset: stateMachine.values[offset] ?? null, lastValue });
      }
      onDone();
    });
  }

  /**
   * Operations in flight: called, not returned, and called less than `abandonAfterMs` ago (a
   * client gives up waiting then, but the operation stays open in the history).
   */
  inFlight(abandonAfterMs: number): number {
    let count = 0;
    for (const open of this.openCalls) {
      if (this.cluster.nowMs - open.callMs < abandonAfterMs) count++;
      else this.openCalls.delete(open);
    }
    return count;
  }

  /** An offset worth reading: mostly ones acknowledged so far, sometimes just beyond. */
  knownOffsetCount(): number {
    return this.ackedCount;
  }

  checkOutcomes(committedValues: ReadonlyMap<string, number>): void {
    for (const record of this.appends) {
      const outcome = record.outcome;
      if (outcome === null) continue;
      const index = committedValues.get(record.value);
      if (outcome.type === 'ok' && index !== outcome.index) {
        throw new SafetyViolation(`proposal ${record.value} acknowledged at ${outcome.index} but committed at ${index ?? 'none'}`);
      }
      if (outcome.type === 'failed' && index !== undefined) {
        throw new SafetyViolation(`proposal ${record.value} reported failed (${outcome.reason}) but committed at ${index}`);
      }
    }
  }

  /**
   * Checks both models; returns which checks were inconclusive (search budget exhausted).
   * `committedValues` (value to log index) bounds appends that never returned: one that committed
   * took effect no later than its entry first committed, so it is not left open-ended (an open
   * write overlaps every later operation, which is what exhausts the register model's search).
   */
  checkLinearizability(stepsMax: number, committedValues: ReadonlyMap<string, number> = new Map()): { logUnknown: boolean; registerUnknown: boolean } {
    this.committedValues = committedValues;
    const logVerdict = checkLinearizable(logModel, this.logHistory(), stepsMax);
    if (logVerdict.result === 'illegal') throw new SafetyViolation('linearizability: the client history is not linearizable (log model)');
    const registerVerdict = checkLinearizable(registerModel, this.registerHistory(), stepsMax);
    if (registerVerdict.result === 'illegal') {
      throw new SafetyViolation('linearizability: the client history is not linearizable (register model)');
    }
    return { logUnknown: logVerdict.result === 'unknown', registerUnknown: registerVerdict.result === 'unknown' };
  }

  private committedValues: ReadonlyMap<string, number> = new Map();

  private returnTime(record: AppendRecord): number {
    if (record.returnTime !== Infinity) return record.returnTime;
    const index = this.committedValues.get(record.value);
    return (index === undefined ? undefined : this.cluster.commitLogicalTime(index)) ?? Infinity;
  }

  private definiteAppends(): AppendRecord[] {
    // A failed append definitely did not take effect; a pending one that no read observed did
    // not either (the final read sees every append that did). Neither belongs in the history.
    const observed = new Set<string>();
    for (const read of this.reads) {
      if (read.valueAtOffset !== null) observed.add(read.valueAtOffset);
      if (read.lastValue !== null) observed.add(read.lastValue);
    }
    return this.appends.filter((record) => {
      if (record.outcome === null) return observed.has(record.value);
      return record.outcome.type !== 'failed';
    });
  }

  logHistory(): Operation<LogInput, LogOutput>[] {
    const history: Operation<LogInput, LogOutput>[] = this.definiteAppends().map((record) => ({
      input: { kind: 'append', value: record.value },
      output: record.outcome?.type === 'ok' ? { offset: record.outcome.offset } : undefined,
      callTime: record.callTime,
      returnTime: this.returnTime(record),
    }));
    for (const read of this.reads) {
      history.push({ input: { kind: 'read', offset: read.offset }, output: { value: read.valueAtOffset }, callTime: read.callTime, returnTime: read.returnTime });
    }
    return history;
  }

  registerHistory(): Operation<RegisterInput, RegisterOutput>[] {
    const history: Operation<RegisterInput, RegisterOutput>[] = this.definiteAppends().map((record) => ({
      input: { kind: 'write', value: record.value },
      output: record.outcome?.type === 'ok' ? null : undefined,
      callTime: record.callTime,
      returnTime: this.returnTime(record),
    }));
    let finalReadAdded = false;
    for (const read of this.reads) {
      // The final read records one read per offset; the register needs its last value once.
      if (read.callTime === this.finalReadTime) {
        if (finalReadAdded) continue;
        finalReadAdded = true;
      }
      history.push({ input: { kind: 'read' }, output: { value: read.lastValue }, callTime: read.callTime, returnTime: read.returnTime });
    }
    return history;
  }
}
