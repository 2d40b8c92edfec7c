/**
 * Raft safety checkers, fed by the simulated cluster after every step. Logs are compared through
 * chain hashes: the hash at index i covers every entry up to i, so equal hashes mean equal
 * prefixes and one comparison checks a whole prefix.
 *
 * - Election safety: at most one leader per term.
 * - Log matching: two logs holding an entry with the same index and term agree up to it.
 * - Leader completeness: a new leader holds every entry committed so far.
 * - Committed entries are never lost or reordered: every node's committed prefix equals the
 *   cluster's committed prefix, and no node truncates a committed entry.
 * - State machine safety: no two nodes apply different entries (or reach different states) at
 *   one index, and a node's applied index only grows (within one incarnation).
 */
import { EntryType, type Entry, type NodeId } from '../raft/index.js';
import { AssertionError } from '../util/index.js';
import { HASH_SEED, mixBytes, mixUint } from './hash.js';

/**
 * A broken safety property. An assertion failure to the driver, so a violation found inside a
 * storage write or an apply stops the run instead of looking like a failed disk.
 */
export class SafetyViolation extends AssertionError {
  override readonly name = 'SafetyViolation';
}

export function chainHash(previous: number, entry: Entry): number {
  let hash = mixUint(previous, entry.index);
  hash = mixUint(hash, entry.term);
  hash = mixUint(hash, entry.type);
  return mixBytes(hash, entry.data);
}

/** Per-node durable log fingerprint, kept in step with the node's storage. */
export class LogChain {
  // Invariant: hashes[i] is the chain hash at index base + i.
  private base = 0;
  private hashes: number[] = [HASH_SEED];
  private terms: number[] = [0];

  hashAt(index: number): number | undefined {
    return this.hashes[index - this.base];
  }

  termAt(index: number): number | undefined {
    return this.terms[index - this.base];
  }

  lastIndex(): number {
    return this.base + this.hashes.length - 1;
  }

  firstKnownIndex(): number {
    return this.base;
  }

  /** Appends (after truncating from the first entry's index); returns the truncated count. */
  append(entries: readonly Entry[]): number {
    const first = (entries[0] as Entry).index;
    const keep = first - this.base;
    if (keep < 1) throw new SafetyViolation(`append at ${first} before the log chain base ${this.base}`);
    const truncated = Math.max(0, this.hashes.length - keep);
    this.hashes.length = keep;
    this.terms.length = keep;
    for (const entry of entries) {
      this.hashes.push(chainHash(this.hashes[this.hashes.length - 1] as number, entry));
      this.terms.push(entry.term);
    }
    return truncated;
  }

  resetTo(index: number, term: number, hash: number): void {
    this.base = index;
    this.hashes = [hash];
    this.terms = [term];
  }
}

export class SafetyChecker {
  // committedHashes[i] is the chain hash of the cluster's committed prefix through index i.
  private readonly committedHashes: number[] = [HASH_SEED];
  private readonly committedEntries: (Entry | null)[] = [null];
  private readonly hashByIndexTerm = new Map<string, number>();
  private readonly leaderByTerm = new Map<number, NodeId>();
  private readonly stateHashByIndex = new Map<number, number>();
  private readonly appliedHashByIndex = new Map<number, number>();

  committedIndex(): number {
    return this.committedHashes.length - 1;
  }

  committedEntry(index: number): Entry | null {
    return this.committedEntries[index] ?? null;
  }

  committedHash(index: number): number | undefined {
    return this.committedHashes[index];
  }

  onLeader(node: NodeId, term: number, chain: LogChain): void {
    const existing = this.leaderByTerm.get(term);
    if (existing !== undefined && existing !== node) {
      throw new SafetyViolation(`election safety: ${existing} and ${node} are both leaders of term ${term}`);
    }
    if (existing !== undefined) return;
    this.leaderByTerm.set(term, node);
    const committed = this.committedIndex();
    if (committed === 0) return;
    if (chain.lastIndex() < committed) {
      throw new SafetyViolation(`leader completeness: ${node} leads term ${term} with last index ${chain.lastIndex()} < committed ${committed}`);
    }
    const hash = chain.hashAt(committed);
    if (hash !== undefined && hash !== this.committedHashes[committed]) {
      throw new SafetyViolation(`leader completeness: ${node} leads term ${term} without the committed entry at ${committed}`);
    }
  }

  /** Before a node replaces its log from `index` on; `replacedHash` is its chain hash there. */
  onTruncate(node: NodeId, index: number, replacedHash: number | undefined): void {
    if (replacedHash !== undefined && replacedHash === this.committedHashes[index]) {
      throw new SafetyViolation(`committed entry lost: ${node} truncated the committed entry at ${index}`);
    }
  }

  /** After a node durably appended `entries`. */
  onAppend(node: NodeId, chain: LogChain, entries: readonly Entry[]): void {
    for (const entry of entries) {
      const key = `${entry.index}:${entry.term}`;
      const hash = chain.hashAt(entry.index) as number;
      const seen = this.hashByIndexTerm.get(key);
      if (seen === undefined) {
        this.hashByIndexTerm.set(key, hash);
      } else if (seen !== hash) {
        throw new SafetyViolation(`log matching: ${node} holds index ${entry.index} term ${entry.term} with a different prefix`);
      }
    }
  }

  /** After a node durably recorded commit index `commit`; `entryAt` reads its log. */
  onCommit(node: NodeId, chain: LogChain, commit: number, entryAt: (index: number) => Entry | null): void {
    const known = this.committedIndex();
    const overlap = Math.min(known, commit);
    const hash = chain.hashAt(overlap);
    if (hash !== undefined && hash !== this.committedHashes[overlap]) {
      throw new SafetyViolation(`committed prefix diverges: ${node} committed a different entry at or before ${overlap}`);
    }
    for (let index = known + 1; index <= commit; index++) {
      const indexHash = chain.hashAt(index);
      if (indexHash === undefined) throw new SafetyViolation(`${node} commits ${index} beyond its durable log`);
      this.committedHashes.push(indexHash);
      this.committedEntries.push(entryAt(index));
      const applied = this.appliedHashByIndex.get(index);
      if (applied !== undefined && applied !== indexHash) {
        throw new SafetyViolation(`state machine safety: index ${index} was applied before it committed, with a different entry`);
      }
    }
  }

  /**
   * Committed entries must survive every future election: a voter lacking the latest committed
   * entry must not look at least as up to date as a quorum of voters, or it could win and
   * overwrite it. In correct Raft the majority holding a current-term entry at the commit index
   * never grants such a vote, so this holds at every step; the Figure 8 bug (committing an old-term
   * entry by counting replicas) breaks it at the moment of the commit, before anything is lost.
   */
  checkCommitDurable(voters: readonly NodeId[], chains: ReadonlyMap<NodeId, LogChain>): void {
    const committed = this.committedIndex();
    if (committed === 0 || voters.length === 0) return;
    const committedHash = this.committedHashes[committed];
    const quorum = Math.floor(voters.length / 2) + 1;
    for (const candidate of voters) {
      const chain = chains.get(candidate);
      if (chain === undefined || holds(chain, committed, committedHash)) continue;
      const lastIndex = chain.lastIndex();
      const lastTerm = chain.termAt(lastIndex) as number;
      let grants = 0;
      for (const voter of voters) {
        const voterChain = chains.get(voter);
        if (voterChain === undefined) continue;
        const voterLastTerm = voterChain.termAt(voterChain.lastIndex()) as number;
        if (lastTerm > voterLastTerm || (lastTerm === voterLastTerm && lastIndex >= voterChain.lastIndex())) grants++;
      }
      if (grants >= quorum) {
        throw new SafetyViolation(
          `committed entry at risk: ${candidate} lacks committed index ${committed} but its log (last ${lastIndex}/${lastTerm}) would win the votes of ${grants} of ${voters.length} voters`,
        );
      }
    }
  }

  /** After a node applied the entry at `index`, reaching `stateHash`. */
  onApply(node: NodeId, index: number, entryHash: number, stateHash: number): void {
    const committedHash = this.committedHashes[index];
    if (committedHash !== undefined && committedHash !== entryHash) {
      throw new SafetyViolation(`state machine safety: ${node} applied a non-committed entry at ${index}`);
    }
    const applied = this.appliedHashByIndex.get(index);
    if (applied === undefined) {
      this.appliedHashByIndex.set(index, entryHash);
    } else if (applied !== entryHash) {
      throw new SafetyViolation(`state machine safety: two nodes applied different entries at ${index}`);
    }
    const state = this.stateHashByIndex.get(index);
    if (state === undefined) {
      this.stateHashByIndex.set(index, stateHash);
    } else if (state !== stateHash) {
      throw new SafetyViolation(`state machine safety: ${node} reached a different state at ${index}`);
    }
  }

  /** Normal entries committed so far, in index order. */
  committedNormalEntries(): Entry[] {
    return this.committedEntries.filter((entry): entry is Entry => entry !== null && entry.type === EntryType.Normal);
  }
}

function holds(chain: LogChain, index: number, hash: number | undefined): boolean {
  // Entries at or before the snapshot base are committed and covered by the snapshot.
  if (index <= chain.firstKnownIndex()) return true;
  return chain.hashAt(index) === hash;
}
