// Goal: the classic Raft traps, each as a short readable script in src/sim/testdata/*.txt (Figure
// 8, stale-log candidate, PreVote on rejoin, CheckQuorum, snapshot catch-up, membership changes
// with crashes, leadership transfer, proposals across a change of leader). Method: run each script
// through ScriptEnv with the safety checker on; then run Figure 8 against the broken variant that
// commits old-term entries by counting replicas and assert the checker catches it.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ScriptEnv, ScriptError } from './script.js';
import { BROKEN_VARIANTS } from './variants.js';

// Scripts stay in the source tree; compiled tests run from dist*/src/sim.
const testdata = fileURLToPath(new URL('../../../src/sim/testdata/', import.meta.url));
const scripts = readdirSync(testdata).filter((name) => name.endsWith('.txt')).sort();

test('every scenario script is present', () => {
  assert.ok(scripts.length >= 8, `found ${scripts.join(', ')}`);
});

for (const name of scripts) {
  test(`scenario ${name}`, () => {
    new ScriptEnv().run(readFileSync(`${testdata}${name}`, 'utf8'));
  });
}

test('Figure 8 catches a leader that commits an old-term entry by counting replicas', () => {
  const script = readFileSync(`${testdata}figure-8.txt`, 'utf8');
  // The checker flags the commit itself in step (c): n5's log could still win an election.
  assert.throws(
    () => new ScriptEnv(BROKEN_VARIANTS.commitPreviousTermByCount).run(script),
    (error: unknown) => error instanceof ScriptError && /^line \d+ \(deliver n3->n1\): SafetyViolation: committed entry at risk: n5/.test(error.message),
  );
});

test('the stale-log script catches votes granted without the log check', () => {
  const script = readFileSync(`${testdata}stale-log-candidate.txt`, 'utf8');
  assert.throws(() => new ScriptEnv(BROKEN_VARIANTS.voteWithoutLogCheck).run(script), ScriptError);
});
