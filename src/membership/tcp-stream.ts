/**
 * memberlist's TCP side: one message per connection, optionally inside an encrypted frame. This
 * file reads one message from a socket (bounded by size and a deadline), writes one, and runs the
 * initiator's half of a push/pull exchange.
 */
import { type Socket, connect } from 'node:net';
import { type Address } from './address.js';
import { MessageType } from './messages.js';
import { type StreamMessage, encryptedFrameHeader, parseEncryptedFrame, parseStream, streamBytesMax } from './framing.js';
import { type Keyring } from './transport-keyring.js';

export type StreamRead = { readonly ok: true; readonly message: StreamMessage } | { readonly ok: false; readonly reason: string };

/** Parses what has arrived so far: a whole message, `undefined` for "need more", or a failure. */
function tryParse(bytes: Uint8Array, keyring: Keyring | undefined): StreamRead | undefined {
  if (bytes.length === 0) return undefined;
  if (keyring) {
    if (bytes[0] !== MessageType.encrypt) {
      const plain = parseStream(bytes);
      const what = plain.status === 'ok' && plain.message.type === 'error' ? ` (it says: ${plain.message.error})` : '';
      return { ok: false, reason: `peer sent an unencrypted stream but we have an encryption key; is the cluster using -encrypt?${what}` };
    }
    const frame = parseEncryptedFrame(bytes);
    if (frame.status === 'need-more') return undefined;
    if (frame.status === 'invalid') return { ok: false, reason: frame.reason };
    const plain = keyring.decrypt(frame.blob, frame.header);
    if (!plain) return { ok: false, reason: 'could not decrypt the peer\'s stream with any of our keys (different encryption key?)' };
    const parsed = parseStream(plain);
    if (parsed.status === 'ok') return { ok: true, message: parsed.message };
    return { ok: false, reason: parsed.status === 'invalid' ? parsed.reason : 'truncated message inside encryption' };
  }
  if (bytes[0] === MessageType.encrypt) {
    return { ok: false, reason: 'peer sent an encrypted stream but we have no encryption key; the cluster uses -encrypt, so set encryptKey' };
  }
  const parsed = parseStream(bytes);
  if (parsed.status === 'need-more') return undefined;
  if (parsed.status === 'invalid') return { ok: false, reason: parsed.reason };
  return { ok: true, message: parsed.message };
}

/** Reads one message from `socket`, failing on close, overflow or the deadline. */
export function readStreamMessage(socket: Socket, keyring: Keyring | undefined, timeoutMs: number): Promise<StreamRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let done = false;
    const finish = (result: StreamRead): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (length > streamBytesMax + 5) return finish({ ok: false, reason: `stream larger than ${streamBytesMax} bytes` });
      const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      chunks.length = 0;
      chunks.push(bytes);
      const parsed = tryParse(bytes, keyring);
      if (parsed) finish(parsed);
    };
    const onEnd = (): void => finish({ ok: false, reason: length === 0 ? 'connection closed without a reply' : 'connection closed mid-message' });
    const onError = (error: Error): void => finish({ ok: false, reason: error.message });
    const timer = setTimeout(() => finish({ ok: false, reason: `no complete message within ${timeoutMs} ms` }), timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  });
}

/** Frames (and encrypts, with a keyring) one stream message. */
export function frameStream(plain: Uint8Array, keyring: Keyring | undefined): Uint8Array {
  if (!keyring) return plain;
  // The AAD is the frame header, whose length field covers the encrypted blob (29 bytes of overhead).
  const header = encryptedFrameHeader(plain.length + 29);
  const blob = keyring.encrypt(plain, header);
  return Buffer.concat([header, blob]);
}

/** Connects, writes `request`, reads one reply. Always closes the socket. */
export async function exchange(to: Address, request: Uint8Array, keyring: Keyring | undefined, timeoutMs: number): Promise<StreamRead> {
  const socket = connect({ host: to.host, port: to.port });
  socket.setNoDelay(true);
  try {
    const connected = await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(`connect timed out after ${timeoutMs} ms`), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        resolve(error.message);
      });
    });
    if (connected) return { ok: false, reason: connected };
    const reply = readStreamMessage(socket, keyring, timeoutMs);
    socket.write(frameStream(request, keyring));
    return await reply;
  } finally {
    socket.destroy();
  }
}
