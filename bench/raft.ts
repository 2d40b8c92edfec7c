/**
 * Raft core throughput, in process and without I/O: a 3-node cluster of RawNodes over
 * MemoryStorage with an instant FIFO network. The leader proposes 100-byte entries in batches of
 * B (B proposals, then one round of Ready handling); B = 1 is the no-batching baseline, where each
 * entry makes its own persist-replicate-commit round trip. Prints committed entries/s and CPU µs
 * per committed entry (all three nodes' work, as they share this process), with the ratio to the
 * baseline. ANNAL_BENCH_SCALE scales the entry counts.
 */
import { MemoryStorage, RawNode, Role, type Message } from '../src/raft/index.js';
import { Prng } from '../src/util/index.js';
import { formatRate, nowMs, printTable, type Row } from './util.js';

const SCALE = Number(process.env.ANNAL_BENCH_SCALE ?? 1);
const PAYLOAD_BYTES = 100;

interface Member {
  readonly raw: RawNode;
  readonly storage: MemoryStorage;
  applied: number;
}

class BenchCluster {
  readonly members = new Map<string, Member>();
  private queue: Message[] = [];

  constructor(ids: string[]) {
    for (const [i, id] of ids.entries()) {
      const storage = new MemoryStorage({ voters: ids, learners: [] });
      // Large messages and windows: the benchmark measures the core, not flow-control stalls.
      const raw = new RawNode({ id, storage, prng: new Prng(i + 1), maxMessageBytes: 1 << 20, inflightCountMax: 1024 });
      this.members.set(id, { raw, storage, applied: 0 });
    }
  }

  member(id: string): Member {
    return this.members.get(id) as Member;
  }

  /** Handles Readies and delivers messages until the cluster is quiet. */
  pump(): void {
    for (;;) {
      let moved = false;
      for (const member of this.members.values()) {
        while (member.raw.hasReady()) {
          moved = true;
          const ready = member.raw.ready();
          if (ready.hardState !== null) member.storage.setHardState(ready.hardState);
          if (ready.entries.length > 0) member.storage.append(ready.entries);
          for (const message of ready.messages) this.queue.push(message);
          member.applied += ready.committedEntries.length;
          member.raw.advance(ready);
        }
      }
      if (this.queue.length > 0) {
        moved = true;
        const batch = this.queue;
        this.queue = [];
        for (const message of batch) this.member(message.to).raw.step(message);
      }
      if (!moved) return;
    }
  }

  elect(id: string): void {
    this.member(id).raw.campaign();
    this.pump();
    if (this.member(id).raw.status().role !== Role.Leader) throw new Error('election failed');
  }
}

function run(batchSize: number, entryCount: number): { entriesPerSecond: number; cpuMicrosPerEntry: number } {
  const cluster = new BenchCluster(['a', 'b', 'c']);
  cluster.elect('a');
  const leader = cluster.member('a');
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const appliedBefore = leader.applied;
  const cpuBefore = process.cpuUsage();
  const startMs = nowMs();
  for (let proposed = 0; proposed < entryCount; proposed += batchSize) {
    for (let i = 0; i < batchSize; i++) {
      const result = leader.raw.propose(payload);
      if (!result.ok) throw new Error(`proposal refused: ${result.reason}`);
    }
    cluster.pump();
  }
  const elapsedMs = nowMs() - startMs;
  const cpu = process.cpuUsage(cpuBefore);
  const committed = leader.applied - appliedBefore;
  if (committed < entryCount) throw new Error(`only ${committed} of ${entryCount} entries applied`);
  return { entriesPerSecond: (committed / elapsedMs) * 1000, cpuMicrosPerEntry: (cpu.user + cpu.system) / committed };
}

function main(): void {
  const cases = [
    { batchSize: 1, entryCount: Math.round(30_000 * SCALE) },
    { batchSize: 16, entryCount: Math.round(200_000 * SCALE) },
    { batchSize: 256, entryCount: Math.round(500_000 * SCALE) },
  ];
  run(1, 2_000); // warm-up: let the JIT settle before the baseline is measured
  const results = cases.map((c) => ({ ...c, ...run(c.batchSize, c.entryCount) }));
  const baseline = results[0] as (typeof results)[number];
  const rows: Row[] = results.map((r) => ({
    name: r.batchSize === 1 ? 'no batching (1 entry per round trip)' : `batches of ${r.batchSize}`,
    value: `${formatRate(r.entriesPerSecond)} entries/s, ${r.cpuMicrosPerEntry.toFixed(2)} CPU µs/entry`,
    ratio: `${(r.entriesPerSecond / baseline.entriesPerSecond).toFixed(1)}x`,
    note: `${r.entryCount} entries of ${PAYLOAD_BYTES} B`,
  }));
  printTable('raft core, 3 nodes in process, no I/O (ratio: throughput vs no batching)', rows);
}

main();
