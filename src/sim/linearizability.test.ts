// Goal: the linearizability checker accepts linearizable histories and rejects known
// non-linearizable ones, for both models, including operations that never returned. Method:
// hand-written histories (stale reads, lost writes, duplicate offsets, reads from the future),
// plus 300 seeded random histories built around a hidden sequential order, which must all pass.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Prng } from '../util/index.js';
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

type RegisterOp = Operation<RegisterInput, RegisterOutput>;
type LogOp = Operation<LogInput, LogOutput>;

const write = (value: string, callTime: number, returnTime = Infinity): RegisterOp => ({
  input: { kind: 'write', value },
  output: returnTime === Infinity ? undefined : null,
  callTime,
  returnTime,
});
const read = (value: string | null, callTime: number, returnTime: number): RegisterOp => ({ input: { kind: 'read' }, output: { value }, callTime, returnTime });
const append = (value: string, offset: number | undefined, callTime: number, returnTime = Infinity): LogOp => ({
  input: { kind: 'append', value },
  output: offset === undefined ? undefined : { offset },
  callTime,
  returnTime,
});
const readAt = (offset: number, value: string | null, callTime: number, returnTime: number): LogOp => ({
  input: { kind: 'read', offset },
  output: { value },
  callTime,
  returnTime,
});

test('register: sequential and overlapping histories are linearizable', () => {
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 1), read('a', 2, 3)]).result, 'ok');
  // A read overlapping a write may see either value.
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 10), read('a', 1, 2), read(null, 3, 4)]).result, 'illegal');
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 10), read(null, 1, 2), read('a', 3, 4)]).result, 'ok');
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 5), write('b', 15, 25), read('b', 10, 20)]).result, 'ok');
});

test('register: stale reads and reads from the future are rejected', () => {
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 1), read(null, 2, 3)]).result, 'illegal');
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 10), write('b', 20, 30), read('a', 40, 50)]).result, 'illegal');
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 5), read('b', 10, 14), write('b', 15, 25)]).result, 'illegal');
});

test('register: a write that never returned may or may not have happened', () => {
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 1), write('b', 2), read('a', 3, 4)]).result, 'ok');
  assert.equal(checkLinearizable(registerModel, [write('a', 0, 1), write('b', 2), read('b', 3, 4), read('a', 5, 6)]).result, 'illegal');
});

test('log: duplicate offsets, lost appends and reordered appends are rejected', () => {
  assert.equal(checkLinearizable(logModel, [append('x', 0, 0, 1), append('y', 1, 2, 3), readAt(1, 'y', 4, 5)]).result, 'ok');
  assert.equal(checkLinearizable(logModel, [append('x', 0, 0, 1), append('y', 0, 2, 3)]).result, 'illegal');
  assert.equal(checkLinearizable(logModel, [append('x', 0, 0, 1), readAt(0, null, 2, 3)]).result, 'illegal');
  // y was acknowledged after x returned, so it cannot sit before x.
  assert.equal(checkLinearizable(logModel, [append('x', 1, 0, 1), append('y', 0, 2, 3)]).result, 'illegal');
  // Concurrent appends may take either order.
  assert.equal(checkLinearizable(logModel, [append('x', 1, 0, 10), append('y', 0, 1, 9)]).result, 'ok');
});

test('log: an append that never returned may appear, but only once and in a consistent place', () => {
  const pending = append('z', undefined, 0);
  assert.equal(checkLinearizable(logModel, [pending, append('y', 1, 1, 2), readAt(0, 'z', 3, 4)]).result, 'ok');
  assert.equal(checkLinearizable(logModel, [pending, append('y', 0, 1, 2), readAt(0, 'z', 3, 4)]).result, 'illegal');
  assert.equal(checkLinearizable(logModel, [pending, append('y', 0, 1, 2), readAt(1, null, 3, 4)]).result, 'ok');
});

test('300 random histories around a hidden sequential order are all linearizable', () => {
  const prng = new Prng(77);
  for (let round = 0; round < 300; round++) {
    const history: LogOp[] = [];
    const values: string[] = [];
    // Each operation takes effect at time 10*i; its call and return straddle that point.
    const count = prng.int(5, 40);
    for (let i = 0; i < count; i++) {
      const at = 10 * (i + 1);
      const callTime = at - prng.int(1, 25);
      const returnTime = prng.chance(0.1) ? Infinity : at + prng.int(1, 25);
      if (prng.chance(0.5)) {
        const value = `v${i}`;
        history.push(append(value, returnTime === Infinity ? undefined : values.length, callTime, returnTime));
        values.push(value);
      } else if (returnTime !== Infinity) {
        const offset = prng.int(0, values.length);
        history.push(readAt(offset, values[offset] ?? null, callTime, returnTime));
      }
    }
    const verdict = checkLinearizable(logModel, history);
    assert.equal(verdict.result, 'ok', `round ${round}`);
  }
});
