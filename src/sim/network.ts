/**
 * A seeded, lossy network between simulated nodes: each message gets a random one-way delay (so
 * messages reorder), may be dropped or duplicated, and never crosses a cut link. Links are
 * directed, so a partition can be asymmetric. A small share of messages is held for several
 * election timeouts, so vote requests, vote and heartbeat responses and appends of old terms and
 * rounds arrive after the cluster moved on.
 */
import type { Message, NodeId } from '../raft/index.js';
import { assert, type Prng } from '../util/index.js';

export interface NetworkOptions {
  oneWayDelayMsMin: number;
  oneWayDelayMsMax: number;
  packetLossProbability: number;
  packetDuplicateProbability: number;
  /** Probability that a message is held for a long delay in [lateDelayMsMin, lateDelayMsMax]. */
  lateProbability?: number;
  lateDelayMsMin?: number;
  lateDelayMsMax?: number;
}

export type Deliver = (deliverAtMs: number, message: Message) => void;

export class SimNetwork {
  private readonly cutLinks = new Set<string>();
  options: NetworkOptions;

  constructor(
    private readonly prng: Prng,
    options: NetworkOptions,
    private readonly deliver: Deliver,
    /** The machine a node id runs on (links are cut between machines): the id itself by default. */
    private readonly hostOf: (id: NodeId) => string = (id) => id,
  ) {
    assert(options.oneWayDelayMsMin <= options.oneWayDelayMsMax, 'delay range');
    assert((options.lateDelayMsMin ?? 0) <= (options.lateDelayMsMax ?? 0), 'late delay range');
    this.options = options;
  }

  send(nowMs: number, message: Message): void {
    if (!this.connected(message.from, message.to)) return;
    if (this.prng.chance(this.options.packetLossProbability)) return;
    const copies = this.prng.chance(this.options.packetDuplicateProbability) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      this.deliver(nowMs + this.delayMs(), message);
    }
  }

  /** A one-way delay drawn as for a message (late ones included). */
  delayMs(): number {
    const { lateProbability = 0, lateDelayMsMin = 0, lateDelayMsMax = 0 } = this.options;
    if (lateProbability > 0 && this.prng.chance(lateProbability)) return this.prng.int(lateDelayMsMin, lateDelayMsMax);
    return this.prng.int(this.options.oneWayDelayMsMin, this.options.oneWayDelayMsMax);
  }

  /** Whether a message sent now from `from` could reach `to` (used at delivery time too). */
  connected(from: NodeId, to: NodeId): boolean {
    return !this.cutLinks.has(linkKey(this.hostOf(from), this.hostOf(to)));
  }

  cut(from: NodeId, to: NodeId): void {
    this.cutLinks.add(linkKey(from, to));
  }

  /** Splits nodes into two sides; with `oneWay` only messages from side A to side B are lost. */
  partition(sideA: readonly NodeId[], sideB: readonly NodeId[], oneWay: boolean): void {
    for (const a of sideA) {
      for (const b of sideB) {
        this.cut(a, b);
        if (!oneWay) this.cut(b, a);
      }
    }
  }

  heal(): void {
    this.cutLinks.clear();
  }

  describeCuts(): string {
    return [...this.cutLinks].sort().join(',');
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}
