// Goal: the report shows what each fault did: one shaded window per fault (named, with its
// times), a point per operation coloured by outcome, the verdict and the violations, with text
// from the history escaped. Method: a small history through checkHistory and renderReport.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { checkHistory } from './checker.js';
import type { HistoryEvent } from './history.js';
import { renderReport } from './report.js';

it('shades each fault window, plots every operation and lists the violations', () => {
  const events: HistoryEvent[] = [
    { type: 'invoke', process: 0, f: 'produce', value: 'a', timeMs: 10 },
    { type: 'ok', process: 0, f: 'produce', offset: 0, timeMs: 20 },
    { type: 'nemesis', phase: 'start', fault: 'kill-leader', targets: ['n1'], majority: true, timeMs: 100 },
    { type: 'invoke', process: 0, f: 'produce', value: '<b>', timeMs: 200 },
    { type: 'unknown', process: 0, f: 'produce', timeMs: 5200 },
    { type: 'nemesis', phase: 'stop', fault: 'kill-leader', targets: ['n1'], timeMs: 3000 },
  ].sort((a, b) => a.timeMs - b.timeMs) as HistoryEvent[];
  const check = checkHistory(events, [{ node: 'n1', records: [{ value: 'x', term: 1 }] }]);
  const html = renderReport({ title: 'run', verdict: 'FAIL: lost', replay: 'npm run nemesis -- --seed 1', events, check });
  assert.equal((html.match(/<rect /g) ?? []).length, 2, 'one window per plot');
  assert.match(html, /kill-leader n1: 0\.1-3\.0 s/);
  assert.equal((html.match(/<circle /g) ?? []).length, 2);
  assert.match(html, /<b>lost-ack<\/b>/);
  assert.match(html, /FAIL: lost/);
  assert.ok(!html.includes('"<b>"'), 'history text is escaped');
});
