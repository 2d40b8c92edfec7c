/**
 * How a Raft node exchanges messages with its peers. Delivery is best effort: messages may be
 * lost, duplicated or reordered, and the core copes with all of it. The network transport belongs
 * to the replicated log (src/replication); `InMemoryNetwork` serves tests and single-process clusters.
 */
import { assert } from '../util/index.js';
import type { Message, NodeId } from './types.js';

export interface Transport {
  /** Queues messages for delivery; must not block or throw for an unreachable peer. */
  send(messages: readonly Message[]): void;
  /** Registers the handler for incoming messages (one per transport). */
  onMessage(handler: (message: Message) => void): void;
  close(): void;
}

/** A process-local hub; each message is delivered on a later macrotask (never re-entrantly). */
export class InMemoryNetwork {
  private readonly handlers = new Map<NodeId, (message: Message) => void>();
  private readonly isolated = new Set<NodeId>();

  connect(id: NodeId): Transport {
    assert(!this.handlers.has(id), `node ${id} is already connected`);
    const network = this;
    let closed = false;
    return {
      send(messages) {
        if (closed) return;
        for (const message of messages) network.deliverLater(message);
      },
      onMessage(handler) {
        network.handlers.set(id, handler);
      },
      close() {
        closed = true;
        network.handlers.delete(id);
      },
    };
  }

  /** Drops every message to or from `id` until `reconnect`. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  reconnect(id: NodeId): void {
    this.isolated.delete(id);
  }

  private deliverLater(message: Message): void {
    setImmediate(() => {
      if (this.isolated.has(message.from) || this.isolated.has(message.to)) return;
      this.handlers.get(message.to)?.(message);
    });
  }
}
