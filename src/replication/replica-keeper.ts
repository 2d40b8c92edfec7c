/**
 * Keeps a node's replica running. When its Raft stops itself (a storage write failed: a full
 * disk, an I/O error; or a read found damage it can repair from the others), the keeper closes it
 * and opens the data dir afresh in the same process: recovery re-validates the files as after a
 * crash, and no page whose fsync failed was acknowledged (a failed append cuts the log back to its
 * acknowledged end) or is trusted (the failed log's close writes again and fsyncs every byte no
 * good fsync covered, such as a sealed segment's index). It retries with backoff until the open works, then starts the new replica
 * and gives it the last gossip view. The agent serves `current`; the simulator runs the same.
 */
import type { Timers } from '../raft/index.js';
import { BACKGROUND_TIMERS } from '../util/system-timers.js';
import type { GossipMember, Replica, ReplicaLogger } from './replica.js';

export interface ReplicaKeeperOptions {
  /** Opens the replica again (Replica.open with the node's options). */
  readonly open: () => Promise<Replica>;
  readonly logger: ReplicaLogger;
  /** The reopen's backoff (default: the system's timers, unref'ed). */
  readonly timers?: Timers;
  /** First wait before a reopen, doubling per failed attempt up to the maximum. Default 1 s to 30 s. */
  readonly reopenDelayMsMin?: number;
  readonly reopenDelayMsMax?: number;
  /** Called when the current replica's Raft stopped, before it is closed. */
  readonly onStopped?: (error: Error, stopped: Replica) => void;
  /** Called when an attempt to reopen failed (the keeper retries). */
  readonly onOpenFailed?: (error: unknown) => void;
  /** Called once a reopened replica runs; its Raft id differs if its damaged state made it rejoin as a new member. */
  readonly onReopened?: (next: Replica, stopped: Replica) => void;
}

export const REOPEN_DELAY_MS_MIN = 1000;
export const REOPEN_DELAY_MS_MAX = 30_000;

export class ReplicaKeeper {
  private replica: Replica;
  private rpcAddr: string | undefined;
  private members: readonly GossipMember[] | undefined;
  private closing = false;
  /** Called when the current replica adopts a cluster id (the agent republishes its gossip tags). */
  onClusterId: ((clusterId: string) => void) | undefined;

  constructor(
    replica: Replica,
    private readonly options: ReplicaKeeperOptions,
  ) {
    this.replica = replica;
    this.watch(replica);
  }

  /** The replica serving now (a new one after each reopen). */
  get current(): Replica {
    return this.replica;
  }

  /** Starts the current replica (see Replica.start); reopened ones start with the same address. */
  start(rpcAddr: string): void {
    this.rpcAddr = rpcAddr;
    this.replica.start(rpcAddr);
  }

  /** The gossip view changed: the current replica gets it now, a reopened one when it starts. */
  updateMembers(members: readonly GossipMember[]): void {
    this.members = members;
    this.replica.updateMembers(members);
  }

  /** Stops reopening and closes the current replica. */
  async close(): Promise<void> {
    this.closing = true;
    await this.replica.close();
  }

  private watch(replica: Replica): void {
    replica.onStopped = (error) => void this.reopen(replica, error);
    replica.onClusterId = (clusterId) => this.onClusterId?.(clusterId);
  }

  private async reopen(stopped: Replica, error: Error): Promise<void> {
    if (this.closing || stopped !== this.replica) return;
    const { logger, timers = BACKGROUND_TIMERS } = this.options;
    const first = this.options.reopenDelayMsMin ?? REOPEN_DELAY_MS_MIN;
    const max = this.options.reopenDelayMsMax ?? REOPEN_DELAY_MS_MAX;
    this.options.onStopped?.(error, stopped);
    logger.warn({ inMs: first }, 'raft stopped: closing the replica to reopen it in place');
    stopped.drainPeers();
    await stopped.close().catch((closeError: unknown) => logger.warn({ err: String(closeError) }, 'closing the stopped replica failed'));
    for (let delayMs = first; !this.closing; delayMs = Math.min(delayMs * 2, max)) {
      await new Promise<void>((resolve) => timers.after(delayMs, resolve));
      if (this.closing) return;
      let next: Replica;
      try {
        next = await this.options.open();
      } catch (openError) {
        logger.warn({ err: String(openError), retryInMs: Math.min(delayMs * 2, max) }, 'could not reopen the replica yet');
        this.options.onOpenFailed?.(openError);
        continue;
      }
      if (this.closing) {
        await next.close();
        return;
      }
      this.replica = next;
      this.watch(next);
      if (this.rpcAddr !== undefined) next.start(this.rpcAddr);
      if (this.members !== undefined) next.updateMembers(this.members);
      this.options.onReopened?.(next, stopped);
      logger.info({ lowestOffset: next.log.lowestOffset(), nextOffset: next.log.nextOffset() }, 'replica reopened in place: raft runs again');
      return;
    }
  }
}
