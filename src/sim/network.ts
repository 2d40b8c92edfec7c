/**
 * A seeded, lossy network between simulated nodes: each message gets a random one-way delay (so
 * messages reorder), may be dropped or duplicated, and never crosses a cut link. Links are
 * directed, so a partition can be asymmetric.
 */
import type { Message, NodeId } from '../raft/index.js';
import { assert, type Prng } from '../util/index.js';

export interface NetworkOptions {
  oneWayDelayMsMin: number;
  oneWayDelayMsMax: number;
  packetLossProbability: number;
  packetDuplicateProbability: number;
}

export type Deliver = (deliverAtMs: number, message: Message) => void;

export class SimNetwork {
  private readonly cutLinks = new Set<string>();
  options: NetworkOptions;

  constructor(
    private readonly prng: Prng,
    options: NetworkOptions,
    private readonly deliver: Deliver,
  ) {
    assert(options.oneWayDelayMsMin <= options.oneWayDelayMsMax, 'delay range');
    this.options = options;
  }

  send(nowMs: number, message: Message): void {
    if (this.cutLinks.has(linkKey(message.from, message.to))) return;
    if (this.prng.chance(this.options.packetLossProbability)) return;
    const copies = this.prng.chance(this.options.packetDuplicateProbability) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      const delayMs = this.prng.int(this.options.oneWayDelayMsMin, this.options.oneWayDelayMsMax);
      this.deliver(nowMs + delayMs, message);
    }
  }

  /** Whether a message sent now from `from` could reach `to` (used at delivery time too). */
  connected(from: NodeId, to: NodeId): boolean {
    return !this.cutLinks.has(linkKey(from, to));
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
