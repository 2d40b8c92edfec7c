/**
 * Ends open `grpc.health.v1.Health/Watch` streams at shutdown. A watcher (a load balancer's health
 * check, `grpc_health_probe -watch`) keeps its stream open for as long as the server runs, so a
 * graceful shutdown would wait for it until `shutdownTimeoutMs` and then cancel it. Instead, once
 * NOT_SERVING has gone out on every watch, each gets UNAVAILABLE "server is shutting down" and the
 * shutdown waits only for real work.
 */
import {
  Metadata,
  ServerInterceptingCall,
  status as Status,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';

const WATCH_PATH = '/grpc.health.v1.Health/Watch';

export class HealthWatches {
  // Invariant: holds exactly the Watch calls that have neither ended nor been cancelled.
  private readonly open = new Set<ServerInterceptingCallInterface>();

  /** Registers Watch calls; put it last in the server's interceptors (nearest the handler). */
  readonly interceptor: ServerInterceptor = (method, call) => {
    if (method.path !== WATCH_PATH) return new ServerInterceptingCall(call);
    this.open.add(call);
    return new ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => this.open.delete(call) }),
      sendStatus: (status, next) => {
        this.open.delete(call);
        next(status);
      },
    });
  };

  get openCount(): number {
    return this.open.size;
  }

  /** Ends every open Watch with UNAVAILABLE; call after the NOT_SERVING status was published. */
  endAll(): void {
    for (const call of [...this.open]) {
      call.sendStatus({ code: Status.UNAVAILABLE, details: 'server is shutting down', metadata: new Metadata() });
    }
    this.open.clear();
  }
}
