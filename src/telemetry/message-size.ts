/**
 * Message byte counts for the access log and the bytes counters. Interceptors see decoded
 * messages, not bytes, and re-encoding a message only to measure it would double the encoding
 * cost; so the service definition's own (de)serializers note each message's encoded size:
 *
 * - a request's size goes on the decoded object under a private symbol (a fresh object from the
 *   decoder; a WeakMap keyed by message was the largest telemetry cost in a ProduceStream profile);
 * - a response's size goes into `lastSerializedBytes`: grpc-js serializes synchronously inside
 *   the interceptor's `next(message)`, so the interceptor reads it right after that call. If
 *   another interceptor deferred the send, the size is unknown and counted as 0.
 *
 * Wrap a service definition once, before `server.addService`:
 *   server.addService(measureMessageSizes(ServedLogService), handlers);
 * Methods of unwrapped services (health, reflection) report 0 bytes.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';

const SIZE_BYTES: unique symbol = Symbol('annal.messageSizeBytes');

interface Sized {
  [SIZE_BYTES]?: number;
}

/** Size of the response serialized last; -1 once read. */
let lastSerializedBytes = -1;

/** The encoded size of a request that went through a measured deserializer; 0 when unknown. */
export function requestSizeBytes(message: unknown): number {
  return typeof message === 'object' && message !== null ? ((message as Sized)[SIZE_BYTES] ?? 0) : 0;
}

/** Call right before handing one response to grpc-js (which serializes it synchronously). */
export function expectSerialization(): void {
  lastSerializedBytes = -1;
}

/** The encoded size of the response serialized since `expectSerialization`; 0 when none was measured. */
export function serializedSizeBytes(): number {
  const sizeBytes = lastSerializedBytes;
  lastSerializedBytes = -1;
  return sizeBytes < 0 ? 0 : sizeBytes;
}

/** The same service definition with (de)serializers that record each message's encoded size. */
export function measureMessageSizes<T extends ServiceDefinition>(definition: T): T {
  const measured: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const { requestDeserialize, responseSerialize } = method;
    measured[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        const message: unknown = requestDeserialize(bytes);
        if (typeof message === 'object' && message !== null) {
          try {
            (message as Sized)[SIZE_BYTES] = bytes.length;
          } catch {
            // A frozen message (not what decoders return): its size stays unknown.
          }
        }
        return message;
      },
      responseSerialize: (message: unknown) => {
        const bytes = responseSerialize(message);
        lastSerializedBytes = bytes.length;
        return bytes;
      },
    };
  }
  return measured as T;
}
