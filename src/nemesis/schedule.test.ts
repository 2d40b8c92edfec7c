// Goal: a schedule is a pure function of its seed (a replay runs the same plan), every fault runs
// at least once even when the run is short, and steps never overlap. Method: schedules made twice
// from one seed, and from another.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { formatSchedule, makeSchedule } from './schedule.js';

const faults = ['kill', 'kill-leader', 'pause', 'power-loss'];

it('is the same for the same seed, covers every fault, and its steps follow each other', () => {
  const a = makeSchedule({ seed: 42, faults, durationMs: 60_000 });
  assert.deepEqual(makeSchedule({ seed: 42, faults, durationMs: 60_000 }), a);
  assert.notDeepEqual(makeSchedule({ seed: 43, faults, durationMs: 60_000 }), a);
  assert.deepEqual([...new Set(a.slice(0, faults.length).map((s) => s.fault))].sort(), [...faults].sort());
  for (let i = 1; i < a.length; i++) assert.equal(a[i]!.atMs, a[i - 1]!.atMs + a[i - 1]!.holdMs + a[i - 1]!.quietMs);
  const last = a[a.length - 1]!;
  assert.ok(last.atMs + last.holdMs + last.quietMs <= 60_000);
  assert.match(formatSchedule(a), /^ {2}1\. t=2\.0s /);
});

it('runs the whole first round even past a short duration', () => {
  const short = makeSchedule({ seed: 1, faults, durationMs: 1000 });
  assert.equal(short.length, faults.length);
});
