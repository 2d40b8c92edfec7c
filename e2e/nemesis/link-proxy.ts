/**
 * TCP relays between the nodes of the test network, one per directed link (node A connecting to
 * node B), so that the harness can delay, hold and break what each node sends to each other one.
 *
 * Faults are set per path: everything node X sends to node Y, on the link X → Y (X's requests) and
 * on the link Y → X (X's answers). A TCP stream cannot lose bytes silently, so loss is modelled as
 * what a lost segment does to a stream: the bytes behind it wait for the retransmission
 * (`lossChance` per chunk, a stall of `lossStallMs`), and a connection that loses too much dies
 * (`resetChance` per chunk: both sides get a reset and the queued bytes are gone). Delay is per
 * chunk (`delayMs` plus up to `jitterMs`) and keeps a stream's order, as TCP does; reordering
 * happens where it can on a real network: between connections (a link's requests and the other
 * link's answers, a reconnection overtaking a held stream, two senders to one node). `stalled`
 * holds every byte until healed (a blackhole that TCP retransmits through once it lifts), in one
 * direction only if asked. A relay whose target is down resets the connection it accepted, as a
 * refused connect would.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Prng } from '../../src/util/index.js';

export interface PathFaults {
  readonly delayMs: number;
  readonly jitterMs: number;
  readonly lossChance: number;
  readonly lossStallMs: { readonly min: number; readonly max: number };
  readonly resetChance: number;
  readonly stalled: boolean;
}

export const NO_FAULTS: PathFaults = Object.freeze({ delayMs: 0, jitterMs: 0, lossChance: 0, lossStallMs: { min: 0, max: 0 }, resetChance: 0, stalled: false });

/** A relay stops reading its source above this many queued bytes (TCP backpressure), resumes below a quarter. */
const QUEUE_HIGH_BYTES = 4 * 1024 * 1024;

/** What node X sends to node Y, on every connection either of them opened. */
class Path {
  faults: PathFaults = NO_FAULTS;
  prng = new Prng(1);
  readonly pipes = new Set<Pipe>();
  /** Chunks delayed, held by a loss, and connections reset since the path was made. */
  readonly counts = { chunks: 0, lost: 0, resets: 0 };
}

/** One direction of one relayed connection: chunks from `source`, written to `sink` when due. */
class Pipe {
  /** `end`: the source half-closed; the sink is ended once everything before it left. */
  private readonly queue: { chunk: Buffer; dueMs: number; end: boolean }[] = [];
  private queuedBytes = 0;
  private lastDueMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;

  constructor(
    private readonly source: Socket,
    private readonly sink: Socket,
    private readonly path: Path,
    private readonly reset: () => void,
  ) {
    source.on('data', (chunk: Buffer) => this.push(chunk));
    sink.on('drain', () => {
      this.blocked = false;
      this.pump();
    });
    // A half-close travels after the bytes before it.
    source.on('end', () => this.push(undefined));
  }

  private push(chunk: Buffer | undefined): void {
    const { faults, prng, counts } = this.path;
    const nowMs = performance.now();
    let delayMs = faults.delayMs + (faults.jitterMs > 0 ? prng.next() * faults.jitterMs : 0);
    if (chunk !== undefined) {
      counts.chunks++;
      if (faults.resetChance > 0 && prng.chance(faults.resetChance)) {
        counts.resets++;
        this.reset();
        return;
      }
      if (faults.lossChance > 0 && prng.chance(faults.lossChance)) {
        counts.lost++;
        delayMs += prng.int(faults.lossStallMs.min, faults.lossStallMs.max);
      }
    }
    // A stream's bytes leave in order: nothing overtakes what was queued before it.
    this.lastDueMs = Math.max(this.lastDueMs, nowMs + delayMs);
    this.queue.push({ chunk: chunk ?? Buffer.alloc(0), dueMs: this.lastDueMs, end: chunk === undefined });
    this.queuedBytes += chunk?.length ?? 0;
    if (this.queuedBytes > QUEUE_HIGH_BYTES) this.source.pause();
    this.pump();
  }

  /** Writes every due chunk, then waits for the next one (or for `heal`). */
  pump(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const nowMs = performance.now();
    while (this.queue.length > 0 && !this.blocked && !this.path.faults.stalled) {
      const head = this.queue[0]!;
      if (head.dueMs > nowMs) {
        this.timer = setTimeout(() => this.pump(), head.dueMs - nowMs);
        break;
      }
      this.queue.shift();
      if (head.end) {
        if (!this.sink.destroyed) this.sink.end();
        continue;
      }
      this.queuedBytes -= head.chunk.length;
      if (!this.sink.writableEnded && !this.sink.destroyed && !this.sink.write(head.chunk)) this.blocked = true;
    }
    if (this.queuedBytes < QUEUE_HIGH_BYTES / 4 && this.source.isPaused()) this.source.resume();
  }

  /** The path's faults ended: what they held is due now. */
  release(): void {
    const nowMs = performance.now();
    this.lastDueMs = nowMs;
    for (const item of this.queue) item.dueMs = Math.min(item.dueMs, nowMs);
    this.pump();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

interface Link {
  readonly from: number;
  readonly to: number;
  readonly server: Server;
  port: number;
  readonly sockets: Set<Socket>;
}

/**
 * Relays for `size` nodes: `listen` opens one listener per directed link on `listenHost`; a
 * connection to link (a, b) is relayed to `target(b)`. Close with `close`, which also resets every
 * relayed connection.
 */
export class LinkProxies {
  private readonly links = new Map<string, Link>();
  private readonly paths = new Map<string, Path>();
  private closed = false;

  constructor(
    readonly size: number,
    private readonly listenHost: string,
    private readonly target: (to: number) => { host: string; port: number },
  ) {
    for (let a = 0; a < size; a++) for (let b = 0; b < size; b++) if (a !== b) this.paths.set(`${a}>${b}`, new Path());
  }

  async listen(): Promise<void> {
    for (let from = 0; from < this.size; from++) {
      for (let to = 0; to < this.size; to++) {
        if (from === to) continue;
        const link: Link = { from, to, server: createServer({ noDelay: true, allowHalfOpen: true }), port: 0, sockets: new Set() };
        link.server.on('connection', (socket) => this.relay(link, socket));
        this.links.set(`${from}>${to}`, link);
        await new Promise<void>((resolve, reject) => {
          link.server.once('error', reject);
          link.server.listen(0, this.listenHost, () => {
            link.server.off('error', reject);
            resolve();
          });
        });
        link.port = (link.server.address() as { port: number }).port;
      }
    }
  }

  /** The port that node `from` reaches node `to` at through its relay. */
  port(from: number, to: number): number {
    return this.link(from, to).port;
  }

  private link(from: number, to: number): Link {
    const link = this.links.get(`${from}>${to}`);
    if (link === undefined) throw new RangeError(`no link ${from} -> ${to}`);
    return link;
  }

  private path(from: number, to: number): Path {
    const path = this.paths.get(`${from}>${to}`);
    if (path === undefined) throw new RangeError(`no path ${from} -> ${to}`);
    return path;
  }

  private relay(link: Link, inbound: Socket): void {
    if (this.closed) {
      inbound.resetAndDestroy();
      return;
    }
    const { host, port } = this.target(link.to);
    const outbound = connect({ host, port, noDelay: true, allowHalfOpen: true });
    link.sockets.add(inbound);
    link.sockets.add(outbound);
    const forget = (): void => {
      if (!inbound.destroyed || !outbound.destroyed) return;
      requests.stop();
      answers.stop();
      this.path(link.from, link.to).pipes.delete(requests);
      this.path(link.to, link.from).pipes.delete(answers);
    };
    // Both ends see what a lost connection looks like: a reset, not a clean close.
    const reset = (): void => {
      for (const socket of [inbound, outbound]) if (!socket.destroyed) socket.resetAndDestroy();
      forget();
    };
    const requests = new Pipe(inbound, outbound, this.path(link.from, link.to), reset);
    const answers = new Pipe(outbound, inbound, this.path(link.to, link.from), reset);
    this.path(link.from, link.to).pipes.add(requests);
    this.path(link.to, link.from).pipes.add(answers);
    for (const socket of [inbound, outbound]) {
      // An error on one end (a refused connect, a reset) resets the other; a clean close travels
      // as a half-close through the pipe, after the bytes before it.
      socket.on('error', reset);
      socket.on('close', () => {
        link.sockets.delete(socket);
        forget();
      });
    }
  }

  /** Sets what happens to everything node `from` sends to node `to`, with choices drawn from `prng`. */
  setFaults(from: number, to: number, faults: Partial<PathFaults>, prng: Prng): void {
    const path = this.path(from, to);
    path.faults = { ...NO_FAULTS, ...faults };
    path.prng = prng;
    for (const pipe of path.pipes) pipe.pump();
  }

  /** Ends every fault; held and delayed bytes are delivered now. */
  heal(): void {
    for (const path of this.paths.values()) {
      path.faults = NO_FAULTS;
      for (const pipe of path.pipes) pipe.release();
    }
  }

  /** Chunks, losses and resets per path so far (paths with traffic only), e.g. `0>1`. */
  counts(): Record<string, { chunks: number; lost: number; resets: number }> {
    const out: Record<string, { chunks: number; lost: number; resets: number }> = {};
    for (const [key, path] of this.paths) if (path.counts.chunks > 0) out[key] = { ...path.counts };
    return out;
  }

  /** Listeners and relayed sockets still open: none once closed. */
  openHandles(): string[] {
    const out: string[] = [];
    for (const [key, link] of this.links) {
      if (link.server.listening) out.push(`relay ${key} listening on ${this.listenHost}:${link.port}`);
      if (link.sockets.size > 0) out.push(`relay ${key}: ${link.sockets.size} sockets open`);
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    const closing: Promise<void>[] = [];
    for (const link of this.links.values()) {
      for (const socket of [...link.sockets]) socket.resetAndDestroy();
      link.sockets.clear();
      if (link.server.listening) closing.push(new Promise((resolve) => link.server.close(() => resolve())));
    }
    for (const path of this.paths.values()) for (const pipe of path.pipes) pipe.stop();
    await Promise.all(closing);
  }
}
