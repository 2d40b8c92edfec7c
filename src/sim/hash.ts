/** 32-bit FNV-1a style mixing: cheap, deterministic fingerprints for logs and traces. */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 16777619;

export function mixUint(hash: number, value: number): number {
  let h = hash;
  // Mix the low and high halves so values above 2^32 (indexes, times) are not truncated.
  h = Math.imul(h ^ (value >>> 0), FNV_PRIME) >>> 0;
  h = Math.imul(h ^ Math.floor(value / 0x1_0000_0000), FNV_PRIME) >>> 0;
  return h;
}

export function mixBytes(hash: number, bytes: Uint8Array): number {
  let h = hash;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ (bytes[i] as number), FNV_PRIME) >>> 0;
  return Math.imul(h ^ bytes.length, FNV_PRIME) >>> 0;
}

export function mixString(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME) >>> 0;
  return Math.imul(h ^ text.length, FNV_PRIME) >>> 0;
}

export const HASH_SEED = FNV_OFFSET;
