/**
 * A grpc-js server interceptor that authorizes every call before its handler runs.
 *
 * The decision is made when the call's metadata arrives, which is before the handler is invoked
 * for every kind of RPC, so a denied unary call never reaches the service and a denied stream is
 * refused at open (later messages on an allowed stream are not re-checked). A denied call is
 * answered with PERMISSION_DENIED naming the subject and the action; a call without a verified
 * client certificate (possible only if the listener were misconfigured) with UNAUTHENTICATED.
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
import { subjectOfAuthContext } from './subject.js';

/**
 * The actions `log.v1.Log` needs (ARCHITECTURE.md, Authorization), and `annal.admin.v1.Admin`'s:
 * GetMembers reveals the topology that GetServers reveals too, so it needs `consume` as well.
 */
export const LOG_METHOD_ACTIONS: ReadonlyMap<string, Action> = new Map([
  ['/log.v1.Log/Produce', Action.Produce],
  ['/log.v1.Log/ProduceStream', Action.Produce],
  ['/log.v1.Log/ProduceBatch', Action.Produce],
  ['/log.v1.Log/Consume', Action.Consume],
  ['/log.v1.Log/ConsumeStream', Action.Consume],
  ['/log.v1.Log/GetServers', Action.Consume],
  ['/annal.admin.v1.Admin/GetMembers', Action.Consume],
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
  methodActions?: ReadonlyMap<string, Action>;
  openServices?: ReadonlySet<string>;
  logger: AuthLogger;
}

export function createAclInterceptor(options: AclInterceptorOptions): ServerInterceptor {
  const methodActions = options.methodActions ?? LOG_METHOD_ACTIONS;
  const openServices = options.openServices ?? OPEN_SERVICES;
  const deniedLog = new RateLimitedLog(options.logger, { linesPerWindowMax: 20, windowMs: 10_000 });
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const path = method.path;
    const service = serviceOf(path);
    if (openServices.has(service)) return new ServerInterceptingCall(call);
    const action = methodActions.get(path) ?? methodActions.get(`/${service}/*`);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata: Metadata, nextMetadata: (metadata: Metadata) => void) => {
            const refusal = decide(options.authorizer, call, action);
            if (refusal === undefined) {
              nextMetadata(metadata);
              return;
            }
            deniedLog.warn({ method: path, peer: call.getPeer(), ...refusal.fields }, refusal.details);
            call.sendStatus({ code: refusal.code, details: refusal.details, metadata: new Metadata() });
          },
        });
      },
    });
  };
}

interface Refusal {
  code: Status;
  details: string;
  fields: object;
}

function decide(authorizer: Authorizer, call: ServerInterceptingCallInterface, action: Action | undefined): Refusal | undefined {
  const subject = subjectOfAuthContext(call.getAuthContext());
  if (subject === undefined) {
    return { code: Status.UNAUTHENTICATED, details: 'no verified client certificate with a Common Name', fields: {} };
  }
  if (action === undefined) {
    return { code: Status.PERMISSION_DENIED, details: `subject "${subject}": this method has no ACL action, so it is denied`, fields: { subject } };
  }
  if (authorizer.isAllowed(subject, ANY_OBJECT, action)) return undefined;
  return {
    code: Status.PERMISSION_DENIED,
    details: `subject "${subject}" is not permitted to ${action} on "${ANY_OBJECT}"`,
    fields: { subject, action },
  };
}

function serviceOf(path: string): string {
  const end = path.indexOf('/', 1);
  return end < 0 ? path.slice(1) : path.slice(1, end);
}
