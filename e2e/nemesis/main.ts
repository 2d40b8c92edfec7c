/**
 * `npm run nemesis -- [--seconds 60] [--nodes 3] [--seed N] [--faults a,b] [--failpoints spec]
 * [--replace-refused] [--out dir] [--keep-data] [--list]`: one nemesis run; exits 1 on any violation, printing the
 * seed and the command that replays it.
 */
import { Command, InvalidArgumentError } from 'commander';
import { killAll } from '../cli-harness.js';
import { FAULTS } from './faults.js';
import { runNemesis } from './run.js';

function integer(text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError('expected a non-negative integer');
  return Number(text);
}

const program = new Command('nemesis')
  .description('attack a cluster of real annal agents with faults and check the history')
  .option('--seconds <n>', 'length of the fault schedule', integer, 60)
  .option('--nodes <n>', 'cluster size (3 or 5)', integer, 3)
  .option('--seed <n>', 'seed of the schedule and workload (default: random)', integer)
  .option('--faults <names>', 'comma-separated faults (default: every CI-safe one; see --list)', (text: string) => text.split(',').filter((t) => t !== ''))
  .option('--no-composed', 'leave out the composed faults (several at once) from the default set')
  .option('--failpoints <spec>', 'ANNAL_FAILPOINTS for every node, e.g. unsafe-skip-fsync (a broken build)')
  .option('--network <mode>', 'netns (partitions; needs root) | loopback (no partitions) | auto', 'auto')
  .option('--segment-records <n>', "records per segment on every node (through --max-index-bytes; default the agent's 12 MiB index, 1M records)", integer)
  .option('--replace-refused', 'replace a node that refuses to start on damaged data with a new member instead of failing the run')
  .option('--out <dir>', 'where the history, report and data go (default: a temp dir)')
  .option('--keep-data', "keep the nodes' data dirs after a passing run")
  .option('--list', 'list the faults and exit');
program.parse();
const flags = program.opts<{ seconds: number; nodes: number; seed?: number; faults?: string[]; failpoints?: string; out?: string; keepData?: boolean; replaceRefused?: boolean; segmentRecords?: number; list?: boolean; network: string; composed: boolean }>();
if (!['netns', 'loopback', 'auto'].includes(flags.network)) {
  console.error(`--network ${flags.network}: expected netns, loopback or auto`);
  process.exit(2);
}

if (flags.list === true) {
  for (const fault of FAULTS) console.log(`${fault.name.padEnd(23)} ${fault.ci ? 'ci ' : '   '}${fault.relays === true ? 'rel' : fault.network === true ? 'net' : '   '} ${fault.describe}`);
  process.exit(0);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 31);
const result = await runNemesis({
  seed,
  nodes: flags.nodes,
  seconds: flags.seconds,
  ...(flags.faults !== undefined ? { faults: flags.faults } : {}),
  ...(flags.failpoints !== undefined ? { failpoints: flags.failpoints } : {}),
  ...(flags.out !== undefined ? { outDir: flags.out } : {}),
  keepData: flags.keepData === true,
  replaceRefused: flags.replaceRefused === true,
  ...(flags.segmentRecords !== undefined ? { segmentRecords: flags.segmentRecords } : {}),
  composed: flags.composed,
  network: flags.network as 'netns' | 'loopback' | 'auto',
});
console.log(result.verdict);
for (const violation of result.check.violations) console.log(`  ${violation.kind}: ${violation.message}`);
console.log(`history: ${result.historyPath}\nreport:  ${result.reportPath}`);
if (!result.check.valid || result.stuck !== undefined) {
  console.log(`replay:  ${result.replay}`);
  process.exit(1);
}
