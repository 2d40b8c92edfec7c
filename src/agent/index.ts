export { Agent, hostOf } from './agent.js';
export type { AgentConfig, AgentLogger } from './agent.js';
