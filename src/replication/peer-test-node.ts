/**
 * A peer for replication's network tests (not a test file itself): a real grpc-js server with the
 * PeerService on 127.0.0.1 (port 0 unless given), a PeerTransport whose addresses come from a
 * shared map, and an inbox of delivered messages that tests await.
 */
import { credentials as grpcCredentials, Server, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { Message, NodeId } from '../raft/index.js';
import { PeerService, type PeerServiceOptions } from './peer-service.js';
import { RaftPeerService } from './peer-protocol.js';
import { RecordingMetrics, RecordingPeerLogger } from './peer-test-fixtures.js';
import { PeerTransport, type PeerTransportOptions } from './peer-transport.js';

/** Delivered messages, in order, and promises on them that resolve as soon as they hold. */
export class Inbox {
  readonly messages: Message[] = [];
  private waiters: { holds: () => boolean; resolve: () => void }[] = [];

  push(message: Message): void {
    this.messages.push(message);
    const ready = this.waiters.filter((waiter) => waiter.holds());
    this.waiters = this.waiters.filter((waiter) => !ready.includes(waiter));
    for (const waiter of ready) waiter.resolve();
  }

  /** Resolves once `holds()` is true (checked now and after each delivery). */
  until(holds: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    if (holds()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms (${this.messages.length} messages)`)), timeoutMs);
      this.waiters.push({
        holds,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  async waitFor(match: (message: Message) => boolean, timeoutMs = 15_000): Promise<Message> {
    await this.until(() => this.messages.some(match), 'a matching message', timeoutMs);
    return this.messages.find(match)!;
  }

  waitForCount(count: number, timeoutMs = 15_000): Promise<void> {
    return this.until(() => this.messages.length >= count, `${count} messages`, timeoutMs);
  }
}

export interface TestPeerOptions {
  id: NodeId;
  /** Shared id → address map: addressOf() of every node's transport reads it. */
  addresses: Map<NodeId, string>;
  clusterId?: string;
  /** Bind this port (for a restart) instead of a free one. */
  port?: number;
  credentials?: ChannelCredentials;
  service?: Partial<PeerServiceOptions>;
  transport?: Partial<PeerTransportOptions>;
  /** Build the server without binding it (the caller serves it, e.g. over mTLS). */
  unbound?: boolean;
}

export class TestPeer {
  readonly inbox = new Inbox();
  readonly logger = new RecordingPeerLogger();
  readonly metrics = new RecordingMetrics();
  readonly transport: PeerTransport;
  server!: Server;
  service!: PeerService;
  port = 0;
  clusterId: string | undefined;

  private constructor(private readonly options: TestPeerOptions) {
    this.clusterId = options.clusterId;
    this.transport = new PeerTransport({
      selfId: options.id,
      clusterId: () => this.clusterId,
      credentials: options.credentials ?? grpcCredentials.createInsecure(),
      addressOf: (id) => options.addresses.get(id),
      logger: this.logger,
      metrics: this.metrics,
      ...options.transport,
    });
    this.transport.onMessage((message) => this.inbox.push(message));
  }

  static async start(options: TestPeerOptions): Promise<TestPeer> {
    const peer = new TestPeer(options);
    await peer.serve(options.port ?? 0);
    return peer;
  }

  get id(): NodeId {
    return this.options.id;
  }

  /** A new server (and service) on `port`; the transport and inbox stay. */
  async serve(port: number): Promise<void> {
    this.service = new PeerService({
      selfId: this.options.id,
      clusterId: () => this.clusterId,
      adoptClusterId: (id) => {
        this.clusterId = id;
      },
      deliver: (message) => this.transport.deliver(message),
      forward: () => Promise.reject(new Error('no forward handler in this test')),
      readIndex: () => Promise.reject(new Error('no readIndex handler in this test')),
      logger: this.logger,
      metrics: this.metrics,
      ...this.options.service,
    });
    this.server = new Server();
    this.server.addService(RaftPeerService, this.service.handlers());
    if (this.options.unbound === true) return;
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    this.options.addresses.set(this.options.id, `127.0.0.1:${this.port}`);
  }

  /** Stops the server at once, as a crash would (open streams break). */
  kill(): void {
    this.server.forceShutdown();
  }

  close(): void {
    this.transport.close();
    this.server.forceShutdown();
  }
}
