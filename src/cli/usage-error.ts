/** A mistake in how annal was invoked (flags, config file): one line on stderr and exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
