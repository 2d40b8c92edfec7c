import { AppendTimer, type StorageMetrics } from '../telemetry/index.js';
import type { RecordInput } from '../storage/types.js';
import type { AppendContext, ServedLog } from './served-log.js';

/**
 * A ServedLog that feeds the storage instruments: every append is counted, one in 16 is timed
 * from the call to its acknowledgement under the log's fsync policy (see AppendTimer). Reads
 * pass straight through.
 */
export class MeteredLog implements ServedLog {
  private readonly timer: AppendTimer;
  readonly appendSequenced: ServedLog['appendSequenced'];

  constructor(
    private readonly log: ServedLog,
    metrics: StorageMetrics,
  ) {
    this.timer = new AppendTimer(metrics);
    const appendSequenced = log.appendSequenced?.bind(log);
    this.appendSequenced = appendSequenced && ((records, producerId, firstSequence) => this.timer.run(records.length, () => appendSequenced(records, producerId, firstSequence)));
  }

  append(record: RecordInput, context?: AppendContext): Promise<number> {
    return this.timer.run(1, () => this.log.append(record, context));
  }

  appendBatch(records: RecordInput[], context?: AppendContext): Promise<{ firstOffset: number; lastOffset: number }> {
    return this.timer.run(records.length, () => this.log.appendBatch(records, context));
  }

  read: ServedLog['read'] = (offset) => this.log.read(offset);
  readBatch: ServedLog['readBatch'] = (offset, limits) => this.log.readBatch(offset, limits);
  lowestOffset = (): number => this.log.lowestOffset();
  nextOffset = (): number => this.log.nextOffset();
  waitForAppend: ServedLog['waitForAppend'] = (offset, signal) => this.log.waitForAppend(offset, signal);
  linearizableBarrier = (): Promise<void> => this.log.linearizableBarrier?.() ?? Promise.resolve();
  whenCaughtUp = (): Promise<void> | null => this.log.whenCaughtUp?.() ?? null;
}
