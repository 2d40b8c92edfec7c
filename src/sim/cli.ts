/**
 * Runs the Raft simulator from the command line.
 *   npm run sim -- --seed 1234 [--nodes 5] [--steps 600] [--verbose] [--fault NAME]
 *   npm run sim -- --long 60 [--nodes 3|5|7]   (random seeds for 60 s, prints seeds/s)
 *   npm run sim -- --replica [--seed N | --long S] [--nodes 3] [--fault NAME] [--bit-flips P] [--read-failures P] [--fsync-failures P] [--state-damage P] [--disk-full-every MIN-MAX]   (the production replica)
 * Exit status 1 when a run fails; the failure line includes the command that reproduces it.
 */
import { BROKEN_VARIANTS, REPLICA_VARIANTS, type BrokenVariantName, type ReplicaVariantName } from './variants.js';
import { runSeed, type RunOptions } from './run.js';
import { runReplicaSeed, type ReplicaRunOptions } from './replica-run.js';

interface CliArgs {
  seed: number | null;
  nodeCount: number | null;
  steps: number;
  verbose: boolean;
  longSeconds: number | null;
  fault: string | null;
  /** Simulate the production replica (replica-run.ts) instead of the Raft cluster. */
  replica: boolean;
  /** Replica runs: probability that a power loss flips a bit on the disk. */
  bitFlips: number;
  readFailures: number;
  /** Replica runs: probability that an fsync fails, for every seed (null: each seed's own draw). */
  fsyncFailures: number | null;
  /** Replica runs: probability that a power loss of one node loses a sector of a Raft state file (null: each seed's own draw). */
  stateDamage: number | null;
  /** Replica runs: every seed fills up or frees one disk every MIN-MAX ms (null: each seed's own draw). */
  diskFullEveryMs: [number, number] | null;
}

function parseArgs(argv: readonly string[]): CliArgs {
  const args: CliArgs = { seed: null, nodeCount: null, steps: 600, verbose: false, longSeconds: null, fault: null, replica: false, bitFlips: 0, readFailures: 0, fsyncFailures: null, stateDamage: null, diskFullEveryMs: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${flag} needs a value`);
      return next;
    };
    if (flag === '--seed') args.seed = parseInteger(flag, value());
    else if (flag === '--nodes') args.nodeCount = parseInteger(flag, value());
    else if (flag === '--steps') args.steps = parseInteger(flag, value());
    else if (flag === '--long') args.longSeconds = parseInteger(flag, value());
    else if (flag === '--verbose') args.verbose = true;
    else if (flag === '--fault') args.fault = value();
    else if (flag === '--replica') args.replica = true;
    else if (flag === '--bit-flips') args.bitFlips = parseProbability(flag, value());
    else if (flag === '--read-failures') args.readFailures = parseProbability(flag, value());
    else if (flag === '--fsync-failures') args.fsyncFailures = parseProbability(flag, value());
    else if (flag === '--state-damage') args.stateDamage = parseProbability(flag, value());
    else if (flag === '--disk-full-every') {
      const [min, max] = value().split('-').map((part) => parseInteger(flag, part));
      if (min === undefined || max === undefined || min > max) throw new Error(`${flag} takes MIN-MAX milliseconds`);
      args.diskFullEveryMs = [min, max];
    }
    else throw new Error(`unknown argument ${flag}`);
  }
  return args;
}

function parseInteger(flag: string | undefined, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${flag} must be a non-negative integer, got ${text}`);
  return value;
}

function parseProbability(flag: string, text: string): number {
  const value = Number(text);
  if (!(value >= 0 && value <= 1)) throw new Error(`${flag} must be a probability in [0, 1], got ${text}`);
  return value;
}

function checkFault(args: CliArgs): void {
  if (args.fault === null) return;
  const variants = args.replica ? REPLICA_VARIANTS : BROKEN_VARIANTS;
  if (!(args.fault in variants)) throw new Error(`unknown fault ${args.fault}; one of ${Object.keys(variants).join(', ')}`);
}

function runOptions(args: CliArgs, seed: number, nodeCount: number): RunOptions {
  return {
    seed,
    nodeCount,
    steps: args.steps,
    ...(args.fault === null ? {} : { faults: BROKEN_VARIANTS[args.fault as BrokenVariantName], faultName: args.fault }),
    ...(args.verbose ? { trace: (line: string) => console.log(line) } : {}),
  };
}

function replicaOptions(args: CliArgs, seed: number, nodeCount: number): ReplicaRunOptions {
  return {
    seed,
    nodeCount,
    steps: args.steps,
    ...(args.fault === null ? {} : { faults: REPLICA_VARIANTS[args.fault as ReplicaVariantName], faultName: args.fault }),
    ...(args.bitFlips > 0 ? { bitFlipProbability: args.bitFlips } : {}),
    ...(args.readFailures > 0 ? { readFailureProbability: args.readFailures } : {}),
    ...(args.fsyncFailures !== null ? { fsyncFailureProbability: args.fsyncFailures } : {}),
    ...(args.stateDamage !== null ? { stateDamageProbability: args.stateDamage } : {}),
    ...(args.diskFullEveryMs !== null ? { diskFullEveryMs: args.diskFullEveryMs } : {}),
    ...(args.verbose ? { trace: (line: string) => console.log(line) } : {}),
  };
}

async function runReplicaOne(args: CliArgs): Promise<number> {
  const result = await runReplicaSeed(replicaOptions(args, args.seed ?? 1, args.nodeCount ?? 3));
  const summary =
    `seed=${result.seed} events=${result.eventCount} acknowledged=${result.acknowledged} sequenced=${result.sequencedAcknowledged} ` +
    `duplicates=${result.duplicatesAnswered} reads=${result.observations} powerLosses=${result.powerLosses} kills=${result.kills} bitFlips=${result.bitFlips} readFailures=${result.readFailures} fsyncFailures=${result.fsyncFailures} diskFulls=${result.diskFulls} stops=${result.stops} retentions=${result.retentions} lowest=${result.lowestOffset} snapshots=${result.snapshots} configChanges=${result.configChanges} leaves=${result.leaves} rejoins=${result.rejoins} wipes=${result.wipes} stateDamages=${result.stateDamages} movedAside=${result.movedAside} log=${result.logLength} ` +
    `virtual=${result.virtualMs}ms trace=${result.traceHash.toString(16)} history=${result.historyHash.toString(16)}`;
  if (result.ok) {
    console.log(`ok ${summary}`);
    return 0;
  }
  console.log(`FAIL ${summary}\n  ${result.failure}\n  reproduce: ${result.reproduce}`);
  return 1;
}

async function runReplicaLong(args: CliArgs, seconds: number): Promise<number> {
  const startMs = Date.now();
  let seed = args.seed ?? (Date.now() % 1_000_000_000);
  let runs = 0;
  let failures = 0;
  const totals = {
    acknowledged: 0, powerLosses: 0, kills: 0, bitFlips: 0, readFailures: 0, fsyncFailures: 0, diskFulls: 0, stops: 0, retentions: 0, snapshots: 0, configChanges: 0,
    leaves: 0, rejoins: 0, wipes: 0, stateDamages: 0, movedAside: 0, partitionedViews: 0, falseSuspicions: 0,
  };
  while (Date.now() - startMs < seconds * 1000) {
    const result = await runReplicaSeed(replicaOptions({ ...args, verbose: false }, seed, args.nodeCount ?? 3));
    runs++;
    for (const key of Object.keys(totals) as (keyof typeof totals)[]) totals[key] += result[key];
    if (!result.ok) {
      failures++;
      console.log(`FAIL seed=${seed}: ${result.failure}\n  reproduce: ${result.reproduce}`);
    }
    seed++;
  }
  const elapsedSeconds = (Date.now() - startMs) / 1000;
  console.log(`${runs} replica seeds in ${elapsedSeconds.toFixed(1)} s: ${(runs / elapsedSeconds).toFixed(1)} seeds/s, ${failures} failed`);
  console.log(`totals: ${Object.entries(totals).map(([key, value]) => `${key}=${value}`).join(' ')}`);
  return failures === 0 ? 0 : 1;
}

function runOne(args: CliArgs): number {
  const result = runSeed(runOptions(args, args.seed ?? 1, args.nodeCount ?? 5));
  const summary = `seed=${result.seed} events=${result.eventCount} committed=${result.committedCount} virtual=${result.virtualMs}ms trace=${result.traceHash.toString(16)}`;
  if (result.ok) {
    console.log(`ok ${summary}`);
    return 0;
  }
  console.log(`FAIL ${summary}\n  ${result.failure}\n  reproduce: ${result.reproduce}`);
  return 1;
}

function runLong(args: CliArgs, seconds: number): number {
  const startMs = Date.now();
  let seed = args.seed ?? (Date.now() % 1_000_000_000);
  let runs = 0;
  let failures = 0;
  while (Date.now() - startMs < seconds * 1000) {
    const nodeCount = args.nodeCount ?? [3, 5, 7][runs % 3]!;
    const result = runSeed(runOptions({ ...args, verbose: false }, seed, nodeCount));
    runs++;
    if (!result.ok) {
      failures++;
      console.log(`FAIL seed=${seed} nodes=${nodeCount}: ${result.failure}\n  reproduce: ${result.reproduce}`);
    }
    seed++;
  }
  const elapsedSeconds = (Date.now() - startMs) / 1000;
  console.log(`${runs} seeds in ${elapsedSeconds.toFixed(1)} s: ${(runs / elapsedSeconds).toFixed(1)} seeds/s, ${failures} failed`);
  return failures === 0 ? 0 : 1;
}

const USAGE = 'usage: npm run sim -- [--replica [--bit-flips P] [--read-failures P] [--fsync-failures P] [--state-damage P] [--disk-full-every MIN-MAX]] [--seed N] [--nodes 3|5|7] [--steps N] [--verbose] [--fault NAME] [--long SECONDS]';

async function main(): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(process.argv.slice(2));
    if (args.nodeCount !== null && args.nodeCount < 1) throw new Error('--nodes must be at least 1');
    checkFault(args);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }
  if (args.replica) return args.longSeconds === null ? runReplicaOne(args) : runReplicaLong(args, args.longSeconds);
  return args.longSeconds === null ? runOne(args) : runLong(args, args.longSeconds);
}

process.exitCode = await main();
