/** The baseline service of bench/grpc.ts: raw bytes in and out, no protobuf, no storage. */
const identity = (bytes: Buffer): Buffer => bytes;

export const ECHO_SERVICE = {
  echo: { path: '/bench.Echo/Echo', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  ack: { path: '/bench.Echo/Ack', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
} as const;
