/**
 * Retention: how much of the log a cluster keeps (Kafka's retention.bytes / retention.ms,
 * JetStream's max_bytes / max_age). The leader decides from its own segments and replicates the
 * decision as a control entry ("retain from index N"); every replica applies it at the same log
 * position by compacting through N - 1, removing its whole segments below N. So the retained
 * range that consumers see, [offset of N, end), is the same on every replica even where their
 * segment boundaries differ (a replica that installed a snapshot starts its segments elsewhere),
 * and a far-behind or new follower catches up from the leader's first retained index.
 *
 * Whole segments only, oldest first, never the active one, never past what is applied:
 * - bytes: drop the oldest segment while what remains is still at least `bytes` (Kafka's rule:
 *   the log never shrinks below the limit, so it holds between `bytes` and `bytes` + a segment);
 * - age: drop a segment whose newest record (its file's modification time) is older than `ageMs`.
 */
import { InvalidArgumentError } from '../util/index.js';

export interface RetentionPolicy {
  /** Keep at least this many bytes of store files (whole segments beyond are dropped). */
  bytes?: number;
  /** Drop segments whose newest record is older than this. */
  ageMs?: number;
}

export interface SegmentView {
  readonly firstIndex: number;
  readonly nextIndex: number;
  readonly sizeBytes: number;
  /** When its newest record was written (ms since the epoch). */
  readonly modifiedMs: number;
  readonly active: boolean;
}

/** The index the log should start at under `policy`, or null when nothing is to be dropped. */
export function retainFrom(segments: readonly SegmentView[], policy: RetentionPolicy, appliedIndex: number, nowMs: number): number | null {
  let total = segments.reduce((sum, segment) => sum + segment.sizeBytes, 0);
  let cut: number | null = null;
  for (const segment of segments) {
    if (segment.active || segment.nextIndex - 1 > appliedIndex) break;
    const bySize = policy.bytes !== undefined && total - segment.sizeBytes >= policy.bytes;
    const byAge = policy.ageMs !== undefined && nowMs - segment.modifiedMs > policy.ageMs;
    if (!bySize && !byAge) break;
    total -= segment.sizeBytes;
    cut = segment.nextIndex;
  }
  return cut;
}

/** The control entry that carries a retention decision. */
export interface RetainEntry {
  readonly kind: 'retain';
  readonly firstIndex: number;
}

export function encodeControl(entry: RetainEntry): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(entry));
}

/** The control entry in `data`; InvalidArgumentError if it is not one this version knows. */
export function decodeControl(data: Uint8Array): RetainEntry {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw new InvalidArgumentError('control entry is not JSON');
  }
  const fields = parsed as Partial<RetainEntry> | null;
  if (fields?.kind === 'retain' && Number.isSafeInteger(fields.firstIndex) && (fields.firstIndex as number) >= 1) {
    return { kind: 'retain', firstIndex: fields.firstIndex as number };
  }
  throw new InvalidArgumentError(`unknown control entry ${JSON.stringify(parsed).slice(0, 100)}`);
}
