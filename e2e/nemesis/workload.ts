/**
 * The workload and its history: concurrent idempotent producers writing unique values, plain readers at
 * offsets below what was acknowledged, linearizable readers at the newest acknowledged offset and
 * just past it, and tailing consumers that follow the log. Every operation is recorded as an
 * invoke and its completion (ok, fail or unknown) with a monotonic timestamp.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { AnnalClient } from '../../src/client/index.js';
import { encodeEvent, type HistoryEvent, type NemesisEvent, type OperationEvent } from '../../src/nemesis/index.js';
import {
  InvalidArgumentError,
  NotLeaderError,
  OffsetOutOfRangeError,
  OutcomeUnknownError,
  OverloadedError,
  PermissionDeniedError,
  Prng,
  RecordTooLargeError,
  UnauthenticatedError,
  UnavailableError,
} from '../../src/util/index.js';
import type { NemesisCluster, NodeSlot } from './cluster.js';

/** Records events in memory and as JSON lines; timestamps from one monotonic clock. */
export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  private readonly startMs = performance.now();
  private readonly out: WriteStream | undefined;

  constructor(path?: string) {
    this.out = path === undefined ? undefined : createWriteStream(path);
  }

  nowMs(): number {
    return Math.round((performance.now() - this.startMs) * 1000) / 1000;
  }

  op(event: Omit<OperationEvent, 'timeMs'>): void {
    this.push({ ...event, timeMs: this.nowMs() } as OperationEvent);
  }

  nemesis(event: Omit<NemesisEvent, 'timeMs' | 'type'>): void {
    this.push({ type: 'nemesis', ...event, timeMs: this.nowMs() });
  }

  private push(event: HistoryEvent): void {
    this.events.push(event);
    this.out?.write(encodeEvent(event) + '\n');
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.out === undefined ? resolve() : this.out.end(resolve)));
  }
}

export interface WorkloadOptions {
  readonly producers: number;
  readonly readers: number;
  readonly linearizableReaders: number;
  readonly tailers: number;
  /** Deadline of each call (of each attempt, for the producers' retried writes). */
  readonly callTimeoutMs: number;
  /** How long a producer's write is retried before its outcome is unknown. */
  readonly retryDeadlineMs: number;
  readonly seed: number;
}

/** Errors after which the operation certainly did not take effect. */
function definitelyFailed(error: unknown): boolean {
  if (
    error instanceof NotLeaderError ||
    error instanceof OverloadedError ||
    error instanceof PermissionDeniedError ||
    error instanceof UnauthenticatedError ||
    error instanceof InvalidArgumentError ||
    error instanceof RecordTooLargeError
  ) {
    return true;
  }
  // The call never left this process: no connection to the node.
  return error instanceof Error && /No connection established|ECONNREFUSED/.test(error.message);
}

export class Workload {
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private readonly clients = new Map<string, AnnalClient>();
  private readonly aborts = new Set<AbortController>();
  private readonly prng: Prng;
  /** The highest offset acknowledged so far (what readers aim at). */
  private highestAcked = -1;
  private nextSession = 0;

  constructor(
    private readonly cluster: NemesisCluster,
    private readonly history: HistoryRecorder,
    private readonly options: WorkloadOptions,
  ) {
    this.prng = new Prng(options.seed);
  }

  start(): void {
    let process = 0;
    for (let i = 0; i < this.options.producers; i++) this.loops.push(this.producer(process++));
    for (let i = 0; i < this.options.readers; i++) this.loops.push(this.reader(process++, false));
    for (let i = 0; i < this.options.linearizableReaders; i++) this.loops.push(this.reader(process++, true));
    for (let i = 0; i < this.options.tailers; i++) this.loops.push(this.tailer());
  }

  /** Stops issuing operations and waits for those in flight (each bounded by its deadline). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const abort of this.aborts) abort.abort();
    await Promise.all(this.loops);
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  /** A node with an address: any node that is not known to be down (a paused one times out). */
  private target(): NodeSlot | undefined {
    const candidates = this.cluster.slots.filter((s) => s.node !== undefined && s.state !== 'down');
    return candidates.length === 0 ? undefined : this.prng.pick(candidates);
  }

  private clientFor(slot: NodeSlot, process: number): AnnalClient {
    // One channel per (process, address): a process's calls are sequential, and a channel to a
    // restarted node reconnects by itself.
    const key = `${process}@${slot.node!.rpcAddr}`;
    let c = this.clients.get(key);
    if (c === undefined) {
      c = new AnnalClient({ address: slot.node!.rpcAddr, security: this.cluster.certs.root, callTimeoutMs: this.options.callTimeoutMs });
      this.clients.set(key, c);
    }
    return c;
  }

  private async idle(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
  }

  /**
   * A cluster client (`annal://` every node): each write goes to the leader through an idempotent
   * producer, which resends it after a lost connection, a timed-out attempt or a leader change
   * with the same (producer id, sequence), so the log holds it once. Only when no attempt was
   * answered within the retry deadline is the outcome unknown (OutcomeUnknownError); a write that
   * never reached a server (UnavailableError) or was refused failed.
   */
  private clusterClient(): AnnalClient {
    const addresses = this.cluster.slots.map((s) => `${s.node?.rpcAddr ?? ''}`).filter((a) => a !== '');
    return new AnnalClient({
      address: `annal://${addresses.join(',')}`,
      security: this.cluster.certs.root,
      callTimeoutMs: this.options.callTimeoutMs,
      retry: { retryDeadlineMs: this.options.retryDeadlineMs, attemptTimeoutMs: this.options.callTimeoutMs },
    });
  }

  private async producer(process: number): Promise<void> {
    const c = this.clusterClient();
    this.clients.set(`producer ${process}`, c);
    for (let n = 0; !this.stopped; n++) {
      const value = `p${process}-${n}`;
      this.history.op({ type: 'invoke', process, f: 'produce', idempotent: true, value });
      try {
        const offset = await c.produce(Buffer.from(value, 'latin1'));
        this.history.op({ type: 'ok', process, f: 'produce', offset });
        this.highestAcked = Math.max(this.highestAcked, offset);
      } catch (error) {
        const failed = error instanceof UnavailableError || (!(error instanceof OutcomeUnknownError) && definitelyFailed(error));
        this.history.op({ type: failed ? 'fail' : 'unknown', process, f: 'produce', error: String((error as Error).message ?? error) });
        await this.idle(20);
      }
    }
  }

  private async reader(process: number, linearizable: boolean): Promise<void> {
    const f = linearizable ? 'lin-read' : 'read';
    while (!this.stopped) {
      const slot = this.target();
      if (slot === undefined || this.highestAcked < 0) {
        await this.idle(50);
        continue;
      }
      // Linearizable reads aim at the newest acknowledged record (or just past it), where a stale
      // read would show; plain reads anywhere below it.
      const offset = linearizable ? this.highestAcked + (this.prng.chance(0.25) ? 1 : 0) : this.prng.int(0, this.highestAcked);
      this.history.op({ type: 'invoke', process, f, node: slot.name, offset });
      try {
        const record = await this.clientFor(slot, process).consume(offset, { linearizable });
        this.history.op({ type: 'ok', process, f, node: slot.name, value: record.value.toString('latin1') });
      } catch (error) {
        if (error instanceof OffsetOutOfRangeError) this.history.op({ type: 'ok', process, f, node: slot.name, value: null });
        else this.history.op({ type: 'fail', process, f, node: slot.name, error: String((error as Error).message ?? error) });
      }
      await this.idle(linearizable ? 5 : 20);
    }
  }

  /** Follows the log from where it left off; a broken stream resumes on another node as a new session. */
  private async tailer(): Promise<void> {
    let next = 0;
    while (!this.stopped) {
      const slot = this.target();
      if (slot === undefined) {
        await this.idle(50);
        continue;
      }
      const session = this.nextSession++;
      const process = 1000 + session;
      const abort = new AbortController();
      this.aborts.add(abort);
      const c = new AnnalClient({ address: slot.node!.rpcAddr, security: this.cluster.certs.root });
      // A stream to a paused or partitioned node would wait forever: it is abandoned after a while.
      const limit = setTimeout(() => abort.abort(), 5000 + this.prng.int(0, 5000));
      try {
        for await (const record of c.consumeStream(next, { follow: true, maxBatch: 256, signal: abort.signal })) {
          this.history.op({ type: 'ok', process, f: 'tail', session, node: slot.name, offset: record.offset, value: record.value.toString('latin1') });
          next = record.offset + 1;
        }
      } catch {
        // ended by the abort, a killed node, or an offset not there yet: resume elsewhere
      } finally {
        clearTimeout(limit);
        this.aborts.delete(abort);
        c.close();
      }
      await this.idle(50);
    }
  }
}
