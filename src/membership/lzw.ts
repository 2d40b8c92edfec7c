/**
 * LZW decompression as memberlist uses it (Go's compress/lzw format: LSB bit order, 8-bit literals).
 * Codes start 9 bits wide; 256 is clear, 257 is end of stream; the table grows to 12-bit codes and
 * then stops adding entries until the next clear. Real agents compress every TCP stream and some
 * UDP packets; we only need to decode (we send uncompressed, which agents accept).
 */

const clearCode = 256;
const endCode = 257;
const codeWidthMax = 12;
const tableSize = 1 << codeWidthMax;

export class LzwError extends Error {
  override readonly name = 'LzwError';
}

/** Decodes `input`; throws LzwError on a malformed stream or when the output would exceed `outputBytesMax`. */
export function lzwDecompress(input: Uint8Array, outputBytesMax: number): Uint8Array {
  // Code c > 257 expands to expansion(prefix[c]) followed by suffix[c].
  const prefix = new Uint16Array(tableSize);
  const suffix = new Uint8Array(tableSize);
  const scratch = new Uint8Array(tableSize + 1);
  const output = new OutputBuffer(outputBytesMax, input.length);

  let width = 9;
  // `next` is the code the next entry will get; `last` the previous code, -1 after a clear.
  let next = endCode;
  let last = -1;
  let bits = 0;
  let bitCount = 0;
  let position = 0;
  for (;;) {
    while (bitCount < width) {
      if (position >= input.length) throw new LzwError('stream ended without an end code');
      bits |= (input[position++] as number) << bitCount;
      bitCount += 8;
    }
    const code = bits & ((1 << width) - 1);
    bits >>>= width;
    bitCount -= width;
    if (code === endCode) return output.finish();
    if (code === clearCode) {
      width = 9;
      next = endCode;
      last = -1;
      continue;
    }
    // After the table fills up, `next` is its last (already defined) entry and `last` is -1.
    if (code > next) throw new LzwError(`invalid code ${code}`);
    // Expand into the tail of `scratch`, walking the prefix chain backwards.
    let at = scratch.length;
    let chain = code;
    if (code === next && last >= 0) {
      // The entry being defined right now: last's expansion followed by its own first byte.
      scratch[--at] = firstByte(last, prefix);
      chain = last;
    }
    while (chain > endCode) {
      scratch[--at] = suffix[chain] as number;
      chain = prefix[chain] as number;
    }
    if (chain === clearCode || chain === endCode) throw new LzwError('control code inside a chain');
    scratch[--at] = chain;
    output.append(scratch.subarray(at));
    if (last >= 0) {
      suffix[next] = chain; // first byte of the current expansion
      prefix[next] = last;
    }
    last = code;
    next++;
    if (next >= 1 << width) {
      if (width < codeWidthMax) width++;
      else {
        last = -1;
        next--;
      }
    }
  }
}

function firstByte(code: number, prefix: Uint16Array): number {
  let chain = code;
  while (chain > endCode) chain = prefix[chain] as number;
  return chain;
}

class OutputBuffer {
  private bytes: Uint8Array;
  private length = 0;
  constructor(
    private readonly bytesMax: number,
    inputBytes: number,
  ) {
    this.bytes = new Uint8Array(Math.max(1, Math.min(bytesMax, inputBytes * 4 + 64)));
  }

  append(chunk: Uint8Array): void {
    if (this.length + chunk.length > this.bytesMax) throw new LzwError(`output exceeds ${this.bytesMax} bytes`);
    if (this.length + chunk.length > this.bytes.length) {
      const size = Math.min(this.bytesMax, Math.max(this.bytes.length * 2, this.length + chunk.length));
      const grown = new Uint8Array(size);
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    this.bytes.set(chunk, this.length);
    this.length += chunk.length;
  }

  finish(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}
