/**
 * Pipelined writes on grpc-js client streams.
 *
 * grpc-js passes every client call through a RetryingCall (even with retries off), which hands a
 * stream's next message to HTTP/2 only once the previous message's write has completed. An
 * HTTP/2 stream write completes when its session has written to the socket, which Node does once
 * per event-loop turn, so a client stream carries at most one message per turn: each in its own
 * socket write and its own TLS record, whatever the application has queued, and the client's
 * event-loop turns become the bottleneck of a stream.
 *
 * `enablePipelinedWrites()` makes RetryingCall hand on every message already buffered as soon as
 * the one before it was passed to the transport, as grpc-js itself already does for the half
 * close after the last message. Nothing else changes: the HTTP/2 stream keeps the order, each
 * message's completion is still reported (and counted) when its write completes, so the retry
 * buffer is freed, a call is committed and the application's write callbacks fire exactly as
 * before; a new attempt (a transparent retry) starts from the first unfreed message as before.
 * The messages are already held by the call (its retry buffer, or its queue once committed), so
 * the memory used is the same. The same turns then carry many messages per socket write and TLS
 * record (bench/tls.ts, 1 KiB ProduceStream, 1024 in flight, fsync=always, medians: 55.6k to
 * 97.9k records/s in plaintext, 45.5k to 79.1k under mTLS).
 *
 * This patches grpc-js's internal RetryingCall prototype, so it is applied only to the grpc-js
 * version it was written against (the test fails on another one, to be checked again); it is
 * process-wide and idempotent, and a no-op when the internals are not as expected.
 */
import { createRequire } from 'node:module';

/** The grpc-js release line whose RetryingCall this was written against. */
const SUPPORTED_GRPC_JS = /^1\.14\./;

interface BufferEntry {
  entryType: 'MESSAGE' | 'HALF_CLOSE' | 'FREED';
  message?: { message: Buffer };
  callback?: () => void;
}

interface ChildCall {
  state: 'ACTIVE' | 'COMPLETED';
  nextMessageToSend: number;
  call: {
    sendMessageWithContext(context: { callback: (error?: Error) => void }, message: Buffer): void;
    halfClose(): void;
  };
}

/** Per attempt: the next buffered entry to hand to it (at least nextMessageToSend) and whether it was half closed. */
interface Dispatch {
  next: number;
  halfClosed: boolean;
}

interface RetryingCallInternals {
  underlyingCalls: ChildCall[];
  getBufferEntry(messageIndex: number): BufferEntry;
  clearSentMessages(): void;
  handleChildWriteCompleted(childIndex: number, messageIndex: number): void;
  sendNextChildMessage(childIndex: number): void;
}

const dispatches = new WeakMap<ChildCall, Dispatch>();
let state: 'unchecked' | 'enabled' | 'unsupported' = 'unchecked';

/** Applies the change once per process; whether it is in effect. */
export function enablePipelinedWrites(): boolean {
  if (state === 'unchecked') state = apply() ? 'enabled' : 'unsupported';
  return state === 'enabled';
}

function apply(): boolean {
  const require = createRequire(import.meta.url);
  let prototype: Partial<RetryingCallInternals>;
  try {
    const { version } = require('@grpc/grpc-js/package.json') as { version: string };
    if (!SUPPORTED_GRPC_JS.test(version)) return false;
    prototype = (require('@grpc/grpc-js/build/src/retrying-call.js') as { RetryingCall: { prototype: Partial<RetryingCallInternals> } }).RetryingCall.prototype;
  } catch {
    return false;
  }
  const methods = ['getBufferEntry', 'clearSentMessages', 'handleChildWriteCompleted', 'sendNextChildMessage'] as const;
  if (methods.some((name) => typeof prototype[name] !== 'function')) return false;

  prototype.handleChildWriteCompleted = function (this: RetryingCallInternals, childIndex: number, messageIndex: number): void {
    this.getBufferEntry(messageIndex).callback?.();
    this.clearSentMessages();
    const child = this.underlyingCalls[childIndex]!;
    child.nextMessageToSend += 1;
    this.sendNextChildMessage(childIndex);
  };

  prototype.sendNextChildMessage = function (this: RetryingCallInternals, childIndex: number): void {
    const child = this.underlyingCalls[childIndex]!;
    if (child.state === 'COMPLETED') return;
    let dispatch = dispatches.get(child);
    if (dispatch === undefined) {
      dispatch = { next: child.nextMessageToSend, halfClosed: false };
      dispatches.set(child, dispatch);
      // RetryingCall.halfClose may half close the attempt itself (after the last message was
      // handed on); the entry must then not be sent again from here.
      const halfClose = child.call.halfClose.bind(child.call);
      const seen = dispatch;
      child.call.halfClose = () => {
        if (seen.halfClosed) return;
        seen.halfClosed = true;
        halfClose();
      };
    }
    // A message RetryingCall sent directly (everything before it had completed) advanced
    // nextMessageToSend past `next`; never hand an entry on twice.
    dispatch.next = Math.max(dispatch.next, child.nextMessageToSend);
    for (;;) {
      const messageIndex = dispatch.next;
      const entry = this.getBufferEntry(messageIndex);
      if (entry.entryType === 'MESSAGE') {
        dispatch.next += 1;
        child.call.sendMessageWithContext({ callback: () => this.handleChildWriteCompleted(childIndex, messageIndex) }, entry.message!.message);
      } else {
        if (entry.entryType === 'HALF_CLOSE') {
          dispatch.next += 1;
          child.call.halfClose();
        }
        return;
      }
    }
  };
  return true;
}
