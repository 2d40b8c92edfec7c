/**
 * Protocol code that client and server share: the status <-> error table (one gRPC status per
 * error class, both directions) and the fast encoders and decoders of the hot-path messages.
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
