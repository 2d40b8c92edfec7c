/**
 * The membership node: drives the pure Serf/SWIM core with real time, a UDP socket (probes and
 * gossip) and a TCP listener (push/pull and TCP pings) on the same address and port, optionally
 * encrypted with serf's AES-GCM keyring. This is the API the agent uses.
 */
import { type Socket as UdpSocket, createSocket } from 'node:dgram';
import { type Server, type Socket, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, Prng, UnavailableError } from '../util/index.js';
import { type Address, formatAddress, ipToBytes, parseAddress } from './address.js';
import { type MembershipTimings, resolveTimings } from './config.js';
import { encodePushPull, encodeStreamMessage } from './framing.js';
import { type Member, type MemberEvent, Serf, tagsToMeta } from './serf.js';
import { exchange, frameStream, readStreamMessage } from './tcp-stream.js';
import { Keyring, encryptionOverheadBytes } from './transport-keyring.js';

/** What the agent does when members come and go (proglog's Handler). Events about ourselves are not passed. */
export interface MembershipHandler {
  join(member: Member): void | Promise<void>;
  leave(member: Member): void | Promise<void>;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type MembershipLogger = (level: LogLevel, message: string) => void;

export interface MembershipOptions {
  /** Unique name of this node in the cluster. */
  readonly nodeName: string;
  /** `host:port` for both UDP and TCP; port 0 picks a free port. */
  readonly bindAddr: string;
  /** `host:port` others reach us at; defaults to the bound address (must then not be 0.0.0.0). */
  readonly advertiseAddr?: string;
  readonly tags?: Readonly<Record<string, string>>;
  /** Members to join at start (`host:port`); start fails if none of them can be joined. */
  readonly startJoinAddrs?: readonly string[];
  /**
   * serf's `-encrypt` key: base64 of 16, 24 or 32 bytes. A list is a keyring (as serf's
   * `-keyring-file`): the first key encrypts, every key is tried to decrypt (for key rotation).
   */
  readonly encryptKey?: string | readonly string[];
  /** Overrides of the Serf LAN defaults. */
  readonly timings?: Partial<MembershipTimings>;
  readonly handler?: MembershipHandler;
  readonly logger?: MembershipLogger;
  /** Seed for gossip-target and probe-order randomness; random by default. */
  readonly seed?: number;
}

/** Joining failed at every address; `reasons` says why for each. */
export class JoinFailedError extends UnavailableError {
  constructor(readonly reasons: readonly { readonly address: string; readonly reason: string }[]) {
    super(`could not join the cluster: ${reasons.map((r) => `${r.address}: ${r.reason}`).join('; ')}`);
  }
}

export interface MembershipStats {
  readonly counters: Readonly<Record<string, number>>;
  readonly packetsSent: number;
  readonly packetsReceived: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/** setTimeout clamps longer delays. */
const timerDelayMsMax = 2_147_483_647;
/** memberlist serves at most this many push/pulls at once. */
const inboundStreamsMax = 128;

export class Membership {
  private readonly serf: Serf;
  private readonly keyring: Keyring | undefined;
  private readonly timings: MembershipTimings;
  private readonly listeners = new Set<(event: MemberEvent) => void>();
  /** Wakes pending `events()` iterators at shutdown so they end. */
  private readonly closeWakers = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Open inbound TCP connections, destroyed at shutdown so closing never waits on a slow peer. */
  private readonly inboundSockets = new Set<Socket>();
  private packetsSent = 0;
  private packetsReceived = 0;
  private bytesSent = 0;
  private bytesReceived = 0;

  private constructor(
    private readonly options: MembershipOptions,
    private readonly udp: UdpSocket,
    private readonly tcp: Server,
    readonly address: Address,
    timings: MembershipTimings,
    keyring: Keyring | undefined,
  ) {
    this.timings = timings;
    this.keyring = keyring;
    this.serf = new Serf({
      name: options.nodeName,
      advertise: address,
      addr: ipToBytes(address.host),
      tags: options.tags ?? {},
      timings,
      prng: new Prng(options.seed ?? ((Math.random() * 0x1_0000_0000) >>> 0)),
      nowMs: nowMs(),
      packetOverheadBytes: keyring ? encryptionOverheadBytes : 0,
    });
    udp.on('message', (packet, remote) => this.onPacket(packet, { host: remote.address, port: remote.port }));
    tcp.on('connection', (socket) => void this.onConnection(socket));
  }

  /** Binds, then joins `startJoinAddrs` (if any). Throws JoinFailedError when none can be joined. */
  static async start(options: MembershipOptions): Promise<Membership> {
    if (options.nodeName === '') throw new InvalidArgumentError('nodeName must not be empty');
    const bind = parseAddress(options.bindAddr);
    if (!bind) throw new InvalidArgumentError(`bindAddr must be host:port, got "${options.bindAddr}"`);
    const timings = resolveTimings(options.timings);
    const keyring = options.encryptKey === undefined ? undefined : Keyring.fromBase64(options.encryptKey);
    tagsToMeta(options.tags ?? {}); // validates the size before any socket is bound
    const { udp, tcp, port } = await bindBoth(bind);
    const advertise = options.advertiseAddr === undefined ? { host: bind.host, port } : parseAddress(options.advertiseAddr);
    if (!advertise || advertise.host === '0.0.0.0' || advertise.host === '::' || !isIp(advertise.host)) {
      udp.close();
      tcp.close();
      throw new InvalidArgumentError('the advertised address must be an IP address and port others can reach (set advertiseAddr when binding 0.0.0.0 or a host name)');
    }
    const membership = new Membership(options, udp, tcp, advertise, timings, keyring);
    membership.afterInput();
    const seeds = options.startJoinAddrs ?? [];
    if (seeds.length > 0) {
      try {
        await membership.join(seeds);
      } catch (error) {
        await membership.shutdown();
        throw error;
      }
    }
    return membership;
  }

  get name(): string {
    return this.options.nodeName;
  }

  /** Every member we know, ourselves included, with status and tags. */
  members(): Member[] {
    return this.serf.members();
  }

  /**
   * Joins through each address (TCP push/pull), then announces our join intent. Resolves with the
   * number of addresses joined; throws JoinFailedError (with each address's reason) if none.
   */
  async join(addresses: readonly string[]): Promise<number> {
    const reasons: { address: string; reason: string }[] = [];
    let joined = 0;
    for (const text of addresses) {
      const address = parseAddress(text);
      const reason = address ? await this.pushPull(address, true) : 'not a host:port address';
      if (reason === undefined) joined++;
      else reasons.push({ address: text, reason });
    }
    if (joined === 0) {
      for (const { address, reason } of reasons) this.log('warn', `join ${address} failed: ${reason}`);
      throw new JoinFailedError(reasons);
    }
    this.serf.announceJoin();
    this.afterInput();
    return joined;
  }

  /** Replaces our tags; others see a member-update. Throws if they encode to more than 512 bytes. */
  setTags(tags: Readonly<Record<string, string>>): void {
    this.serf.setTags(tags, nowMs());
    this.afterInput();
  }

  /** Calls `listener` for every member event; returns a function that unsubscribes. */
  subscribe(listener: (event: MemberEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Member events as an async iterator (one queue per iterator, ending at shutdown). With
   * `includeCurrent`, it first yields a member-join for every member alive now (ourselves
   * included), so a watcher needs no separate snapshot.
   */
  events(options: { includeCurrent?: boolean } = {}): AsyncIterableIterator<MemberEvent> {
    const queue: MemberEvent[] = options.includeCurrent
      ? this.members()
          .filter((member) => member.status === 'alive')
          .map((member): MemberEvent => ({ type: 'member-join', member }))
      : [];
    let wake: (() => void) | undefined;
    const wakeUp = (): void => wake?.();
    const unsubscribe = this.subscribe((event) => {
      queue.push(event);
      wakeUp();
    });
    this.closeWakers.add(wakeUp);
    const finish = (): IteratorResult<MemberEvent> => {
      unsubscribe();
      this.closeWakers.delete(wakeUp);
      return { value: undefined, done: true };
    };
    const isClosed = (): boolean => this.closed;
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next(): Promise<IteratorResult<MemberEvent>> {
        while (queue.length === 0 && !isClosed()) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        const event = queue.shift();
        return event ? { value: event, done: false } : finish();
      },
      async return(): Promise<IteratorResult<MemberEvent>> {
        return finish();
      },
    };
  }

  /** The gossip address of another member that uses our node name, if one was heard (a clash). */
  nameClaimedFrom(): string | undefined {
    return this.serf.nameClaimedFrom;
  }

  stats(): MembershipStats {
    return {
      counters: Object.fromEntries(this.serf.counters),
      packetsSent: this.packetsSent,
      packetsReceived: this.packetsReceived,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
    };
  }

  /**
   * Leaves gracefully, as serf does: the leave intent, then memberlist's leave (others then record
   * us as left, not failed), each waited for up to broadcastTimeout, then leavePropagateDelay, then
   * shutdown.
   */
  async leave(): Promise<void> {
    if (this.closed) return;
    const othersAlive = this.members().some((m) => m.name !== this.name && m.status === 'alive');
    this.serf.leave(nowMs());
    this.afterInput();
    if (othersAlive) await this.waitFor(() => !this.serf.intentBroadcastsPending(), this.timings.broadcastTimeoutMs);
    this.serf.leaveGossip(nowMs());
    this.afterInput();
    if (othersAlive) {
      await this.waitFor(() => !this.serf.leaveBroadcastPending(), this.timings.broadcastTimeoutMs);
      await delay(this.timings.leavePropagateDelayMs);
    }
    await this.shutdown();
  }

  /** Stops at once, without telling anyone (others will detect us as failed). */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.listeners.clear();
    for (const wake of this.closeWakers) wake();
    for (const socket of this.inboundSockets) socket.destroy();
    await Promise.all([new Promise<void>((resolve) => this.udp.close(() => resolve())), new Promise<void>((resolve) => this.tcp.close(() => resolve()))]);
  }

  // ---- driving the core ----

  private onPacket(packet: Buffer, from: Address): void {
    if (this.closed) return;
    this.packetsReceived++;
    this.bytesReceived += packet.length;
    let plain: Uint8Array | undefined = packet;
    if (this.keyring) {
      plain = this.keyring.decrypt(packet, new Uint8Array(0));
      if (!plain) {
        this.serf.swim.count('drop: packet could not be decrypted');
        return;
      }
    }
    this.serf.receivePacket(plain, from, nowMs());
    this.afterInput();
  }

  /** Runs due timers, sends what the core produced, delivers events, and re-arms the timer. */
  private afterInput(): void {
    if (this.closed) return;
    const now = nowMs();
    if (this.serf.nextDeadlineMs() <= now) this.serf.tick(now);
    for (const output of this.serf.drainOutbox()) {
      if (output.kind === 'packet') this.sendPacket(output.to, output.bytes);
      else if (output.kind === 'tcp-ping') void this.tcpPing(output);
      else void this.pushPull(output.to, output.kind === 'join').then((reason) => reason && this.log('debug', `push/pull with ${formatAddress(output.to)}: ${reason}`));
    }
    for (const event of this.serf.drainEvents()) this.deliver(event);
    clearTimeout(this.timer);
    const waitMs = Math.min(timerDelayMsMax, Math.max(0, this.serf.nextDeadlineMs() - nowMs()));
    this.timer = setTimeout(() => this.afterInput(), Math.ceil(waitMs));
  }

  private sendPacket(to: Address, packet: Uint8Array): void {
    const bytes = this.keyring ? this.keyring.encrypt(packet, new Uint8Array(0)) : packet;
    this.packetsSent++;
    this.bytesSent += bytes.length;
    this.udp.send(bytes, to.port, to.host, (error) => {
      if (error) this.serf.swim.count('send failed');
    });
  }

  private deliver(event: MemberEvent): void {
    this.log('info', `${event.type}: ${event.member.name} ${event.member.addr}:${event.member.port}`);
    for (const listener of this.listeners) listener(event);
    const handler = this.options.handler;
    if (!handler || event.member.name === this.name) return;
    const call = (): void | Promise<void> => {
      if (event.type === 'member-join') return handler.join(event.member);
      if (event.type === 'member-leave' || event.type === 'member-failed') return handler.leave(event.member);
    };
    Promise.resolve()
      .then(call)
      .catch((error: unknown) => this.log('error', `membership handler failed on ${event.type} ${event.member.name}: ${String(error)}`));
  }

  /** Fallback ping over TCP for a target that missed its UDP probe. */
  private async tcpPing(ping: { to: Address; seqNo: number; node: string; timeoutMs: number }): Promise<void> {
    const request = encodeStreamMessage({ type: 'ping', seqNo: ping.seqNo, node: ping.node });
    const reply = await exchange(ping.to, request, this.keyring, Math.min(ping.timeoutMs, this.timings.tcpTimeoutMs));
    if (this.closed || !reply.ok || reply.message.type !== 'ack' || reply.message.seqNo !== ping.seqNo) return;
    this.serf.swim.tcpPingAcked(ping.seqNo);
  }

  /** One push/pull exchange as initiator; returns a failure reason or undefined. */
  private async pushPull(to: Address, join: boolean): Promise<string | undefined> {
    const request = encodePushPull(this.serf.localState(join));
    const reply = await exchange(to, request, this.keyring, this.timings.tcpTimeoutMs);
    if (this.closed) return 'shut down';
    if (!reply.ok) return reply.reason;
    if (reply.message.type === 'error') return `peer refused: ${reply.message.error}`;
    if (reply.message.type !== 'push-pull') return `unexpected reply ${reply.message.type}`;
    const refused = this.serf.mergeRemoteState(reply.message, nowMs());
    this.afterInput();
    return refused;
  }

  private async onConnection(socket: Socket): Promise<void> {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    if (this.closed || this.inboundSockets.size >= inboundStreamsMax) return void socket.destroy();
    this.inboundSockets.add(socket);
    try {
      const read = await readStreamMessage(socket, this.keyring, this.timings.tcpTimeoutMs);
      if (this.closed) return;
      if (!read.ok) {
        this.serf.swim.count(`drop: stream ${read.reason}`);
        this.log('warn', `stream from ${socket.remoteAddress}:${socket.remotePort} dropped: ${read.reason}`);
        if (!read.reason.startsWith('connection closed')) socket.write(frameStream(encodeStreamMessage({ type: 'error', error: read.reason }), this.keyring));
        return;
      }
      const message = read.message;
      if (message.type === 'ping') {
        if (message.node === '' || message.node === this.name) socket.write(frameStream(encodeStreamMessage({ type: 'ack', seqNo: message.seqNo }), this.keyring));
      } else if (message.type === 'push-pull') {
        socket.write(frameStream(encodePushPull(this.serf.localState(message.join)), this.keyring));
        const refused = this.serf.mergeRemoteState(message, nowMs());
        if (refused) this.log('warn', `push/pull from ${socket.remoteAddress} refused: ${refused}`);
        this.afterInput();
      } else {
        this.serf.swim.count(`drop: stream message ${message.type}`);
      }
    } finally {
      this.inboundSockets.delete(socket);
      socket.end();
    }
  }

  private async waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = nowMs() + timeoutMs;
    while (!condition() && nowMs() < deadline && !this.closed) await delay(Math.min(50, this.timings.gossipIntervalMs));
  }

  private log(level: LogLevel, message: string): void {
    this.options.logger?.(level, `membership ${this.name}: ${message}`);
  }
}

function isIp(host: string): boolean {
  try {
    ipToBytes(host);
    return true;
  } catch {
    return false;
  }
}

function nowMs(): number {
  return performance.now();
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Binds TCP and UDP on the same host and port (for port 0: the TCP port, retried on a clash). */
async function bindBoth(bind: Address): Promise<{ udp: UdpSocket; tcp: Server; port: number }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const tcp = createServer();
    const tcpError = await new Promise<Error | undefined>((resolve) => {
      tcp.once('error', resolve);
      tcp.listen({ host: bind.host, port: bind.port, exclusive: true }, () => resolve(undefined));
    });
    if (tcpError) throw new UnavailableError(`cannot listen on TCP ${formatAddress(bind)}: ${tcpError.message}`, { cause: tcpError });
    const port = (tcp.address() as { port: number }).port;
    const udp = createSocket({ type: bind.host.includes(':') ? 'udp6' : 'udp4' });
    const udpError = await new Promise<Error | undefined>((resolve) => {
      udp.once('error', resolve);
      udp.bind({ address: bind.host, port, exclusive: true }, () => resolve(undefined));
    });
    if (!udpError) {
      udp.on('error', () => undefined);
      return { udp, tcp, port };
    }
    tcp.close();
    if (bind.port !== 0) throw new UnavailableError(`cannot bind UDP ${formatAddress(bind)}: ${udpError.message}`, { cause: udpError });
  }
  throw new UnavailableError(`no free port with both TCP and UDP on ${bind.host}`);
}
