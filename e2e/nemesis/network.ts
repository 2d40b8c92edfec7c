/**
 * A network for the cluster under test, so that links can be cut: each node in its own network
 * namespace, joined by a veth pair to a bridge in the root namespace (where the clients run), on a
 * /24 of 10.0.0.0/8 no route here uses yet. A cut is a blackhole route in the sender's namespace
 * (packets to that peer are dropped), so a one-way cut drops one direction's packets (TCP dies
 * both ways, since its acknowledgements cannot return; UDP gossip still flows the other way).
 * A slow node gets a token-bucket filter on its egress (tc tbf: rate limit, queueing delay, drops
 * beyond the queue). Needs root and `ip`; `create` says why not otherwise. `destroy` removes every
 * namespace and link it made, and is safe to call twice.
 *
 * With `nft` (nftables) as well, `startRelays` routes every node's RPC connections to the others
 * through TCP relays in this process (link-proxy.ts): in each node's namespace a DNAT rule sends
 * a connection to peer B's RPC address to the relay of that directed link, which connects on to B.
 * The nodes advertise and dial their real addresses (TLS names, gossip tags and GetServers are
 * unchanged) and the clients, in the root namespace, reach the nodes directly. Since the DNAT
 * moves RPC traffic off the blackhole routes, a cut also holds what the relays carry on that path.
 * Gossip (UDP and TCP on the gossip port) is not relayed: cuts reach it through the routes.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Prng } from '../../src/util/index.js';
import { LinkProxies } from './link-proxy.js';

const IP = 'ip';

function run(args: string[]): string {
  return execFileSync(IP, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The RPC port of every node: each has its own namespace and address, so one port serves all. */
export const NODE_RPC_PORT = 7400;

/** Runs, ignoring failure (removing what may not be there). */
function tryRun(args: string[]): void {
  try {
    run(args);
  } catch {
    // absent already
  }
}

export class NetnsNetwork {
  private readonly cuts = new Set<string>();
  private readonly slowed = new Set<number>();
  private destroyed = false;
  /** Set by startRelays: the RPC links between the nodes, whose traffic the link faults shape. */
  relays: LinkProxies | undefined;

  private constructor(
    private readonly id: string,
    private readonly subnet: string,
    readonly size: number,
  ) {}

  /** A network of `size` nodes, or the reason it cannot be made here. */
  static create(size: number): NetnsNetwork | { skip: string } {
    if (process.getuid?.() !== 0) return { skip: 'network partitions need root (network namespaces)' };
    try {
      run(['-V']);
    } catch {
      return { skip: 'network partitions need the ip command (iproute2)' };
    }
    const routes = run(['-4', 'route', 'show']);
    let subnet = '';
    for (let attempt = 0; attempt < 50 && subnet === ''; attempt++) {
      const [a, b] = randomBytes(2);
      const candidate = `10.${200 + (a! % 50)}.${b!}`;
      if (!routes.includes(`${candidate}.`)) subnet = candidate;
    }
    if (subnet === '') return { skip: 'no free 10.x.y.0/24 subnet for the test network' };
    const network = new NetnsNetwork(randomBytes(3).toString('hex'), subnet, size);
    // Removed at exit even if the run throws or is interrupted (SIGINT handlers call exit).
    process.once('exit', () => network.destroy());
    try {
      network.build();
    } catch (error) {
      network.destroy();
      return { skip: `network namespaces are not usable here: ${(error as Error).message.split('\n')[0]}` };
    }
    return network;
  }

  private get bridge(): string {
    return `anb${this.id}`;
  }

  namespace(i: number): string {
    return `annal-nemesis-${this.id}-${i}`;
  }

  /** The host end of node i's veth pair (the other end is eth0 in its namespace). */
  private veth(i: number): string {
    return `anv${this.id}${i}`;
  }

  /** The address of node `i` (0-based). */
  host(i: number): string {
    return `${this.subnet}.${i + 1}`;
  }

  /** The address the clients (this process) reach the nodes from. */
  get clientHost(): string {
    return `${this.subnet}.254`;
  }

  /** Runs a command in node i's namespace. */
  wrap(i: number): string[] {
    return [IP, 'netns', 'exec', this.namespace(i)];
  }

  private build(): void {
    run(['link', 'add', this.bridge, 'type', 'bridge']);
    run(['addr', 'add', `${this.clientHost}/24`, 'dev', this.bridge]);
    run(['link', 'set', this.bridge, 'up']);
    for (let i = 0; i < this.size; i++) {
      const ns = this.namespace(i);
      const veth = this.veth(i);
      run(['netns', 'add', ns]);
      run(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      run(['link', 'set', veth, 'master', this.bridge, 'up']);
      run(['-n', ns, 'addr', 'add', `${this.host(i)}/24`, 'dev', 'eth0']);
      run(['-n', ns, 'link', 'set', 'eth0', 'up']);
      run(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  }

  /**
   * Puts a relay on every RPC link between the nodes (see the file comment). Returns why not if
   * nftables is missing; the network then works as before, without link faults. Call before the
   * nodes start, so that no connection bypasses the relays.
   */
  async startRelays(): Promise<string | undefined> {
    try {
      execFileSync('nft', ['--version'], { stdio: 'ignore' });
    } catch {
      return 'link faults (delay, loss, stalls) need the nft command (nftables)';
    }
    const relays = new LinkProxies(this.size, this.clientHost, (to) => ({ host: this.host(to), port: NODE_RPC_PORT }));
    this.relays = relays;
    await relays.listen();
    for (let from = 0; from < this.size; from++) {
      const rules: string[] = [];
      for (let to = 0; to < this.size; to++) {
        if (to !== from) rules.push(`    ip daddr ${this.host(to)} tcp dport ${NODE_RPC_PORT} dnat to ${this.clientHost}:${relays.port(from, to)}`);
      }
      // The table lives in the node's namespace and goes with it.
      const ruleset = ['table ip annal_nemesis {', '  chain output {', '    type nat hook output priority -100; policy accept;', ...rules, '  }', '}', ''].join('\n');
      execFileSync(IP, ['netns', 'exec', this.namespace(from), 'nft', '-f', '-'], { input: ruleset, stdio: ['pipe', 'pipe', 'pipe'] });
    }
    return undefined;
  }

  /** Drops node `from`'s packets to node `to` (and holds its RPC bytes to `to` in the relays). */
  cut(from: number, to: number): void {
    const key = `${from}>${to}`;
    if (this.cuts.has(key)) return;
    run(['-n', this.namespace(from), 'route', 'add', 'blackhole', `${this.host(to)}/32`]);
    this.relays?.setFaults(from, to, { stalled: true }, new Prng(0));
    this.cuts.add(key);
  }

  /** Cuts every link between nodes of different groups, both ways. */
  partition(groups: readonly (readonly number[])[]): void {
    for (const [g, group] of groups.entries()) {
      for (const [h, other] of groups.entries()) {
        if (g === h) continue;
        for (const a of group) for (const b of other) this.cut(a, b);
      }
    }
  }

  /** Limits node i's egress to `rateKbit` with up to `latencyMs` of queueing; beyond it, drops. */
  slow(i: number, rateKbit: number, latencyMs: number): void {
    run(['netns', 'exec', this.namespace(i), 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '16kb', 'latency', `${latencyMs}ms`]);
    this.slowed.add(i);
  }

  /** Restores every link. */
  heal(): void {
    for (const key of this.cuts) {
      const [from, to] = key.split('>').map(Number) as [number, number];
      tryRun(['-n', this.namespace(from), 'route', 'del', 'blackhole', `${this.host(to)}/32`]);
    }
    this.cuts.clear();
    this.relays?.heal();
    for (const i of this.slowed) tryRun(['netns', 'exec', this.namespace(i), 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root']);
    this.slowed.clear();
  }

  /** Closes the relays (resetting what they carry), then removes everything as `destroy` does. */
  async close(): Promise<void> {
    await this.relays?.close();
    this.destroy();
  }

  /**
   * Removes the veth pairs, the namespaces and the bridge. Each pair is deleted by its host end
   * first: the kernel tears down a deleted namespace's devices later, in a work queue, so leaving
   * the pairs to `netns del` would leave them listed for a while after this returns.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (let i = 0; i < this.size; i++) {
      tryRun(['link', 'del', this.veth(i)]);
      tryRun(['netns', 'del', this.namespace(i)]);
    }
    tryRun(['link', 'del', this.bridge]);
  }

  /** What is left of this network (namespaces, links, relay listeners and sockets): empty once closed. */
  leftovers(): string[] {
    const namespaces = run(['netns', 'list']).split('\n').filter((line) => line.includes(`annal-nemesis-${this.id}-`));
    const links = run(['-o', 'link', 'show']).split('\n').filter((line) => line.includes(this.id));
    return [...namespaces, ...links, ...(this.relays?.openHandles() ?? [])];
  }
}
