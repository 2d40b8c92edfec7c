/**
 * Where the driver's time comes from: the system's timers in production, the simulator's virtual
 * clock in tests. Only scheduling is injected; the core itself counts ticks and never reads a clock.
 */

/** Cancels a scheduled callback; calling it again, or after the callback ran, does nothing. */
export type Cancel = () => void;

export interface Timers {
  /** Calls `callback` once, `delayMs` from now. */
  after(delayMs: number, callback: () => void): Cancel;
  /** Calls `callback` every `intervalMs` until cancelled. */
  every(intervalMs: number, callback: () => void): Cancel;
}

/** Node's timers. */
export const SYSTEM_TIMERS: Timers = {
  after(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    return () => clearTimeout(timer);
  },
  every(intervalMs, callback) {
    const timer = setInterval(callback, intervalMs);
    return () => clearInterval(timer);
  },
};
