// Goal: the simulator's command line reproduces a run and tells how to reproduce a failure.
// Method: spawn `node cli.js` (the compiled CLI next to this test) for a passing seed twice and
// compare outputs, then for a broken variant and check the failure line carries the command.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('./cli.js', import.meta.url));

function sim(args: string[]): { status: number | null; stdout: string } {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stdout: result.stdout };
}

test('a seed prints the same summary on every run', () => {
  const first = sim(['--seed', '1234', '--nodes', '5', '--steps', '200']);
  assert.equal(first.status, 0, first.stdout);
  assert.match(first.stdout, /^ok seed=1234 events=\d+ committed=\d+ virtual=\d+ms trace=[0-9a-f]+/);
  assert.equal(sim(['--seed', '1234', '--nodes', '5', '--steps', '200']).stdout, first.stdout);
});

test('a failing seed prints the command that reproduces it and exits 1', () => {
  const result = sim(['--seed', '1', '--nodes', '3', '--steps', '300', '--fault', 'applyBeforeCommit']);
  assert.equal(result.status, 1);
  assert.match(result.stdout, /FAIL seed=1/);
  assert.match(result.stdout, /reproduce: npm run sim -- --seed 1 --nodes 3 --steps 300 --fault applyBeforeCommit/);
});

test('bad arguments are rejected with a clear message', () => {
  const result = spawnSync(process.execPath, [cli, '--nodes', 'five'], { encoding: 'utf8' });
  assert.equal(result.status, 2);
  assert.match(result.stderr, /--nodes must be a non-negative integer, got five/);
});

test('--replica runs the production replica: a seed prints the same summary twice, a failing variant its reproduction', () => {
  const first = sim(['--replica', '--seed', '17', '--steps', '300']);
  assert.equal(first.status, 0, first.stdout);
  assert.match(first.stdout, /^ok seed=17 events=\d+ acknowledged=\d+ sequenced=\d+ duplicates=\d+ reads=\d+ powerLosses=\d+ kills=\d+ bitFlips=\d+ readFailures=\d+ fsyncFailures=\d+ diskFulls=\d+ stops=\d+ retentions=\d+ lowest=\d+ snapshots=\d+ configChanges=\d+ leaves=\d+ rejoins=\d+ wipes=\d+ stateDamages=\d+ movedAside=\d+ log=\d+ virtual=\d+ms trace=[0-9a-f]+ history=[0-9a-f]+/);
  assert.equal(sim(['--replica', '--seed', '17', '--steps', '300']).stdout, first.stdout);
  const broken = sim(['--replica', '--seed', '16', '--fault', 'acknowledgeBeforeQuorumDurable']);
  assert.equal(broken.status, 1, broken.stdout);
  assert.match(broken.stdout, /retried its next sequence \d+ and was refused: .* out of order/);
  assert.match(broken.stdout, /reproduce: npm run sim -- --replica --seed 16 --nodes 3 --steps 600 --fault acknowledgeBeforeQuorumDurable/);
});
