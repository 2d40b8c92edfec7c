/**
 * A grpc-js server interceptor that authorizes every call before its handler runs.
 *
 * The decision is made when the call's metadata arrives, which is before the handler is invoked
 * for every kind of RPC, so a denied unary call never reaches the service and a denied stream is
 * refused at open. A denied call is answered with PERMISSION_DENIED naming the subject and the
 * action; a call without a verified client certificate (possible only if the listener were
 * misconfigured) with UNAUTHENTICATED.
 *
 * Streams are re-checked when the policy changes (Authorizer.onReplace): an open stream whose
 * subject lost its action ends at once with PERMISSION_DENIED, messages it sends after that are
 * dropped before the handler, and the handler sees the call cancelled. Requests the handler
 * received before the change may still complete (an append already started is not undone),
 * but their answers are not sent. Unary calls already running finish under the policy they
 * started with.
 *
 * Fail closed: a method that is neither in the action table nor in an open service is denied, so
 * an RPC added later without an ACL entry cannot slip through.
 */
import {
  Metadata,
  ServerInterceptingCall,
  status as Status,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
} from '@grpc/grpc-js';
import { Action, ANY_OBJECT, type Authorizer } from './authorizer.js';
import { RateLimitedLog, type AuthLogger } from './logger.js';
import { subjectOfCall } from './subject.js';

/** What a method needs: one action, or any one of several. */
export type MethodPermission = Action | readonly Action[];

/**
 * Discovery (GetServers, and the Admin service's GetMembers, which reveals the same topology):
 * any subject allowed to use the log at all. A client needs the server list to find the leader,
 * whatever it is allowed to do there, and the list names only addresses that subject can already
 * reach; a produce-only identity would otherwise be kept off the cluster-aware client.
 */
export const DISCOVERY: MethodPermission = [Action.Produce, Action.Consume, Action.Replicate];

/** The actions `log.v1.Log` needs (docs/security.md, Authorization), and `annal.admin.v1.Admin`'s. */
export const LOG_METHOD_ACTIONS: ReadonlyMap<string, MethodPermission> = new Map<string, MethodPermission>([
  ['/log.v1.Log/Produce', Action.Produce],
  ['/log.v1.Log/ProduceStream', Action.Produce],
  ['/log.v1.Log/ProduceBatch', Action.Produce],
  ['/log.v1.Log/Consume', Action.Consume],
  ['/log.v1.Log/ConsumeStream', Action.Consume],
  ['/log.v1.Log/GetServers', DISCOVERY],
  ['/annal.admin.v1.Admin/GetMembers', DISCOVERY],
]);

/** Services any authenticated connection may call: probes and tooling. */
export const OPEN_SERVICES: ReadonlySet<string> = new Set([
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
]);

export interface AclInterceptorOptions {
  authorizer: Authorizer;
  /**
   * Action per method: a full path ("/log.v1.Log/Produce") or a whole service ("/pkg.Service/*").
   * Default LOG_METHOD_ACTIONS.
   */
  methodActions?: ReadonlyMap<string, MethodPermission>;
  openServices?: ReadonlySet<string>;
  logger: AuthLogger;
}

/** An allowed stream that is still open, re-checked on every policy change. */
type OutgoingStatus = Parameters<ServerInterceptingCallInterface['sendStatus']>[0];

interface OpenStream {
  subject: string;
  permission: MethodPermission;
  /** Ends the stream with PERMISSION_DENIED (the policy no longer allows it). */
  revoke(): void;
}

export function createAclInterceptor(options: AclInterceptorOptions): ServerInterceptor {
  const methodActions = options.methodActions ?? LOG_METHOD_ACTIONS;
  const openServices = options.openServices ?? OPEN_SERVICES;
  const deniedLog = new RateLimitedLog(options.logger, { linesPerWindowMax: 20, windowMs: 10_000 });
  const openStreams = new Set<OpenStream>();
  options.authorizer.onReplace(() => {
    for (const stream of openStreams) {
      if (!allows(options.authorizer, stream.subject, stream.permission)) stream.revoke();
    }
  });
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const path = method.path;
    const service = serviceOf(path);
    if (openServices.has(service)) return new ServerInterceptingCall(call);
    const action = methodActions.get(path) ?? methodActions.get(`/${service}/*`);
    const streaming = method.requestStream || method.responseStream;
    let open: OpenStream | undefined;
    let revoked = false;
    const close = (): void => {
      if (open !== undefined) openStreams.delete(open);
    };
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata: Metadata, nextMetadata: (metadata: Metadata) => void) => {
            const refusal = decide(options.authorizer, call, action);
            if (refusal === undefined) {
              if (streaming) {
                const subject = subjectOfCall(call)!;
                open = {
                  subject,
                  permission: action!,
                  revoke: () => {
                    revoked = true;
                    close();
                    const details = `subject "${subject}" is no longer permitted to ${named(action!)} on "${ANY_OBJECT}": the ACL changed while the stream was open`;
                    deniedLog.warn({ method: path, peer: call.getPeer(), subject, action: named(action!) }, `ended an open stream: ${details}`);
                    call.sendStatus({ code: Status.PERMISSION_DENIED, details, metadata: new Metadata() });
                  },
                };
                openStreams.add(open);
              }
              nextMetadata(metadata);
              return;
            }
            deniedLog.warn({ method: path, peer: call.getPeer(), ...refusal.fields }, refusal.details);
            call.sendStatus({ code: refusal.code, details: refusal.details, metadata: new Metadata() });
          },
          // Nothing a revoked stream sends reaches the handler.
          onReceiveMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
            if (!revoked) nextMessage(message);
          },
          onCancel: close,
        });
      },
      // The handler's answers after a revocation are dropped: the call has its status.
      sendMessage: (message: unknown, nextMessage: (message: unknown) => void) => {
        if (!revoked) nextMessage(message);
      },
      sendStatus: (status: OutgoingStatus, nextStatus: (status: OutgoingStatus) => void) => {
        close();
        if (!revoked) nextStatus(status);
      },
    });
  };
}

interface Refusal {
  code: Status;
  details: string;
  fields: object;
}

function decide(authorizer: Authorizer, call: ServerInterceptingCallInterface, action: MethodPermission | undefined): Refusal | undefined {
  const subject = subjectOfCall(call);
  if (subject === undefined) {
    return { code: Status.UNAUTHENTICATED, details: 'no verified client certificate with a Common Name', fields: {} };
  }
  if (action === undefined) {
    return { code: Status.PERMISSION_DENIED, details: `subject "${subject}": this method has no ACL action, so it is denied`, fields: { subject } };
  }
  if (allows(authorizer, subject, action)) return undefined;
  return {
    code: Status.PERMISSION_DENIED,
    details: `subject "${subject}" is not permitted to ${named(action)} on "${ANY_OBJECT}"`,
    fields: { subject, action: named(action) },
  };
}

function allows(authorizer: Authorizer, subject: string, permission: MethodPermission): boolean {
  if (typeof permission === 'string') return authorizer.isAllowed(subject, ANY_OBJECT, permission);
  return permission.some((action) => authorizer.isAllowed(subject, ANY_OBJECT, action));
}

/** "produce", or "produce, consume or replicate". */
function named(permission: MethodPermission): string {
  if (typeof permission === 'string') return permission;
  return permission.length === 1 ? permission[0]! : `${permission.slice(0, -1).join(', ')} or ${permission[permission.length - 1]}`;
}

function serviceOf(path: string): string {
  const end = path.indexOf('/', 1);
  return end < 0 ? path.slice(1) : path.slice(1, end);
}
