/**
 * The nemeses: each injects one fault, holds it, and heals it, recording the window in the
 * history. Targets are chosen with the step's own PRNG (or are the current leader).
 */
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Prng } from '../../src/util/index.js';
import type { NemesisCluster, NodeSlot } from './cluster.js';
import type { LinkProxies, PathFaults } from './link-proxy.js';
import type { NetnsNetwork } from './network.js';
import type { HistoryRecorder } from './workload.js';

export interface FaultContext {
  readonly cluster: NemesisCluster;
  readonly history: HistoryRecorder;
  readonly prng: Prng;
  readonly holdMs: number;
  readonly log: (line: string) => void;
  /** Overrides the fault's own claim that a majority stays connected (composed faults may not). */
  readonly majority?: boolean;
  /**
   * A node that refuses to start on its damaged data is replaced by a new member instead of
   * failing the run (for runs that study damage the node cannot repair by design).
   */
  readonly replaceRefused?: boolean;
}

/** A node would not start after a fault: the run fails (strict) unless refusals may be replaced. */
export class NodeRefusedError extends Error {
  override readonly name = 'NodeRefusedError';
}

export interface Fault {
  readonly name: string;
  /** Run in the CI schedule (known to pass); the others only when asked for. */
  readonly ci: boolean;
  /** Needs the namespaced test network (cuts links). */
  readonly network?: boolean;
  /** Needs the relays on the RPC links of that network (shapes what they carry). */
  readonly relays?: boolean;
  /** Several faults at once (left out of the short CI schedule to bound its length). */
  readonly composed?: boolean;
  readonly describe: string;
  run(context: FaultContext): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function pickTarget(context: FaultContext, leader: boolean): Promise<NodeSlot> {
  const up = context.cluster.up();
  if (leader) {
    const found = await context.cluster.leader();
    if (found !== undefined && found.state === 'up') return found;
  }
  return context.prng.pick(up.length > 0 ? up : context.cluster.slots);
}

/** Records the fault's window around `hold` (between inject and heal). */
async function window(context: FaultContext, fault: string, targets: NodeSlot[], majority: boolean, inject: () => Promise<void> | void, heal: () => Promise<void>): Promise<void> {
  const names = targets.map((t) => t.name);
  context.log(`${fault} ${names.join(',')}`);
  context.history.nemesis({ phase: 'start', fault, targets: names, majority: context.majority ?? majority });
  try {
    await inject();
    await sleep(context.holdMs);
    await heal();
  } finally {
    context.history.nemesis({ phase: 'stop', fault, targets: names });
  }
}


/**
 * kill -9 a node (the leader with probability `leaderChance`), do `whileDown` to its files, and
 * restart it after the hold (`restart`, default a plain boot).
 */
function crash(
  name: string,
  describe: string,
  options: {
    leaderChance: number;
    ci?: boolean;
    whileDown?: (context: FaultContext, target: NodeSlot) => void;
    restart?: (context: FaultContext, target: NodeSlot) => Promise<void>;
  },
): Fault {
  return {
    name,
    ci: options.ci ?? true,
    describe,
    async run(context) {
      const target = await pickTarget(context, context.prng.chance(options.leaderChance));
      await window(
        context,
        name,
        [target],
        true,
        async () => {
          await context.cluster.kill(target);
          options.whileDown?.(context, target);
        },
        () => (options.restart ?? ((c, t) => c.cluster.boot(t)))(context, target),
      );
    },
  };
}

const kill = crash('kill', 'kill -9 a random node, restart it after the hold', { leaderChance: 0 });
const killLeader = crash('kill-leader', 'kill -9 the leader, restart it after the hold', { leaderChance: 1 });

const replace = crash('replace', 'kill -9 a random node and start a new member in its place with an empty data dir (the old incarnation is removed)', {
  leaderChance: 0,
  whileDown: (context, target) => context.cluster.wipe(target),
});

function describeDropped(dropped: { bytes: number; files: string[] }): string {
  const files = dropped.files.length === 0 ? '' : `, ${dropped.files.length} files whose directory entry was not synced removed (${dropped.files.map((f) => f.slice(f.lastIndexOf('/') + 1)).join(', ')})`;
  return `${dropped.bytes} unsynced bytes dropped${files}`;
}

const powerLoss = crash('power-loss', 'kill -9 a node (often the leader), drop every byte it wrote but did not fsync and every file whose directory entry it did not fsync, restart it after the hold', {
  leaderChance: 0.5,
  whileDown: (context, target) => context.log(`  ${target.name}: ${describeDropped(context.cluster.dropUnsynced(target))}`),
});

const corruption = crash(
  'corrupt',
  'kill -9 a random node, damage one of its files (flip a bit in a segment, truncate a segment or the hard state), restart it: it must detect the damage and repair from the others; refusing to start fails the run (unless --replace-refused)',
  {
    leaderChance: 0,
    ci: true,
    whileDown: (context, target) => context.log(`  ${target.name}: ${corrupt(target.dataDir, context.prng)}`),
    async restart(context, target) {
      try {
        await context.cluster.boot(target);
      } catch (error) {
        const why = String(error).split('\n').slice(-3).join(' | ').slice(0, 400);
        if (context.replaceRefused !== true) throw new NodeRefusedError(`${target.name} refused to start on its damaged data: ${why}`, { cause: error });
        context.log(`  ${target.name} refused to start on its damaged data (${why}); replacing it (--replace-refused)`);
        context.cluster.wipe(target);
        await context.cluster.boot(target);
      }
    },
  },
);

function pause(leader: boolean): Fault {
  return {
    name: leader ? 'pause-leader' : 'pause',
    ci: true,
    describe: `SIGSTOP ${leader ? 'the leader' : 'a random node'}, SIGCONT after the hold (past its lease: it must not serve a stale read on waking)`,
    async run(context) {
      const target = await pickTarget(context, leader);
      await window(context, this.name, [target], true, () => context.cluster.pause(target), async () => context.cluster.resume(target));
    },
  };
}

const leaveRejoin: Fault = {
  name: 'leave-rejoin',
  ci: true,
  describe: 'SIGTERM a random node (it hands over leadership, leaves and is removed), restart it with its data (it rejoins as a learner and is promoted)',
  async run(context) {
    const target = await pickTarget(context, false);
    await window(context, this.name, [target], true, () => context.cluster.stop(target), () => context.cluster.boot(target));
  },
};


/** Starts of an agent on a disk failing up to 30 % of fsyncs before the fault gives up. */
const BOOT_ATTEMPTS_ON_FAILING_DISK = 8;

function disk(name: string, failpoints: (prng: Prng) => string, describe: string): Fault {
  return {
    name,
    ci: true,
    describe,
    async run(context) {
      const target = await pickTarget(context, context.prng.chance(0.5));
      const points = failpoints(context.prng);
      await window(
        context,
        `${this.name}`,
        [target],
        true,
        async () => {
          await context.cluster.kill(target);
          // An agent whose fsync fails while it opens its storage exits with the error (the open
          // makes what it read durable first); its supervisor starts it again, as here.
          for (let attempt = 1; ; attempt++) {
            try {
              // Another draw of the failing fsyncs per start (the same seed fails the same fsync).
              await context.cluster.boot(target, { failpoints: points.replace(/seed=(\d+)/, (_, seed: string) => `seed=${(Number(seed) + attempt - 1) >>> 0}`) });
              break;
            } catch (error) {
              if (attempt >= BOOT_ATTEMPTS_ON_FAILING_DISK || !/EIO/.test((error as Error).message)) throw error;
            }
          }
        },
        async () => {
          await context.cluster.kill(target);
          await context.cluster.boot(target);
        },
      );
    },
  };
}


const powerLossAll: Fault = {
  name: 'power-loss-all',
  ci: true,
  describe: 'a coordinated power failure: kill -9 every node at once, drop their unsynced bytes, restart them all',
  async run(context) {
    const targets = [...context.cluster.slots];
    await window(
      context,
      this.name,
      targets,
      false,
      async () => {
        await Promise.all(targets.map((t) => context.cluster.kill(t)));
        for (const t of targets) context.log(`  ${t.name}: ${describeDropped(context.cluster.dropUnsynced(t))}`);
      },
      async () => {
        for (const t of targets) await context.cluster.boot(t);
      },
    );
  },
};

/** Files of a data dir the node uses: segment store files and the hard-state file. */
function dataFiles(dataDir: string): { stores: string[]; hardState: string | undefined } {
  const stores: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      // Not what the node set aside as damaged (it no longer reads those).
      if (statSync(path).isDirectory()) {
        if (!name.includes('.damaged')) walk(path);
      }
      else if (name.endsWith('.store') && statSync(path).size > 0) stores.push(path);
    }
  };
  if (existsSync(dataDir)) walk(dataDir);
  const hardState = join(dataDir, 'raft', 'hard-state.json');
  return { stores: stores.sort(), hardState: existsSync(hardState) ? hardState : undefined };
}

/** Damages one file of a down node; returns what it did. */
export function corrupt(dataDir: string, prng: Prng): string {
  const { stores, hardState } = dataFiles(dataDir);
  const kinds = [...(stores.length > 0 ? ['flip-bit', 'truncate-segment'] : []), ...(hardState !== undefined ? ['truncate-hard-state'] : [])];
  if (kinds.length === 0) return 'nothing to corrupt';
  const kind = prng.pick(kinds);
  if (kind === 'truncate-hard-state') {
    truncateSync(hardState!, 0);
    return `truncated ${hardState} to 0 bytes`;
  }
  const store = prng.pick(stores);
  const size = statSync(store).size;
  if (kind === 'truncate-segment') {
    const keep = prng.int(0, size - 1);
    truncateSync(store, keep);
    return `truncated ${store} from ${size} to ${keep} bytes`;
  }
  const bytes = readFileSync(store);
  const at = prng.int(0, size - 1);
  const bit = prng.int(0, 7);
  bytes[at] = bytes[at]! ^ (1 << bit);
  writeFileSync(store, bytes);
  return `flipped bit ${bit} of byte ${at} of ${store}`;
}


function shuffled<T>(prng: Prng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function networkOf(context: FaultContext): NetnsNetwork {
  const network = context.cluster.network;
  if (network === undefined) throw new Error('this fault needs the namespaced test network');
  return network;
}

/** A fault that cuts links: `groups` returns the sides (slot indexes) and the targets to name. */
function partition(name: string, describe: string, groups: (context: FaultContext) => Promise<{ sides: number[][]; targets: NodeSlot[] }>): Fault {
  return {
    name,
    ci: true,
    network: true,
    describe,
    async run(context) {
      const network = networkOf(context);
      const { sides, targets } = await groups(context);
      const label = sides.map((side) => side.map((i) => context.cluster.slots[i]!.name).join(',')).join(' | ');
      await window(
        context,
        this.name,
        targets,
        true,
        () => {
          context.log(`  sides ${label}`);
          network.partition(sides);
        },
        async () => network.heal(),
      );
    },
  };
}

const majorityMinority = partition('partition', 'cut the cluster into a random majority and minority', async (context) => {
  const order = shuffled(context.prng, context.cluster.slots.map((s) => s.index));
  const minority = context.prng.int(1, Math.floor((order.length - 1) / 2));
  return { sides: [order.slice(0, minority), order.slice(minority)], targets: order.slice(0, minority).map((i) => context.cluster.slots[i]!) };
});

const isolateLeader = partition('isolate-leader', 'cut the leader off from every other node (it must step down; the rest elect a leader)', async (context) => {
  const leader = await pickTarget(context, true);
  return { sides: [[leader.index], context.cluster.slots.filter((s) => s !== leader).map((s) => s.index)], targets: [leader] };
});

const bridge = partition('bridge', 'two halves that cannot reach each other, and one node that reaches both (A-B-C with A and C cut)', async (context) => {
  const order = shuffled(context.prng, context.cluster.slots.map((s) => s.index));
  const [middle, ...rest] = order as [number, ...number[]];
  const half = Math.ceil(rest.length / 2);
  const left = rest.slice(0, half);
  const right = rest.slice(half);
  return { sides: [left, right], targets: [middle, ...left, ...right].map((i) => context.cluster.slots[i]!) };
});

const oneWay: Fault = {
  name: 'one-way',
  ci: true,
  network: true,
  describe: "drop one node's (often the leader's) packets to every other node, in that direction only",
  async run(context) {
    const network = networkOf(context);
    const target = await pickTarget(context, context.prng.chance(0.5));
    await window(
      context,
      this.name,
      [target],
      true,
      () => {
        for (const other of context.cluster.slots) if (other !== target) network.cut(target.index, other.index);
      },
      async () => network.heal(),
    );
  },
};

const slowNetwork: Fault = {
  name: 'slow-network',
  ci: true,
  network: true,
  describe: "limit one node's (often the leader's) egress to 200-2000 kbit/s with 100-500 ms of queueing (drops beyond it)",
  async run(context) {
    const network = networkOf(context);
    const target = await pickTarget(context, context.prng.chance(0.5));
    const rateKbit = context.prng.int(200, 2000);
    const latencyMs = context.prng.int(100, 500);
    await window(context, this.name, [target], true, () => network.slow(target.index, rateKbit, latencyMs), async () => network.heal());
  },
};

function relaysOf(context: FaultContext): LinkProxies {
  const relays = networkOf(context).relays;
  if (relays === undefined) throw new Error('this fault needs the link relays (nftables)');
  return relays;
}

/** A fault on what the relays carry: `paths` picks [from, to, faults] and the nodes it names. */
function linkFault(
  name: string,
  describe: string,
  paths: (context: FaultContext) => Promise<{ targets: NodeSlot[]; paths: [number, number, Partial<PathFaults>][] }>,
): Fault {
  return {
    name,
    ci: true,
    network: true,
    relays: true,
    describe,
    async run(context) {
      const relays = relaysOf(context);
      const plan = await paths(context);
      await window(
        context,
        this.name,
        plan.targets,
        true,
        () => {
          for (const [from, to, faults] of plan.paths) relays.setFaults(from, to, faults, new Prng(context.prng.nextUint32()));
        },
        async () => {
          const lost = Object.values(relays.counts()).reduce((sum, c) => sum + c.lost, 0);
          context.log(`  ${plan.paths.length} paths shaped; chunks held by a loss so far ${lost}`);
          relays.heal();
        },
      );
    },
  };
}

/** Every ordered pair of distinct slot indexes. */
function allPaths(context: FaultContext): [number, number][] {
  const n = context.cluster.slots.length;
  const out: [number, number][] = [];
  for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) if (a !== b) out.push([a, b]);
  return out;
}

const slowLinks = linkFault('slow-links', 'delay every RPC path by 20-150 ms plus up to 100 ms of jitter per chunk (connections overtake each other)', async (context) => {
  const delayMs = context.prng.int(20, 150);
  const jitterMs = context.prng.int(0, 100);
  return { targets: context.cluster.slots, paths: allPaths(context).map(([a, b]) => [a, b, { delayMs, jitterMs }]) };
});

const lateLeader = linkFault(
  'late-leader',
  "delay everything the leader sends to the others by 0.7-2.5 s, longer than an election timeout (they elect another while its old appends and heartbeats still arrive)",
  async (context) => {
    const leader = await pickTarget(context, true);
    const delayMs = context.prng.int(700, 2500);
    return { targets: [leader], paths: context.cluster.slots.filter((s) => s !== leader).map((s) => [leader.index, s.index, { delayMs, jitterMs: 200 }]) };
  },
);

const flakyLinks = linkFault(
  'flaky-links',
  "lossy RPC paths to and from a node (often the leader): 2-10% of chunks lost (held 0.2-1 s, as for TCP's retransmission), 0.2-1% resetting their connection",
  async (context) => {
    const target = await pickTarget(context, context.prng.chance(0.5));
    const faults: Partial<PathFaults> = {
      lossChance: context.prng.int(2, 10) / 100,
      lossStallMs: { min: 200, max: 1000 },
      resetChance: context.prng.int(2, 10) / 1000,
      jitterMs: 20,
    };
    const paths = allPaths(context).filter(([a, b]) => a === target.index || b === target.index);
    return { targets: [target], paths: paths.map(([a, b]) => [a, b, faults]) };
  },
);

const stallOneWay = linkFault(
  'stall-one-way',
  'hold everything one node (often the leader) sends to one other over RPC, the other way flowing (gossip unaffected)',
  async (context) => {
    const from = await pickTarget(context, context.prng.chance(0.5));
    const to = context.prng.pick(context.cluster.slots.filter((s) => s !== from));
    return { targets: [from, to], paths: [[from.index, to.index, { stalled: true }]] };
  },
);

/**
 * Faults at once, each with its own seed: e.g. a leader killed while a damaged replica restarts
 * (the case where a replica that lost acknowledged entries could win an election).
 */
function compose(...faults: Fault[]): Fault {
  return {
    name: faults.map((f) => f.name).join('+'),
    ci: faults.every((f) => f.ci),
    network: faults.some((f) => f.network === true),
    relays: faults.some((f) => f.relays === true),
    composed: true,
    describe: `at once: ${faults.map((f) => f.name).join(', ')}`,
    async run(context) {
      const seeds = faults.map(() => context.prng.nextUint32());
      await Promise.all(faults.map((fault, i) => fault.run({ ...context, prng: new Prng(seeds[i]!), majority: false })));
    },
  };
}

export const FAULTS: readonly Fault[] = [
  majorityMinority,
  isolateLeader,
  bridge,
  oneWay,
  slowNetwork,
  slowLinks,
  lateLeader,
  flakyLinks,
  stallOneWay,
  kill,
  killLeader,
  pause(false),
  pause(true),
  leaveRejoin,
  replace,
  disk('slow-disk', (prng) => `fsync-delay=${prng.int(50, 300)}ms`, 'restart a node (often the leader) with every fsync delayed 50-300 ms, then restart it normally'),
  disk('failing-disk', (prng) => `fsync-error=${prng.int(5, 30)}%,seed=${prng.nextUint32()}`, 'restart a node (often the leader) with 5-30% of fsyncs failing with EIO (its Raft stops), then restart it normally'),
  powerLoss,
  powerLossAll,
  corruption,
  compose(kill, majorityMinority),
  compose(pause(true), majorityMinority),
  compose(powerLoss, killLeader),
  compose(corruption, killLeader),
  compose(flakyLinks, killLeader),
];
