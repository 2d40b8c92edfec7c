/** The few logger methods auth uses; pino's Logger and the server's ServiceLogger have them. */
export interface AuthLogger {
  error(object: object, message: string): void;
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

export interface RateLimitedLogOptions {
  /** Most lines written per window; the rest are counted and summarised. */
  linesPerWindowMax: number;
  windowMs: number;
  /** Injected for tests; default Date.now. */
  nowMs?: () => number;
}

/**
 * Caps how many lines one kind of event (a refused connection, a denied call) can write, so a
 * client that retries in a tight loop cannot fill the disk or slow the node with logging. The
 * first line of each window after a suppressed burst says how many lines were dropped.
 */
export class RateLimitedLog {
  private windowStartMs = Number.NEGATIVE_INFINITY;
  private linesInWindow = 0;
  private suppressedCount = 0;
  private readonly nowMs: () => number;

  constructor(
    private readonly logger: AuthLogger,
    private readonly options: RateLimitedLogOptions,
  ) {
    this.nowMs = options.nowMs ?? Date.now;
  }

  warn(object: object, message: string): void {
    const nowMs = this.nowMs();
    if (nowMs - this.windowStartMs >= this.options.windowMs) {
      if (this.suppressedCount > 0) {
        this.logger.warn({ suppressedCount: this.suppressedCount }, `suppressed ${this.suppressedCount} similar log lines`);
      }
      this.windowStartMs = nowMs;
      this.linesInWindow = 0;
      this.suppressedCount = 0;
    }
    if (this.linesInWindow < this.options.linesPerWindowMax) {
      this.linesInWindow += 1;
      this.logger.warn(object, message);
    } else {
      this.suppressedCount += 1;
    }
  }
}
