/** Single-server membership changes turned into full configurations. */
import type { ClusterConfig, ConfigChange } from './types.js';

/** The configuration after a single-server change, or null if the change makes no sense. */
export function applyConfigChange(config: ClusterConfig, change: ConfigChange): ClusterConfig | null {
  const voters = config.voters.filter((id) => id !== change.nodeId);
  const learners = config.learners.filter((id) => id !== change.nodeId);
  switch (change.type) {
    case 'addVoter':
      if (config.voters.includes(change.nodeId)) return null;
      return { voters: [...voters, change.nodeId], learners };
    case 'addLearner':
      if (config.learners.includes(change.nodeId) || config.voters.includes(change.nodeId)) return null;
      return { voters, learners: [...learners, change.nodeId] };
    case 'remove':
      if (voters.length === config.voters.length && learners.length === config.learners.length) return null;
      if (voters.length === 0) return null;
      return { voters, learners };
  }
}
