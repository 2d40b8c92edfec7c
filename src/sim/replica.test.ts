// Goal: the production replica (RaftLogStorage on the commit log on a simulated disk, the
// ReplicatedLog and the RaftNode the agent runs) keeps its promises to producers and consumers
// through power losses, restarts, partitions and messages later than an election, and the
// simulation of it is deterministic; a replica that acknowledges produces before they are durable
// on a quorum is caught.
// Method: runReplicaSeed (replica-run.ts) over a fixed budget of seeds, checking the produce/
// consume history after healing (replica-checker.ts); the same seed twice must give the same
// trace and history hashes; the broken variants (variants.ts REPLICA_VARIANTS) must fail within
// their seed budgets with the expected kind of violation.
//
// First failing seed from 1 (3 nodes, 600 steps), with this schedule:
//   acknowledgeBeforeQuorumDurable  seed 40 (an acknowledged sequenced produce lost: another record
//                                   holds its offset); 3 in the first 100 seeds
//   logAcknowledgeBeforeSync        seed 1 (no convergence: every replica lost entries it may have
//                                   acknowledged and waits for repair), seed 2 (out of order); 85 in
//                                   the first 100
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runReplicaSeed } from './replica-run.js';
import { REPLICA_VARIANTS, type ReplicaVariantName } from './variants.js';

test('every acknowledged produce survives power losses, restarts and partitions, once, at its offset, on every replica', async () => {
  const totals = { acknowledged: 0, sequenced: 0, duplicates: 0, reads: 0, powerLosses: 0, kills: 0 };
  const runs: [seed: number, nodeCount: number][] = [];
  for (let seed = 1; seed <= 24; seed++) runs.push([seed, 3]);
  for (let seed = 101; seed <= 103; seed++) runs.push([seed, 5]);
  for (const [seed, nodeCount] of runs) {
    const result = await runReplicaSeed({ seed, nodeCount, steps: 600 });
    assert.equal(result.ok, true, `${result.failure}\n  reproduce: ${result.reproduce}`);
    totals.acknowledged += result.acknowledged;
    totals.sequenced += result.sequencedAcknowledged;
    totals.duplicates += result.duplicatesAnswered;
    totals.reads += result.observations;
    totals.powerLosses += result.powerLosses;
    totals.kills += result.kills;
  }
  // The runs exercised what the checker checks.
  assert.ok(totals.acknowledged > 500, `acknowledged produces: ${totals.acknowledged}`);
  assert.ok(totals.sequenced > 500 && totals.duplicates > 100, `sequenced ${totals.sequenced}, duplicates answered ${totals.duplicates}`);
  assert.ok(totals.reads > 1000 && totals.powerLosses > 100 && totals.kills > 10, `reads ${totals.reads}, power losses ${totals.powerLosses}, kills ${totals.kills}`);
  console.log(`replica runs: ${JSON.stringify(totals)}`);
});

test('the same seed gives the same replica history; different seeds differ', async () => {
  const hashes = new Set<string>();
  for (const seed of [3, 17]) {
    const first = await runReplicaSeed({ seed, nodeCount: 3, steps: 400 });
    const second = await runReplicaSeed({ seed, nodeCount: 3, steps: 400 });
    assert.equal(first.ok, true, first.failure ?? '');
    assert.equal(second.traceHash, first.traceHash);
    assert.equal(second.historyHash, first.historyHash);
    assert.equal(second.eventCount, first.eventCount);
    assert.equal(second.virtualMs, first.virtualMs);
    assert.ok(first.acknowledged > 0 && first.eventCount > 1000);
    hashes.add(`${first.traceHash}/${first.historyHash}`);
  }
  assert.equal(hashes.size, 2);
  // With bit flips the storage's recovery cuts damaged logs (and names the copy it keeps by the wall clock).
  const flipped = await runReplicaSeed({ seed: 2, nodeCount: 3, steps: 400, bitFlipProbability: 0.3 });
  const again = await runReplicaSeed({ seed: 2, nodeCount: 3, steps: 400, bitFlipProbability: 0.3 });
  assert.ok(flipped.bitFlips > 0);
  assert.equal(again.traceHash, flipped.traceHash);
  assert.equal(again.historyHash, flipped.historyHash);
});

const EXPECTED: Record<ReplicaVariantName, { seedBudget: number; violation: RegExp }> = {
  acknowledgeBeforeQuorumDurable: { seedBudget: 80, violation: /acknowledged (sequenced )?produce .* is lost|does not hold|differ at offset|out of order/ },
  logAcknowledgeBeforeSync: { seedBudget: 10, violation: /is lost|does not hold|differ at offset|could not open|stopped|out of order|liveness/ },
};

for (const [name, expected] of Object.entries(EXPECTED) as [ReplicaVariantName, (typeof EXPECTED)[ReplicaVariantName]][]) {
  test(`the replica simulation catches ${name} within ${expected.seedBudget} seeds`, async () => {
    for (let seed = 1; seed <= expected.seedBudget; seed++) {
      const result = await runReplicaSeed({ seed, nodeCount: 3, steps: 600, faults: REPLICA_VARIANTS[name], faultName: name });
      if (result.ok) continue;
      assert.match(result.failure ?? '', expected.violation, `seed ${seed}`);
      console.log(`${name}: caught at seed ${seed}: ${result.failure}`);
      return;
    }
    assert.fail(`${name} passed ${expected.seedBudget} seeds`);
  });
}
