/**
 * Membership: SWIM gossip with Serf semantics, wire-compatible with HashiCorp Serf 0.9 / memberlist
 * (an annal node and real `serf agent` processes form one cluster).
 */
export { Membership, JoinFailedError } from './node.js';
export type { MembershipOptions, MembershipHandler, MembershipLogger, MembershipStats, LogLevel } from './node.js';
export type { Member, MemberEvent, MemberEventType, MemberStatus } from './serf.js';
export { lanTimings, localTimings } from './config.js';
export type { MembershipTimings } from './config.js';
