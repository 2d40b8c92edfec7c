/**
 * A network for the cluster under test, so that links can be cut: each node in its own network
 * namespace, joined by a veth pair to a bridge in the root namespace (where the clients run), on a
 * /24 of 10.0.0.0/8 no route here uses yet. A cut is a blackhole route in the sender's namespace
 * (packets to that peer are dropped), so a one-way cut drops one direction's packets (TCP dies
 * both ways, since its acknowledgements cannot return; UDP gossip still flows the other way).
 * A slow node gets a token-bucket filter on its egress (tc tbf: rate limit, queueing delay, drops
 * beyond the queue). Needs root and `ip`; `create` says why not otherwise. `destroy` removes every
 * namespace and link it made, and is safe to call twice.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const IP = 'ip';

function run(args: string[]): string {
  return execFileSync(IP, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

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
      const veth = `anv${this.id}${i}`;
      run(['netns', 'add', ns]);
      run(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      run(['link', 'set', veth, 'master', this.bridge, 'up']);
      run(['-n', ns, 'addr', 'add', `${this.host(i)}/24`, 'dev', 'eth0']);
      run(['-n', ns, 'link', 'set', 'eth0', 'up']);
      run(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  }

  /** Drops node `from`'s packets to node `to`. */
  cut(from: number, to: number): void {
    const key = `${from}>${to}`;
    if (this.cuts.has(key)) return;
    run(['-n', this.namespace(from), 'route', 'add', 'blackhole', `${this.host(to)}/32`]);
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
    for (const i of this.slowed) tryRun(['netns', 'exec', this.namespace(i), 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root']);
    this.slowed.clear();
  }

  /** Removes the namespaces (with their veth ends, which removes the pairs) and the bridge. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (let i = 0; i < this.size; i++) tryRun(['netns', 'del', this.namespace(i)]);
    tryRun(['link', 'del', this.bridge]);
  }

  /** What is left of this network (namespaces, links): empty once destroyed. */
  leftovers(): string[] {
    const namespaces = run(['netns', 'list']).split('\n').filter((line) => line.includes(`annal-nemesis-${this.id}-`));
    const links = run(['-o', 'link', 'show']).split('\n').filter((line) => line.includes(this.id));
    return [...namespaces, ...links];
  }
}
