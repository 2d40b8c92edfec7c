/**
 * The `log.v1.Log` service definition the server registers: the generated ts-proto codecs, with
 * two changes.
 *
 * - Requests that fail to decode become a `DecodeFailure` value instead of an exception. grpc-js
 *   answers a throwing deserializer with INTERNAL "Error deserializing request"; malformed input is
 *   the client's fault, so handlers answer INVALID_ARGUMENT with the decoder's reason instead.
 * - Responses are serialized without the generated code's extra copy (`Buffer.from(Uint8Array)`
 *   copies; the writer's output is fresh, so wrapping it is safe), and ConsumeResponse, the
 *   consumer's hot path, and ProduceResponse with the single-buffer encoders of wire/encode.ts;
 *   ConsumeResponses into one reused buffer (see lendResponseScratch).
 * - ProduceRequests in the canonical shape take the fast path of wire/decode.ts.
 * - ConsumeRequests keep an offset above 2^53 - 1 exact (a bigint) instead of failing to decode,
 *   so that it is answered OUT_OF_RANGE like any other offset past the log's end.
 */
import type { MessageFns } from '../gen/log/v1/log.js';
import {
  GetServersRequest,
  GetServersResponse,
  LogService,
  ProduceBatchRequest,
  ProduceRequest,
} from '../gen/log/v1/log.js';
import { decodeConsumeRequest, decodeProduceBatchRequestFast, decodeProduceRequestFast } from '../wire/index.js';
import { encodeConsumeResponse, encodeProduceBatchResponse, encodeProduceResponse } from '../wire/index.js';

/** A request whose bytes are not a valid protobuf encoding of the expected message. */
export class DecodeFailure {
  constructor(
    readonly messageName: string,
    readonly reason: string,
  ) {}
}

export function safeDecoder<T>(codec: Pick<MessageFns<T>, 'decode'>, messageName: string): (bytes: Buffer) => T | DecodeFailure {
  return (bytes) => {
    try {
      return codec.decode(bytes);
    } catch (error) {
      return new DecodeFailure(messageName, error instanceof Error ? error.message : String(error));
    }
  };
}

export function wrappingEncoder<T>(codec: MessageFns<T>): (message: T) => Buffer {
  return (message) => {
    const bytes = codec.encode(message).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/**
 * One buffer that ConsumeResponses are encoded into, reused from one response to the next. The
 * server side of grpc-js serializes a response and copies it into the frame it sends (behind
 * the 5-byte message prefix) in one synchronous step, so an encoding is dead once its serializer
 * returns. A fresh buffer per batch (about a megabyte at max_batch 1000 of 1 KiB) was external
 * memory that V8 counts toward full collections: about 30 % of the server's CPU per batched record.
 * An encoding larger than RESPONSE_SCRATCH_BYTES_MAX gets a buffer of its own, so the scratch
 * stays bounded. server.test.ts "keeps the responses a stalled stream has queued intact..." fails
 * if grpc-js ever keeps the serializer's buffer instead of copying it.
 */
const RESPONSE_SCRATCH_BYTES_MAX = 8 * 1024 * 1024;
let responseScratch = Buffer.allocUnsafe(0);

function lendResponseScratch(sizeBytes: number): Buffer {
  if (sizeBytes > RESPONSE_SCRATCH_BYTES_MAX) return Buffer.allocUnsafe(sizeBytes);
  if (sizeBytes > responseScratch.length) responseScratch = Buffer.allocUnsafe(Math.min(RESPONSE_SCRATCH_BYTES_MAX, Math.max(sizeBytes, 2 * responseScratch.length)));
  return responseScratch.subarray(0, sizeBytes);
}

const encodeConsumeResponseTransient = (message: Parameters<typeof encodeConsumeResponse>[0]): Buffer => encodeConsumeResponse(message, lendResponseScratch);

/** The canonical ProduceRequest through the fast path, anything else through ts-proto. */
const consumeRequestCodec = { decode: decodeConsumeRequest };

const decodeProduceRequest = ((safe) => (bytes: Buffer) => decodeProduceRequestFast(bytes) ?? safe(bytes))(
  safeDecoder(ProduceRequest, 'log.v1.ProduceRequest'),
);

const decodeProduceBatchRequest = ((safe) => (bytes: Buffer) => decodeProduceBatchRequestFast(bytes) ?? safe(bytes))(
  safeDecoder(ProduceBatchRequest, 'log.v1.ProduceBatchRequest'),
);

/** LogService with safe request decoding and copy-free response encoding. */
export const ServedLogService = {
  produce: {
    ...LogService.produce,
    requestDeserialize: decodeProduceRequest,
    responseSerialize: encodeProduceResponse,
  },
  consume: {
    ...LogService.consume,
    requestDeserialize: safeDecoder(consumeRequestCodec, 'log.v1.ConsumeRequest'),
    responseSerialize: encodeConsumeResponseTransient,
  },
  consumeStream: {
    ...LogService.consumeStream,
    requestDeserialize: safeDecoder(consumeRequestCodec, 'log.v1.ConsumeRequest'),
    responseSerialize: encodeConsumeResponseTransient,
  },
  produceStream: {
    ...LogService.produceStream,
    requestDeserialize: decodeProduceRequest,
    responseSerialize: encodeProduceResponse,
  },
  getServers: {
    ...LogService.getServers,
    requestDeserialize: safeDecoder(GetServersRequest, 'log.v1.GetServersRequest'),
    responseSerialize: wrappingEncoder(GetServersResponse),
  },
  produceBatch: {
    ...LogService.produceBatch,
    requestDeserialize: decodeProduceBatchRequest,
    responseSerialize: encodeProduceBatchResponse,
  },
} as const;
