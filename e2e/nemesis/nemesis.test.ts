// Goal: the whole product keeps its promises under attack, in CI: a 3-node cluster of real
// `annal agent` processes (mTLS, fsync always) runs a seeded schedule that includes every CI-safe
// nemesis at least once (kill -9 of a node and of the leader, pauses, leave and rejoin, a new
// member replacing one, slow and failing disks, power loss of one node and of all, a damaged
// file on a stopped node (flipped bit, truncated segment or hard state), and where
// network namespaces can be made (root) partitions: majority/minority, the leader isolated, a
// bridge, one-way, a slow link, and with nftables the link faults on relayed RPC links: delay with
// jitter, a leader's messages late past an election timeout, loss as stalls and resets, one
// direction held) under concurrent producers and plain, linearizable and tailing
// readers; the checker then finds no violation in the history and the final logs. And the run
// can fail: the same harness with a deliberately broken build (fsync skipped, so writes are
// acknowledged before any replica made them durable) and a coordinated power loss reports lost
// acknowledged writes.
// Segments hold 500 records, so the logs roll during the run and a power loss can meet a new
// segment whose directory entry was not synced yet.
// Method: runNemesis with a random seed (ANNAL_NEMESIS_SEED pins one), printed with the command
// that replays it; safety is asserted strictly, availability only loosely (a loaded 2-core
// machine stretches every recovery).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runNemesis, type RunResult } from './run.js';

function explain(result: RunResult): string {
  return [result.verdict, ...result.check.violations.map((v) => `  ${v.kind}: ${v.message}`), `replay: ${result.replay}`, `history and report: ${result.outDir}`].join('\n');
}

/** Only what says a fault was left out (no root for network namespaces, no nftables for the relays). */
const quiet = (line: string): void => {
  if (line.startsWith('no partitions') || line.startsWith('no link faults')) console.log(line);
};

it('a seeded schedule of every CI-safe nemesis finds no violation', { timeout: 8 * 60_000 }, async () => {
  const seed = process.env.ANNAL_NEMESIS_SEED !== undefined ? Number(process.env.ANNAL_NEMESIS_SEED) : Math.floor(Math.random() * 2 ** 31);
  console.log(`nemesis seed ${seed}`);
  const result = await runNemesis({ seed, nodes: 3, seconds: 30, composed: false, segmentRecords: 500, holdMs: { min: 500, max: 2500 }, quietMs: { min: 500, max: 1500 }, log: quiet });
  console.log(result.verdict);
  assert.equal(result.stuck, undefined, explain(result));
  assert.deepEqual(result.check.violations, [], explain(result));
  assert.ok(result.faultsRun >= 10, explain(result)); // 19 with the namespaced network (root) and its relays (nftables)
  assert.ok(result.check.counts.produce.ok > 50, `too few acknowledged writes to prove anything\n${explain(result)}`);
  assert.ok(result.check.counts['lin-read'].ok > 20 && result.check.counts.tail.ok > 50, explain(result));
  assert.equal(result.check.linearizability, 'ok', explain(result));
  assert.deepEqual(result.networkLeftovers, [], 'every namespace and link of the test network removed');
});

it('catches a broken build that acknowledges writes before they are durable', { timeout: 5 * 60_000 }, async () => {
  const result = await runNemesis({
    seed: 7,
    nodes: 3,
    seconds: 1,
    faults: ['power-loss-all'],
    failpoints: 'unsafe-skip-fsync',
    holdMs: { min: 500, max: 500 },
    quietMs: { min: 500, max: 500 },
    convergeTimeoutMs: 10_000,
    log: quiet,
  });
  assert.ok((result.check.violationCounts['lost-ack'] ?? 0) > 0, explain(result));
});
