/**
 * The bounds every connection meets before grpc-js sees it: at most `connectionsMax` open
 * connections, at most `connectionsPerAddressMax` from one remote address, and a deadline by
 * which the client must have finished its TLS handshake (on a TLS listener) and sent the HTTP/2
 * client connection preface (RFC 9113 §3.4: the 24-byte magic, then a SETTINGS frame). grpc-js
 * and Node's HTTP/2 server put no time limit on a connection that never speaks HTTP/2, so
 * without this a socket that sends nothing (or only part of the preface) holds a file descriptor
 * for as long as the client likes.
 *
 * The deadline is absolute from the TCP accept, not an idle timeout, so a client cannot stretch
 * it by trickling one byte at a time. The preface is read here and pushed back (`unshift`) before
 * the socket is handed on; Node's HTTP/2 session consumes bytes already buffered on a socket.
 * Refusals and timeouts are logged one line each through a RateLimitedLog.
 */
import type { Socket } from 'node:net';
import type { RateLimitedLog } from './logger.js';

export interface ConnectionLimits {
  /** Open connections at most, counted from the TCP accept; more are closed at once. */
  connectionsMax: number;
  /** Open connections from one remote IP address at most. */
  connectionsPerAddressMax: number;
  /** A connection that has not sent the HTTP/2 preface (after its TLS handshake) by then is closed. */
  prefaceTimeoutMs: number;
}

/**
 * Defaults: far below a typical file-descriptor limit, far above what clients of one node need
 * (a client keeps one connection per channel); 10 s is ample for a handshake and the preface.
 */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  connectionsMax: 8192,
  connectionsPerAddressMax: 1024,
  prefaceTimeoutMs: 10_000,
});

/** The HTTP/2 client connection preface magic (RFC 9113 §3.4). */
const PREFACE_MAGIC = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_BYTES = 9;
const FRAME_TYPE_SETTINGS = 0x4;
const FLAG_ACK = 0x1;
/** Each setting is 6 bytes; a first SETTINGS frame larger than this is not from a real client. */
const SETTINGS_PAYLOAD_BYTES_MAX = 1024;

export type PrefaceState = 'complete' | 'partial' | 'invalid';

/**
 * Whether `bytes` begin with a whole client preface (the magic and a SETTINGS frame), could
 * still become one with more bytes, or cannot.
 */
export function prefaceState(bytes: Buffer): PrefaceState {
  const magicBytes = Math.min(bytes.length, PREFACE_MAGIC.length);
  if (bytes.compare(PREFACE_MAGIC, 0, magicBytes, 0, magicBytes) !== 0) return 'invalid';
  const header = PREFACE_MAGIC.length;
  if (bytes.length < header + FRAME_HEADER_BYTES) return 'partial';
  const payloadBytes = bytes.readUIntBE(header, 3);
  const type = bytes[header + 3]!;
  const flags = bytes[header + 4]!;
  const streamId = bytes.readUInt32BE(header + 5) & 0x7fff_ffff;
  if (type !== FRAME_TYPE_SETTINGS || (flags & FLAG_ACK) !== 0 || streamId !== 0) return 'invalid';
  if (payloadBytes % 6 !== 0 || payloadBytes > SETTINGS_PAYLOAD_BYTES_MAX) return 'invalid';
  return bytes.length >= header + FRAME_HEADER_BYTES + payloadBytes ? 'complete' : 'partial';
}

interface Admission {
  socket: Socket;
  address: string;
  timer: NodeJS.Timeout;
  /** Set once the preface is awaited (after the TLS handshake on a TLS listener). */
  awaitingPreface: boolean;
  /** Set once the preface arrived and the socket was handed on. */
  admitted: boolean;
}

export interface ConnectionGateOptions {
  limits: ConnectionLimits;
  log: RateLimitedLog;
  /** What comes before the preface on this listener, for the timeout's log line. */
  tls: boolean;
}

export class ConnectionGate {
  /** Open connections by peerKey. Invariant: admissions.size is the sum of perAddress's values. */
  private readonly admissions = new Map<string, Admission>();
  private readonly perAddress = new Map<string, number>();

  constructor(private readonly options: ConnectionGateOptions) {
    const { connectionsMax, connectionsPerAddressMax, prefaceTimeoutMs } = options.limits;
    for (const [name, value] of Object.entries({ connectionsMax, connectionsPerAddressMax, prefaceTimeoutMs })) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
    if (prefaceTimeoutMs > 2_147_483_647) throw new RangeError('prefaceTimeoutMs must fit a timer (at most 2147483647)');
  }

  /** Connections accepted and not yet closed (before and after the preface). */
  get openCount(): number {
    return this.admissions.size;
  }

  /**
   * For a listener's 'connection' event: counts the socket and starts its deadline, or closes it
   * (and returns false) when a limit is reached.
   */
  accept(socket: Socket): boolean {
    const address = socket.remoteAddress ?? '?';
    const key = peerKey(socket);
    const { connectionsMax, connectionsPerAddressMax, prefaceTimeoutMs } = this.options.limits;
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (key === undefined) {
      socket.destroy(); // already closed by the client
      return false;
    }
    let refusal: string | undefined;
    if (this.admissions.size >= connectionsMax) {
      refusal = `the node already holds ${openConnections(this.admissions.size)}, its limit (connectionsMax ${connectionsMax})`;
    } else if (fromAddress >= connectionsPerAddressMax) {
      refusal = `${address} already holds ${openConnections(fromAddress)}, the limit per address (connectionsPerAddressMax ${connectionsPerAddressMax})`;
    }
    if (refusal !== undefined) {
      this.options.log.warn({ remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }, `refused connection: ${refusal}`);
      socket.destroy();
      return false;
    }
    const admission: Admission = {
      socket,
      address,
      timer: setTimeout(() => this.expire(admission), prefaceTimeoutMs),
      awaitingPreface: false,
      admitted: false,
    };
    admission.timer.unref();
    this.admissions.set(key, admission);
    this.perAddress.set(address, fromAddress + 1);
    socket.once('close', () => this.release(key, admission));
    return true;
  }

  /**
   * Reads the HTTP/2 client preface from `stream` (the accepted socket, or the TLS socket on top
   * of it), leaves it unread, and calls `admitted`. A stream that sends anything else is closed
   * with one log line; one that is too slow is closed by the deadline set in `accept`.
   */
  awaitPreface(stream: Socket, admitted: () => void): void {
    const key = peerKey(stream);
    const admission = key === undefined ? undefined : this.admissions.get(key);
    if (admission === undefined) {
      stream.destroy(); // closed meanwhile, or never accepted through this gate
      return;
    }
    admission.awaitingPreface = true;
    const chunks: Buffer[] = [];
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) chunks.push(chunk);
      const received = Buffer.concat(chunks);
      const state = prefaceState(received);
      if (state === 'partial') return;
      stream.off('readable', onReadable);
      if (state === 'invalid') {
        this.options.log.warn(
          { remoteAddress: stream.remoteAddress, remotePort: stream.remotePort },
          'refused connection: not an HTTP/2 client (no HTTP/2 client preface); gRPC needs HTTP/2',
        );
        stream.destroy();
        return;
      }
      clearTimeout(admission.timer);
      admission.admitted = true;
      stream.unshift(received);
      admitted();
    };
    stream.on('readable', onReadable);
  }

  /** Closes every connection still waiting for its preface (shutdown; admitted ones end with grpc-js). */
  closePending(): void {
    for (const admission of this.admissions.values()) {
      if (!admission.admitted) admission.socket.destroy();
    }
  }

  private expire(admission: Admission): void {
    const { socket } = admission;
    const stage = this.options.tls && !admission.awaitingPreface ? 'the TLS handshake' : 'the HTTP/2 preface';
    const timeoutMs = this.options.limits.prefaceTimeoutMs;
    this.options.log.warn(
      { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, timeoutMs },
      `closed connection: ${stage} did not finish in time (${timeoutMs} ms from connect)`,
    );
    socket.destroy();
  }

  private release(key: string, admission: Admission): void {
    clearTimeout(admission.timer);
    if (this.admissions.get(key) !== admission) return;
    this.admissions.delete(key);
    const left = (this.perAddress.get(admission.address) ?? 1) - 1;
    if (left === 0) this.perAddress.delete(admission.address);
    else this.perAddress.set(admission.address, left);
  }
}

function openConnections(count: number): string {
  return count === 1 ? '1 open connection' : `${count} open connections`;
}

/** A TCP connection's identity as both the raw socket and a TLS socket on it report it. */
function peerKey(socket: Socket): string | undefined {
  if (socket.remoteAddress === undefined || socket.remotePort === undefined) return undefined;
  return `${socket.remoteAddress}|${socket.remotePort}`;
}
