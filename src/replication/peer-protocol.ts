/**
 * What both ends of annal.raft.v1.Raft share: the service definition with annal's codecs, the
 * call metadata keys, and the ACL entry for the service.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { Action } from '../auth/index.js';
import {
  ForwardResponse,
  RaftService,
  ReadIndexRequest,
  ReadIndexResponse,
  StreamAck,
  type ForwardRequest as WireForwardRequest,
  type MessageBatch as WireMessageBatch,
} from '../gen/annal/raft/v1/raft.js';
import { decodeForwardRequest, decodeMessageBatch, DecodeFailure, encodeForwardRequest } from './peer-wire.js';

export const RAFT_SERVICE_NAME = 'annal.raft.v1.Raft';

/** Call metadata every peer call carries. */
export const PeerMetadataKey = {
  /** The sender's node id. */
  from: 'annal-from',
  /** The sender's cluster id; empty when it has none yet. */
  clusterId: 'annal-cluster-id',
} as const;

/** ACL method table entry: every /annal.raft.v1.Raft/* call needs `replicate`. */
export const RAFT_METHOD_ACTIONS: ReadonlyMap<string, Action> = new Map([[`/${RAFT_SERVICE_NAME}/*`, Action.Replicate]]);

/** Longest cluster id accepted in metadata. */
export const CLUSTER_ID_LENGTH_MAX = 255;

function wrap(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function safeDecoder<T>(decode: (bytes: Uint8Array) => T, messageName: string): (bytes: Buffer) => T | DecodeFailure {
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (error) {
      return new DecodeFailure(messageName, error instanceof Error ? error.message : String(error));
    }
  };
}

/**
 * The service definition both sides use: the generated one with the hand-written codecs of
 * peer-wire.ts, request decoders that return a DecodeFailure instead of throwing, and Stream
 * writes that are already-encoded MessageBatch buffers.
 */
export const RaftPeerService = {
  stream: {
    ...RaftService.stream,
    requestSerialize: (bytes: Buffer): Buffer => bytes,
    requestDeserialize: (bytes: Buffer): WireMessageBatch | DecodeFailure => decodeMessageBatch(bytes),
    responseSerialize: (value: StreamAck): Buffer => wrap(StreamAck.encode(value).finish()),
    responseDeserialize: (bytes: Buffer): StreamAck => StreamAck.decode(bytes),
  },
  forward: {
    ...RaftService.forward,
    requestSerialize: encodeForwardRequest,
    requestDeserialize: (bytes: Buffer): WireForwardRequest | DecodeFailure => decodeForwardRequest(bytes),
    responseSerialize: (value: ForwardResponse): Buffer => wrap(ForwardResponse.encode(value).finish()),
    responseDeserialize: (bytes: Buffer): ForwardResponse => ForwardResponse.decode(bytes),
  },
  readIndex: {
    ...RaftService.readIndex,
    requestSerialize: (value: ReadIndexRequest): Buffer => wrap(ReadIndexRequest.encode(value).finish()),
    requestDeserialize: safeDecoder((bytes) => ReadIndexRequest.decode(bytes), 'annal.raft.v1.ReadIndexRequest'),
    responseSerialize: (value: ReadIndexResponse): Buffer => wrap(ReadIndexResponse.encode(value).finish()),
    responseDeserialize: (bytes: Buffer): ReadIndexResponse => ReadIndexResponse.decode(bytes),
  },
} as const satisfies ServiceDefinition;

