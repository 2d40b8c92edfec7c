/**
 * Fast paths for decoding the two messages every produced record crosses: ProduceRequest (on the
 * server) and ProduceResponse (on the client). Each recognises only the exact canonical shape a
 * producer sends (a ProduceRequest whose record has only a non-empty value; a ProduceResponse with
 * only an offset) and returns undefined for anything else, which then goes through the generated
 * ts-proto decoder with its full validation. wire-decode.test.ts checks on random and mutated
 * input that a fast result always equals the generated decoder's.
 *
 * The decoded value is a view into the message buffer, not a copy: grpc-js assembles each received
 * message into a buffer of its own (Buffer.concat in its stream decoder) and never reuses it.
 */
import type { ProduceRequest, ProduceResponse } from '../gen/log/v1/log.js';

/** Varints longer than this are left to the generated decoder (2^53 needs 8 bytes). */
const VARINT_BYTES_MAX = 8;

/** The varint at `position` as [value, next position], or undefined if absent or too long. */
function readVarint(bytes: Uint8Array, position: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < VARINT_BYTES_MAX && position + i < bytes.length; i++) {
    const byte = bytes[position + i]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return Number.isSafeInteger(value) ? [value, position + i + 1] : undefined;
    scale *= 128;
  }
  return undefined;
}

/** `0a <n> 0a <m> <m value bytes>` with n = m + 1 + len(varint m), exactly; otherwise undefined. */
export function decodeProduceRequestFast(bytes: Buffer): ProduceRequest | undefined {
  if (bytes.length < 4 || bytes[0] !== 0x0a) return undefined;
  const outer = readVarint(bytes, 1);
  if (outer === undefined || outer[1] + outer[0] !== bytes.length) return undefined;
  const recordStart = outer[1];
  if (bytes[recordStart] !== 0x0a) return undefined;
  const inner = readVarint(bytes, recordStart + 1);
  if (inner === undefined || inner[0] === 0 || inner[1] + inner[0] !== bytes.length) return undefined;
  return { record: { value: bytes.subarray(inner[1]), offset: 0, term: 0, type: 0 } };
}

/** `08 <offset>` exactly (or no bytes: offset 0); otherwise undefined. */
export function decodeProduceResponseFast(bytes: Buffer): ProduceResponse | undefined {
  if (bytes.length === 0) return { offset: 0 };
  if (bytes[0] !== 0x08) return undefined;
  const offset = readVarint(bytes, 1);
  if (offset === undefined || offset[1] !== bytes.length) return undefined;
  return { offset: offset[0] };
}
