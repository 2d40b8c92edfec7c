/**
 * Replica: one node's part of the replicated log, assembled. It owns the Raft storage on the
 * commit log (`<dataDir>/raft`), the node's identity, the address book of peers, the peer
 * transport, the Raft node and the ReplicatedLog it drives, and the loop that turns gossip
 * membership into configuration changes (cluster-membership.ts). The agent serves `log` and the
 * peer service on its gRPC server and feeds `updateMembers` from gossip.
 *
 * Identity: a node's Raft id is `<node name>@<incarnation>`, the incarnation made when its data
 * dir is created. A node whose data dir was wiped comes back as a new member (it has lost what it
 * promised as a voter, so it must never count as the old one), and the old incarnation is removed
 * once the new one votes.
 *
 * Bootstrap: `bootstrap` on a new data dir makes a one-voter cluster with a new cluster id (the
 * configuration entry at index 1 is committed at once). On a data dir that holds Raft state it is
 * ignored: restarting never makes a second cluster. A node without it waits for a leader to add
 * it and adopts the cluster id of the first peer that reaches it; peers of another cluster are
 * refused by the peer service.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { EntryType, RaftNode, Role, decodeConfig, encodeConfig, type Faults, type Message, type NodeId, type Status, type Timers, type Transport } from '../raft/index.js';
import { NODE_FILE_IO, type FileIo, type LogConfig } from '../storage/index.js';
import { AnnalError, CorruptionError, InvalidArgumentError, type Prng } from '../util/index.js';
import { BACKGROUND_TIMERS } from '../util/system-timers.js';
import { ClusterAdmission } from './cluster-admission.js';
import { foreign, nextChange, nodeNameOf, type GossipStatus, type MemberView } from './cluster-membership.js';
import { readJsonFile, writeJsonAtomic } from './durable-file.js';
import { PeerTransport } from './peer-transport.js';
import type { PeerMetrics } from './peer-metrics.js';
import { PeerService } from './peer-service.js';
import { RaftLogStorage, type RaftStorageFaults } from './raft-storage.js';
import { encodeControl, retainFrom, type RetentionPolicy } from './retention.js';
import { ReplicatedLog, type LeaderCalls, type ReplicatedLogOptions } from './replicated-log.js';

export interface ReplicaLogger {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/** Raft timing. One tick drives heartbeats; elections time out after [electionTicks, 2 × electionTicks) ticks. */
export interface RaftTiming {
  tickIntervalMs: number;
  electionTicks: number;
  heartbeatTicks: number;
}

/** Tuned for fast failover on a LAN: heartbeats every 50 ms, elections after 300-600 ms of silence. */
export const DEFAULT_RAFT_TIMING: RaftTiming = Object.freeze({ tickIntervalMs: 50, electionTicks: 6, heartbeatTicks: 1 });

/** A replica's Raft messages and its calls to the leader (Forward, ReadIndex). */
export interface ReplicaTransport extends Transport, LeaderCalls {
  /** A message a peer sent to this node (what the peer service received). */
  deliver(message: Message): void;
}

/** What a transport is built with: who we are, our cluster, and where peers are now. */
export interface ReplicaTransportContext {
  readonly selfId: NodeId;
  readonly clusterId: () => string | undefined;
  readonly addressOf: (id: NodeId) => string | undefined;
  readonly logger: ReplicaLogger;
}

/**
 * Where a replica's files, time, randomness and network come from. Production: node:fs, Node's
 * timers and clocks, the OS's randomness and the gRPC peer transport; the simulator passes its
 * disk, virtual clock, seeded generators and network, so the code below is what it runs.
 */
export interface ReplicaEnvironment {
  /** Every file call: the Raft storage's, the identity and address-book files', the move aside. */
  readonly fileIo: FileIo;
  /** The membership and retention passes, a hand-over's deadline; also the Raft node's and storage's when set. */
  readonly timers: Timers | undefined;
  /** A monotonic clock (how long gossip has reported a member failed). */
  readonly monotonicMs: () => number;
  /** Milliseconds since the epoch (request deadlines, file ages for retention, names of damaged state moved aside). */
  readonly wallClockMs: () => number;
  /** Random bytes: a new member's incarnation, a new cluster's id. */
  readonly randomBytes: (count: number) => Uint8Array;
  /** The Raft node's election jitter (undefined: one seeded from the OS). */
  readonly raftPrng: (() => Prng) | undefined;
  /** The peer transport (undefined: gRPC with `peerCredentials`). */
  readonly transport: ((context: ReplicaTransportContext) => ReplicaTransport) | undefined;
}

const NODE_ENVIRONMENT: ReplicaEnvironment = Object.freeze({
  fileIo: NODE_FILE_IO,
  timers: undefined,
  monotonicMs: () => performance.now(),
  wallClockMs: () => Date.now(),
  randomBytes: (count: number) => randomBytes(count),
  raftPrng: undefined,
  transport: undefined,
});

/**
 * Deliberately broken variants for the simulator's tests, passed to the layer that reads each;
 * never set in production.
 */
export interface ReplicaFaults {
  readonly raft?: Faults;
  readonly storage?: RaftStorageFaults;
  /**
   * A member whose Raft state is damaged rejoins under the Raft id it had instead of as a new
   * member: it lost its term, vote and log, yet still counts as the voter it was.
   */
  readonly rejoinUnderOldIdentity?: boolean;
}

export interface ReplicaOptions {
  dataDir: string;
  nodeName: string;
  bootstrap: boolean;
  log: Partial<LogConfig>;
  /** Channel credentials for calls to peers (peer mTLS, or insecure); needed unless the environment brings a transport. */
  peerCredentials?: ChannelCredentials;
  /** Files, time, randomness and network (default: the process's own). */
  environment?: Partial<ReplicaEnvironment>;
  /** How long writes and reads wait for a leader, a forwarded call, a proposal (ReplicatedLog's defaults). */
  requestTimeouts?: Pick<ReplicatedLogOptions, 'leaderWaitMs' | 'forwardTimeoutMs' | 'proposeTimeoutMs'>;
  /** Membership pass interval. Default 250 ms. */
  reconcileIntervalMs?: number;
  /** How often the leader checks the retention policy. Default 1000 ms. */
  retentionCheckIntervalMs?: number;
  faults?: ReplicaFaults;
  /** Remove a voter that gossip reports failed for this long (never below 3 voters). Off unless set. */
  removeFailedAfterMs?: number;
  timing?: Partial<RaftTiming>;
  /** Metric hooks (the agent's telemetry): peer traffic, and proposals by outcome. */
  metrics?: { peer?: PeerMetrics; proposal?: (outcome: string, records: number) => void };
  /** How much of the log the cluster keeps (the leader decides; every replica applies it). */
  retention?: RetentionPolicy;
  logger: ReplicaLogger;
}

/** What gossip says of a member (the agent's membership, flattened). */
export interface GossipMember {
  name: string;
  status: GossipStatus;
  /** `host:port` of its gossip endpoint. */
  gossipAddr: string;
  tags: Readonly<Record<string, string>>;
}

/** The gossip tags a replica publishes besides the RPC address: its Raft id and its cluster's id. */
export const RAFT_ID_TAG = 'raft_id';
export const CLUSTER_ID_TAG = 'cluster_id';

interface PeerEntry {
  name: string;
  rpcAddr: string;
  gossipAddr: string;
}

/** A member of the Raft configuration as GetServers reports it. */
export interface ServerView {
  id: string;
  rpcAddr: string;
  isLeader: boolean;
  role: 'leader' | 'follower' | 'learner';
  isVoter: boolean;
  matchIndex: number;
}

export interface ReplicaStats {
  role: Role;
  term: number;
  commit: number;
  applied: number;
  lastIndex: number;
  leaderChanges: number;
  elections: number;
  configChanges: number;
  voters: number;
  learners: number;
  /** Per follower (on the leader): entries behind the leader's last index. */
  lagByPeer: ReadonlyMap<string, number>;
  /** Raft stopped after a failed storage write (a restart is needed). */
  stopped: boolean;
}

const RECONCILE_INTERVAL_MS = 250;
const INFLIGHT_BYTES_MAX = 8 * 1024 * 1024;
const RETENTION_CHECK_INTERVAL_MS = 1000;

export class Replica {
  readonly log: ReplicatedLog;
  private readonly node: RaftNode<number>;
  private readonly transport: ReplicaTransport;
  private readonly peers: Map<NodeId, PeerEntry>;
  private readonly peersFile: string;
  private readonly environment: ReplicaEnvironment;
  private readonly timers: Timers;
  private members: MemberView[] = [];
  private selfRpcAddr = '';
  private cancelReconcile: (() => void) | undefined;
  private cancelRetention: (() => void) | undefined;
  private retaining = false;
  private changing = false;
  private lastConfigText = '';
  /** The commit index at the previous timed membership pass (learners that reached it keep up). */
  private earlierCommit: number | undefined;
  private counters = { leaderChanges: 0, elections: 0, configChanges: 0 };
  private closed = false;
  /** Raft stopped itself after a failed storage write. */
  stopped = false;
  /** Called once when Raft stops itself (after the error line); the agent reopens the replica. */
  onStopped: ((error: Error) => void) | undefined;
  private peerService: PeerService | undefined;
  /**
   * Which peers' Raft traffic this node takes, by cluster id: the peer service's rule, here so that
   * a simulated network applies the same one.
   */
  readonly admission: ClusterAdmission;
  private readonly foreignWarned = new Set<NodeId>();
  /** Called when this node adopts a cluster id (the agent republishes its gossip tags). */
  onClusterId: ((clusterId: string) => void) | undefined;

  private constructor(
    private readonly options: ReplicaOptions,
    readonly raftId: NodeId,
    readonly storage: RaftLogStorage,
    peers: Map<NodeId, PeerEntry>,
    peersFile: string,
    environment: ReplicaEnvironment,
  ) {
    this.peers = peers;
    this.peersFile = peersFile;
    this.environment = environment;
    this.timers = environment.timers ?? BACKGROUND_TIMERS;
    const timing = { ...DEFAULT_RAFT_TIMING, ...options.timing };
    const logger = options.logger;
    this.admission = new ClusterAdmission({ clusterId: () => storage.clusterId(), adoptClusterId: (id) => this.adoptClusterId(id), logger });
    const context: ReplicaTransportContext = { selfId: raftId, clusterId: () => storage.clusterId(), addressOf: (id) => this.rpcAddrOf(id), logger };
    this.transport = environment.transport?.(context) ?? grpcTransport(context, options);
    this.log = new ReplicatedLog({
      storage,
      peers: this.transport,
      ...options.requestTimeouts,
      ...(options.metrics?.proposal !== undefined ? { onProposal: options.metrics.proposal } : {}),
      onDamage: (error) => this.damageFound(error),
      ...(environment.timers !== undefined ? { timers: environment.timers } : {}),
      nowMs: environment.wallClockMs,
    });
    this.node = new RaftNode<number>({
      id: raftId,
      storage,
      transport: this.transport,
      stateMachine: this.log,
      applied: this.log.appliedAtStart,
      tickIntervalMs: timing.tickIntervalMs,
      electionTicks: timing.electionTicks,
      heartbeatTicks: timing.heartbeatTicks,
      ...(environment.timers !== undefined ? { timers: environment.timers } : {}),
      ...(environment.raftPrng !== undefined ? { prng: environment.raftPrng() } : {}),
      ...(options.faults?.raft !== undefined ? { faults: options.faults.raft } : {}),
      // A far-behind follower is fed at most this much per round trip: every append is read from
      // disk synchronously, and 256 messages of 1 MiB in one task stalled the event loop past an
      // election timeout. It also stays well under the peer queue (64 MiB), so nothing is dropped.
      inflightBytesMax: INFLIGHT_BYTES_MAX,
      // Records of one socket read and messages of one peer batch share a Ready.
      schedule: (run) => void setImmediate(run),
      addressOf: (id) => this.rpcAddrOf(id),
      onStopped: (error) => {
        this.stopped = true;
        logger.error(
          { err: String(error) },
          'raft stopped: a storage write failed (a full disk?); this node no longer takes part in replication and serves only what it applied until its replica is reopened',
        );
        this.onStopped?.(error instanceof Error ? error : new Error(String(error)));
      },
    });
    this.log.attach(this.node);
    let previous: Status | undefined;
    this.node.subscribe((status) => {
      if (previous !== undefined && status.leaderId !== previous.leaderId) this.counters.leaderChanges++;
      if (status.role === Role.Candidate) this.counters.elections++;
      if (previous === undefined || status.role !== previous.role || status.leaderId !== previous.leaderId) {
        logger.info({ role: status.role, term: status.term, leader: status.leaderId, commit: status.commit }, 'raft role');
      }
      previous = status;
    });
  }

  /**
   * Opens (bootstrapping if asked and new) the node's Raft state in `<dataDir>/raft`. Damaged
   * Raft state files (hard state, log state, identity) mean this member no longer knows what it
   * promised (its term and vote): the directory is moved aside and the node rejoins as a new
   * incarnation that catches up from the leader, never bootstrapping.
   */
  static async open(options: ReplicaOptions): Promise<Replica> {
    const environment = environmentOf(options);
    const io = environment.fileIo;
    const raftDir = join(options.dataDir, 'raft');
    io.mkdir(raftDir);
    const identityFile = join(raftDir, 'member.json');
    const { logger } = options;
    const storageOptions = {
      log: options.log,
      fileIo: io,
      ...(environment.timers !== undefined ? { timers: environment.timers } : {}),
      ...(options.faults?.storage !== undefined ? { faults: options.faults.storage } : {}),
    };
    const newIncarnation = (): string => Buffer.from(environment.randomBytes(4)).toString('hex');
    let storage: RaftLogStorage;
    let raftId: NodeId;
    let joinOnly: boolean;
    try {
      // Read first: whether a damaged log can be repaired from others depends on who this member is.
      const recorded = recordedIdentity(io, identityFile, options.nodeName);
      storage = await RaftLogStorage.open(raftDir, { ...storageOptions, ...(recorded !== undefined ? { selfId: recorded.raftId } : {}) });
      try {
        ({ raftId, joinOnly } = recorded ?? newIdentity(io, identityFile, options.nodeName, storage.isNew, newIncarnation));
      } catch (error) {
        await storage.close();
        throw error;
      }
    } catch (error) {
      if (!(error instanceof CorruptionError) || !STATE_FILES.has(error.file.slice(raftDir.length + 1))) throw error;
      const clusterId = readClusterIdQuietly(io, raftDir);
      const aside = `${raftDir}.damaged-${new Date(environment.wallClockMs()).toISOString().replace(/[:.]/g, '-')}`;
      io.rename(raftDir, aside);
      io.mkdir(raftDir);
      try {
        io.copyFile(join(aside, 'peers.json'), join(raftDir, 'peers.json')); // the address book, to find the cluster again
      } catch {
        // none saved
      }
      logger.error(
        { err: error.message, movedTo: aside, clusterId },
        'raft state damaged: moved it aside; this node rejoins as a new member and catches up from the leader',
      );
      storage = await RaftLogStorage.open(raftDir, storageOptions);
      try {
        if (options.faults?.rejoinUnderOldIdentity === true) keepIdentity(io, join(aside, 'member.json'), identityFile);
        ({ raftId, joinOnly } = recordedIdentity(io, identityFile, options.nodeName) ?? newIdentity(io, identityFile, options.nodeName, true, newIncarnation, { joinOnly: true }));
        if (clusterId !== undefined) await storage.setClusterId(clusterId);
      } catch (error) {
        await storage.close();
        throw error;
      }
    }
    try {
      for (const action of storage.recovery.actions) logger.warn({ action }, 'raft storage recovery');
      if (storage.repairTo() > 0) {
        logger.error(
          { lastIndex: storage.lastIndex(), repairTo: storage.repairTo() },
          'raft log damaged: cut before the damage; this node never campaigns, and votes only for a candidate holding the lost entries, until the leader has sent them ' +
            'again (if no other replica holds them, restore the files kept aside, or remove raft/repair.json to accept the loss)',
        );
      }
      if (options.bootstrap && joinOnly) {
        logger.info({ raftId }, '--bootstrap ignored: this node replaces a damaged member and joins its cluster');
      } else if (options.bootstrap && storage.clusterId() === undefined && storage.lastIndex() === 0) {
        const clusterId = uuidOf(environment.randomBytes(16));
        // The one-voter configuration is committed by construction: nobody else can hold a log.
        await storage.append([{ index: 1, term: 1, type: EntryType.Config, data: encodeConfig({ voters: [raftId], learners: [] }) }]);
        await storage.setHardState({ term: 1, vote: null, commit: 1 });
        await storage.setClusterId(clusterId);
        logger.info({ clusterId, raftId }, 'bootstrapped a new cluster with this node as its only voter');
      } else if (options.bootstrap && storage.clusterId() !== undefined) {
        logger.info({ clusterId: storage.clusterId(), raftId }, '--bootstrap ignored: this data dir already belongs to a cluster');
      } else if (storage.clusterId() === undefined && bootstrappedHere(storage, raftId)) {
        // The bootstrap's last step, the cluster id, did not complete (its write failed, or the
        // process died). Only a bootstrap writes a first entry naming this node the one voter, and
        // a member that joined adopts an id before it takes any entry: finish it, or the cluster
        // would run without an id and take peers of any cluster.
        const clusterId = uuidOf(environment.randomBytes(16));
        await storage.setClusterId(clusterId);
        logger.info({ clusterId, raftId }, 'finished an interrupted bootstrap: the cluster has its id');
      } else if (storage.clusterId() === undefined) {
        logger.info({ raftId }, 'not in a cluster yet: waiting for a leader to add this node');
      }
      const peersFile = join(raftDir, 'peers.json');
      return new Replica(options, raftId, storage, loadPeers(io, peersFile), peersFile, environment);
    } catch (error) {
      await storage.close();
      throw error;
    }
  }

  get clusterId(): string | undefined {
    return this.storage.clusterId();
  }

  private async adoptClusterId(id: string): Promise<void> {
    try {
      await this.storage.setClusterId(id);
    } catch (error) {
      // The storage takes no write after a failed one until it is reopened, and without the id
      // this node takes no message: stop, as Raft does on a failed write, to be reopened in place.
      if (!(error instanceof AnnalError)) this.stopAfterFailedWrite(error);
      throw error;
    }
    this.options.logger.info({ clusterId: id }, 'joined cluster');
    this.onClusterId?.(id);
  }

  private stopAfterFailedWrite(error: unknown): void {
    if (this.closed || this.stopped || this.onStopped === undefined) return;
    this.stopped = true;
    const cause = error instanceof Error ? error : new Error(String(error));
    this.options.logger.error({ err: cause.message }, 'raft stopped: writing the cluster id failed; this node takes no part in replication until its replica is reopened');
    const onStopped = this.onStopped;
    setImmediate(() => {
      this.node.close(cause);
      onStopped(cause);
    });
  }

  /** The gRPC handlers of annal.raft.v1.Raft for this node. */
  peerHandlers(): ReturnType<PeerService['handlers']> {
    const { logger } = this.options;
    this.peerService ??= new PeerService({
      selfId: this.raftId,
      clusterId: () => this.storage.clusterId(),
      adoptClusterId: (id) => this.adoptClusterId(id),
      admission: this.admission,
      deliver: (message) => this.transport.deliver(message),
      forward: (request) => {
        logger.debug({ subject: request.subject, records: request.values.length, producerId: request.producerId }, 'forwarded produce');
        return this.log.appendForwarded(request);
      },
      readIndex: () => this.log.readIndexForPeer(),
      logger,
      ...(this.options.metrics?.peer !== undefined ? { metrics: this.options.metrics.peer } : {}),
    });
    return this.peerService.handlers();
  }

  /** Ends the peer streams this node serves (at shutdown, so the gRPC server can stop gracefully). */
  drainPeers(): void {
    this.peerService?.drain();
  }

  /** Starts the Raft timer and the membership loop; `rpcAddr` is what peers and clients use for us. */
  start(rpcAddr: string): void {
    this.selfRpcAddr = rpcAddr;
    this.node.start();
    // A lone voter has nobody to wait for (or to disrupt): lead at once instead of after a timeout.
    const { voters } = this.node.status().config;
    if (voters.length === 1 && voters[0] === this.raftId) this.node.campaign();
    this.cancelReconcile = this.timers.every(this.options.reconcileIntervalMs ?? RECONCILE_INTERVAL_MS, () => {
      this.reconcile();
      this.earlierCommit = this.node.status().commit;
    });
    const retention = this.options.retention;
    if (retention !== undefined && (retention.bytes !== undefined || retention.ageMs !== undefined)) {
      this.cancelRetention = this.timers.every(this.options.retentionCheckIntervalMs ?? RETENTION_CHECK_INTERVAL_MS, () => this.applyRetention(retention));
    }
  }

  /** Gossip addresses of peers this node has known (to rejoin gossip after a restart). */
  knownGossipAddrs(): string[] {
    return [...this.peers.entries()].filter(([id]) => id !== this.raftId).map(([, peer]) => peer.gossipAddr);
  }

  /** The gossip view changed: refresh the address book and the members the rules look at. */
  updateMembers(members: readonly GossipMember[]): void {
    const nowMs = this.environment.monotonicMs();
    const previous = new Map(this.members.map((member) => [member.raftId, member]));
    const next: MemberView[] = [];
    let bookChanged = false;
    for (const member of members) {
      const raftId = member.tags[RAFT_ID_TAG];
      const rpcAddr = member.tags.rpc_addr;
      if (raftId === undefined || rpcAddr === undefined || nodeNameOf(raftId) !== member.name) continue;
      const before = previous.get(raftId);
      const view: MemberView = {
        raftId,
        name: member.name,
        status: member.status,
        sinceMs: before?.status === member.status ? before.sinceMs : nowMs,
        clusterId: member.tags[CLUSTER_ID_TAG],
      };
      next.push(view);
      if (foreign(view, this.clusterId) && !this.foreignWarned.has(raftId)) {
        this.foreignWarned.add(raftId);
        this.options.logger.error(
          { member: member.name, theirClusterId: view.clusterId, ourClusterId: this.clusterId },
          `gossip member ${member.name} belongs to cluster ${view.clusterId}, not this one (${this.clusterId}): two nodes started with --bootstrap, or a data dir from another cluster; it is not added`,
        );
      }
      const known = this.peers.get(raftId);
      if (known === undefined || known.rpcAddr !== rpcAddr || known.gossipAddr !== member.gossipAddr) {
        this.peers.set(raftId, { name: member.name, rpcAddr, gossipAddr: member.gossipAddr });
        bookChanged = true;
      }
    }
    this.members = next;
    if (bookChanged) this.savePeers();
    this.reconcile();
  }

  servers(): ServerView[] {
    const status = this.node.status();
    const progress = this.node.progress();
    const learners = new Set(status.config.learners);
    return [...status.config.voters, ...status.config.learners].map((id) => ({
      id: nodeNameOf(id),
      rpcAddr: this.rpcAddrOf(id) ?? '',
      isLeader: id === status.leaderId,
      role: id === status.leaderId ? 'leader' : learners.has(id) ? 'learner' : 'follower',
      isVoter: !learners.has(id),
      matchIndex: id === this.raftId && status.role === Role.Leader ? status.lastIndex : (progress.get(id)?.match ?? 0),
    }));
  }

  status(): Status {
    return this.node.status();
  }

  /** What the storage metrics read: bytes on disk and the consumer-visible range. */
  storageStats(): { dir: string; sizeBytes(): number; segmentCount(): number; lowestOffset(): number; highestOffset(): number } {
    const storage = this.storage;
    const log = this.log;
    return {
      dir: join(this.options.dataDir, 'raft'),
      sizeBytes: () => storage.sizeBytes(),
      segmentCount: () => storage.segmentCount(),
      lowestOffset: () => log.lowestOffset(),
      highestOffset: () => log.nextOffset() - 1,
    };
  }

  stats(): ReplicaStats {
    const status = this.node.status();
    const lagByPeer = new Map<string, number>();
    for (const [id, progress] of this.node.progress()) if (id !== this.raftId) lagByPeer.set(nodeNameOf(id), Math.max(0, status.lastIndex - progress.match));
    return {
      role: status.role,
      term: status.term,
      commit: status.commit,
      applied: status.applied,
      lastIndex: status.lastIndex,
      ...this.counters,
      voters: status.config.voters.length,
      learners: status.config.learners.length,
      lagByPeer,
      stopped: this.stopped,
    };
  }

  /**
   * On the leader: hands leadership to the most up-to-date voter that is answering (TimeoutNow)
   * and waits until this node is no longer leader, up to `timeoutMs`. Resolves false if it could
   * not (a lone voter, nobody reachable, or the timeout).
   */
  async handOffLeadership(timeoutMs: number): Promise<boolean> {
    const status = this.node.status();
    if (status.role !== Role.Leader) return false;
    const progress = this.node.progress();
    const target = status.config.voters
      .filter((id) => id !== this.raftId && progress.get(id)?.recentActive === true)
      .sort((a, b) => (progress.get(b)?.match ?? 0) - (progress.get(a)?.match ?? 0))[0];
    if (target === undefined) return false;
    const { logger } = this.options;
    logger.info({ target: nodeNameOf(target), term: status.term }, 'handing leadership over before shutdown');
    const stepped = new Promise<boolean>((resolve) => {
      let unsubscribe: () => void = () => {};
      const cancel = this.timers.after(timeoutMs, () => {
        unsubscribe();
        resolve(false);
      });
      unsubscribe = this.node.subscribe((now) => {
        if (now.role === Role.Leader) return;
        cancel();
        queueMicrotask(() => unsubscribe());
        resolve(true);
      });
    });
    try {
      await this.node.transferLeadership(target);
    } catch (error) {
      logger.warn({ err: String(error) }, 'leadership transfer refused');
    }
    return stepped;
  }

  /**
   * A read found a damaged record in the log this replica serves. With other voters to repair
   * from, the replica stops as on a failed write, so that it is reopened in place, and the open
   * verifies the log, cuts it before the damage and fetches the rest again (raft-storage.ts). A
   * lone voter has nowhere to repair from: it goes on serving the damaged range as DATA_LOSS.
   */
  private damageFound(error: CorruptionError): void {
    if (this.closed || this.stopped || this.onStopped === undefined) return;
    if (this.node.status().config.voters.length <= 1) return;
    this.stopped = true;
    this.options.logger.error({ err: error.message }, 'raft log damaged while serving: stopping the replica to repair it from the others');
    const onStopped = this.onStopped;
    // After the read that found it has failed with the damage, not with the close that follows.
    setImmediate(() => {
      this.node.close(error);
      onStopped(error);
    });
  }

  /** Stops the loop, the Raft node and the transport, fails waiting reads, closes the storage. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelReconcile?.();
    this.cancelRetention?.();
    this.peerService?.drain();
    this.log.close();
    this.node.close();
    await this.storage.close();
  }

  private rpcAddrOf(id: NodeId): string | undefined {
    if (id === this.raftId) return this.selfRpcAddr || undefined;
    return this.peers.get(id)?.rpcAddr;
  }

  /** One pass of the membership rules (leader only, one change in flight at a time). */
  private reconcile(): void {
    if (this.closed) return;
    const status = this.node.status();
    const configText = JSON.stringify(status.config);
    if (configText !== this.lastConfigText) {
      if (this.lastConfigText !== '') this.counters.configChanges++;
      this.lastConfigText = configText;
      this.options.logger.info({ voters: status.config.voters, learners: status.config.learners }, 'raft configuration');
    }
    if (status.role !== Role.Leader || this.changing) return;
    const decision = nextChange({
      selfId: this.raftId,
      config: status.config,
      commit: status.commit,
      progress: this.node.progress(),
      members: this.members,
      nowMs: this.environment.monotonicMs(),
      removeFailedAfterMs: this.options.removeFailedAfterMs,
      earlierCommit: this.earlierCommit,
      clusterId: this.clusterId,
    });
    if (decision === null) return;
    const { logger } = this.options;
    this.changing = true;
    const { change, reason } = decision;
    logger.info({ change: change.type, member: change.nodeId, reason }, 'proposing a configuration change');
    this.node.changeConfig(change).then(
      () => {
        this.changing = false;
        logger.info({ change: change.type, member: change.nodeId }, 'configuration change committed');
        this.reconcile();
      },
      (error: unknown) => {
        this.changing = false;
        logger.warn({ change: change.type, member: change.nodeId, err: String(error) }, 'configuration change did not commit; retrying on the next pass');
      },
    );
  }

  /** On the leader: propose where the log starts now under the retention policy, if it moved. */
  private applyRetention(policy: RetentionPolicy): void {
    const status = this.node.status();
    if (this.closed || this.retaining || status.role !== Role.Leader) return;
    const { fileIo, wallClockMs } = this.environment;
    const nowMs = wallClockMs();
    const modifiedMs = (path: string): number => {
      try {
        return fileIo.modifiedMs(path);
      } catch {
        return nowMs; // unreadable: taken as new, so nothing is removed for its age
      }
    };
    const segments = this.storage.segments().map((segment) => ({ ...segment, modifiedMs: modifiedMs(segment.storePath) }));
    const firstIndex = retainFrom(segments, policy, status.applied, nowMs);
    if (firstIndex === null || firstIndex <= this.storage.firstIndex()) return;
    const { logger } = this.options;
    this.retaining = true;
    const offset = this.storage.offsetOfIndex(firstIndex);
    this.node.proposeControl(encodeControl({ kind: 'retain', firstIndex })).then(
      () => {
        this.retaining = false;
        logger.info({ firstIndex, lowestOffset: offset, policy }, 'retention: the log now starts at this offset on every replica');
      },
      (error: unknown) => {
        this.retaining = false;
        logger.warn({ err: String(error), firstIndex }, 'retention decision did not commit; retrying');
      },
    );
  }

  private savePeers(): void {
    try {
      writeJsonAtomic(this.environment.fileIo, this.peersFile, Object.fromEntries(this.peers));
    } catch (error) {
      this.options.logger.warn({ err: String(error), file: this.peersFile }, 'could not save the address book of peers');
    }
  }
}

/** The small state files of `<dataDir>/raft` whose damage makes the node rejoin as a new member. */
export const STATE_FILES: ReadonlySet<string> = new Set(['hard-state.json', 'log-state.json', 'cluster.json', 'member.json']);

/** The Raft id recorded in the data dir, if any; a data dir of another node is refused. */
function recordedIdentity(io: FileIo, file: string, nodeName: string): { raftId: NodeId; joinOnly: boolean } | undefined {
  if (nodeName.includes('@')) throw new InvalidArgumentError(`node name "${nodeName}" must not contain "@"`);
  const recorded = readJsonFile(io, file) as { nodeName?: unknown; raftId?: unknown; joinOnly?: unknown } | undefined;
  if (recorded === undefined) return undefined;
  if (typeof recorded.raftId !== 'string' || typeof recorded.nodeName !== 'string') throw new CorruptionError(file, 0, 'not a member identity');
  if (recorded.nodeName !== nodeName) {
    throw new InvalidArgumentError(`data dir belongs to node "${recorded.nodeName}", not "${nodeName}": start it with --node-name ${recorded.nodeName} or use another --data-dir`);
  }
  return { raftId: recorded.raftId, joinOnly: recorded.joinOnly === true };
}

/**
 * Makes and records this node's Raft id, a new incarnation of its name; only for Raft state that is
 * new. `joinOnly` marks an identity that replaces a damaged member: it never bootstraps.
 */
function newIdentity(
  io: FileIo,
  file: string,
  nodeName: string,
  storageIsNew: boolean,
  newIncarnation: () => string,
  made: { joinOnly?: boolean } = {},
): { raftId: NodeId; joinOnly: boolean } {
  if (!storageIsNew) throw new CorruptionError(file, 0, 'missing, but the data dir holds Raft state');
  const raftId = `${nodeName}@${newIncarnation()}`;
  const joinOnly = made.joinOnly === true;
  writeJsonAtomic(io, file, joinOnly ? { nodeName, raftId, joinOnly } : { nodeName, raftId });
  return { raftId, joinOnly };
}

/** The broken variant rejoinUnderOldIdentity: the damaged member's identity file, if it still reads, is kept. */
function keepIdentity(io: FileIo, from: string, to: string): void {
  try {
    io.copyFile(from, to);
    readJsonFile(io, to);
  } catch {
    io.remove(to);
  }
}

/** Whether the log starts with the configuration a bootstrap of `raftId` writes: this node its one voter. */
function bootstrappedHere(storage: RaftLogStorage, raftId: NodeId): boolean {
  if (storage.firstIndex() > 1 || storage.lastIndex() < 1) return false;
  const [first] = storage.entries(1, 2, Number.MAX_SAFE_INTEGER);
  if (first === undefined || first.type !== EntryType.Config) return false;
  try {
    const config = decodeConfig(first.data);
    return config.voters.length === 1 && config.voters[0] === raftId && config.learners.length === 0;
  } catch {
    return false;
  }
}

/** The cluster id of a damaged Raft dir, if its cluster.json can still be read. */
function readClusterIdQuietly(io: FileIo, raftDir: string): string | undefined {
  try {
    const value = readJsonFile(io, join(raftDir, 'cluster.json')) as { clusterId?: unknown } | undefined;
    return typeof value?.clusterId === 'string' && value.clusterId.length > 0 ? value.clusterId : undefined;
  } catch {
    return undefined;
  }
}

function environmentOf(options: ReplicaOptions): ReplicaEnvironment {
  return options.environment === undefined ? NODE_ENVIRONMENT : { ...NODE_ENVIRONMENT, ...options.environment };
}

function grpcTransport(context: ReplicaTransportContext, options: ReplicaOptions): PeerTransport {
  if (options.peerCredentials === undefined) throw new InvalidArgumentError('a replica needs peerCredentials (or a transport from its environment)');
  return new PeerTransport({
    ...context,
    credentials: options.peerCredentials,
    ...(options.metrics?.peer !== undefined ? { metrics: options.metrics.peer } : {}),
  });
}

/** A version 4 UUID made of 16 random bytes. */
function uuidOf(bytes: Uint8Array): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function loadPeers(io: FileIo, file: string): Map<NodeId, PeerEntry> {
  let parsed: unknown;
  try {
    parsed = readJsonFile(io, file);
  } catch {
    return new Map(); // an address book only: gossip refills it
  }
  const peers = new Map<NodeId, PeerEntry>();
  if (parsed === undefined || typeof parsed !== 'object' || parsed === null) return peers;
  for (const [id, value] of Object.entries(parsed as Record<string, Partial<PeerEntry>>)) {
    if (typeof value.rpcAddr === 'string' && typeof value.gossipAddr === 'string' && typeof value.name === 'string') {
      peers.set(id, { name: value.name, rpcAddr: value.rpcAddr, gossipAddr: value.gossipAddr });
    }
  }
  return peers;
}
