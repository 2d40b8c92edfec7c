/** Options of the Raft core, validated once at construction. */
import { assert, assertUint, type Prng } from '../util/index.js';
import type { Faults } from './faults.js';
import type { Storage } from './storage.js';
import type { NodeId } from './types.js';

export interface RaftOptions {
  readonly id: NodeId;
  readonly storage: Storage;
  /** Source of election-timeout jitter; seeded so runs are reproducible. */
  readonly prng: Prng;
  /**
   * A follower that hears nothing from a leader for a random number of ticks in
   * [electionTicks, 2 * electionTicks) campaigns. Must exceed heartbeatTicks. Default 10.
   */
  readonly electionTicks?: number;
  /** A leader sends heartbeats every this many ticks. Default 1. */
  readonly heartbeatTicks?: number;
  /** Run a pre-election so a node that cannot win does not bump terms (default true). */
  readonly preVote?: boolean;
  /** A leader steps down when it has not heard from a quorum for electionTicks (default true). */
  readonly checkQuorum?: boolean;
  /**
   * Leader lease (thesis §4.2.3, default true): a voter ignores vote requests within electionTicks
   * of hearing from a leader (unless the candidate was told to campaign by a leadership transfer).
   * Without it a server removed from the configuration that never learns so keeps campaigning
   * with ever higher terms and can stall the cluster forever (the simulator finds this within a
   * few thousand seeds when PreVote and CheckQuorum are off). etcd ties this to CheckQuorum; here
   * it is separate. Turn it off only to study the plain protocol (the Figure 8 script does).
   */
  readonly leaderLease?: boolean;
  /** Largest append message in entry bytes (at least one entry is always sent). Default 1 MiB. */
  readonly maxMessageBytes?: number;
  /** Appends in flight per follower in the replicate state. Default 256. */
  readonly inflightCountMax?: number;
  /** Entry bytes in flight per follower (Infinity: no byte limit, the default). */
  readonly inflightBytesMax?: number;
  /** Committed entries handed out per Ready, in entry bytes (at least one). Default Infinity. */
  readonly maxCommittedBytesPerReady?: number;
  /**
   * A leader refuses proposals ('overloaded') while its own uncommitted entries exceed this many
   * bytes, so a leader that cannot reach a quorum does not grow its log without bound. Default
   * 64 MiB; Infinity disables the limit.
   */
  readonly uncommittedBytesMax?: number;
  /** Size of one InstallSnapshot chunk. Default 1 MiB. */
  readonly snapshotChunkBytes?: number;
  /**
   * Largest snapshot a follower accepts, in bytes (a chunk announcing more is dropped: the
   * receiver buffers a whole snapshot). Snapshots are meant to be small descriptors of state kept
   * elsewhere (annal's state is the log itself). Default 1 MiB.
   */
  readonly snapshotBytesMax?: number;
  /**
   * Highest index the state machine already reflects at start-up, for state machines whose state
   * is durable with the log (annal's: the log is the state), so that a restart does not replay the
   * committed log. Clamped to [snapshot index, persisted commit]. Default 0: replay from the
   * snapshot.
   */
  readonly applied?: number;
  /** Deliberately broken variants for checker tests; never set in production. */
  readonly faults?: Faults;
}

export type ResolvedRaftOptions = Required<RaftOptions>;

export function resolveRaftOptions(options: RaftOptions): ResolvedRaftOptions {
  const resolved: ResolvedRaftOptions = {
    electionTicks: 10,
    heartbeatTicks: 1,
    preVote: true,
    checkQuorum: true,
    leaderLease: true,
    maxMessageBytes: 1 << 20,
    inflightCountMax: 256,
    inflightBytesMax: Infinity,
    maxCommittedBytesPerReady: Infinity,
    snapshotChunkBytes: 1 << 20,
    uncommittedBytesMax: 64 << 20,
    faults: {},
    ...options,
    applied: options.applied ?? 0,
    snapshotBytesMax: options.snapshotBytesMax ?? 1 << 20,
  };
  assert(resolved.id.length > 0, 'raft id must be non-empty');
  assertUint(resolved.electionTicks, 'electionTicks');
  assertUint(resolved.heartbeatTicks, 'heartbeatTicks');
  assert(resolved.heartbeatTicks >= 1, 'heartbeatTicks must be at least 1');
  assert(resolved.electionTicks > resolved.heartbeatTicks, 'electionTicks must exceed heartbeatTicks');
  assert(resolved.inflightCountMax >= 1, 'inflightCountMax must be at least 1');
  assert(resolved.maxMessageBytes >= 1, 'maxMessageBytes must be at least 1');
  assert(resolved.snapshotChunkBytes >= 1, 'snapshotChunkBytes must be at least 1');
  assert(resolved.snapshotBytesMax >= 1, 'snapshotBytesMax must be at least 1');
  assertUint(resolved.applied, 'applied');
  assert(resolved.uncommittedBytesMax >= 1, 'uncommittedBytesMax must be at least 1');
  return resolved;
}
