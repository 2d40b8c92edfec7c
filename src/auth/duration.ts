/**
 * Go's `time.ParseDuration` syntax, which cfssl uses for every expiry ("8760h", "43800h",
 * "1h30m", "90s"). Only the units an expiry can sensibly use are accepted: h, m, s, ms.
 * No sign, no fractions: a certificate lifetime is a positive whole number of units.
 */
import { InvalidArgumentError } from '../util/index.js';

const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };

/** Parses "8760h" or "1h30m" into milliseconds; throws InvalidArgumentError on anything else. */
export function parseGoDurationMs(text: string, what: string): number {
  const pattern = /(\d+)(ms|h|m|s)/gy;
  let totalMs = 0;
  let matchedCount = 0;
  let position = 0;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    const unitMs = UNIT_MS[match[2]!]!;
    totalMs += Number(match[1]) * unitMs;
    matchedCount += 1;
    position = pattern.lastIndex;
  }
  if (matchedCount === 0 || position !== text.length || !Number.isSafeInteger(totalMs) || totalMs <= 0) {
    throw new InvalidArgumentError(
      `${what}: "${text}" is not a positive duration in Go syntax (for example "8760h" or "1h30m")`,
    );
  }
  return totalMs;
}
