// Goal: the classic Raft traps, each as a short readable script in src/sim/testdata/*.txt (Figure
// 8, stale-log candidate, PreVote on rejoin, CheckQuorum, snapshot catch-up, membership changes
// with crashes, leadership transfer, proposals across a change of leader, Ongaro's single-server
// change bug, a double vote across a pre-vote, ReadIndex confirmed by an old round, a follower
// committing an unverified entry). Method: run each script through ScriptEnv with the safety
// checker on; then run each bug's script against the broken variant that has the bug (Figure 8
// against counting replicas of old-term entries, and so on) and assert it fails where expected.
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

// Each classic bug pinned by name: the script passes on the real core and fails on the variant
// that has the bug, at the step where the damage happens.
const PINNED: { script: string; variant: keyof typeof BROKEN_VARIANTS; failure: RegExp }[] = [
  {
    script: 'single-server-change-noop.txt',
    variant: 'configChangeBeforeNoopCommit',
    failure: /SafetyViolation: leader completeness: n1 leads term 3 without the committed entry/,
  },
  { script: 'prevote-double-vote.txt', variant: 'preVoteClearsVote', failure: /SafetyViolation: election safety: b and a are both leaders of term 1/ },
  { script: 'read-index-old-round.txt', variant: 'readAckAnyRound', failure: /\(expect no-read a r1\): ScriptError: expected no-read of a to be none, got 2/ },
  { script: 'follower-commit-verified.txt', variant: 'heartbeatCommitUnclamped', failure: /SafetyViolation: committed prefix diverges: c committed a different entry/ },
];

for (const { script, variant, failure } of PINNED) {
  test(`${script} fails on the broken variant ${variant}`, () => {
    const text = readFileSync(`${testdata}${script}`, 'utf8');
    assert.throws(
      () => new ScriptEnv(BROKEN_VARIANTS[variant]).run(text),
      (error: unknown) => error instanceof ScriptError && failure.test(error.message),
    );
  });
}
