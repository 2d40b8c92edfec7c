/**
 * Which peers' Raft traffic a node takes, by cluster id: the rule the peer service applies to
 * every stream and call, kept apart from gRPC so that the simulator runs it on its network too.
 *
 * A peer of another cluster is refused (two nodes started with --bootstrap, or a data dir from
 * another cluster). A peer without an id (a node that just joined) is admitted. A node without an
 * id adopts the id of the first peer stream that carries one, durably, before taking any of its
 * messages; calls (forwarded produces, ReadIndex) never make a node adopt. Adoptions are
 * serialised: a second stream waits for the first one's, then compares against the adopted id.
 */
import type { NodeId } from '../raft/index.js';

export type Admission =
  | { readonly admitted: true }
  | { readonly admitted: false; readonly reason: 'otherCluster'; readonly ours: string }
  | { readonly admitted: false; readonly reason: 'adoptFailed'; readonly error: unknown }
  | { readonly admitted: false; readonly reason: 'noClusterId' };

export interface ClusterAdmissionOptions {
  /** This node's cluster id now (undefined before it has one). */
  clusterId: () => string | undefined;
  /** Makes `id` this node's cluster id, durably. */
  adoptClusterId: (id: string) => void | Promise<void>;
  logger: { info(fields: object, message: string): void; error(fields: object, message: string): void };
}

const ADMITTED: Admission = Object.freeze({ admitted: true });

export class ClusterAdmission {
  private adopting: Promise<void> | undefined;

  constructor(private readonly options: ClusterAdmissionOptions) {}

  /**
   * Whether traffic from `from`, whose cluster id is `theirs` ('' when it has none), is taken.
   * Synchronous unless this node must first adopt (or wait for an adoption running).
   */
  admit(from: NodeId, theirs: string, kind: 'stream' | 'call'): Admission | Promise<Admission> {
    const ours = this.options.clusterId();
    if (ours !== undefined && ours !== '') return theirs === '' || theirs === ours ? ADMITTED : { admitted: false, reason: 'otherCluster', ours };
    if (theirs === '' || kind === 'call') return ADMITTED;
    return this.adopt(from, theirs);
  }

  private async adopt(from: NodeId, theirs: string): Promise<Admission> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.adopting === undefined) {
        this.options.logger.info({ peer: from, clusterId: theirs }, 'adopting the cluster id of a peer');
        this.adopting = Promise.resolve()
          .then(() => this.options.adoptClusterId(theirs))
          .finally(() => {
            this.adopting = undefined;
          });
      }
      try {
        await this.adopting;
      } catch (error) {
        this.options.logger.error({ peer: from, clusterId: theirs, err: error }, 'adopting the cluster id of a peer failed');
        return { admitted: false, reason: 'adoptFailed', error };
      }
      const ours = this.options.clusterId();
      if (ours !== undefined && ours !== '') return theirs === ours ? ADMITTED : { admitted: false, reason: 'otherCluster', ours };
    }
    return { admitted: false, reason: 'noClusterId' };
  }
}
