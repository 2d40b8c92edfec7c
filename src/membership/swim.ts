/**
 * SWIM failure detection and gossip with Lifeguard, speaking memberlist's protocol. A pure state
 * machine: time comes in as `nowMs` arguments, randomness from the Prng passed in, packets come in
 * through `receivePacket`, and everything to send goes to an outbox the driver drains. The driver
 * calls `tick(nowMs)` at `nextDeadlineMs()`.
 *
 * Per protocol period one member is probed (round-robin over a shuffled list): a direct ping; after
 * probeTimeout, indirect pings through `indirectChecks` members; no ack by the end of the
 * (health-scaled) period makes the member suspect. A suspicion expires after a timeout that starts
 * at its maximum and shrinks towards the minimum as independent suspicions arrive (Lifeguard); then
 * the member is declared dead. Members refute suspicion about themselves with a higher incarnation.
 * News (alive/suspect/dead) spreads by piggybacking on gossip packets, each item a bounded number
 * of times.
 */
import { type Prng, assert } from '../util/index.js';
import { type Address, ipToText } from './address.js';
import { BroadcastQueue } from './broadcast-queue.js';
import { type MembershipTimings, broadcastQueueDepthMax, udpPacketBytesMax } from './config.js';
import { addCrc, buildPacket, unwrapPacket } from './framing.js';
import {
  type Alive,
  type Dead,
  type PacketMessage,
  type PushNodeState,
  type Suspect,
  MessageType,
  WireNodeState,
  concat,
  defaultVsn,
  encodePacketMessage,
} from './messages.js';
import { Suspicion, suspicionTimeoutMs } from './suspicion.js';

/** Bound on the members a graceful leave is sent to directly (besides gossip). */
const leaveDirectNodesMax = 64;

export type NodeStatus = 'alive' | 'suspect' | 'dead' | 'left';

/** What we know about one node. Invariant: `incarnation` never decreases. */
export interface NodeRecord {
  readonly name: string;
  addr: Uint8Array;
  host: string;
  port: number;
  meta: Uint8Array;
  vsn: Uint8Array;
  incarnation: number;
  status: NodeStatus;
  statusChangeMs: number;
}

/** The layer above (serf) hears about nodes and user messages through this. */
export interface SwimDelegate {
  notifyJoin(node: NodeRecord, nowMs: number): void;
  notifyLeave(node: NodeRecord, nowMs: number): void;
  notifyUpdate(node: NodeRecord, nowMs: number): void;
  notifyUser(payload: Uint8Array, from: Address, nowMs: number): void;
}

export type SwimOutput =
  | { readonly kind: 'packet'; readonly to: Address; readonly bytes: Uint8Array }
  | { readonly kind: 'push-pull'; readonly to: Address }
  /** A fallback ping over TCP; the driver reports an ack with `tcpPingAcked(seqNo)`. */
  | { readonly kind: 'tcp-ping'; readonly to: Address; readonly seqNo: number; readonly node: string; readonly timeoutMs: number };

export interface SwimOptions {
  readonly name: string;
  readonly advertise: Address;
  readonly addr: Uint8Array;
  readonly meta: Uint8Array;
  readonly timings: MembershipTimings;
  readonly prng: Prng;
  readonly nowMs: number;
  /** Bytes the transport adds per packet (encryption), taken off the UDP budget. */
  readonly packetOverheadBytes: number;
}

interface Probe {
  readonly seqNo: number;
  readonly startMs: number;
  readonly target: string;
  readonly ackDeadlineMs: number;
  readonly endDeadlineMs: number;
  indirectSent: boolean;
  /** The target answered our fallback TCP ping: the network, not the node, is failing. */
  tcpAcked: boolean;
  nacksExpected: number;
  nacksReceived: number;
}

interface Relay {
  readonly requesterSeqNo: number;
  readonly requester: Address;
  readonly nack: boolean;
  readonly deadlineMs: number;
}

/** memberlist protocol 3 added TCP pings, 4 nacks, 5 the CRC prefix. */
const protocolWithTcpPing = 3;
const protocolWithNack = 4;
const protocolWithCrc = 5;
/** Bound on the node table: hostile alive messages with fresh names must not grow memory without limit. */
export const nodesMax = 8192;
const incarnationMax = 0xffff_ffff;
/** Bound on distinct counter keys. */
const countersMax = 256;

export class Swim {
  readonly name: string;
  /** Counters for dropped input and notable events, by reason. */
  readonly counters = new Map<string, number>();
  /** The address of another node heard claiming our own name (the first one), if any. */
  nameClaimedFrom: string | undefined;
  private readonly timings: MembershipTimings;
  private readonly prng: Prng;
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly relays = new Map<number, Relay>();
  private readonly outbox: SwimOutput[] = [];
  readonly broadcasts: BroadcastQueue;
  private delegate: SwimDelegate | undefined;
  private probeOrder: string[] = [];
  private probeIndex = 0;
  private probe: Probe | undefined;
  private seqNo = 0;
  /** Lifeguard local health score in [0, awarenessMaxMultiplier - 1]; higher is less healthy. */
  private awareness = 0;
  private leaving = false;
  private nextProbeMs: number;
  private nextGossipMs: number;
  private nextPushPullMs: number;
  private readonly packetBytesMax: number;

  constructor(options: SwimOptions) {
    this.name = options.name;
    this.timings = options.timings;
    this.prng = options.prng;
    this.packetBytesMax = udpPacketBytesMax - options.packetOverheadBytes;
    this.broadcasts = new BroadcastQueue(() => this.retransmitLimit(), broadcastQueueDepthMax);
    this.nextProbeMs = options.nowMs + this.timings.probeIntervalMs;
    this.nextGossipMs = options.nowMs + this.timings.gossipIntervalMs;
    this.nextPushPullMs = options.nowMs + Math.floor(this.prng.next() * this.timings.pushPullIntervalMs);
    const self: NodeRecord = {
      name: options.name,
      addr: options.addr,
      host: options.advertise.host,
      port: options.advertise.port,
      meta: options.meta,
      vsn: defaultVsn,
      incarnation: 0,
      status: 'dead',
      statusChangeMs: options.nowMs,
    };
    this.nodes.set(self.name, self);
    this.probeOrder.push(self.name);
  }

  /** Attaches the delegate and announces ourselves (incarnation 1), which notifies our own join. */
  start(delegate: SwimDelegate, nowMs: number): void {
    assert(this.delegate === undefined, 'swim started twice');
    this.delegate = delegate;
    const self = this.self();
    this.handleAlive({ ...this.aliveOf(self), incarnation: 1 }, nowMs, true);
    assert(self.incarnation === 1, 'our first incarnation is 1');
  }

  self(): NodeRecord {
    const self = this.nodes.get(this.name);
    assert(self !== undefined, 'our own node record exists');
    return self;
  }

  node(name: string): NodeRecord | undefined {
    return this.nodes.get(name);
  }

  allNodes(): NodeRecord[] {
    return [...this.nodes.values()];
  }

  /**
   * Counts an event by reason. Reasons may embed numbers and peer-supplied text, so they are
   * normalized (digits → N, quoted peer text cut) and the number of distinct keys is bounded:
   * hostile input must not grow memory.
   */
  count(reason: string): void {
    let key = reason.replace(/ \(it says:.*$/, '').replace(/\d+/g, 'N');
    if (key.length > 120) key = key.slice(0, 120);
    if (!this.counters.has(key) && this.counters.size >= countersMax) key = 'other';
    this.counters.set(key, (this.counters.get(key) ?? 0) + 1);
  }

  drainOutbox(): SwimOutput[] {
    return this.outbox.splice(0, this.outbox.length);
  }

  awarenessScore(): number {
    return this.awareness;
  }

  /** True while our graceful-leave message still has sends left. */
  leaveBroadcastPending(): boolean {
    return this.broadcasts.has(this.name);
  }

  retransmitLimit(): number {
    return this.timings.retransmitMult * Math.ceil(Math.log10(this.nodes.size + 1));
  }

  // ---- time ----

  nextDeadlineMs(): number {
    let deadline = Math.min(this.nextGossipMs, this.nextProbeMs);
    if (this.timings.pushPullIntervalMs > 0) deadline = Math.min(deadline, this.nextPushPullMs);
    if (this.probe) deadline = Math.min(deadline, this.probe.indirectSent ? this.probe.endDeadlineMs : this.probe.ackDeadlineMs);
    for (const suspicion of this.suspicions.values()) deadline = Math.min(deadline, suspicion.deadlineMs);
    for (const relay of this.relays.values()) deadline = Math.min(deadline, relay.deadlineMs);
    return deadline;
  }

  tick(nowMs: number): void {
    this.expireRelays(nowMs);
    this.expireSuspicions(nowMs);
    this.advanceProbe(nowMs);
    if (nowMs >= this.nextProbeMs && this.probe === undefined) {
      this.nextProbeMs = nowMs + this.timings.probeIntervalMs;
      this.startProbe(nowMs);
    }
    if (nowMs >= this.nextGossipMs) {
      this.nextGossipMs = nowMs + this.timings.gossipIntervalMs;
      this.gossip(nowMs);
    }
    if (this.timings.pushPullIntervalMs > 0 && nowMs >= this.nextPushPullMs) {
      this.nextPushPullMs = nowMs + this.pushPullIntervalMs();
      const peer = this.randomNodes(1, (node) => node.status === 'alive')[0];
      if (peer) this.outbox.push({ kind: 'push-pull', to: { host: peer.host, port: peer.port } });
    }
  }

  private pushPullIntervalMs(): number {
    // memberlist stretches the interval for clusters above 32 nodes.
    const n = this.nodes.size;
    const scale = n <= 32 ? 1 : Math.ceil(Math.log2(n) - Math.log2(32)) + 1;
    return this.timings.pushPullIntervalMs * scale;
  }

  private expireRelays(nowMs: number): void {
    for (const [seqNo, relay] of this.relays) {
      if (nowMs < relay.deadlineMs) continue;
      this.relays.delete(seqNo);
      if (relay.nack) this.sendTo(relay.requester, [encodePacketMessage({ type: 'nack', seqNo: relay.requesterSeqNo })], undefined);
    }
  }

  private expireSuspicions(nowMs: number): void {
    for (const [name, suspicion] of this.suspicions) {
      if (nowMs < suspicion.deadlineMs) continue;
      this.suspicions.delete(name);
      const node = this.nodes.get(name);
      if (node && node.status === 'suspect' && node.incarnation === suspicion.incarnation) {
        this.handleDead({ type: 'dead', node: name, incarnation: node.incarnation, from: this.name }, nowMs);
      }
    }
  }

  // ---- probing ----

  private startProbe(nowMs: number): void {
    const target = this.nextProbeTarget(nowMs);
    if (!target) return;
    const seqNo = this.nextSeqNo();
    const scaledIntervalMs = this.timings.probeIntervalMs * (this.awareness + 1);
    this.probe = {
      seqNo,
      startMs: nowMs,
      target: target.name,
      ackDeadlineMs: nowMs + this.timings.probeTimeoutMs,
      endDeadlineMs: nowMs + scaledIntervalMs,
      indirectSent: false,
      tcpAcked: false,
      nacksExpected: 0,
      nacksReceived: 0,
    };
    this.nextProbeMs = Math.max(this.nextProbeMs, nowMs + scaledIntervalMs);
    const self = this.self();
    const parts = [encodePacketMessage({ type: 'ping', seqNo, node: target.name, sourceAddr: self.addr, sourcePort: self.port, sourceNode: self.name })];
    // A suspect target gets the suspicion along with the ping, so it can refute at once.
    if (target.status === 'suspect') parts.push(encodePacketMessage({ type: 'suspect', node: target.name, incarnation: target.incarnation, from: this.name }));
    this.sendTo(target, parts, target);
  }

  private nextProbeTarget(nowMs: number): NodeRecord | undefined {
    for (let scanned = 0; scanned <= this.probeOrder.length; scanned++) {
      if (this.probeIndex >= this.probeOrder.length) this.resetProbeOrder(nowMs);
      const name = this.probeOrder[this.probeIndex++];
      const node = name === undefined ? undefined : this.nodes.get(name);
      if (node && node.name !== this.name && (node.status === 'alive' || node.status === 'suspect')) return node;
    }
    return undefined;
  }

  /** At each wrap: forget nodes dead or left for longer than gossipToTheDead, and reshuffle. */
  private resetProbeOrder(nowMs: number): void {
    for (const node of [...this.nodes.values()]) {
      const gone = node.status === 'dead' || node.status === 'left';
      if (gone && node.name !== this.name && nowMs - node.statusChangeMs > this.timings.gossipToTheDeadMs) {
        this.nodes.delete(node.name);
        this.suspicions.delete(node.name);
      }
    }
    this.probeOrder = [...this.nodes.keys()];
    shuffle(this.probeOrder, this.prng);
    this.probeIndex = 0;
  }

  private advanceProbe(nowMs: number): void {
    const probe = this.probe;
    if (!probe) return;
    if (!probe.indirectSent && nowMs >= probe.ackDeadlineMs) {
      probe.indirectSent = true;
      this.sendIndirectPings(probe);
      const target = this.nodes.get(probe.target);
      if (target && (target.vsn[1] ?? 0) >= protocolWithTcpPing) {
        const timeoutMs = Math.max(1, probe.endDeadlineMs - nowMs);
        this.outbox.push({ kind: 'tcp-ping', to: { host: target.host, port: target.port }, seqNo: probe.seqNo, node: target.name, timeoutMs });
      }
    }
    if (probe.indirectSent && nowMs >= probe.endDeadlineMs) {
      this.probe = undefined;
      // Lifeguard: missing nacks mean *we* may be the problem; no helpers at all counts as one miss.
      const missed = probe.nacksExpected > 0 ? probe.nacksExpected - probe.nacksReceived : 1;
      this.adjustAwareness(missed);
      const target = this.nodes.get(probe.target);
      if (probe.tcpAcked) {
        this.count('probe: udp failed but tcp ping answered');
      } else if (target && target.status === 'alive') {
        this.count('probe-failed');
        this.handleSuspect({ type: 'suspect', node: target.name, incarnation: target.incarnation, from: this.name }, nowMs);
      }
    }
  }

  private sendIndirectPings(probe: Probe): void {
    const target = this.nodes.get(probe.target);
    if (!target) return;
    const helpers = this.randomNodes(this.timings.indirectChecks, (node) => node.status === 'alive' && node.name !== target.name);
    const self = this.self();
    for (const helper of helpers) {
      const nack = (helper.vsn[1] ?? 0) >= protocolWithNack;
      if (nack) probe.nacksExpected++;
      const request = encodePacketMessage({
        type: 'indirect-ping',
        seqNo: probe.seqNo,
        target: target.addr,
        port: target.port,
        node: target.name,
        nack,
        sourceAddr: self.addr,
        sourcePort: self.port,
        sourceNode: self.name,
      });
      this.sendTo(helper, [request], helper);
    }
  }

  private adjustAwareness(delta: number): void {
    this.awareness = Math.min(this.timings.awarenessMaxMultiplier - 1, Math.max(0, this.awareness + delta));
  }

  private nextSeqNo(): number {
    this.seqNo = (this.seqNo + 1) >>> 0;
    return this.seqNo;
  }

  // ---- receiving ----

  /** Handles one decrypted UDP packet from `from`. Never throws on bad input: it is counted and dropped. */
  receivePacket(bytes: Uint8Array, from: Address, nowMs: number): void {
    const { messages, drops } = unwrapPacket(bytes);
    for (const reason of drops) this.count(`drop: ${reason}`);
    for (const message of messages) this.handleMessage(message, from, nowMs);
  }

  private handleMessage(message: PacketMessage, from: Address, nowMs: number): void {
    switch (message.type) {
      case 'ping':
        return this.handlePing(message, from);
      case 'indirect-ping':
        return this.handleIndirectPing(message, from, nowMs);
      case 'ack':
        return this.handleAck(message.seqNo, nowMs);
      case 'nack':
        if (this.probe && this.probe.seqNo === message.seqNo) this.probe.nacksReceived++;
        return;
      case 'alive':
        return this.handleAlive(message, nowMs, false);
      case 'suspect':
      case 'dead':
        // Accusations must come from a member we know (or be a node's own leave): a cheap filter
        // against forged packets. Spoofing a real member's name needs the encryption key to stop.
        if (message.from !== message.node && !this.nodes.has(message.from)) return this.count('drop: accusation from an unknown node');
        return message.type === 'suspect' ? this.handleSuspect(message, nowMs) : this.handleDead(message, nowMs);
      case 'user':
        this.delegate?.notifyUser(message.payload, from, nowMs);
        return;
    }
  }

  private handlePing(ping: Extract<PacketMessage, { type: 'ping' }>, from: Address): void {
    if (ping.node !== '' && ping.node !== this.name) return this.count('drop: ping for another node');
    const replyTo = replyAddress(ping, from);
    if (!replyTo) return this.count('drop: ping with a bad source address');
    this.sendTo(replyTo, [encodePacketMessage({ type: 'ack', seqNo: ping.seqNo, payload: new Uint8Array(0) })], this.nodeAt(replyTo));
  }

  private handleIndirectPing(request: Extract<PacketMessage, { type: 'indirect-ping' }>, from: Address, nowMs: number): void {
    const targetHost = ipToText(request.target);
    const requester = replyAddress(request, from);
    if (!targetHost || !requester || request.port === 0) return this.count('drop: indirect ping with a bad address');
    if (this.relays.size >= 1024) return this.count('drop: too many indirect pings in flight');
    const seqNo = this.nextSeqNo();
    this.relays.set(seqNo, { requesterSeqNo: request.seqNo, requester, nack: request.nack, deadlineMs: nowMs + this.timings.probeTimeoutMs });
    const self = this.self();
    const ping = encodePacketMessage({ type: 'ping', seqNo, node: request.node, sourceAddr: self.addr, sourcePort: self.port, sourceNode: self.name });
    const target = { host: targetHost, port: request.port };
    this.sendTo(target, [ping], this.nodeAt(target));
  }

  private handleAck(seqNo: number, nowMs: number): void {
    const relay = this.relays.get(seqNo);
    if (relay) {
      this.relays.delete(seqNo);
      this.sendTo(relay.requester, [encodePacketMessage({ type: 'ack', seqNo: relay.requesterSeqNo, payload: new Uint8Array(0) })], this.nodeAt(relay.requester));
      return;
    }
    const probe = this.probe;
    if (!probe || probe.seqNo !== seqNo) return this.count('drop: unexpected ack');
    this.probe = undefined;
    this.adjustAwareness(-1);
    // The next probe starts one interval after this one started, as with memberlist's ticker.
    this.nextProbeMs = Math.max(nowMs, probe.startMs + this.timings.probeIntervalMs);
  }

  /** The driver got an ack to the fallback TCP ping `seqNo`. */
  tcpPingAcked(seqNo: number): void {
    if (this.probe && this.probe.seqNo === seqNo) this.probe.tcpAcked = true;
  }

  private nodeAt(address: Address): NodeRecord | undefined {
    for (const node of this.nodes.values()) if (node.host === address.host && node.port === address.port) return node;
    return undefined;
  }

  // ---- alive / suspect / dead ----

  /** Applies an alive message (memberlist's incarnation rules). `bootstrap` is our own start-up. */
  handleAlive(alive: Alive, nowMs: number, bootstrap: boolean): void {
    if (this.leaving && alive.node === this.name) return;
    if (alive.vsn.length === 6 && (alive.vsn[0] === 0 || alive.vsn[1] === 0 || (alive.vsn[0] as number) > (alive.vsn[1] as number))) {
      return this.count('drop: alive with an invalid protocol range');
    }
    const host = ipToText(alive.addr);
    if (!host || alive.port === 0) return this.count('drop: alive with a bad address');
    let node = this.nodes.get(alive.node);
    const isNew = node === undefined;
    if (!node) {
      if (this.nodes.size >= nodesMax) return this.count('drop: node table full');
      node = { name: alive.node, addr: alive.addr, host, port: alive.port, meta: alive.meta, vsn: alive.vsn, incarnation: 0, status: 'dead', statusChangeMs: nowMs };
      this.nodes.set(node.name, node);
      // A new node goes to a random place in the probe order.
      this.probeOrder.splice(this.prng.int(0, this.probeOrder.length), 0, node.name);
    } else if (node.host !== host || node.port !== alive.port) {
      if (node.status !== 'left' || alive.node === this.name) {
        // Someone claims a known name from another address: a conflict. The known node stays.
        if (alive.node === this.name) this.nameClaimedFrom ??= `${host}:${alive.port}`;
        return this.count('drop: alive claiming a known name from another address');
      }
    }
    const isSelf = alive.node === this.name;
    if (isSelf && !bootstrap) return this.handleAliveAboutSelf(alive, node, nowMs);
    if (!isNew && !bootstrap && alive.incarnation <= node.incarnation && !(node.status === 'left' && node.host !== host)) return;
    this.suspicions.delete(node.name);
    this.broadcasts.enqueue(encodePacketMessage(alive), node.name);
    const oldStatus = node.status;
    const metaChanged = !bytesEqual(node.meta, alive.meta);
    Object.assign(node, { addr: alive.addr, host, port: alive.port, meta: alive.meta, vsn: alive.vsn, incarnation: alive.incarnation });
    if (oldStatus !== 'alive') Object.assign(node, { status: 'alive', statusChangeMs: nowMs });
    if (oldStatus === 'dead' || oldStatus === 'left') this.delegate?.notifyJoin(node, nowMs);
    else if (metaChanged) this.delegate?.notifyUpdate(node, nowMs);
  }

  private handleAliveAboutSelf(alive: Alive, self: NodeRecord, nowMs: number): void {
    if (alive.incarnation < self.incarnation) return;
    if (alive.incarnation === self.incarnation && bytesEqual(alive.meta, self.meta) && bytesEqual(alive.vsn, self.vsn)) return;
    this.count('refuted: alive about us');
    this.refute(alive.incarnation, nowMs);
  }

  handleSuspect(suspect: Suspect, nowMs: number): void {
    const node = this.nodes.get(suspect.node);
    if (!node || suspect.incarnation < node.incarnation) return;
    const existing = this.suspicions.get(node.name);
    if (existing) {
      if (existing.confirm(suspect.from, nowMs)) this.broadcasts.enqueue(encodePacketMessage(suspect), node.name);
      return;
    }
    if (node.status !== 'alive') return;
    if (node.name === this.name) {
      this.count('refuted: suspect about us');
      return this.refute(suspect.incarnation, nowMs);
    }
    this.broadcasts.enqueue(encodePacketMessage(suspect), node.name);
    Object.assign(node, { incarnation: suspect.incarnation, status: 'suspect', statusChangeMs: nowMs });
    const n = this.nodes.size;
    const confirmationsWanted = n - 2 < this.timings.suspicionMult - 2 ? 0 : this.timings.suspicionMult - 2;
    const minMs = suspicionTimeoutMs(this.timings.suspicionMult, n, this.timings.probeIntervalMs);
    const maxMs = this.timings.suspicionMaxTimeoutMult * minMs;
    this.suspicions.set(node.name, new Suspicion({ from: suspect.from, incarnation: suspect.incarnation, confirmationsWanted, minMs, maxMs, startMs: nowMs }));
  }

  handleDead(dead: Dead, nowMs: number): void {
    const node = this.nodes.get(dead.node);
    if (!node || dead.incarnation < node.incarnation) return;
    this.suspicions.delete(node.name);
    if (node.status === 'dead' || node.status === 'left') return;
    if (node.name === this.name && !this.leaving) {
      this.count('refuted: dead about us');
      return this.refute(dead.incarnation, nowMs);
    }
    this.broadcasts.enqueue(encodePacketMessage(dead), node.name);
    Object.assign(node, { incarnation: dead.incarnation, status: dead.from === dead.node ? 'left' : 'dead', statusChangeMs: nowMs });
    if (node.name !== this.name) this.delegate?.notifyLeave(node, nowMs);
  }

  private refute(accusedIncarnation: number, nowMs: number): void {
    const self = this.self();
    const next = Math.max(self.incarnation + 1, accusedIncarnation + 1);
    // Incarnations are uint32 on the wire; a claim at the very top cannot be outbid, only ignored.
    if (next > incarnationMax) return this.count('drop: accusation at the maximum incarnation');
    self.incarnation = next;
    this.adjustAwareness(1);
    self.statusChangeMs = nowMs;
    this.broadcasts.enqueue(encodePacketMessage(this.aliveOf(self)), self.name);
  }

  private aliveOf(node: NodeRecord): Alive {
    return { type: 'alive', incarnation: node.incarnation, node: node.name, addr: node.addr, port: node.port, meta: node.meta, vsn: node.vsn };
  }

  /** New node meta (serf tags): a new incarnation, announced by gossip. */
  updateMeta(meta: Uint8Array, nowMs: number): void {
    const self = this.self();
    self.meta = meta;
    if (self.incarnation >= incarnationMax) return this.count('incarnation exhausted: meta not announced');
    self.incarnation++;
    self.statusChangeMs = nowMs;
    this.broadcasts.enqueue(encodePacketMessage(this.aliveOf(self)), self.name);
  }

  /** Graceful leave: announce `dead{self, From: self}`; the driver waits for `leaveBroadcastPending()` to clear. */
  leave(nowMs: number): void {
    if (this.leaving) return;
    this.leaving = true;
    const self = this.self();
    const dead: Dead = { type: 'dead', node: self.name, incarnation: self.incarnation, from: self.name };
    this.handleDead(dead, nowMs);
    // Random gossip can spend the few transmissions a small cluster allows on dead or left members
    // (memberlist has the same race), so a live member would learn of the leave only by failure
    // detection, seconds later. Tell live members directly as well.
    this.sendToLiveMembers([encodePacketMessage(dead)]);
  }

  /** Sends `parts` straight to up to `leaveDirectNodesMax` live (alive or suspect) members. */
  sendToLiveMembers(parts: Uint8Array[]): void {
    const live = this.randomNodes(leaveDirectNodesMax, (node) => node.status === 'alive' || node.status === 'suspect');
    for (const node of live) this.sendTo(node, parts, node);
  }

  /** Like sendToLiveMembers, for a delegate (serf) message wrapped as a user message. */
  sendUserToLiveMembers(payload: Uint8Array): void {
    this.sendToLiveMembers([concat([Uint8Array.of(MessageType.user), payload])]);
  }

  // ---- gossip ----

  /** Extra broadcasts (serf's) to append after ours; each is wrapped as a user message. */
  delegateBroadcasts: BroadcastQueue | undefined;

  private gossip(nowMs: number): void {
    const targets = this.randomNodes(this.timings.gossipNodes, (node) => {
      if (node.status === 'alive' || node.status === 'suspect') return true;
      return nowMs - node.statusChangeMs < this.timings.gossipToTheDeadMs;
    });
    for (const target of targets) {
      // Budget: the compound header (2) and the CRC prefix (5) come off the packet size.
      const budget = this.packetBytesMax - 7;
      const parts = this.broadcasts.take(2, budget);
      const used = parts.reduce((sum, part) => sum + part.length + 2, 0);
      const extra = this.delegateBroadcasts?.take(3, budget - used) ?? [];
      for (const payload of extra) parts.push(concat([Uint8Array.of(MessageType.user), payload]));
      if (parts.length === 0) return;
      this.sendTo(target, parts, target);
    }
  }

  /** Sends a packet, adding the CRC when the receiver is known to check it. */
  sendTo(to: Address, parts: Uint8Array[], node: NodeRecord | undefined): void {
    if (parts.length === 0) return;
    let packet = buildPacket(parts);
    if (node && (node.vsn[1] ?? 0) >= protocolWithCrc) packet = addCrc(packet);
    this.outbox.push({ kind: 'packet', to: { host: to.host, port: to.port }, bytes: packet });
  }

  /** Up to `k` distinct random nodes other than us that pass `filter`. */
  private randomNodes(k: number, filter: (node: NodeRecord) => boolean): NodeRecord[] {
    const candidates = [...this.nodes.values()].filter((node) => node.name !== this.name && filter(node));
    shuffle(candidates, this.prng);
    return candidates.slice(0, k);
  }

  // ---- push/pull ----

  localNodeStates(): PushNodeState[] {
    return [...this.nodes.values()].map((node) => ({
      name: node.name,
      addr: node.addr,
      port: node.port,
      meta: node.meta,
      incarnation: node.incarnation,
      state: WireNodeState[node.status],
      vsn: node.vsn,
    }));
  }

  /**
   * Checks that every node's protocol versions fit the ranges all alive nodes understand; returns
   * a reason when they don't (the exchange is then refused, like memberlist does).
   */
  verifyProtocol(remote: readonly PushNodeState[]): string | undefined {
    const vectors: Uint8Array[] = [];
    for (const node of this.nodes.values()) if (node.status === 'alive') vectors.push(node.vsn);
    for (const node of remote) if (node.state === WireNodeState.alive) vectors.push(node.vsn);
    const ranges = [0, 0, 0, 0];
    let pMax = 255;
    let dMax = 255;
    for (const vsn of vectors) {
      if (vsn.length !== 6) return 'a node sent a version vector without 6 entries';
      ranges[0] = Math.max(ranges[0] as number, vsn[0] as number);
      pMax = Math.min(pMax, vsn[1] as number);
      ranges[2] = Math.max(ranges[2] as number, vsn[3] as number);
      dMax = Math.min(dMax, vsn[4] as number);
    }
    for (const vsn of vectors) {
      const pCur = vsn[2] as number;
      const dCur = vsn[5] as number;
      if (pCur < (ranges[0] as number) || pCur > pMax) return `memberlist protocol version ${pCur} outside [${ranges[0]}, ${pMax}]`;
      if (dCur < (ranges[2] as number) || dCur > dMax) return `serf protocol version ${dCur} outside [${ranges[2]}, ${dMax}]`;
    }
    return undefined;
  }

  /** Merges a peer's node states: alive as alive, left as a leave, dead/suspect only as our suspicion. */
  mergeRemoteNodes(remote: readonly PushNodeState[], nowMs: number): void {
    for (const node of remote) {
      if (node.state === WireNodeState.alive) {
        this.handleAlive({ type: 'alive', node: node.name, incarnation: node.incarnation, addr: node.addr, port: node.port, meta: node.meta, vsn: node.vsn }, nowMs, false);
      } else if (node.state === WireNodeState.left) {
        this.handleDead({ type: 'dead', node: node.name, incarnation: node.incarnation, from: node.name }, nowMs);
      } else {
        this.handleSuspect({ type: 'suspect', node: node.name, incarnation: node.incarnation, from: this.name }, nowMs);
      }
    }
  }
}

function replyAddress(source: { sourceAddr?: Uint8Array; sourcePort?: number }, from: Address): Address | undefined {
  if (source.sourceAddr === undefined || source.sourcePort === undefined) return from;
  const host = ipToText(source.sourceAddr);
  return host === undefined ? undefined : { host, port: source.sourcePort };
}

function shuffle<T>(items: T[], prng: Prng): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
