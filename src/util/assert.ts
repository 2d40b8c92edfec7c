/**
 * Always-on assertions for programmer errors (broken invariants). Operating errors (bad input,
 * disk full, a peer gone) are handled as values or typed errors instead; a failed assertion means
 * the process's state can no longer be trusted, and the top level logs it and exits.
 */
export class AssertionError extends Error {
  override readonly name: string = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Asserts that `value` is a non-negative safe integer: offsets, counts and sizes are all such. */
export function assertUint(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new AssertionError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

/** For exhaustive switches: the compiler proves this is unreachable. */
export function unreachable(value: never): never {
  throw new AssertionError(`unreachable: ${String(value)}`);
}
