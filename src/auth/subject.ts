/**
 * The authenticated subject of a call: the Common Name of the verified client certificate.
 * grpc-js (>= 1.10) exposes the TLS peer through `call.getAuthContext()`, which is empty unless
 * the connection is TLS and the peer certificate verified (`socket.authorized`).
 */
import type { PeerCertificate } from 'node:tls';

/** What grpc-js's AuthContext carries; kept structural so callers need not import its internals. */
export interface CallAuthContext {
  transportSecurityType?: string;
  sslPeerCertificate?: PeerCertificate;
}

/** The CN, or undefined without a verified certificate, with no CN, or with several CNs. */
export function subjectOfAuthContext(context: CallAuthContext | null | undefined): string | undefined {
  const commonName: unknown = context?.sslPeerCertificate?.subject?.CN;
  if (typeof commonName !== 'string' || commonName.length === 0) return undefined;
  return commonName;
}

/** The subject of a grpc-js server call (unary, streaming, or an intercepting call). */
export function subjectOfCall(call: { getAuthContext(): CallAuthContext | null }): string | undefined {
  // grpc-js throws here for a TLS socket destroyed meanwhile (it reads a null peer certificate).
  let context: CallAuthContext | null;
  try {
    context = call.getAuthContext();
  } catch {
    return undefined;
  }
  return subjectOfAuthContext(context);
}
