/**
 * "Once per key per window" for log lines about one peer: a peer that keeps reconnecting with the
 * wrong cluster id writes one error line a minute, not one per attempt. The map of keys is
 * bounded; when full it starts over (which at worst repeats a line early).
 */
export interface KeyedLogLimitOptions {
  /** A key logs again only after this long. */
  windowMs: number;
  /** Most keys remembered. */
  keysMax: number;
  /** Injected for tests; default Date.now. */
  nowMs?: () => number;
}

export class KeyedLogLimit {
  private readonly lastMs = new Map<string, number>();
  private readonly nowMs: () => number;

  constructor(private readonly options: KeyedLogLimitOptions) {
    this.nowMs = options.nowMs ?? Date.now;
  }

  /** True when a line for `key` may be written now (and records that it was). */
  allow(key: string): boolean {
    const nowMs = this.nowMs();
    const lastMs = this.lastMs.get(key);
    if (lastMs !== undefined && nowMs - lastMs < this.options.windowMs) return false;
    if (lastMs === undefined && this.lastMs.size >= this.options.keysMax) this.lastMs.clear();
    this.lastMs.set(key, nowMs);
    return true;
  }

  /** Forgets `key`, so that its next line is written at once (e.g. after it recovered). */
  reset(key: string): void {
    this.lastMs.delete(key);
  }
}
