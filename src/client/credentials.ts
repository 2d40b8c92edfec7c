/**
 * How a client secures its channel. Plaintext must be asked for explicitly (`{ insecure: true }`),
 * mirroring the agent's `--insecure`; TLS takes PEM bytes (a CA to verify the server, and a client
 * certificate and key for mutual TLS, which a node serving mTLS requires).
 */
import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { InvalidArgumentError } from '../util/index.js';

export interface TlsClientOptions {
  /** PEM of the CA that signed the server's certificate; the system roots when omitted. */
  caPem?: Buffer;
  /** PEM client certificate and key for mutual TLS (both or neither). */
  certPem?: Buffer;
  keyPem?: Buffer;
}

export type ClientSecurity = { insecure: true } | { tls: TlsClientOptions };

export function channelCredentials(security: ClientSecurity): ChannelCredentials {
  if ('insecure' in security) return grpcCredentials.createInsecure();
  const { caPem, certPem, keyPem } = security.tls;
  if ((certPem === undefined) !== (keyPem === undefined)) {
    throw new InvalidArgumentError('a TLS client certificate needs its key and the key its certificate');
  }
  return grpcCredentials.createSsl(caPem ?? null, keyPem ?? null, certPem ?? null);
}
