/**
 * Coalesced response writes for grpc-js server streams.
 *
 * A grpc-js server stream is a Writable with only `_write`: it hands one message to the call and
 * waits for that message's HTTP/2 write callback, which fires after the socket write, before it
 * hands on the next. A burst of responses (the acknowledgements of one group commit, a chunk of
 * records for a consumer) therefore leaves as one socket write per message, and over TLS as one
 * TLS record per message, each a separate encryption, syscall and event-loop turn: strace showed
 * two 39-byte TLS records per loop iteration for a produce stream.
 *
 * `coalesceWrites` gives the stream a `_writev`, so everything buffered while a write is in
 * flight goes to the call at once; the HTTP/2 stream then sends it in one socket write (one
 * writev; under TLS, records of up to 16 KiB). Order, backpressure (`write` returning false,
 * 'drain') and the interceptors are unchanged: every message still passes through the call's
 * interceptors one after the other, in order.
 *
 * This relies on two facts about grpc-js (1.10 to 1.14) checked here at run time: the stream
 * object keeps its call in `call` with a `sendMessage(message, callback)`, and interceptors that
 * pass messages and metadata on synchronously (every interceptor annal installs does; a call
 * still sending its metadata asynchronously would hold only one pending message). A grpc-js
 * without that shape keeps its one-at-a-time writes.
 */
import type { Writable } from 'node:stream';

interface MessageSink {
  sendMessage(message: unknown, callback: (error?: Error | null) => void): void;
}

type WritevChunks = { chunk: unknown }[];
type WithWritev = Writable & { _writev?: (chunks: WritevChunks, callback: (error?: Error | null) => void) => void };

/** Lets `stream` (a grpc-js ServerWritableStream or ServerDuplexStream) write buffered messages at once. */
export function coalesceWrites(stream: Writable): void {
  const sink = (stream as unknown as { call?: Partial<MessageSink> }).call;
  if (sink === undefined || typeof sink.sendMessage !== 'function') return;
  const send = sink.sendMessage.bind(sink) as MessageSink['sendMessage'];
  (stream as WithWritev)._writev = (chunks, callback) => {
    let pending = chunks.length;
    const written = (): void => {
      pending--;
      if (pending === 0) callback();
    };
    for (const { chunk } of chunks) send(chunk, written);
  };
}
