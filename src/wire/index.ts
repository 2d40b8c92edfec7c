/**
 * Protocol code that client and server share: the status <-> error table (one gRPC status per
 * error class, both directions), the fast encoders and decoders of the hot-path messages, and
 * pipelined writes on grpc-js client streams (used by annal's client and the peer transport).
 */
export { statusFromError, errorFromStatus, grpcCodeFor, ErrorMetadataKey, type StatusLike } from './status.js';
export {
  decodeConsumeRequest,
  decodeConsumeResponseFast,
  decodeProduceBatchRequestFast,
  decodeProduceBatchResponseFast,
  decodeProduceRequestFast,
  decodeProduceResponseFast,
  type WideConsumeRequest,
} from './decode.js';
export { encodeConsumeResponse, encodeProduceBatchRequest, encodeProduceBatchResponse, encodeProduceRequest, encodeProduceResponse } from './encode.js';
export { enablePipelinedWrites } from './pipelined-writes.js';
