/**
 * Message byte counts for the access log and the bytes counters. Interceptors see decoded
 * messages, not bytes, and re-encoding a message only to measure it would double the encoding
 * cost; so the service definition's own (de)serializers note each message's encoded size in a
 * WeakMap keyed by the message object, and the interceptor looks it up.
 *
 * Wrap a service definition once, before `server.addService`:
 *   server.addService(measureMessageSizes(ServedLogService), handlers);
 * Methods of unwrapped services (health, reflection) report 0 bytes.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';

const sizes = new WeakMap<object, number>();

/** The encoded size of a message that went through a measured (de)serializer; 0 when unknown. */
export function messageSizeBytes(message: unknown): number {
  return typeof message === 'object' && message !== null ? (sizes.get(message) ?? 0) : 0;
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
        if (typeof message === 'object' && message !== null) sizes.set(message, bytes.length);
        return message;
      },
      responseSerialize: (message: unknown) => {
        const bytes = responseSerialize(message);
        if (typeof message === 'object' && message !== null) sizes.set(message, bytes.length);
        return bytes;
      },
    };
  }
  return measured as T;
}
