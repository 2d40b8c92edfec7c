/**
 * A nemesis schedule: which fault runs when, for how long, and the seed of its own choices (which
 * node to hit), all derived from one seed so that `--seed N` replays the same plan. Faults run one
 * at a time, each followed by a quiet period in which the cluster must recover. The first round
 * runs every fault once in a shuffled order, so a short run still covers them all; later steps
 * pick at random. Targets such as "the leader" are resolved when the step runs, so a replay hits
 * the same roles, not necessarily the same node names.
 */
import { Prng } from '../util/index.js';

export interface ScheduleStep {
  readonly fault: string;
  /** When the fault starts, from the start of the run. */
  readonly atMs: number;
  /** How long the fault lasts before it heals. */
  readonly holdMs: number;
  /** Quiet time after the heal, before the next fault. */
  readonly quietMs: number;
  /** Seed for the step's own choices. */
  readonly seed: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly faults: readonly string[];
  /** The schedule ends by then (the last fault healed and quiet). */
  readonly durationMs: number;
  readonly holdMs?: { readonly min: number; readonly max: number };
  readonly quietMs?: { readonly min: number; readonly max: number };
  /** Quiet time before the first fault. */
  readonly warmupMs?: number;
}

export function makeSchedule(options: ScheduleOptions): ScheduleStep[] {
  const prng = new Prng(options.seed);
  const hold = options.holdMs ?? { min: 1000, max: 5000 };
  const quiet = options.quietMs ?? { min: 1000, max: 3000 };
  const steps: ScheduleStep[] = [];
  const firstRound = [...options.faults];
  for (let i = firstRound.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [firstRound[i], firstRound[j]] = [firstRound[j]!, firstRound[i]!];
  }
  let atMs = options.warmupMs ?? 2000;
  for (let i = 0; options.faults.length > 0; i++) {
    const fault = i < firstRound.length ? firstRound[i]! : prng.pick(options.faults);
    const holdMs = prng.int(hold.min, hold.max);
    const quietMs = prng.int(quiet.min, quiet.max);
    // The first round always runs whole: it is what makes every fault run at least once.
    if (i >= firstRound.length && atMs + holdMs + quietMs > options.durationMs) break;
    steps.push({ fault, atMs, holdMs, quietMs, seed: prng.nextUint32() });
    atMs += holdMs + quietMs;
  }
  return steps;
}

export function formatSchedule(steps: readonly ScheduleStep[]): string {
  return steps.map((s, i) => `${String(i + 1).padStart(3)}. t=${(s.atMs / 1000).toFixed(1)}s ${s.fault} for ${(s.holdMs / 1000).toFixed(1)}s, then quiet ${(s.quietMs / 1000).toFixed(1)}s (seed ${s.seed})`).join('\n');
}
