// Goal: prove the simulator's checkers catch real Raft bugs. Method: for each deliberately broken
// variant of the core (see raft/faults.ts), run seeds from 1 upwards (cycling 3/5/7 nodes) until
// one fails, and assert that happens within the variant's seed budget and with the expected kind
// of violation. The seeds found are recorded in NOTES below; a change that makes a variant
// undetectable fails this test.
//
// Seeds that caught each variant with the current schedule (steps=600, nodes = [3,5,7][seed % 3]):
//   voteWithoutLogCheck       seed 1    (leader completeness)
//   commitPreviousTermByCount seed 1798 (committed entry at risk: a voter lacking it could win;
//                                        it was seed 221 before the last change to the core)
//   forgetVotePersist         seed 550  (log matching: the double vote's two leaders diverged;
//                                        about 2 in 1,000 seeds catch it)
//   applyBeforeCommit         seed 1   (state machine safety: applied beyond commit)
//   keepConflictingSuffix     seed 4   (log matching)
//   readWithoutQuorum         seed 2   (linearizability, log model)
//   preVoteClearsVote         seed 85  (election safety: two leaders in term 1)
//   sendBeforePersist         seed 2   (committed entry at risk: the driver acknowledged before its write)
// configChangeBeforeNoopCommit, readAckAnyRound and heartbeatCommitUnclamped are pinned by
// scenario scripts (script.test.ts): random runs rarely or never build their exact interleaving.
// The budgets below leave room for changes to the simulator's schedule.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed } from './run.js';
import { BROKEN_VARIANTS, type BrokenVariantName } from './variants.js';

interface Expected {
  readonly seedBudget: number;
  readonly violation: RegExp;
}

// Variants missing here are pinned by scenario scripts instead (script.test.ts).
const EXPECTED: Partial<Record<BrokenVariantName, Expected>> = {
  voteWithoutLogCheck: { seedBudget: 50, violation: /leader completeness|committed|state machine|log matching/ },
  commitPreviousTermByCount: { seedBudget: 3000, violation: /committed entry at risk|leader completeness|committed|state machine/ },
  forgetVotePersist: { seedBudget: 1500, violation: /election safety|log matching|leader completeness/ },
  applyBeforeCommit: { seedBudget: 50, violation: /state machine safety/ },
  keepConflictingSuffix: { seedBudget: 50, violation: /log matching|committed/ },
  readWithoutQuorum: { seedBudget: 100, violation: /linearizability/ },
  preVoteClearsVote: { seedBudget: 400, violation: /election safety/ },
  sendBeforePersist: { seedBudget: 100, violation: /committed entry at risk|election safety|leader completeness|committed|state machine/ },
};

for (const [name, expected] of Object.entries(EXPECTED) as [BrokenVariantName, Expected][]) {
  test(`the simulator catches the broken variant ${name}`, (t) => {
    for (let seed = 1; seed <= expected.seedBudget; seed++) {
      const nodeCount = [3, 5, 7][seed % 3] as number;
      const result = runSeed({ seed, nodeCount, steps: 600, faults: BROKEN_VARIANTS[name], faultName: name });
      if (result.ok) continue;
      t.diagnostic(`${name}: caught at seed ${seed} (${nodeCount} nodes): ${result.failure}`);
      assert.match(result.failure ?? '', expected.violation);
      assert.match(result.reproduce, new RegExp(`--seed ${seed} .*--fault ${name}`));
      return;
    }
    assert.fail(`${name} was not caught within ${expected.seedBudget} seeds`);
  });
}
