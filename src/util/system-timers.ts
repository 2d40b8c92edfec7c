/**
 * Node's timers behind the small scheduling interface the Raft driver takes (raft/timers.ts), so
 * that src/raft itself never touches a clock; the simulator passes its virtual timers instead.
 */

/** Cancels a scheduled callback; calling it again, or after the callback ran, does nothing. */
export type Cancel = () => void;

export interface Timers {
  /** Calls `callback` once, `delayMs` from now. */
  after(delayMs: number, callback: () => void): Cancel;
  /** Calls `callback` every `intervalMs` until cancelled. */
  every(intervalMs: number, callback: () => void): Cancel;
}

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

/** The system's timers, unref'ed: background work (a lazy write, a periodic check) never keeps the process alive. */
export const BACKGROUND_TIMERS: Timers = {
  after(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return () => clearTimeout(timer);
  },
  every(intervalMs, callback) {
    const timer = setInterval(callback, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  },
};
