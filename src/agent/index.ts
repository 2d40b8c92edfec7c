export { Agent, hostOf } from './agent.js';
export type { AgentConfig, AgentLogger } from './agent.js';
export { ClusterHooks, GOSSIP_PROFILES } from './gossip.js';
export type { GossipConfig, GossipProfile } from './gossip.js';
