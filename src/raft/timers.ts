/**
 * Where the driver's time comes from: the system's timers in production (util/system-timers.ts,
 * the driver's default), the simulator's virtual clock in tests. Only scheduling is injected; the
 * core itself counts ticks and never reads a clock.
 */
export type { Cancel, Timers } from '../util/system-timers.js';
