/**
 * Wire and state types of the Raft core. Indexes and terms are non-negative safe integers; index 0
 * and term 0 mean "none" (the log's first real entry has index 1 unless a snapshot says otherwise).
 */

/** A node's stable name (annal uses the agent's node name). */
export type NodeId = string;

/**
 * Entry types. Numeric so that a durable store can keep them in the record's `type` field next to
 * user records (the storage engine's `type` 0 is a user record).
 */
export const EntryType = {
  /** User data proposed through `propose`. */
  Normal: 0,
  /** Empty entry a new leader appends so that it can commit entries of earlier terms. */
  Noop: 1,
  /** A full cluster configuration (see `encodeConfig`); takes effect as soon as it is appended. */
  Config: 2,
  /**
   * The application's own control entry (its data is the application's): replicated and
   * committed like a normal entry, handed to `StateMachine.applyControl` instead of `apply`, so a
   * store can keep it out of the user-visible record space (annal: retention decisions).
   */
  Control: 3,
  /**
   * User data like Normal (applied through `apply`, takes a place in the user-visible record
   * space) whose data starts with an application header (annal: an idempotent producer's id and
   * sequence), so a store can tell it from a plain Normal entry without looking into the data.
   */
  Sequenced: 4,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** Entries applied through `StateMachine.apply`: the user's records. */
export function isUserEntry(type: number): boolean {
  return type === EntryType.Normal || type === EntryType.Sequenced;
}

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be durable before any message that depends on it leaves the node. */
export interface HardState {
  readonly term: number;
  /** Whom this node voted for in `term`, or null. */
  readonly vote: NodeId | null;
  /** Highest index known committed; persisting it is an optimisation (it can be relearned). */
  readonly commit: number;
}

/** Voters count towards quorums and may campaign; learners only receive the log. */
export interface ClusterConfig {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** A single-server change; the leader turns it into a full `ClusterConfig` entry. */
export type ConfigChange =
  | { readonly type: 'addVoter'; readonly nodeId: NodeId }
  | { readonly type: 'addLearner'; readonly nodeId: NodeId }
  | { readonly type: 'remove'; readonly nodeId: NodeId };

export interface SnapshotMeta {
  /** Last log index the snapshot covers (0: no snapshot). */
  readonly index: number;
  readonly term: number;
  /** The configuration in effect at `index`. */
  readonly config: ClusterConfig;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The state machine's serialised state at `meta.index`. */
  readonly data: Uint8Array;
}

/** The result of a ReadIndex request: reading state applied through `index` is linearizable. */
export interface ReadState {
  readonly context: string;
  readonly index: number;
}

export const Role = {
  Follower: 'follower',
  PreCandidate: 'preCandidate',
  Candidate: 'candidate',
  Leader: 'leader',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/** Volatile state the driver may want to observe; never persisted. */
export interface SoftState {
  readonly role: Role;
  readonly leaderId: NodeId | null;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

export interface VoteRequest extends MessageBase {
  readonly type: 'vote' | 'preVote';
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
  /** Set when campaigning after TimeoutNow: voters then ignore their leader lease. */
  readonly transfer: boolean;
}

export interface VoteResponse extends MessageBase {
  readonly type: 'voteResponse' | 'preVoteResponse';
  readonly reject: boolean;
}

export interface AppendRequest extends MessageBase {
  readonly type: 'append';
  readonly prevLogIndex: number;
  readonly prevLogTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

export interface AppendResponse extends MessageBase {
  readonly type: 'appendResponse';
  readonly reject: boolean;
  /** On success the follower's match index; on rejection the rejected `prevLogIndex`. */
  readonly index: number;
  /**
   * On rejection: the largest index <= prevLogIndex whose term is <= the leader's prevLogTerm (or
   * the follower's last index), with its term, so the leader skips a whole conflicting term at once.
   */
  readonly rejectHintIndex: number;
  readonly rejectHintTerm: number;
}

export interface Heartbeat extends MessageBase {
  readonly type: 'heartbeat';
  /** min(leader commit, follower match): never beyond what the follower is known to hold. */
  readonly commit: number;
  /** ReadIndex context being confirmed, or null. */
  readonly context: string | null;
}

export interface HeartbeatResponse extends MessageBase {
  readonly type: 'heartbeatResponse';
  readonly context: string | null;
}

export interface SnapshotChunk extends MessageBase {
  readonly type: 'snapshot';
  readonly meta: SnapshotMeta;
  readonly offsetBytes: number;
  readonly totalBytes: number;
  readonly data: Uint8Array;
}

export interface SnapshotResponse extends MessageBase {
  readonly type: 'snapshotResponse';
  readonly snapshotIndex: number;
  /** The byte offset the follower expects next (totalBytes once installed). */
  readonly nextOffsetBytes: number;
}

export interface TimeoutNow extends MessageBase {
  readonly type: 'timeoutNow';
}

export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | SnapshotChunk
  | SnapshotResponse
  | TimeoutNow;
export type MessageType = Message['type'];

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export function encodeConfig(config: ClusterConfig): Uint8Array {
  return textEncoder.encode(JSON.stringify({ voters: [...config.voters], learners: [...config.learners] }));
}

export function decodeConfig(data: Uint8Array): ClusterConfig {
  const parsed = JSON.parse(textDecoder.decode(data)) as { voters: NodeId[]; learners: NodeId[] };
  return { voters: parsed.voters, learners: parsed.learners };
}

export function entrySizeBytes(entry: Entry): number {
  // A fixed per-entry overhead approximates the framing a transport adds.
  return entry.data.length + 24;
}
