/**
 * Scenario scripts: a line-oriented language driving a SimCluster in scripted mode, where nothing
 * ticks and no message moves unless the script says so. The safety checker watches every step,
 * as in random runs. Commands (node names are free-form words):
 *
 *   nodes a b c [prevote=off] [checkquorum=off] [lease=off] [max-msg-bytes=N] [inflight=N] [chunk-bytes=N]
 *   add-node d                          start a node with an empty configuration
 *   campaign a | tick a [n] | tick-all [n] | elapse n   (elapse: n x (tick-all, stabilize))
 *   deliver [from->to [type]] | drop [from->to [type]] | stabilize   (* matches any node; type
 *                                       is a message type such as vote or heartbeatResponse)
 *   crash a | restart a | isolate a | cut a->b | partition a b | c d e | heal
 *   propose a value [=> reason] | config a addVoter|addLearner|remove d [=> reason|any] | transfer a b
 *   read a ctx | snapshot a | propose-at-leader value
 *   expect role a leader | expect term a 3 | expect commit a 2 | expect leader a
 *   expect log a 1/1 2/1 | expect applied a v1 v2 | expect read a ctx 4 | expect no-read a ctx
 *   expect voters a b c d | expect outcome value ok|pending|<failure reason> | expect one-leader a b
 * Lines starting with # are comments.
 */
import { Role, type Faults, type NodeId, type RaftNode } from '../raft/index.js';
import { assert } from '../util/index.js';
import { SimCluster } from './cluster.js';

export class ScriptError extends Error {
  override readonly name = 'ScriptError';
}

const STABILIZE_ROUNDS_MAX = 10_000;

export class ScriptEnv {
  private cluster: SimCluster | null = null;
  private readonly readResults = new Map<string, number>();
  /** Each proposed value's outcome so far: 'ok' or the failure reason. */
  private readonly proposeOutcomes = new Map<string, string>();

  constructor(private readonly faults: Faults = {}) {}

  run(script: string): void {
    for (const [lineIndex, rawLine] of script.split('\n').entries()) {
      const line = rawLine.trim();
      if (line === '' || line.startsWith('#')) continue;
      try {
        this.execute(line.split(/\s+/));
      } catch (error) {
        const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        throw new ScriptError(`line ${lineIndex + 1} (${line}): ${message}`, { cause: error });
      }
    }
  }

  private get sim(): SimCluster {
    if (this.cluster === null) throw new ScriptError('the script must start with `nodes`');
    return this.cluster;
  }

  private raft(id: NodeId): RaftNode<number | null> {
    const raft = this.sim.node(id).driver;
    if (raft === null) throw new ScriptError(`node ${id} is down`);
    return raft;
  }

  private execute(words: string[]): void {
    const [command = '', ...args] = words;
    switch (command) {
      case 'nodes':
        return this.createNodes(args);
      case 'add-node':
        this.sim.addNode(need(args[0], 'node'));
        return;
      case 'campaign':
        return this.sim.campaign(need(args[0], 'node'));
      case 'tick':
        for (let i = 0; i < Number(args[1] ?? 1); i++) this.sim.tickNode(need(args[0], 'node'));
        return;
      case 'tick-all':
        for (let i = 0; i < Number(args[0] ?? 1); i++) this.tickAll();
        return;
      case 'elapse':
        for (let i = 0; i < Number(need(args[0], 'count')); i++) {
          this.tickAll();
          this.stabilize();
        }
        return;
      case 'deliver':
        return this.deliver(args[0] ?? '*->*', args[1]);
      case 'drop':
        return this.drop(args[0] ?? '*->*', args[1]);
      case 'stabilize':
        return this.stabilize();
      default:
        return this.executeFault(command, args);
    }
  }

  private executeFault(command: string, args: string[]): void {
    const sim = this.sim;
    switch (command) {
      case 'crash':
        return sim.crash(need(args[0], 'node'));
      case 'restart':
        return sim.restart(need(args[0], 'node'));
      case 'isolate': {
        const id = need(args[0], 'node');
        const others = [...sim.nodes.keys()].filter((other) => other !== id);
        return sim.network.partition([id], others, false);
      }
      case 'cut': {
        const [from = '', to = ''] = need(args[0], 'from->to').split('->');
        return sim.network.cut(from, to);
      }
      case 'partition': {
        const bar = args.indexOf('|');
        assert(bar > 0, 'partition needs `|` between the two sides');
        return sim.network.partition(args.slice(0, bar), args.slice(bar + 1), false);
      }
      case 'heal':
        return sim.network.heal();
      default:
        return this.executeRequest(command, args);
    }
  }

  private executeRequest(command: string, args: string[]): void {
    const sim = this.sim;
    const id = need(args[0], 'node');
    switch (command) {
      case 'propose': {
        const value = need(args[1], 'value');
        sim.propose(id, value, (outcome) => {
          if (this.proposeOutcomes.has(value)) throw new ScriptError(`proposal ${value} settled twice`);
          this.proposeOutcomes.set(value, outcome.type === 'ok' ? 'ok' : outcome.reason);
        });
        const expectedRefusal = args[2] === '=>' ? args[3] : undefined;
        const outcome = this.proposeOutcomes.get(value);
        const refusal = outcome === 'ok' ? undefined : outcome;
        if (expectedRefusal !== refusal) throw new ScriptError(`propose ${value}: expected ${expectedRefusal ?? 'acceptance'}, got ${refusal ?? 'acceptance'}`);
        return;
      }
      case 'config': {
        const type = need(args[1], 'change type');
        assert(type === 'addVoter' || type === 'addLearner' || type === 'remove', `unknown config change ${type}`);
        this.raft(id);
        const refusal = this.sim.changeConfig(id, { type, nodeId: need(args[2], 'node') });
        const expectedRefusal = args[3] === '=>' ? args[4] : undefined;
        // `=> any`: the script goes on either way (a broken variant may accept what must be refused).
        if (expectedRefusal === 'any') return;
        if (expectedRefusal !== refusal) throw new ScriptError(`config: expected ${expectedRefusal ?? 'acceptance'}, got ${refusal ?? 'acceptance'}`);
        return;
      }
      case 'transfer': {
        this.raft(id);
        const refusal = this.sim.transferLeadership(id, need(args[1], 'target'));
        if (refusal !== undefined) throw new ScriptError(`transfer refused: ${refusal}`);
        return;
      }
      case 'read': {
        const context = need(args[1], 'context');
        return sim.read(id, (stateMachine) => {
          if (stateMachine !== null) this.readResults.set(`${id}/${context}`, stateMachine.appliedIndex);
        });
      }
      case 'snapshot':
        return sim.snapshotNow(id);
      case 'propose-at-leader': {
        const leader = sim.leader();
        if (leader === null) throw new ScriptError('no leader');
        return this.executeRequest('propose', [leader, ...args]);
      }
      case 'expect':
        return this.expect(args);
      default:
        throw new ScriptError(`unknown command ${command}`);
    }
  }

  private createNodes(args: string[]): void {
    const ids = args.filter((arg) => !arg.includes('='));
    const flags = new Map(args.filter((arg) => arg.includes('=')).map((arg) => arg.split('=') as [string, string]));
    this.cluster = new SimCluster({
      seed: 1,
      nodeIds: ids,
      network: { oneWayDelayMsMin: 1, oneWayDelayMsMax: 1, packetLossProbability: 0, packetDuplicateProbability: 0 },
      tickMsMin: 10,
      tickMsMax: 10,
      manualNetwork: true,
      faults: this.faults,
      raft: {
        electionTicks: 10,
        heartbeatTicks: 1,
        preVote: flags.get('prevote') !== 'off',
        checkQuorum: flags.get('checkquorum') !== 'off',
        leaderLease: flags.get('lease') !== 'off',
        maxMessageBytes: Number(flags.get('max-msg-bytes') ?? 1 << 20),
        inflightCountMax: Number(flags.get('inflight') ?? 256),
        snapshotChunkBytes: Number(flags.get('chunk-bytes') ?? 1 << 20),
      },
    });
  }

  private tickAll(): void {
    for (const node of this.sim.upNodes()) this.sim.tickNode(node.id);
  }

  /** Delivers the currently pending messages that match (one hop: replies wait for the next). */
  private deliver(pattern: string, type?: string): void {
    const sim = this.sim;
    const matches = matcher(pattern, type);
    const batch = sim.pendingMessages.filter(matches);
    sim.pendingMessages = sim.pendingMessages.filter((message) => !matches(message));
    for (const message of batch) sim.deliver(message);
  }

  private drop(pattern: string, type?: string): void {
    const matches = matcher(pattern, type);
    this.sim.pendingMessages = this.sim.pendingMessages.filter((message) => !matches(message));
  }

  private stabilize(): void {
    for (let round = 0; round < STABILIZE_ROUNDS_MAX; round++) {
      if (this.sim.pendingMessages.length === 0) return;
      this.deliver('*->*');
    }
    throw new ScriptError(`stabilize did not settle within ${STABILIZE_ROUNDS_MAX} rounds`);
  }

  private expect(args: string[]): void {
    const [what = '', id = '', ...rest] = args;
    const status = (): ReturnType<RaftNode<unknown>['status']> => this.raft(id).status();
    const equal = (actual: unknown, expected: unknown): void => {
      if (String(actual) !== String(expected)) throw new ScriptError(`expected ${what} of ${id} to be ${String(expected)}, got ${String(actual)}`);
    };
    switch (what) {
      case 'role':
        return equal(status().role, rest[0]);
      case 'leader':
        return equal(status().role, Role.Leader);
      case 'term':
        return equal(status().term, rest[0]);
      case 'commit':
        return equal(status().commit, rest[0]);
      case 'voters':
        return equal([...status().config.voters].sort().join(' '), [...rest].sort().join(' '));
      case 'log': {
        const storage = this.sim.node(id).storage;
        const entries = storage.entries(storage.firstIndex(), storage.lastIndex() + 1, Infinity);
        return equal(entries.map((entry) => `${entry.index}/${entry.term}`).join(' '), rest.join(' '));
      }
      case 'applied':
        return equal(this.sim.node(id).stateMachine.values.join(' '), rest.join(' '));
      case 'read':
        return equal(this.readResults.get(`${id}/${rest[0]}`) ?? 'none', rest[1]);
      case 'one-leader': {
        const leaders = [id, ...rest].filter((node) => this.sim.node(node).driver?.status().role === Role.Leader);
        return equal(leaders.length, 1);
      }
      case 'outcome':
        // Here `id` is the proposed value.
        return equal(this.proposeOutcomes.get(id) ?? 'pending', rest[0]);
      case 'no-read':
        return equal(this.readResults.get(`${id}/${rest[0]}`) ?? 'none', 'none');
      default:
        throw new ScriptError(`unknown expectation ${what}`);
    }
  }
}

function need(value: string | undefined, what: string): string {
  if (value === undefined) throw new ScriptError(`missing ${what}`);
  return value;
}

function matcher(pattern: string, type?: string): (message: { from: NodeId; to: NodeId; type: string }) => boolean {
  const [from = '*', to = '*'] = pattern.split('->');
  return (message) => (from === '*' || message.from === from) && (to === '*' || message.to === to) && (type === undefined || message.type === type);
}
