/**
 * The produce/consume checker of the replica simulation: given the clients' history and every
 * replica's consumer-visible log after healing, it checks what the nemesis suite checks on real
 * processes:
 * - every replica shows the same log, and retains the same range of it (retention removes whole
 *   segments below one point, the same on every replica);
 * - every acknowledged produce is in it exactly once, at its acknowledged offset, with its value;
 *   a produce reported failed is not in it;
 * - an idempotent producer's batch is in it once, and every answer to it (retries and
 *   duplicates included) gave the same offset;
 * - every record a consumer read is in it at that offset (a read never shows a record that is
 *   later lost or replaced);
 * - real-time order: a produce acknowledged before another began has the lower offset, and a
 *   linearizable read (barrier) shows every produce acknowledged before it began.
 * Records below the retained range are legitimately gone: their acknowledgements, reads and
 * producer answers are not checked against the log, and a producer's batch that retention removed
 * may be appended again when resent (its producer was forgotten with it), nothing else.
 * Times are the history's logical clock (strictly increasing, so "before" is well defined).
 */
import type { NodeId } from '../raft/index.js';

export type ProduceOutcome = { readonly type: 'ok'; readonly offset: number } | { readonly type: 'failed'; readonly reason: string } | { readonly type: 'unknown' };

export interface ProduceOp {
  readonly value: string;
  readonly start: number;
  end: number;
  outcome: ProduceOutcome;
}

/** One answer to an idempotent producer's batch (a single record here). */
export interface SequencedAck {
  readonly producerId: number;
  readonly sequence: number;
  readonly value: string;
  readonly offset: number;
  readonly duplicate: boolean;
  readonly start: number;
  readonly end: number;
  /** The highest first retained offset of any replica when the answer came (0: nothing retained away). */
  readonly retainedFrom?: number;
}

export interface Observation {
  readonly node: NodeId;
  readonly offset: number;
  readonly value: string;
}

/** A linearizable read: after the barrier, the node's log ended at `next`. */
export interface BarrierRead {
  readonly node: NodeId;
  readonly start: number;
  readonly end: number;
  readonly next: number;
}

export interface ReplicaHistory {
  readonly produces: ProduceOp[];
  readonly sequenced: SequencedAck[];
  readonly observations: Observation[];
  readonly barriers: BarrierRead[];
}

/**
 * The first violated property, or null. `logs` maps each replica to its values by offset (none
 * below its first retained offset, given in `lowestOffsets`; default 0).
 */
export function checkReplicaHistory(
  history: ReplicaHistory,
  logs: ReadonlyMap<NodeId, readonly string[]>,
  lowestOffsets: ReadonlyMap<NodeId, number> = new Map(),
): string | null {
  const entries = [...logs];
  if (entries.length === 0) return 'no replica logs to check';
  const [firstId, log] = entries[0]!;
  const lowest = lowestOffsets.get(firstId) ?? 0;
  for (const [id] of entries.slice(1)) {
    const other = lowestOffsets.get(id) ?? 0;
    if (other !== lowest) return `replicas ${firstId} and ${id} retain different ranges: from offset ${lowest} and from ${other}`;
  }
  const retained = (offset: number): boolean => offset >= lowest;
  for (const [id, other] of entries.slice(1)) {
    const difference = firstDifference(log, other);
    if (difference !== null) {
      return `replicas ${firstId} and ${id} differ at offset ${difference}: ${show(log[difference])} vs ${show(other[difference])} (lengths ${log.length}, ${other.length})`;
    }
  }
  const offsetsOf = new Map<string, number[]>();
  log.forEach((value, offset) => {
    if (!retained(offset)) return;
    const offsets = offsetsOf.get(value);
    if (offsets === undefined) offsetsOf.set(value, [offset]);
    else offsets.push(offset);
  });
  for (const [value, offsets] of offsetsOf) {
    if (offsets.length > 1) return `record ${value} is in the log ${offsets.length} times, at offsets ${offsets.join(', ')}`;
  }
  for (const op of history.produces) {
    if (op.outcome.type === 'ok') {
      if (!retained(op.outcome.offset)) continue;
      const at = log[op.outcome.offset];
      if (at !== op.value) return `acknowledged produce ${op.value} at offset ${op.outcome.offset} is lost: the log holds ${show(at)} there (found at ${show(offsetsOf.get(op.value)?.[0])})`;
    } else if (op.outcome.type === 'failed' && offsetsOf.has(op.value)) {
      return `produce ${op.value} reported failed (${op.outcome.reason}) is in the log at offset ${offsetsOf.get(op.value)![0]}`;
    }
  }
  const firstAck = new Map<string, SequencedAck>();
  for (const ack of history.sequenced) {
    const key = `${ack.producerId}/${ack.sequence}`;
    const first = firstAck.get(key);
    if (first === undefined || first.offset < (ack.retainedFrom ?? 0)) {
      // The first answer, or one after retention removed the batch (and forgot its producer): a
      // resend may have appended it again, answered then or on a later resend as a duplicate.
      firstAck.set(key, ack);
    } else if (first.offset !== ack.offset) {
      return `producer ${ack.producerId} sequence ${ack.sequence} was acknowledged at offset ${first.offset}, then ${ack.duplicate ? 'as a duplicate ' : ''}at ${ack.offset}`;
    }
    if (!retained(ack.offset)) continue;
    const at = log[ack.offset];
    if (at !== ack.value) return `acknowledged sequenced produce ${ack.value} at offset ${ack.offset} is lost: the log holds ${show(at)} there`;
  }
  for (const seen of history.observations) {
    if (!retained(seen.offset)) continue;
    const at = log[seen.offset];
    if (at !== seen.value) return `${seen.node} served ${seen.value} at offset ${seen.offset}, which the healed log does not hold (it holds ${show(at)})`;
  }
  return checkRealTime(history);
}

/** A produce acknowledged before another starts has the lower offset; a barrier read sees every earlier acknowledgement. */
function checkRealTime(history: ReplicaHistory): string | null {
  const acks: { start: number; end: number; offset: number; label: string }[] = [];
  for (const op of history.produces) if (op.outcome.type === 'ok') acks.push({ start: op.start, end: op.end, offset: op.outcome.offset, label: op.value });
  for (const ack of history.sequenced) if (!ack.duplicate) acks.push({ start: ack.start, end: ack.end, offset: ack.offset, label: ack.value });
  const byEnd = [...acks].sort((a, b) => a.end - b.end);
  const starts: { start: number; check: (before: { offset: number; label: string } | null) => string | null }[] = [
    ...acks.map((ack) => ({
      start: ack.start,
      check: (before: { offset: number; label: string } | null) =>
        before !== null && before.offset >= ack.offset ? `${before.label} (offset ${before.offset}) was acknowledged before ${ack.label} was produced, which got the lower offset ${ack.offset}` : null,
    })),
    ...history.barriers.map((read) => ({
      start: read.start,
      check: (before: { offset: number; label: string } | null) =>
        before !== null && before.offset >= read.next
          ? `a linearizable read at ${read.node} ended at offset ${read.next} but ${before.label} had been acknowledged at offset ${before.offset} before it began`
          : null,
    })),
  ].sort((a, b) => a.start - b.start);
  let highest: { offset: number; label: string } | null = null;
  let next = 0;
  for (const item of starts) {
    while (next < byEnd.length && byEnd[next]!.end < item.start) {
      const ack = byEnd[next++]!;
      if (highest === null || ack.offset > highest.offset) highest = ack;
    }
    const problem = item.check(highest);
    if (problem !== null) return problem;
  }
  return null;
}

function firstDifference(a: readonly string[], b: readonly string[]): number | null {
  const length = Math.max(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return null;
}

function show(value: string | number | undefined): string {
  return value === undefined ? 'nothing' : String(value);
}
