/**
 * The Serf layer over SWIM, pure like it: members with statuses alive / leaving / left / failed,
 * join and leave intents ordered by a Lamport clock, tags carried in node meta, events
 * (member-join / -leave / -failed / -update / -reap), reaping of old left/failed members, periodic
 * reconnect attempts to failed members, serf's push/pull state, and enough of user events and
 * queries to relay them and to ack queries like a real agent does.
 */
import { type Prng, InvalidArgumentError, assert } from '../util/index.js';
import { type Address, ipToText } from './address.js';
import { BroadcastQueue } from './broadcast-queue.js';
import { type MembershipTimings, broadcastQueueDepthMax } from './config.js';
import { type PushNodeState, concat, metaBytesMax } from './messages.js';
import {
  QueryFlag,
  type Query,
  type QueryFilter,
  type SerfPushPull,
  type UserEvent,
  decodeSerfMessage,
  decodeSerfPushPull,
  decodeTags,
  encodeJoinIntent,
  encodeLeaveIntent,
  encodeQueryAck,
  encodeSerfPushPull,
  encodeTags,
  eventBufferSlots,
} from './serf-messages.js';
import { type NodeRecord, type SwimDelegate, type SwimOutput, Swim, nodesMax } from './swim.js';
import { LamportClock } from './lamport.js';

export type MemberStatus = 'alive' | 'leaving' | 'left' | 'failed';

/** A cluster member as the API shows it. */
export interface Member {
  readonly name: string;
  /** IP address as text. */
  readonly addr: string;
  readonly port: number;
  readonly tags: Readonly<Record<string, string>>;
  readonly status: MemberStatus;
  /** memberlist protocol range and current version, then serf's: [pmin, pmax, pcur, dmin, dmax, dcur]. */
  readonly protocol: readonly number[];
}

export type MemberEventType = 'member-join' | 'member-leave' | 'member-failed' | 'member-update' | 'member-reap';
export interface MemberEvent {
  readonly type: MemberEventType;
  readonly member: Member;
}

export type SerfOutput = SwimOutput | { readonly kind: 'join'; readonly to: Address };

interface MemberState {
  member: Member;
  /** Lamport time of the last intent applied to this member. */
  statusLTime: number;
  /** When the member left or failed (for reaping). */
  leaveTimeMs: number;
}

interface RecentIntent {
  readonly type: 'join' | 'leave';
  readonly lTime: number;
  readonly witnessedMs: number;
}

export type SerfState = 'alive' | 'leaving' | 'left';

export interface SerfOptions {
  readonly name: string;
  readonly advertise: Address;
  readonly addr: Uint8Array;
  readonly tags: Readonly<Record<string, string>>;
  readonly timings: MembershipTimings;
  readonly prng: Prng;
  readonly nowMs: number;
  readonly packetOverheadBytes: number;
}

/** Bound on buffered intents about members we have not met yet. */
const recentIntentsMax = 4096;

export class Serf implements SwimDelegate {
  readonly swim: Swim;
  readonly name: string;
  state: SerfState = 'alive';
  private readonly memberStates = new Map<string, MemberState>();
  private readonly recentIntents = new Map<string, RecentIntent>();
  private readonly broadcasts: BroadcastQueue;
  private readonly events: MemberEvent[] = [];
  private readonly outputs: SerfOutput[] = [];
  private readonly clock = new LamportClock();
  private readonly eventClock = new LamportClock();
  private readonly queryClock = new LamportClock();
  /** Recently seen user events and queries, per Lamport slot: dedup keys. */
  private readonly eventSlots = new Map<number, { lTime: number; keys: Set<string> }>();
  private readonly querySlots = new Map<number, { lTime: number; ids: Set<number> }>();
  private readonly timings: MembershipTimings;
  private readonly prng: Prng;
  private nextReapMs: number;
  private nextReconnectMs: number;

  constructor(options: SerfOptions) {
    this.name = options.name;
    this.timings = options.timings;
    this.prng = options.prng;
    const meta = tagsToMeta(options.tags);
    this.swim = new Swim({ ...options, meta });
    this.broadcasts = new BroadcastQueue(() => this.swim.retransmitLimit(), broadcastQueueDepthMax);
    this.swim.delegateBroadcasts = this.broadcasts;
    this.nextReapMs = options.nowMs + this.timings.reapIntervalMs;
    this.nextReconnectMs = options.nowMs + this.timings.reconnectIntervalMs;
    this.swim.start(this, options.nowMs);
  }

  get counters(): Map<string, number> {
    return this.swim.counters;
  }

  /** Another member's address that claims our node name, once one was heard. */
  get nameClaimedFrom(): string | undefined {
    return this.swim.nameClaimedFrom;
  }

  members(): Member[] {
    return [...this.memberStates.values()].map((state) => state.member);
  }

  drainEvents(): MemberEvent[] {
    return this.events.splice(0, this.events.length);
  }

  drainOutbox(): SerfOutput[] {
    return [...this.outputs.splice(0, this.outputs.length), ...this.swim.drainOutbox()];
  }

  nextDeadlineMs(): number {
    return Math.min(this.swim.nextDeadlineMs(), this.nextReapMs, this.nextReconnectMs);
  }

  tick(nowMs: number): void {
    this.swim.tick(nowMs);
    if (nowMs >= this.nextReapMs) {
      this.nextReapMs = nowMs + this.timings.reapIntervalMs;
      this.reap(nowMs);
    }
    if (nowMs >= this.nextReconnectMs) {
      this.nextReconnectMs = nowMs + this.timings.reconnectIntervalMs;
      this.reconnect();
    }
  }

  receivePacket(bytes: Uint8Array, from: Address, nowMs: number): void {
    this.swim.receivePacket(bytes, from, nowMs);
  }

  // ---- our own intents ----

  /** After joining through push/pull: announce the join intent at the current member clock. */
  announceJoin(): void {
    const lTime = this.clock.time();
    this.applyJoinIntent(lTime, this.name);
    this.broadcasts.enqueue(encodeJoinIntent({ lTime, node: this.name }));
  }

  /**
   * Graceful leave, step 1: broadcast the leave intent. The driver waits for
   * `intentBroadcastsPending()` to clear (at most broadcastTimeout), then calls `leaveGossip`.
   */
  leave(nowMs: number): void {
    if (this.state !== 'alive') return;
    this.state = 'leaving';
    const lTime = this.clock.increment();
    this.applyLeaveIntent(lTime, this.name, nowMs);
    const intent = encodeLeaveIntent({ lTime, node: this.name, prune: false });
    this.broadcasts.enqueue(intent);
    // Directly too: peers that get our memberlist leave before this intent record a failure.
    this.swim.sendUserToLiveMembers(intent);
  }

  intentBroadcastsPending(): boolean {
    return this.broadcasts.size > 0;
  }

  /**
   * Graceful leave, step 2: memberlist's dead-about-ourselves (From = us), which peers record as
   * left because our leave intent reached them first. Then wait for `leaveBroadcastPending()`.
   */
  leaveGossip(nowMs: number): void {
    assert(this.state === 'leaving', 'leaveGossip follows leave');
    this.swim.leave(nowMs);
    this.state = 'left';
    const self = this.memberStates.get(this.name);
    if (self) {
      self.member = { ...self.member, status: 'left' };
      self.leaveTimeMs = nowMs;
    }
  }

  leaveBroadcastPending(): boolean {
    return this.swim.leaveBroadcastPending();
  }

  setTags(tags: Readonly<Record<string, string>>, nowMs: number): void {
    const meta = tagsToMeta(tags);
    this.swim.updateMeta(meta, nowMs);
    const self = this.memberStates.get(this.name);
    if (self) self.member = { ...self.member, tags: { ...tags } };
  }

  // ---- SwimDelegate ----

  notifyJoin(node: NodeRecord, _nowMs: number): void {
    let state = this.memberStates.get(node.name);
    if (!state) {
      if (this.memberStates.size >= nodesMax) this.reapOldestDeparted();
      state = { member: memberOf(node, 'alive'), statusLTime: 0, leaveTimeMs: 0 };
      const intent = this.recentIntents.get(node.name);
      if (intent?.type === 'join') state.statusLTime = intent.lTime;
      if (intent?.type === 'leave') {
        state.statusLTime = intent.lTime;
        state.member = { ...state.member, status: 'leaving' };
      }
      this.memberStates.set(node.name, state);
    } else {
      state.member = memberOf(node, 'alive');
      state.leaveTimeMs = 0;
    }
    this.emit('member-join', state.member);
  }

  /** Keeps the member table bounded: forgets the longest-departed left/failed member early. */
  private reapOldestDeparted(): void {
    let oldest: MemberState | undefined;
    for (const state of this.memberStates.values()) {
      const departed = state.member.status === 'left' || state.member.status === 'failed';
      if (departed && (oldest === undefined || state.leaveTimeMs < oldest.leaveTimeMs)) oldest = state;
    }
    if (!oldest) return;
    this.memberStates.delete(oldest.member.name);
    this.swim.count('reaped early: member table full');
    this.emit('member-reap', oldest.member);
  }

  notifyLeave(node: NodeRecord, nowMs: number): void {
    const state = this.memberStates.get(node.name);
    if (!state) return;
    // Graceful if serf's leave intent came first, or if memberlist's own leave (a dead message
    // from the node about itself) overtook the intent in gossip: either way the node said goodbye.
    if (state.member.status === 'leaving' || (state.member.status === 'alive' && node.status === 'left')) {
      state.member = { ...state.member, status: 'left' };
      state.leaveTimeMs = nowMs;
      this.emit('member-leave', state.member);
    } else if (state.member.status === 'alive') {
      state.member = { ...state.member, status: 'failed' };
      state.leaveTimeMs = nowMs;
      this.emit('member-failed', state.member);
    }
  }

  notifyUpdate(node: NodeRecord, _nowMs: number): void {
    const state = this.memberStates.get(node.name);
    if (!state) return;
    state.member = memberOf(node, state.member.status);
    this.emit('member-update', state.member);
  }

  notifyUser(payload: Uint8Array, _from: Address, nowMs: number): void {
    const decoded = decodeSerfMessage(payload);
    if (!decoded.ok) return this.swim.count(`drop: serf ${decoded.reason}`);
    const message = decoded.value;
    switch (message.type) {
      case 'join':
        if (this.applyJoinIntent(message.lTime, message.node, nowMs)) this.broadcasts.enqueue(payload);
        return;
      case 'leave':
        if (this.applyLeaveIntent(message.lTime, message.node, nowMs)) this.broadcasts.enqueue(payload);
        return;
      case 'user-event':
        if (this.firstSightOfEvent(message)) this.broadcasts.enqueue(payload);
        return;
      case 'query':
        return this.handleQuery(message, payload);
      case 'query-response':
        return; // we never send queries, so responses are not for us
    }
  }

  // ---- intents ----

  private applyJoinIntent(lTime: number, node: string, nowMs = 0): boolean {
    this.clock.witness(lTime);
    const state = this.memberStates.get(node);
    if (!state) return this.upsertIntent(node, 'join', lTime, nowMs);
    if (lTime <= state.statusLTime) return false;
    state.statusLTime = lTime;
    if (state.member.status === 'leaving') state.member = { ...state.member, status: 'alive' };
    return true;
  }

  private applyLeaveIntent(lTime: number, node: string, nowMs: number): boolean {
    this.clock.witness(lTime);
    const state = this.memberStates.get(node);
    if (!state) return this.upsertIntent(node, 'leave', lTime, nowMs);
    if (lTime <= state.statusLTime) return false;
    if (node === this.name && this.state === 'alive') {
      // Someone says we are leaving, but we are not: refute with a fresh join intent.
      this.swim.count('refuted: leave intent about us');
      this.announceJoin();
      return false;
    }
    state.statusLTime = lTime;
    if (state.member.status === 'alive') {
      state.member = { ...state.member, status: 'leaving' };
    } else if (state.member.status === 'failed') {
      state.member = { ...state.member, status: 'left' };
      this.emit('member-leave', state.member);
    }
    return true;
  }

  private upsertIntent(node: string, type: 'join' | 'leave', lTime: number, nowMs: number): boolean {
    const existing = this.recentIntents.get(node);
    if (existing && existing.lTime >= lTime) return false;
    if (!existing && this.recentIntents.size >= recentIntentsMax) {
      this.swim.count('drop: intent buffer full');
      return false;
    }
    this.recentIntents.set(node, { type, lTime, witnessedMs: nowMs });
    return true;
  }

  // ---- user events and queries (relayed, deduplicated; queries acked) ----

  private firstSightOfEvent(event: UserEvent): boolean {
    this.eventClock.witness(event.lTime);
    if (event.lTime + eventBufferSlots < this.eventClock.time()) return false;
    const key = `${event.name}\u0000${Buffer.from(event.payload).toString('base64')}`;
    const slot = this.eventSlots.get(event.lTime % eventBufferSlots);
    if (slot && slot.lTime === event.lTime) {
      if (slot.keys.has(key)) return false;
      slot.keys.add(key);
    } else {
      this.eventSlots.set(event.lTime % eventBufferSlots, { lTime: event.lTime, keys: new Set([key]) });
    }
    return true;
  }

  private handleQuery(query: Query, payload: Uint8Array): void {
    this.queryClock.witness(query.lTime);
    if (query.lTime + eventBufferSlots < this.queryClock.time()) return;
    const slot = this.querySlots.get(query.lTime % eventBufferSlots);
    if (slot && slot.lTime === query.lTime && slot.ids.has(query.id)) return;
    if (slot && slot.lTime === query.lTime) slot.ids.add(query.id);
    else this.querySlots.set(query.lTime % eventBufferSlots, { lTime: query.lTime, ids: new Set([query.id]) });
    if ((query.flags & QueryFlag.noBroadcast) === 0) this.broadcasts.enqueue(payload);
    if (!this.passesFilters(query.filters)) return;
    const host = ipToText(query.addr);
    if ((query.flags & QueryFlag.ack) === 0 || host === undefined || query.port === 0) return;
    const ack = encodeQueryAck({ lTime: query.lTime, id: query.id, from: this.name });
    this.swim.sendTo({ host, port: query.port }, [concat([Uint8Array.of(8), ack])], undefined);
  }

  /** serf's shouldProcessQuery: every filter must admit us; an unreadable filter admits no one. */
  private passesFilters(filters: readonly QueryFilter[]): boolean {
    const tags = this.memberStates.get(this.name)?.member.tags ?? {};
    return filters.every((filter) => {
      if (filter.kind === 'nodes') return filter.names.includes(this.name);
      if (filter.kind === 'unknown') return false;
      const matched = matchTagFilter(filter.expr, tags[filter.tag] ?? '');
      if (matched === undefined) this.swim.count('query tag filter refused (unsupported or costly regexp)');
      return matched === true;
    });
  }

  // ---- reaping and reconnecting ----

  private reap(nowMs: number): void {
    for (const [name, state] of this.memberStates) {
      const status = state.member.status;
      const timeoutMs = status === 'failed' ? this.timings.reconnectTimeoutMs : status === 'left' ? this.timings.tombstoneTimeoutMs : undefined;
      if (timeoutMs === undefined || nowMs - state.leaveTimeMs <= timeoutMs) continue;
      this.memberStates.delete(name);
      this.emit('member-reap', state.member);
    }
    for (const [name, intent] of this.recentIntents) {
      if (nowMs - intent.witnessedMs > this.timings.recentIntentTimeoutMs) this.recentIntents.delete(name);
    }
  }

  /** With probability failed/alive, try to rejoin one random failed member through push/pull. */
  private reconnect(): void {
    const failed = this.members().filter((member) => member.status === 'failed');
    const aliveCount = this.members().filter((member) => member.status === 'alive').length;
    if (failed.length === 0 || aliveCount === 0) return;
    if (this.prng.next() > failed.length / aliveCount) return;
    const target = this.prng.pick(failed);
    this.outputs.push({ kind: 'join', to: { host: target.addr, port: target.port } });
  }

  // ---- push/pull ----

  localState(join: boolean): { join: boolean; nodes: PushNodeState[]; userState: Uint8Array } {
    const statusLTimes = new Map<string, number>();
    const leftMembers: string[] = [];
    for (const [name, state] of this.memberStates) {
      statusLTimes.set(name, state.statusLTime);
      if (state.member.status === 'left') leftMembers.push(name);
    }
    const serfState: SerfPushPull = { lTime: this.clock.time(), statusLTimes, leftMembers, eventLTime: this.eventClock.time(), queryLTime: this.queryClock.time() };
    return { join, nodes: this.swim.localNodeStates(), userState: encodeSerfPushPull(serfState) };
  }

  /** Merges a peer's push/pull; returns a reason when it is refused. */
  mergeRemoteState(remote: { join: boolean; nodes: PushNodeState[]; userState: Uint8Array }, nowMs: number): string | undefined {
    const incompatible = this.swim.verifyProtocol(remote.nodes);
    if (incompatible) return incompatible;
    this.swim.mergeRemoteNodes(remote.nodes, nowMs);
    if (remote.userState.length === 0) return undefined;
    const decoded = decodeSerfPushPull(remote.userState);
    if (!decoded.ok) {
      this.swim.count(`drop: serf push/pull ${decoded.reason}`);
      return undefined;
    }
    const state = decoded.value;
    if (state.lTime > 0) this.clock.witness(state.lTime - 1);
    if (state.eventLTime > 0) this.eventClock.witness(state.eventLTime - 1);
    if (state.queryLTime > 0) this.queryClock.witness(state.queryLTime - 1);
    const left = new Set(state.leftMembers);
    for (const name of left) this.applyLeaveIntent((state.statusLTimes.get(name) ?? 0) + 1, name, nowMs);
    for (const [name, lTime] of state.statusLTimes) if (!left.has(name)) this.applyJoinIntent(lTime, name, nowMs);
    return undefined;
  }

  private emit(type: MemberEvent['type'], member: Member): void {
    assert(member.name !== '', 'members have names');
    this.events.push({ type, member });
  }
}

/**
 * Go's regexp.MatchString on a tag value. JavaScript's backtracking engine can be driven into
 * exponential time (Go's RE2 cannot), so only patterns without groups and with at most two
 * quantifiers are run; others return undefined (treated as no match).
 */
export function matchTagFilter(expr: string, value: string): boolean | undefined {
  if (expr.length > 128 || /[()]/.test(expr) || (expr.match(/[*+?{]/g) ?? []).length > 2) return undefined;
  try {
    return new RegExp(expr).test(value);
  } catch {
    return undefined;
  }
}

function memberOf(node: NodeRecord, status: MemberStatus): Member {
  const tags = decodeTags(node.meta);
  return { name: node.name, addr: node.host, port: node.port, tags: tags.ok ? tags.value : {}, status, protocol: [...node.vsn] };
}

/** Encodes tags as node meta, refusing more than memberlist's 512 bytes. */
export function tagsToMeta(tags: Readonly<Record<string, string>>): Uint8Array {
  const meta = encodeTags(tags);
  if (meta.length > metaBytesMax) throw new InvalidArgumentError(`encoded tags take ${meta.length} bytes; the limit is ${metaBytesMax}`);
  return meta;
}
