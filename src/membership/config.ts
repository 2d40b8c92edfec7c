/**
 * Timings and limits for membership. The defaults are Serf's LAN profile (memberlist
 * DefaultLANConfig plus serf's DefaultConfig and the agent's overrides), so an annal node detects
 * failures on the same schedule as the `serf agent` processes it shares a cluster with.
 */
export interface MembershipTimings {
  /** How often we probe one member (SWIM protocol period). */
  readonly probeIntervalMs: number;
  /** How long a direct ping waits for its ack before indirect pings go out. */
  readonly probeTimeoutMs: number;
  /** Suspicion timeout = suspicionMult × max(1, log10(n)) × probeInterval. */
  readonly suspicionMult: number;
  /** Upper bound of the suspicion timeout, as a multiple of its lower bound (Lifeguard). */
  readonly suspicionMaxTimeoutMult: number;
  /** Members asked to ping a target that missed its direct probe. */
  readonly indirectChecks: number;
  /** A broadcast is sent retransmitMult × ceil(log10(n + 1)) times. */
  readonly retransmitMult: number;
  readonly gossipIntervalMs: number;
  /** Members each gossip round sends to. */
  readonly gossipNodes: number;
  /** Dead/left members keep receiving gossip (and stay in the member count) this long. */
  readonly gossipToTheDeadMs: number;
  /** Full state exchange over TCP with one random member; 0 disables it. */
  readonly pushPullIntervalMs: number;
  /** Deadline for one TCP exchange (connect, write, read). */
  readonly tcpTimeoutMs: number;
  /** Lifeguard local health: probe deadlines stretch up to this factor when we look unhealthy. */
  readonly awarenessMaxMultiplier: number;
  /** Serf: how often left/failed members are checked for reaping. */
  readonly reapIntervalMs: number;
  /** Serf: how often we try to reach one failed member again. */
  readonly reconnectIntervalMs: number;
  /** Serf: failed members are reaped (forgotten) after this long. */
  readonly reconnectTimeoutMs: number;
  /** Serf: left members are reaped after this long. */
  readonly tombstoneTimeoutMs: number;
  /** Serf: intents about not-yet-known members are buffered this long. */
  readonly recentIntentTimeoutMs: number;
  /** Serf: leave waits at most this long for its broadcasts to go out. */
  readonly broadcastTimeoutMs: number;
  /** Serf: after the leave broadcasts, wait this long before closing the sockets. */
  readonly leavePropagateDelayMs: number;
}

const second = 1000;
const hour = 3600 * second;

/** Serf LAN profile (the `serf agent` default). */
export const lanTimings: MembershipTimings = {
  probeIntervalMs: 1 * second,
  probeTimeoutMs: 500,
  suspicionMult: 4,
  suspicionMaxTimeoutMult: 6,
  indirectChecks: 3,
  retransmitMult: 4,
  gossipIntervalMs: 200,
  gossipNodes: 3,
  gossipToTheDeadMs: 30 * second,
  pushPullIntervalMs: 30 * second,
  tcpTimeoutMs: 10 * second,
  awarenessMaxMultiplier: 8,
  reapIntervalMs: 15 * second,
  reconnectIntervalMs: 30 * second,
  reconnectTimeoutMs: 24 * hour,
  tombstoneTimeoutMs: 24 * hour,
  recentIntentTimeoutMs: 5 * 60 * second,
  broadcastTimeoutMs: 5 * second,
  leavePropagateDelayMs: 1 * second,
};

/** Serf's `-profile=local` memberlist timings (serf-layer timings as LAN). */
export const localTimings: MembershipTimings = {
  ...lanTimings,
  probeTimeoutMs: 200,
  suspicionMult: 3,
  indirectChecks: 1,
  retransmitMult: 2,
  gossipIntervalMs: 100,
  gossipToTheDeadMs: 15 * second,
  pushPullIntervalMs: 15 * second,
  tcpTimeoutMs: 1 * second,
};

/** UDP payload budget for gossip (memberlist UDPBufferSize). */
export const udpPacketBytesMax = 1400;
/** Bound on queued broadcasts (serf MaxQueueDepth); the most-sent are dropped first beyond it. */
export const broadcastQueueDepthMax = 4096;

export function resolveTimings(overrides: Partial<MembershipTimings> | undefined): MembershipTimings {
  const timings = { ...lanTimings, ...overrides };
  for (const [key, value] of Object.entries(timings)) {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`timings.${key} must be a non-negative number, got ${value}`);
  }
  if (timings.probeTimeoutMs > timings.probeIntervalMs) throw new RangeError('timings.probeTimeoutMs must not exceed probeIntervalMs');
  if (timings.awarenessMaxMultiplier < 1) throw new RangeError('timings.awarenessMaxMultiplier must be at least 1');
  return timings;
}
