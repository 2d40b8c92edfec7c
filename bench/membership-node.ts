/**
 * One annal membership node as its own process, for bench/membership.ts (so kill -9 is real and
 * CPU is per node, as with serf agents). Prints JSON lines on stdout: `{"ready": port}`, then
 * `{"t": epochMs, "type": "member-join", "name": ...}` per event, and `{"stats": ...}` on request.
 * Reads commands on stdin: `join host:port`, `stats`, `leave`.
 * Usage: node membership-node.js <name>
 */
import { createInterface } from 'node:readline';
import { Membership, localTimings } from '../src/membership/index.js';

const name = process.argv[2] ?? 'annal';
const membership = await Membership.start({ nodeName: name, bindAddr: '127.0.0.1:0', tags: { rpc_addr: '127.0.0.1:8400' }, timings: localTimings });
const print = (value: unknown): void => void process.stdout.write(JSON.stringify(value) + '\n');
membership.subscribe((event) => print({ t: Date.now(), type: event.type, name: event.member.name }));
print({ ready: membership.address.port });
for await (const line of createInterface({ input: process.stdin })) {
  const [command, argument] = line.trim().split(/\s+/);
  if (command === 'join' && argument) {
    await membership.join([argument]).catch((error: unknown) => print({ error: String(error) }));
    print({ t: Date.now(), joined: argument });
  } else if (command === 'stats') {
    print({ stats: membership.stats() });
  } else if (command === 'leave') {
    await membership.leave();
    process.exit(0);
  }
}
