// Goal: hostile traffic at a live annal node (random, truncated and oversized packets, wrong msgpack
// types, a node claiming a real agent's name, forged accusations, bogus TCP streams) is dropped and
// counted; the node keeps running and never reports the healthy real agent as failed. Method: an
// annal node joined to a real `serf agent`; a seeded generator (SEED env) fires raw UDP datagrams
// and TCP streams at annal; then we check annal's counters and both sides' member lists.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { Prng } from '../src/util/index.js';
import { Membership, localTimings } from '../src/membership/index.js';
import { killAllAgents, rpcMember, startAgent, waitFor } from './serf-agent.js';

after(killAllAgents);
const seed = Number(process.env.SEED ?? 6);

const fromHex = (hex: string): Buffer => Buffer.from(hex, 'hex');
// Captured between two real serf 0.9.4 agents: alive gossip with CRC, and a ping.
const capturedAlive = fromHex('0c09b8454a0702004a00440486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461b1ff82a26463a36f6e65a4726f6c65a26462a44e6f6465a161a4506f7274cd1f0aa356736ea60105020205050486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461abff81a4726f6c65a3776562a44e6f6465a162a4506f7274cd1f0ba356736ea6010502020505');

/** msgpack map of short-string keys to values, by hand (the attacker doesn't use our encoder). */
function mapOf(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [Buffer.of(0x80 | entries.length)];
  for (const [key, value] of entries) parts.push(Buffer.of(0xa0 | key.length), Buffer.from(key), value);
  return Buffer.concat(parts);
}
const str = (text: string): Buffer => Buffer.concat([Buffer.of(0xa0 | text.length), Buffer.from(text)]);

/** The targeted forgeries, then random noise (sent in that order, so a full socket buffer loses only noise). */
function hostilePackets(prng: Prng, victim: string, victimIncarnation: number): Buffer[] {
  const packets: Buffer[] = [];
  // Wrong types, huge lengths, bad compound headers.
  packets.push(Buffer.concat([Buffer.of(4), mapOf([['Node', Buffer.of(7)], ['Incarnation', str('x')]])]));
  packets.push(Buffer.of(4, 0xdf, 0xff, 0xff, 0xff, 0xff), Buffer.of(7, 200, 0xff, 0xff), Buffer.of(9, 0x82, 0xa4), Buffer.alloc(1400, 0x91));
  // A node claiming the victim's name from another address, with a higher incarnation.
  packets.push(
    Buffer.concat([
      Buffer.of(4),
      mapOf([
        ['Addr', Buffer.of(0xa4, 10, 66, 66, 66)],
        ['Incarnation', Buffer.of(0xcd, 0x10, 0x00)],
        ['Meta', Buffer.concat([Buffer.of(0xa1), Buffer.of(0xff)])],
        ['Node', str(victim)],
        ['Port', Buffer.of(0xcd, 0x1f, 0x90)],
        ['Vsn', Buffer.of(0xa6, 1, 5, 2, 2, 5, 5)],
      ]),
    ]),
  );
  // Forged death of the victim from an unknown accuser.
  packets.push(Buffer.concat([Buffer.of(5), mapOf([['From', str('mallory')], ['Incarnation', Buffer.of(victimIncarnation)], ['Node', str(victim)]])]));
  for (let i = 0; i < 200; i++) packets.push(Buffer.from(prng.fill(new Uint8Array(prng.int(0, 1400)))));
  for (let i = 0; i < 100; i++) packets.push(capturedAlive.subarray(0, prng.int(0, capturedAlive.length - 1)));
  return packets;
}

async function hostileStream(port: number, bytes: Buffer): Promise<void> {
  await new Promise<void>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.end(bytes));
    socket.on('data', () => undefined);
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
  });
}

test(`hostile packets and streams are dropped and counted; the real agent stays alive (seed=${seed})`, { timeout: 60_000 }, async () => {
  const s1 = await startAgent({ name: 's1' });
  const annal = await Membership.start({ nodeName: 'annal-h', bindAddr: '127.0.0.1:0', tags: { rpc_addr: '127.0.0.1:8400' }, startJoinAddrs: [s1.bindAddr], timings: localTimings });
  const failures: string[] = [];
  annal.subscribe((event) => event.type === 'member-failed' && failures.push(event.member.name));
  const udp = createSocket('udp4');
  try {
    await waitFor(async () => (await rpcMember(s1, 'annal-h'))?.status === 'alive', 15_000, 's1 to list annal-h');
    const prng = new Prng(seed);
    const packets = hostilePackets(prng, 's1', 1);
    // Paced in batches (each waits for annal to have read the previous one), so the kernel's socket
    // buffer never overflows and every packet is really examined.
    for (let first = 0; first < packets.length; first += 10) {
      const before = annal.stats().packetsReceived;
      const batch = packets.slice(first, first + 10);
      for (const packet of batch) await new Promise<void>((resolve) => udp.send(packet, annal.address.port, '127.0.0.1', () => resolve()));
      await waitFor(() => annal.stats().packetsReceived >= before + batch.length, 10_000, `annal to read packets ${first}..${first + batch.length - 1}`);
    }
    // TCP: a push/pull header claiming a 4 GiB user state, random bytes, an encrypted frame we can't read.
    await hostileStream(annal.address.port, Buffer.concat([Buffer.of(6), mapOf([['Join', Buffer.of(0xc3)], ['Nodes', Buffer.of(0)], ['UserStateLen', Buffer.of(0xce, 0xff, 0xff, 0xff, 0xff)]])]));
    await hostileStream(annal.address.port, Buffer.from(prng.fill(new Uint8Array(5000))));
    await hostileStream(annal.address.port, Buffer.of(10, 0xff, 0xff, 0xff, 0xff));
    const streamDrops = (): number => Object.entries(annal.stats().counters).filter(([reason]) => reason.startsWith('drop: stream')).reduce((sum, [, n]) => sum + n, 0);
    await waitFor(() => streamDrops() >= 3, 10_000, 'the three TCP streams to be dropped');
    await waitFor(() => annal.stats().counters['drop: accusation from an unknown node'] === 1, 10_000, 'the forged death to be dropped');
    const counters = annal.stats().counters;
    assert.ok(Object.keys(counters).length < 40, `counter keys stay few: ${Object.keys(counters).length}`);
    const dropped = Object.entries(counters).filter(([reason]) => reason.startsWith('drop:')).reduce((sum, [, n]) => sum + n, 0);
    assert.ok(dropped >= packets.length * 0.9, `only ${dropped} drops counted for ${packets.length} packets: ${JSON.stringify(counters)}`);
    assert.equal(counters['drop: alive claiming a known name from another address'], 1, JSON.stringify(counters));
    assert.equal(counters['drop: accusation from an unknown node'], 1);
    // Several protocol periods later: s1 is still alive with its real address; annal still listed alive.
    await waitFor(async () => (await rpcMember(s1, 'annal-h'))?.status === 'alive', 5_000, 's1 still listing annal-h');
    const start = Date.now();
    await waitFor(() => Date.now() - start > 3_000 || failures.length > 0, 10_000, 'three protocol periods');
    assert.deepEqual(failures, []);
    const victim = annal.members().find((m) => m.name === 's1');
    assert.equal(victim?.status, 'alive');
    assert.equal(victim?.port, Number(s1.bindAddr.split(':')[1]));
  } finally {
    udp.close();
    await annal.shutdown();
    await killAllAgents();
  }
});
