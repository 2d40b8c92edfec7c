/**
 * A linearizability checker in the style of Wing & Gong with Lowe's memoisation (as in Porcupine
 * and Knossos): search for an order of the operations that respects real time (an operation that
 * returned before another was called comes first) and that the sequential model accepts.
 *
 * - Calls and returns form one list in real-time order. The search linearizes an operation by
 *   lifting its call and return out of the list; reaching a return whose call is still in the
 *   list means that operation should have gone earlier, so it backtracks.
 * - Memoisation: a (set of linearized operations, model state) pair is explored once. The set is
 *   fingerprinted with 64-bit Zobrist hashing, so a collision (probability ~2^-64 per pair)
 *   could prune a branch; that is the usual trade-off of such checkers.
 * - Operations that never returned (a crashed node, a lost reply) have an unknown output and may
 *   or may not have taken effect: their return sits at +infinity, and the search succeeds as soon
 *   as only such returns remain.
 * - A step budget bounds the search; exceeding it yields 'unknown' rather than a verdict.
 */
import { assert } from '../util/index.js';

export interface Model<State, Input, Output> {
  readonly name: string;
  init(): State;
  /** Applies an operation; `output` undefined means unknown (the operation never returned). */
  step(state: State, input: Input, output: Output | undefined): { ok: boolean; state: State };
  /** A string identifying the state, for memoisation. */
  key(state: State): string;
}

export interface Operation<Input, Output> {
  readonly input: Input;
  /** undefined when the operation never returned. */
  readonly output: Output | undefined;
  /** Logical times: any totally ordered clock shared by all clients. */
  readonly callTime: number;
  /** Infinity when the operation never returned. */
  readonly returnTime: number;
}

export type Verdict = { result: 'ok' } | { result: 'illegal'; longestPrefix: number } | { result: 'unknown'; steps: number };

interface Event {
  readonly op: number;
  readonly isCall: boolean;
  readonly time: number;
  prev: Event | null;
  next: Event | null;
  /** For a call: its return event. */
  match: Event | null;
}

export function checkLinearizable<State, Input, Output>(
  model: Model<State, Input, Output>,
  history: readonly Operation<Input, Output>[],
  stepsMax = 2_000_000,
): Verdict {
  const head = buildEventList(history);
  // Zobrist hashing: the linearized set's fingerprint is the XOR of per-operation random words,
  // updated in O(1) as operations are linearized and undone.
  const zobrist = zobristTable(history.length);
  let setHashLow = 0;
  let setHashHigh = 0;
  const toggle = (op: number): void => {
    setHashLow ^= zobrist[2 * op] as number;
    setHashHigh ^= zobrist[2 * op + 1] as number;
  };
  const cache = new Set<string>();
  const stack: { call: Event; state: State }[] = [];
  let state = model.init();
  let event = head.next;
  let longestPrefix = 0;
  for (let steps = 0; steps < stepsMax; steps++) {
    if (event === null || (!event.isCall && event.time === Infinity)) return { result: 'ok' };
    if (event.isCall) {
      const call: Event = event;
      const op = history[call.op] as Operation<Input, Output>;
      const stepped = model.step(state, op.input, op.output);
      let advanced = false;
      if (stepped.ok) {
        toggle(call.op);
        const key = `${setHashLow},${setHashHigh}|${model.key(stepped.state)}`;
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ call, state });
          longestPrefix = Math.max(longestPrefix, stack.length);
          state = stepped.state;
          lift(call);
          event = head.next;
          advanced = true;
        } else {
          toggle(call.op);
        }
      }
      if (!advanced) event = call.next;
    } else {
      // A return whose call is still pending: some earlier choice was wrong.
      const top = stack.pop();
      if (top === undefined) return { result: 'illegal', longestPrefix };
      state = top.state;
      toggle(top.call.op);
      unlift(top.call);
      event = top.call.next;
    }
  }
  return { result: 'unknown', steps: stepsMax };
}

function buildEventList<Input, Output>(history: readonly Operation<Input, Output>[]): Event {
  const events: Event[] = [];
  for (const [op, operation] of history.entries()) {
    assert(operation.callTime < operation.returnTime, `operation ${op} returns before it is called`);
    const call: Event = { op, isCall: true, time: operation.callTime, prev: null, next: null, match: null };
    const ret: Event = { op, isCall: false, time: operation.returnTime, prev: null, next: null, match: null };
    call.match = ret;
    events.push(call, ret);
  }
  // Calls before returns at equal times would make them overlap; the clocks used are strict.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? 1 : -1));
  const head: Event = { op: -1, isCall: false, time: -Infinity, prev: null, next: null, match: null };
  let previous = head;
  for (const event of events) {
    previous.next = event;
    event.prev = previous;
    previous = event;
  }
  return head;
}

function lift(call: Event): void {
  const ret = call.match as Event;
  (call.prev as Event).next = call.next;
  if (call.next !== null) call.next.prev = call.prev;
  (ret.prev as Event).next = ret.next;
  if (ret.next !== null) ret.next.prev = ret.prev;
}

function unlift(call: Event): void {
  const ret = call.match as Event;
  (ret.prev as Event).next = ret;
  if (ret.next !== null) ret.next.prev = ret;
  (call.prev as Event).next = call;
  if (call.next !== null) call.next.prev = call;
}

function zobristTable(operationCount: number): Uint32Array {
  // A fixed xorshift sequence: deterministic, and independent of the simulation's seed.
  const table = new Uint32Array(operationCount * 2);
  let x = 0x9e3779b9;
  for (let i = 0; i < table.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x >>> 0;
  }
  return table;
}

// ---- models ----

/** The log: append(value) returns the value's offset; read(offset) returns the value or null. */
export type LogInput = { readonly kind: 'append'; readonly value: string } | { readonly kind: 'read'; readonly offset: number };
export type LogOutput = { readonly offset: number } | { readonly value: string | null };

interface LogState {
  readonly values: readonly string[];
  /** Two independent 32-bit hashes of all values in order: a 64-bit fingerprint for memoisation. */
  readonly key: string;
}

export const logModel: Model<LogState, LogInput, LogOutput> = {
  name: 'log',
  init: () => ({ values: [], key: '0' }),
  step(state, input, output) {
    if (input.kind === 'append') {
      if (output !== undefined && (output as { offset: number }).offset !== state.values.length) return { ok: false, state };
      return { ok: true, state: { values: [...state.values, input.value], key: extendKey(state.key, input.value) } };
    }
    if (output === undefined) return { ok: true, state };
    const expected = state.values[input.offset] ?? null;
    return { ok: (output as { value: string | null }).value === expected, state };
  },
  key: (state) => `${state.values.length}:${state.key}`,
};

function extendKey(key: string, value: string): string {
  const [a = 0, b = 0] = key.split('.').map(Number);
  let h1 = (a ^ 0x811c9dc5) >>> 0;
  let h2 = (b ^ 0x01000193) >>> 0;
  for (let i = 0; i < value.length; i++) {
    h1 = Math.imul(h1 ^ value.charCodeAt(i), 16777619) >>> 0;
    h2 = Math.imul(h2 + value.charCodeAt(i), 0x5bd1e995) >>> 0;
    h2 ^= h2 >>> 15;
  }
  return `${h1}.${h2 >>> 0}`;
}

/** A register: write(value) then read() returns the latest written value (null initially). */
export type RegisterInput = { readonly kind: 'write'; readonly value: string } | { readonly kind: 'read' };
export type RegisterOutput = { readonly value: string | null } | null;

export const registerModel: Model<string | null, RegisterInput, RegisterOutput> = {
  name: 'register',
  init: () => null,
  step(state, input, output) {
    if (input.kind === 'write') return { ok: true, state: input.value };
    if (output === undefined || output === null) return { ok: true, state };
    return { ok: output.value === state, state };
  },
  key: (state) => state ?? '\u0000',
};
