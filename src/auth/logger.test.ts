// Goal: RateLimitedLog writes at most N lines per window and then one summary of what it dropped.
// Method: an injected clock and a recording logger.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RateLimitedLog } from './logger.js';
import { RecordingLogger } from './test-fixtures.js';

it('caps lines per window and reports how many it suppressed', () => {
  let nowMs = 0;
  const logger = new RecordingLogger();
  const log = new RateLimitedLog(logger, { linesPerWindowMax: 3, windowMs: 1000, nowMs: () => nowMs });
  for (let i = 0; i < 10; i++) log.warn({ i }, `refused ${i}`);
  assert.deepEqual(logger.lines.map((line) => line.message), ['refused 0', 'refused 1', 'refused 2']);
  nowMs = 1000;
  log.warn({}, 'refused later');
  assert.deepEqual(logger.lines.slice(3).map((line) => line.message), ['suppressed 7 similar log lines', 'refused later']);
  assert.deepEqual(logger.lines[3]!.object, { suppressedCount: 7 });
});
