/**
 * memberlist's AES-GCM encryption (the keyring serf's `-encrypt` sets up). An encrypted payload is
 * `[version][12-byte nonce][ciphertext][16-byte tag]`; version 1 (no padding) is what every serf
 * cluster sends, version 0 (PKCS#7-padded plaintext) is accepted. UDP packets use empty additional
 * data; TCP streams use the 5-byte `[0x0a][length]` frame header. Outgoing traffic uses the primary
 * key; incoming traffic tries every key. Lives in a transport file because nonces come from the OS.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../util/index.js';

const nonceBytes = 12;
const tagBytes = 16;
const versionBytes = 1;
/** Bytes encryption adds to a packet (version 1): the UDP payload budget shrinks by this much. */
export const encryptionOverheadBytes = versionBytes + nonceBytes + tagBytes;

export class Keyring {
  private readonly keys: Buffer[];

  /** `keys[0]` is the primary key. Each must be 16, 24 or 32 bytes (AES-128/192/256). */
  constructor(keys: readonly Uint8Array[]) {
    if (keys.length === 0) throw new InvalidArgumentError('a keyring needs at least one key');
    for (const key of keys) {
      if (![16, 24, 32].includes(key.length)) {
        throw new InvalidArgumentError(`encryption key must be 16, 24 or 32 bytes, got ${key.length}`);
      }
    }
    this.keys = keys.map((key) => Buffer.from(key));
  }

  /** Parses serf's `-encrypt` form (base64 of 16, 24 or 32 bytes), or a list of them, primary first. */
  static fromBase64(keys: string | readonly string[]): Keyring {
    const list = typeof keys === 'string' ? [keys] : keys;
    return new Keyring(
      list.map((key) => {
        const bytes = Buffer.from(key, 'base64');
        if (bytes.toString('base64') !== key.replace(/\s/g, '')) throw new InvalidArgumentError('encryption key is not valid base64');
        return bytes;
      }),
    );
  }

  encrypt(plaintext: Uint8Array, additionalData: Uint8Array): Uint8Array {
    const key = this.keys[0] as Buffer;
    const nonce = randomBytes(nonceBytes);
    const cipher = createCipheriv(cipherName(key), key, nonce);
    cipher.setAAD(additionalData);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(1), nonce, body, cipher.getAuthTag()]);
  }

  /** Returns the plaintext, or undefined when no key opens it (or it is malformed). */
  decrypt(payload: Uint8Array, additionalData: Uint8Array): Uint8Array | undefined {
    if (payload.length < encryptionOverheadBytes) return undefined;
    const version = payload[0];
    if (version !== 0 && version !== 1) return undefined;
    const nonce = payload.subarray(versionBytes, versionBytes + nonceBytes);
    const body = payload.subarray(versionBytes + nonceBytes, payload.length - tagBytes);
    const tag = payload.subarray(payload.length - tagBytes);
    for (const key of this.keys) {
      try {
        const decipher = createDecipheriv(cipherName(key), key, nonce);
        decipher.setAAD(additionalData);
        decipher.setAuthTag(tag);
        const plain = Buffer.concat([decipher.update(body), decipher.final()]);
        return version === 0 ? unpad(plain) : plain;
      } catch {
        // Wrong key (authentication failed): try the next one.
      }
    }
    return undefined;
  }
}

function cipherName(key: Buffer): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  return key.length === 16 ? 'aes-128-gcm' : key.length === 24 ? 'aes-192-gcm' : 'aes-256-gcm';
}

function unpad(plain: Buffer): Uint8Array | undefined {
  const padBytes = plain[plain.length - 1];
  if (padBytes === undefined || padBytes === 0 || padBytes > 16 || padBytes > plain.length) return undefined;
  return plain.subarray(0, plain.length - padBytes);
}
