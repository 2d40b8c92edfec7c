/**
 * Lifeguard's suspicion timer: it starts at `maxMs` (or `minMs` when no confirmations are wanted)
 * and shrinks towards `minMs` as independent members confirm the suspicion:
 * timeout = max − (log(c + 1) / log(k + 1)) × (max − min), never below min, measured from the start.
 */
import { assert } from '../util/index.js';

export interface SuspicionOptions {
  /** The first accuser; it does not count as a confirmation. */
  readonly from: string;
  readonly incarnation: number;
  /** k: confirmations wanted for the minimum timeout. */
  readonly confirmationsWanted: number;
  readonly minMs: number;
  readonly maxMs: number;
  readonly startMs: number;
}

export class Suspicion {
  readonly incarnation: number;
  /** Invariant: startMs + minMs <= deadlineMs <= startMs + maxMs. */
  deadlineMs: number;
  private readonly accusers = new Set<string>();
  private readonly options: SuspicionOptions;

  constructor(options: SuspicionOptions) {
    assert(options.minMs <= options.maxMs, 'suspicion min timeout <= max timeout');
    this.options = options;
    this.incarnation = options.incarnation;
    this.accusers.add(options.from);
    this.deadlineMs = options.startMs + (options.confirmationsWanted < 1 ? options.minMs : options.maxMs);
  }

  get confirmations(): number {
    return this.accusers.size - 1;
  }

  /** Counts a suspicion from `from`; true if it was new (and so worth re-gossiping). */
  confirm(from: string, _nowMs: number): boolean {
    const { confirmationsWanted: k, minMs, maxMs, startMs } = this.options;
    if (k < 1 || this.confirmations >= k || this.accusers.has(from)) return false;
    this.accusers.add(from);
    const fraction = Math.log(this.confirmations + 1) / Math.log(k + 1);
    const timeoutMs = Math.max(minMs, Math.floor(maxMs - fraction * (maxMs - minMs)));
    this.deadlineMs = startMs + timeoutMs;
    assert(this.deadlineMs >= startMs + minMs, 'suspicion never shorter than its minimum');
    return true;
  }
}

/** The minimum suspicion timeout: suspicionMult × max(1, log10(n)) × probeInterval. */
export function suspicionTimeoutMs(suspicionMult: number, nodeCount: number, probeIntervalMs: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, nodeCount)));
  return Math.floor(suspicionMult * nodeScale * probeIntervalMs);
}
