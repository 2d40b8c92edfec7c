/**
 * The msgpack dialect that HashiCorp's memberlist and serf speak (old ugorji go-msgpack with default
 * handle settings). Off-the-shelf encoders don't fit it, so this is our own small codec:
 *
 * - Encoding: strings *and* byte arrays go out as the "raw" str family (fixstr, str16, str32; never
 *   str8 or bin), struct keys and map keys are sorted byte-wise, integers use the smallest form
 *   (unsigned when non-negative), floats are float64.
 * - Decoding: every str/bin value comes back as raw bytes (a `Uint8Array`), because Go uses the same
 *   family for binary fields (`Addr`, `Meta`, `Payload`); callers convert text fields to UTF-8. Map
 *   keys must be strings and become JS strings. Decoding reports the end offset, so that a TCP stream
 *   of several values followed by raw bytes can be cut up.
 *
 * The decoder is hardened for hostile input: every length is checked against the bytes that remain
 * (so a claimed 4 GiB array allocates nothing), nesting is bounded, and extension types are refused.
 */

/** A decoded msgpack value. Integers beyond 2^53 come back as bigint. */
export type MsgValue = null | boolean | number | bigint | Uint8Array | MsgValue[] | MsgMap;
export type MsgMap = Map<string, MsgValue>;

/** A value to encode. Plain objects are Go structs (keys sorted, `undefined` fields omitted). */
export type EncValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly EncValue[]
  | ReadonlyMap<string, EncValue>
  | { readonly [key: string]: EncValue | undefined };

/** Why a decode failed: the input ended early, or it is not valid for this dialect. */
export type DecodeFailureKind = 'truncated' | 'invalid';

export class MsgpackDecodeError extends Error {
  override readonly name = 'MsgpackDecodeError';
  constructor(
    readonly kind: DecodeFailureKind,
    message: string,
  ) {
    super(message);
  }
}

/** Nesting limit: memberlist's deepest structure (serf push/pull events) is 4 levels deep. */
const depthMax = 16;

const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

export function utf8(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

export function bytesOfUtf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** Decodes one value starting at `offset`; returns it and the offset just past it. Throws MsgpackDecodeError. */
export function decodeMsgpack(buffer: Uint8Array, offset = 0): { value: MsgValue; end: number } {
  const reader = new Reader(buffer, offset);
  const value = reader.value(0);
  return { value, end: reader.position };
}

class Reader {
  private readonly view: DataView;
  constructor(
    private readonly buffer: Uint8Array,
    public position: number,
  ) {
    this.view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  private need(countBytes: number): void {
    if (this.position + countBytes > this.buffer.length) {
      throw new MsgpackDecodeError('truncated', `need ${countBytes} bytes at offset ${this.position}`);
    }
  }

  private u8(): number {
    this.need(1);
    return this.buffer[this.position++] as number;
  }

  private uint(sizeBytes: 1 | 2 | 4 | 8): number | bigint {
    this.need(sizeBytes);
    const at = this.position;
    this.position += sizeBytes;
    if (sizeBytes === 1) return this.view.getUint8(at);
    if (sizeBytes === 2) return this.view.getUint16(at);
    if (sizeBytes === 4) return this.view.getUint32(at);
    const big = this.view.getBigUint64(at);
    return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }

  private int(sizeBytes: 1 | 2 | 4 | 8): number | bigint {
    this.need(sizeBytes);
    const at = this.position;
    this.position += sizeBytes;
    if (sizeBytes === 1) return this.view.getInt8(at);
    if (sizeBytes === 2) return this.view.getInt16(at);
    if (sizeBytes === 4) return this.view.getInt32(at);
    const big = this.view.getBigInt64(at);
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    return big <= safe && big >= -safe ? Number(big) : big;
  }

  private length(sizeBytes: 1 | 2 | 4): number {
    return this.uint(sizeBytes) as number;
  }

  private raw(lengthBytes: number): Uint8Array {
    this.need(lengthBytes);
    const bytes = this.buffer.subarray(this.position, this.position + lengthBytes);
    this.position += lengthBytes;
    return bytes;
  }

  value(depth: number): MsgValue {
    if (depth > depthMax) throw new MsgpackDecodeError('invalid', `nesting deeper than ${depthMax}`);
    const tag = this.u8();
    if (tag <= 0x7f) return tag;
    if (tag >= 0xe0) return tag - 0x100;
    if (tag >= 0xa0 && tag <= 0xbf) return this.raw(tag & 0x1f);
    if (tag >= 0x90 && tag <= 0x9f) return this.array(tag & 0x0f, depth);
    if (tag >= 0x80 && tag <= 0x8f) return this.map(tag & 0x0f, depth);
    switch (tag) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
      case 0xd9:
        return this.raw(this.length(1));
      case 0xc5:
      case 0xda:
        return this.raw(this.length(2));
      case 0xc6:
      case 0xdb:
        return this.raw(this.length(4));
      case 0xca:
        this.need(4);
        this.position += 4;
        return this.view.getFloat32(this.position - 4);
      case 0xcb:
        this.need(8);
        this.position += 8;
        return this.view.getFloat64(this.position - 8);
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf:
        return this.uint(8);
      case 0xd0:
        return this.int(1);
      case 0xd1:
        return this.int(2);
      case 0xd2:
        return this.int(4);
      case 0xd3:
        return this.int(8);
      case 0xdc:
        return this.array(this.length(2), depth);
      case 0xdd:
        return this.array(this.length(4), depth);
      case 0xde:
        return this.map(this.length(2), depth);
      case 0xdf:
        return this.map(this.length(4), depth);
      default:
        // 0xc1 (never used) and the ext family: no memberlist or serf struct uses them.
        throw new MsgpackDecodeError('invalid', `unsupported msgpack type 0x${tag.toString(16)}`);
    }
  }

  private array(count: number, depth: number): MsgValue[] {
    // Each element takes at least one byte, so a count beyond the remaining bytes is truncated input.
    this.need(count);
    const items: MsgValue[] = [];
    for (let i = 0; i < count; i++) items.push(this.value(depth + 1));
    return items;
  }

  private map(count: number, depth: number): MsgMap {
    this.need(count * 2);
    const entries: MsgMap = new Map();
    for (let i = 0; i < count; i++) {
      const key = this.value(depth + 1);
      if (!(key instanceof Uint8Array)) throw new MsgpackDecodeError('invalid', 'map key is not a string');
      entries.set(utf8(key), this.value(depth + 1));
    }
    return entries;
  }
}

/** Encodes one value in the Go dialect described above. */
export function encodeMsgpack(value: EncValue): Uint8Array {
  const writer = new Writer();
  writer.value(value);
  return writer.finish();
}

class Writer {
  private buffer = new Uint8Array(256);
  private view = new DataView(this.buffer.buffer);
  private position = 0;

  finish(): Uint8Array {
    return this.buffer.slice(0, this.position);
  }

  private reserve(countBytes: number): void {
    if (this.position + countBytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.position + countBytes) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.position));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
  }

  private u8(byte: number): void {
    this.reserve(1);
    this.buffer[this.position++] = byte;
  }

  private tagged(tag: number, sizeBytes: 1 | 2 | 4 | 8, n: number | bigint): void {
    this.u8(tag);
    this.reserve(sizeBytes);
    const at = this.position;
    this.position += sizeBytes;
    if (sizeBytes === 1) this.view.setUint8(at, Number(n) & 0xff);
    else if (sizeBytes === 2) this.view.setUint16(at, Number(n));
    else if (sizeBytes === 4) this.view.setUint32(at, Number(n));
    else this.view.setBigUint64(at, BigInt.asUintN(64, BigInt(n)));
  }

  value(value: EncValue): void {
    if (value === null) return this.u8(0xc0);
    if (value === true) return this.u8(0xc3);
    if (value === false) return this.u8(0xc2);
    if (typeof value === 'number') return this.number(value);
    if (typeof value === 'bigint') return this.bigint(value);
    if (typeof value === 'string') return this.raw(utf8Encoder.encode(value));
    if (value instanceof Uint8Array) return this.raw(value);
    if (Array.isArray(value)) return this.array(value as readonly EncValue[]);
    if (value instanceof Map) return this.entries([...(value as ReadonlyMap<string, EncValue>).entries()]);
    const fields = Object.entries(value as { [key: string]: EncValue | undefined }).filter(
      (entry): entry is [string, EncValue] => entry[1] !== undefined,
    );
    return this.entries(fields);
  }

  private number(value: number): void {
    if (!Number.isInteger(value)) {
      this.u8(0xcb);
      this.reserve(8);
      this.view.setFloat64(this.position, value);
      this.position += 8;
      return;
    }
    if (!Number.isSafeInteger(value)) return this.bigint(BigInt(value));
    if (value >= 0) {
      if (value <= 0x7f) return this.u8(value);
      if (value <= 0xff) return this.tagged(0xcc, 1, value);
      if (value <= 0xffff) return this.tagged(0xcd, 2, value);
      if (value <= 0xffff_ffff) return this.tagged(0xce, 4, value);
      return this.tagged(0xcf, 8, value);
    }
    if (value >= -32) return this.u8(value + 0x100);
    if (value >= -0x80) return this.tagged(0xd0, 1, value & 0xff);
    if (value >= -0x8000) return this.tagged(0xd1, 2, value & 0xffff);
    if (value >= -0x8000_0000) return this.tagged(0xd2, 4, value >>> 0);
    return this.tagged(0xd3, 8, value);
  }

  private bigint(value: bigint): void {
    if (value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER)) return this.number(Number(value));
    if (value >= 0n) return this.tagged(0xcf, 8, value);
    return this.tagged(0xd3, 8, value);
  }

  private raw(bytes: Uint8Array): void {
    // Go's default handle never emits str8 or bin: fixstr, then str16, then str32.
    if (bytes.length < 32) this.u8(0xa0 | bytes.length);
    else if (bytes.length <= 0xffff) this.tagged(0xda, 2, bytes.length);
    else this.tagged(0xdb, 4, bytes.length);
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.position);
    this.position += bytes.length;
  }

  private array(items: readonly EncValue[]): void {
    if (items.length < 16) this.u8(0x90 | items.length);
    else if (items.length <= 0xffff) this.tagged(0xdc, 2, items.length);
    else this.tagged(0xdd, 4, items.length);
    for (const item of items) this.value(item);
  }

  private entries(entries: [string, EncValue][]): void {
    // Byte-wise order of the keys, as Go sorts struct field names (ASCII: code-unit order is byte order).
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (entries.length < 16) this.u8(0x80 | entries.length);
    else if (entries.length <= 0xffff) this.tagged(0xde, 2, entries.length);
    else this.tagged(0xdf, 4, entries.length);
    for (const [key, item] of entries) {
      this.raw(utf8Encoder.encode(key));
      this.value(item);
    }
  }
}
