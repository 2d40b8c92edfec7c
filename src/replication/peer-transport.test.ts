/**
 * Goal: Raft messages cross real gRPC between PeerTransports and PeerServices: every type arrives
 * intact and in order, sends of one turn share one write, a dead, black-holed or non-reading
 * peer costs only its own messages, a restarted peer is found again, the queue bound drops
 * instead of growing, cluster ids are enforced and adopted, hostile input is dropped and counted
 * while the stream keeps working, and Forward/ReadIndex errors come back as the same classes.
 * Method: TestPeers on 127.0.0.1 with port 0 (plaintext; peer-mtls.test.ts covers mTLS), real
 * servers stopped and restarted on the same port, a raw TCP listener as a black hole, a raw
 * grpc-js client for hostile bytes; every wait is on a delivery or a log line.
 */
import assert from 'node:assert/strict';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { Client, credentials as grpcCredentials, Metadata, Server, ServerCredentials, status as Status, type ServiceError } from '@grpc/grpc-js';
import { EntryType, type Message } from '../raft/index.js';
import { AssertionError, ClosedError, DeadlineExceededError, InternalError, NotLeaderError, OutcomeUnknownError, OverloadedError, UnavailableError } from '../util/index.js';
import { InvalidReason } from './peer-codec.js';
import { SendDropReason } from './peer-metrics.js';
import { PeerMetadataKey, RaftPeerService } from './peer-protocol.js';
import { comparable, sampleMessages } from './peer-test-fixtures.js';
import { TestPeer } from './peer-test-node.js';
import { encodeMessageBatch } from './peer-wire.js';

let cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function peers(ids: string[], options: { clusterId?: string | ((id: string) => string | undefined) } = {}) {
  const addresses = new Map<string, string>();
  const started: TestPeer[] = [];
  for (const id of ids) {
    const clusterId = typeof options.clusterId === 'function' ? options.clusterId(id) : options.clusterId;
    const peer = await TestPeer.start({ id, addresses, ...(clusterId === undefined ? {} : { clusterId }) });
    cleanups.push(() => peer.close());
    started.push(peer);
  }
  return { addresses, peers: started };
}

const heartbeat = (from: string, to: string, commit: number): Message => ({ type: 'heartbeat', from, to, term: 3, commit, context: null });
const isHeartbeat = (commit: number) => (message: Message) => message.type === 'heartbeat' && message.commit === commit;

/** A TCP listener that accepts connections and never answers: a peer that hangs. */
async function blackHole(): Promise<{ address: string; close: () => void }> {
  const sockets: Socket[] = [];
  const server: NetServer = createServer((socket) => {
    socket.pause();
    sockets.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** An address nothing listens on (a port just freed). */
async function closedAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

describe('PeerTransport and PeerService', { timeout: 60_000 }, () => {
  it('exchange every message type between three nodes, intact and in order', async () => {
    const { peers: [n1, n2, n3] } = await peers(['n1', 'n2', 'n3']);
    const toN2 = sampleMessages('n1', 'n2');
    const toN3 = sampleMessages('n1', 'n3');
    const toN1 = sampleMessages('n2', 'n1');
    n1!.transport.send([...toN2, ...toN3]);
    n2!.transport.send(toN1);
    await Promise.all([n2!.inbox.waitForCount(toN2.length), n3!.inbox.waitForCount(toN3.length), n1!.inbox.waitForCount(toN1.length)]);
    assert.deepEqual(comparable(n2!.inbox.messages), comparable(toN2));
    assert.deepEqual(comparable(n3!.inbox.messages), comparable(toN3));
    assert.deepEqual(comparable(n1!.inbox.messages), comparable(toN1));
    assert.equal(n1!.metrics.total(n1!.metrics.dropped), 0);
    assert.equal(n2!.metrics.total(n2!.metrics.rejected), 0);
  });

  it('puts the sends of one turn into one write', async () => {
    const { peers: [n1, n2] } = await peers(['n1', 'n2']);
    n1!.transport.send([heartbeat('n1', 'n2', 0)]);
    await n2!.inbox.waitFor(isHeartbeat(0));
    const batchesBefore = n1!.metrics.batchCount;
    const entries = [{ index: 1, term: 3, type: EntryType.Normal, data: new Uint8Array(1024) }];
    for (let i = 1; i <= 1000; i++) {
      n1!.transport.send([i % 2 === 0 ? heartbeat('n1', 'n2', i) : { type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 0, prevLogTerm: 0, commit: i, entries }]);
    }
    await n2!.inbox.waitFor(isHeartbeat(1000));
    assert.equal(n1!.metrics.batchCount - batchesBefore, 1, 'one MessageBatch for 1000 send() calls');
    assert.equal(n2!.inbox.messages.length, 1001);
    const commits = n2!.inbox.messages.slice(1).map((message) => (message.type === 'heartbeat' || message.type === 'append' ? message.commit : -1));
    assert.deepEqual(commits, Array.from({ length: 1000 }, (_, i) => i + 1), 'in send order');
  });

  it('splits a backlog larger than maxBatchBytes into several writes', async () => {
    const addresses = new Map<string, string>();
    const n2 = await TestPeer.start({ id: 'n2', addresses });
    const n1 = await TestPeer.start({ id: 'n1', addresses, transport: { maxBatchBytes: 64 * 1024 } });
    cleanups.push(() => n1.close(), () => n2.close());
    const entries = [{ index: 1, term: 3, type: EntryType.Normal, data: new Uint8Array(16 * 1024) }];
    for (let i = 1; i <= 40; i++) n1.transport.send([{ type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 0, prevLogTerm: 0, commit: i, entries }]);
    await n2.inbox.waitForCount(40);
    assert.ok(n1.metrics.batchCount >= 10 && n1.metrics.batchCount < 40, `${n1.metrics.batchCount} writes for 640 KiB in 64 KiB batches`);
  });

  it('keeps delivering to a reachable peer while others are dead or hang', async () => {
    const { addresses, peers: [n1, n2] } = await peers(['n1', 'n2']);
    const hole = await blackHole();
    cleanups.push(() => hole.close());
    addresses.set('hung', hole.address);
    addresses.set('dead', await closedAddress());
    const big = { index: 1, term: 3, type: EntryType.Normal, data: new Uint8Array(32 * 1024) };
    for (let round = 1; round <= 50; round++) {
      n1!.transport.send([
        { type: 'append', from: 'n1', to: 'hung', term: 3, prevLogIndex: 0, prevLogTerm: 0, commit: round, entries: [big] },
        heartbeat('n1', 'dead', round),
        heartbeat('n1', 'n2', round),
        heartbeat('n1', 'nowhere', round),
      ]);
      await n2!.inbox.waitFor(isHeartbeat(round));
    }
    assert.equal(n2!.inbox.messages.length, 50);
    assert.equal(n1!.metrics.dropped.get(SendDropReason.NoAddress), 50, 'a peer without an address: dropped');
    await n1!.logger.waitFor(/stream to peer dead .* ended: UNAVAILABLE/);
    assert.ok((n1!.metrics.dropped.get(SendDropReason.StreamFailed) ?? 0) > 0, 'what was sent to the dead peer is counted as lost');
  });

  it('logs a peer outage once, then reconnects when the peer is back on its port', async () => {
    const { peers: [n1, n2] } = await peers(['n1', 'n2']);
    n1!.transport.send([heartbeat('n1', 'n2', 1)]);
    await n2!.inbox.waitFor(isHeartbeat(1));
    n2!.kill();
    // Raft keeps sending (heartbeats every tick); so does this test, until the restarted server answers.
    let commit = 1;
    const ticker = setInterval(() => n1!.transport.send([heartbeat('n1', 'n2', ++commit)]), 10);
    cleanups.push(() => clearInterval(ticker));
    await n1!.logger.waitFor(/stream to peer n2 .* ended/);
    const failuresSeen = n1!.metrics.streamFailures;
    await n1!.metrics.until(() => n1!.metrics.streamFailures >= failuresSeen + 2, 'two more attempts while the port is closed');
    await n2!.serve(n2!.port);
    const before = n2!.inbox.messages.length;
    await n2!.inbox.until(() => n2!.inbox.messages.length > before, 'a message after the restart');
    await n1!.logger.waitFor(/stream to peer n2 is open again/);
    assert.equal(n1!.logger.matching(/stream to peer n2 .* ended/, 'warn').length, 1, 'one warn line for the outage');
    assert.ok(n1!.logger.matching(/stream to peer n2 .* ended/, 'debug').length >= 2, 'later attempts at debug level');
  });

  it('drops at the queue bound instead of growing when a peer stops reading', async () => {
    const addresses = new Map<string, string>();
    const stalled = new Server();
    // Accepts the stream and never reads it: HTTP/2 flow control stops the sender.
    stalled.addService({ stream: RaftPeerService.stream }, { stream: (call: { sendMetadata: (m: Metadata) => void }) => call.sendMetadata(new Metadata()) });
    const port = await new Promise<number>((resolve, reject) => stalled.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    cleanups.push(() => stalled.forceShutdown());
    addresses.set('stalled', `127.0.0.1:${port}`);
    const maxQueuedBytesPerPeer = 256 * 1024;
    const n2 = await TestPeer.start({ id: 'n2', addresses });
    const n1 = await TestPeer.start({ id: 'n1', addresses, transport: { maxQueuedBytesPerPeer } });
    cleanups.push(() => n1.close(), () => n2.close());
    const entries = [{ index: 1, term: 3, type: EntryType.Normal, data: new Uint8Array(8 * 1024) }];
    for (let round = 1; round <= 300; round++) {
      n1.transport.send([
        { type: 'append', from: 'n1', to: 'stalled', term: 3, prevLogIndex: 0, prevLogTerm: 0, commit: round, entries },
        heartbeat('n1', 'n2', round),
      ]);
      // One turn per round, so that writes go out and the stalled stream fills up.
      await n2.inbox.waitFor(isHeartbeat(round));
    }
    assert.ok((n1.metrics.dropped.get(SendDropReason.QueueFull) ?? 0) > 0, 'messages beyond the bound were dropped');
    assert.ok(n1.metrics.queuedBytesMax <= maxQueuedBytesPerPeer, `queued at most ${n1.metrics.queuedBytesMax} bytes`);
    assert.equal(n2.inbox.messages.length, 300, 'the other peer got everything');
  });
});

describe('cluster ids', { timeout: 60_000 }, () => {
  it('refuses a peer of another cluster, naming both ids, logged once per peer', async () => {
    const { peers: [n1, n2] } = await peers(['n1', 'n2'], { clusterId: (id) => (id === 'n1' ? 'cluster-a' : 'cluster-b') });
    const ticker = setInterval(() => n1!.transport.send([heartbeat('n1', 'n2', 1)]), 10);
    cleanups.push(() => clearInterval(ticker));
    const expected = /this node belongs to cluster cluster-b; the peer n1 belongs to cluster cluster-a: a data dir from another cluster or two --bootstrap nodes/;
    const serverLine = await n2!.logger.waitFor(expected);
    assert.equal(serverLine.level, 'error');
    const clientLine = await n1!.logger.waitFor(/stream to peer n2 .* ended: FAILED_PRECONDITION/);
    assert.equal(clientLine.level, 'error');
    assert.match(clientLine.message, expected);
    await n1!.metrics.until(() => n1!.metrics.streamFailures >= 3, 'three refused attempts');
    assert.equal(n2!.logger.matching(expected, 'error').length, 1, 'one error line per peer');
    assert.equal(n1!.logger.matching(/ended: FAILED_PRECONDITION/, 'error').length, 1);
    assert.equal(n2!.inbox.messages.length, 0);
    await assert.rejects(n1!.transport.readIndex('n2', { deadlineMs: Date.now() + 5000 }), (error) => error instanceof InternalError && expected.test(error.message));
  });

  it('adopts the cluster id of the first peer when it has none, before delivering', async () => {
    const events: string[] = [];
    const addresses = new Map<string, string>();
    let n2!: TestPeer;
    let release!: () => void;
    const adoptionGate = new Promise<void>((resolve) => (release = resolve));
    let adoptionStarted!: () => void;
    const adopting = new Promise<void>((resolve) => (adoptionStarted = resolve));
    // Each stream's admission reads our cluster id: the second read is n3's stream, which then waits for n1's adoption.
    let clusterIdReads = 0;
    let secondStreamWaiting!: () => void;
    const bothWaiting = new Promise<void>((resolve) => (secondStreamWaiting = resolve));
    n2 = await TestPeer.start({
      id: 'n2',
      addresses,
      service: {
        clusterId: () => {
          clusterIdReads += 1;
          if (clusterIdReads === 2) secondStreamWaiting();
          return n2.clusterId;
        },
        adoptClusterId: async (id) => {
          events.push(`adopt ${id}`);
          adoptionStarted();
          await adoptionGate;
          n2.clusterId = id;
        },
        deliver: (message) => {
          events.push(`deliver from ${message.from}`);
          n2.transport.deliver(message);
        },
      },
    });
    const n1 = await TestPeer.start({ id: 'n1', addresses, clusterId: 'cluster-a' });
    const n3 = await TestPeer.start({ id: 'n3', addresses, clusterId: 'cluster-c' });
    cleanups.push(() => n1.close(), () => n2.close(), () => n3.close());
    n1.transport.send([heartbeat('n1', 'n2', 1)]);
    await adopting;
    n3.transport.send([heartbeat('n3', 'n2', 2)]);
    await bothWaiting;
    release();
    await n2.inbox.waitFor(isHeartbeat(1));
    assert.equal(n2.clusterId, 'cluster-a');
    assert.deepEqual(events.slice(0, 2), ['adopt cluster-a', 'deliver from n1']);
    await n3.logger.waitFor(/stream to peer n2 .* ended: FAILED_PRECONDITION .*belongs to cluster cluster-a; the peer n3 belongs to cluster cluster-c/);
    assert.equal(events.filter((event) => event.startsWith('adopt')).length, 1, 'one adoption');
    assert.ok(!n2.inbox.messages.some((message) => message.from === 'n3'));
  });

  it('accepts a peer without a cluster id', async () => {
    const { peers: [n1, n2] } = await peers(['n1', 'n2'], { clusterId: (id) => (id === 'n2' ? 'cluster-b' : undefined) });
    n1!.transport.send([heartbeat('n1', 'n2', 5)]);
    await n2!.inbox.waitFor(isHeartbeat(5));
    assert.equal(n2!.clusterId, 'cluster-b');
    assert.equal(n1!.clusterId, undefined, 'a stream does not push an id onto its sender');
  });
});

describe('hostile peers', { timeout: 60_000 }, () => {
  const identity = (value: Buffer) => value;

  function rawStream(port: number, metadata: Metadata) {
    const client = new Client(`127.0.0.1:${port}`, grpcCredentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    cleanups.push(() => client.close());
    let resolveStatus!: (error: ServiceError | null) => void;
    const status = new Promise<ServiceError | null>((resolve) => (resolveStatus = resolve));
    const call = client.makeClientStreamRequest(RaftPeerService.stream.path, identity, identity, metadata, {}, (error) => resolveStatus(error));
    return { client, call, status };
  }

  it('drops junk bytes, forged senders and invalid entries, counts them and keeps the stream', async () => {
    const { peers: [, n2] } = await peers(['n1', 'n2']);
    const metadata = new Metadata();
    metadata.set(PeerMetadataKey.from, 'n1');
    const { call } = rawStream(n2!.port, metadata);
    const junk = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
    const forged = encodeMessageBatch([heartbeat('n3', 'n2', 1)]);
    const misaddressed = encodeMessageBatch([heartbeat('n1', 'n3', 2)]);
    const gap = encodeMessageBatch([
      { type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 5, prevLogTerm: 1, commit: 0, entries: [{ index: 7, term: 3, type: EntryType.Normal, data: new Uint8Array(1) }] },
    ]);
    const badType = encodeMessageBatch([
      { type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 5, prevLogTerm: 1, commit: 0, entries: [{ index: 6, term: 3, type: 9 as never, data: new Uint8Array(1) }] },
    ]);
    for (const bytes of [junk, Buffer.from('not protobuf at all, just text'), forged, misaddressed, gap, badType]) call.write(bytes);
    call.write(encodeMessageBatch([heartbeat('n1', 'n2', 42)]));
    await n2!.inbox.waitFor(isHeartbeat(42));
    assert.equal(n2!.inbox.messages.length, 1, 'only the valid message was delivered');
    const rejected = n2!.metrics.rejected;
    assert.equal(rejected.get(InvalidReason.Malformed), 2);
    assert.equal(rejected.get(InvalidReason.WrongFrom), 1);
    assert.equal(rejected.get(InvalidReason.WrongTo), 1);
    assert.equal(rejected.get(InvalidReason.EntryIndex), 1);
    assert.equal(rejected.get(InvalidReason.EntryType), 1);
    assert.equal(n2!.logger.matching(/dropped an invalid message from peer n1/, 'warn').length, 6);
    assert.equal(n2!.service.openStreamCount, 1, 'the stream stays open');
    call.end();
  });

  it('refuses a stream without annal-from, and junk Forward requests, with INVALID_ARGUMENT', async () => {
    const { peers: [n1, n2] } = await peers(['n1', 'n2']);
    const { call, status, client } = rawStream(n2!.port, new Metadata());
    call.write(encodeMessageBatch([heartbeat('n1', 'n2', 1)]));
    const error = await status;
    assert.equal(error?.code, Status.INVALID_ARGUMENT);
    assert.match(error.details, /annal-from/);
    const forwardMetadata = new Metadata();
    forwardMetadata.set(PeerMetadataKey.from, 'n1');
    const forwardError = await new Promise<ServiceError | null>((resolve) =>
      client.makeUnaryRequest(RaftPeerService.forward.path, identity, identity, Buffer.from([0x0a, 0x09, 0x01]), forwardMetadata, (e) => resolve(e)),
    );
    assert.equal(forwardError?.code, Status.INVALID_ARGUMENT);
    assert.match(forwardError.details, /malformed annal.raft.v1.ForwardRequest/);
    // The node still works for well-behaved peers.
    n1!.transport.send([heartbeat('n1', 'n2', 7)]);
    await n2!.inbox.waitFor(isHeartbeat(7));
    assert.equal(n2!.service.openStreamCount, 1);
  });

  it('applies its configured limits and refuses a snapshot whose size changes between chunks', async () => {
    const addresses = new Map<string, string>();
    const n2 = await TestPeer.start({ id: 'n2', addresses, service: { limits: { maxSnapshotBytes: 100, maxEntriesPerMessage: 2 } } });
    const n1 = await TestPeer.start({ id: 'n1', addresses });
    cleanups.push(() => n1.close(), () => n2.close());
    const meta = { index: 9, term: 2, config: { voters: ['n1', 'n2'], learners: [] } };
    const chunk = (offsetBytes: number, totalBytes: number): Message => ({ type: 'snapshot', from: 'n1', to: 'n2', term: 3, meta, offsetBytes, totalBytes, data: new Uint8Array(10) });
    const entry = (index: number) => ({ index, term: 3, type: EntryType.Normal, data: new Uint8Array(1) });
    n1.transport.send([
      chunk(0, 200),
      chunk(0, 50),
      chunk(10, 90),
      { type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 0, prevLogTerm: 0, commit: 0, entries: [entry(1), entry(2), entry(3)] },
      heartbeat('n1', 'n2', 1),
    ]);
    await n2.inbox.waitFor(isHeartbeat(1));
    assert.equal(n2.metrics.rejected.get(InvalidReason.SnapshotTooLarge), 1);
    assert.equal(n2.metrics.rejected.get(InvalidReason.SnapshotSizeChanged), 1);
    assert.equal(n2.metrics.rejected.get(InvalidReason.TooManyEntries), 1);
    assert.deepEqual(n2.inbox.messages.map((message) => message.type), ['snapshot', 'heartbeat']);
  });

  it('survives a deliver handler that throws', async () => {
    const addresses = new Map<string, string>();
    let calls = 0;
    const n2 = await TestPeer.start({
      id: 'n2',
      addresses,
      service: {
        deliver: (message) => {
          calls += 1;
          if (calls === 1) throw new Error('driver closed');
          n2.transport.deliver(message);
        },
      },
    });
    const n1 = await TestPeer.start({ id: 'n1', addresses });
    cleanups.push(() => n1.close(), () => n2.close());
    n1.transport.send([heartbeat('n1', 'n2', 1), heartbeat('n1', 'n2', 2)]);
    await n2.inbox.waitFor(isHeartbeat(2));
    assert.equal(n2.logger.matching(/delivering a peer message failed/, 'error').length, 1);
  });
});

describe('Forward and ReadIndex', { timeout: 60_000 }, () => {
  it('carry values, subject and an idempotent producer\'s fields, and bring back the leader error classes with their fields', async () => {
    const addresses = new Map<string, string>();
    const forwarded: { values: string[]; subject: string; producerId: number; firstSequence: number }[] = [];
    let mode: 'ok' | 'notLeader' | 'noLeader' | 'overloaded' | 'hang' | 'bug' = 'ok';
    const leader = await TestPeer.start({
      id: 'n2',
      addresses,
      clusterId: 'c1',
      service: {
        forward: async (request) => {
          const { subject, producerId, firstSequence } = request;
          forwarded.push({ values: request.values.map((value) => Buffer.from(value).toString()), subject, producerId, firstSequence });
          switch (mode) {
            case 'ok':
              return { firstOffset: 10, lastOffset: 10 + request.values.length - 1, duplicate: producerId !== 0 };
            case 'notLeader':
              throw new NotLeaderError('n3', '10.0.0.3:8400');
            case 'noLeader':
              throw new NotLeaderError(undefined, undefined);
            case 'overloaded':
              throw new OverloadedError('uncommitted entries exceed 64 MiB');
            case 'hang':
              return new Promise(() => {});
            case 'bug':
              throw new TypeError('x is undefined');
          }
        },
        readIndex: async () => 42,
      },
    });
    const follower = await TestPeer.start({ id: 'n1', addresses, clusterId: 'c1' });
    cleanups.push(() => follower.close(), () => leader.close());
    const request = { values: [Buffer.from('a'), Buffer.from(''), Buffer.from('ccc')], subject: 'root' };
    const deadline = () => ({ deadlineMs: Date.now() + 5000 });
    assert.deepEqual(await follower.transport.forward('n2', request, deadline()), { firstOffset: 10, lastOffset: 12, duplicate: false });
    const producerId = 2 ** 52 + 7;
    const sequenced = { values: [Buffer.from('p')], subject: 'writer', producerId, firstSequence: 2 ** 40 + 1 };
    assert.deepEqual(await follower.transport.forward('n2', sequenced, deadline()), { firstOffset: 10, lastOffset: 10, duplicate: true });
    assert.deepEqual(forwarded, [
      { values: ['a', '', 'ccc'], subject: 'root', producerId: 0, firstSequence: 0 },
      { values: ['p'], subject: 'writer', producerId, firstSequence: 2 ** 40 + 1 },
    ]);
    assert.equal(await follower.transport.readIndex('n2', deadline()), 42);

    mode = 'notLeader';
    await assert.rejects(follower.transport.forward('n2', request, deadline()), (error) => {
      assert.ok(error instanceof NotLeaderError);
      assert.equal(error.leaderId, 'n3');
      assert.equal(error.leaderAddress, '10.0.0.3:8400');
      return true;
    });
    mode = 'noLeader';
    await assert.rejects(follower.transport.forward('n2', request, deadline()), (error) => error instanceof NotLeaderError && error.leaderId === undefined);
    mode = 'overloaded';
    await assert.rejects(follower.transport.forward('n2', request, deadline()), (error) => error instanceof OverloadedError && /64 MiB/.test(error.message));
    mode = 'bug';
    await assert.rejects(follower.transport.forward('n2', request, deadline()), (error) => error instanceof InternalError && /x is undefined/.test(error.message));
    assert.equal(leader.logger.matching(/Forward failed/, 'error').length, 1, 'an unexpected error is logged on the leader');
    mode = 'hang';
    await assert.rejects(follower.transport.forward('n2', request, { deadlineMs: Date.now() + 200 }), DeadlineExceededError);
    await assert.rejects(follower.transport.forward('nowhere', request, deadline()), UnavailableError);
    await assert.rejects(follower.transport.readIndex('n2', { deadlineMs: 5000 }), AssertionError, 'a duration passed as the deadline');
    await assert.rejects(follower.transport.readIndex('nowhere', deadline()), UnavailableError);
  });

  it('fail a forwarded write with OutcomeUnknownError when the leader goes away after receiving it', async () => {
    const addresses = new Map<string, string>();
    let received!: () => void;
    const reached = new Promise<void>((resolve) => (received = resolve));
    const leader = await TestPeer.start({
      id: 'n2',
      addresses,
      service: {
        forward: () => {
          received();
          return new Promise(() => {});
        },
      },
    });
    const follower = await TestPeer.start({ id: 'n1', addresses });
    cleanups.push(() => follower.close(), () => leader.close());
    const forwarded = follower.transport.forward('n2', { values: [Buffer.from('v')], subject: 'root' }, { deadlineMs: Date.now() + 30_000 });
    await reached;
    // The leader's handler has the write; the leader shuts down and resets its streams.
    leader.close();
    await assert.rejects(forwarded, (error: unknown) => {
      assert.ok(error instanceof OutcomeUnknownError, String(error));
      assert.match(error.message, /may still commit/);
      return true;
    });
  });

  it('fail with UnavailableError for a dead peer, ClosedError after close() and OutcomeUnknownError for a write close() cut off', async () => {
    const addresses = new Map<string, string>([['dead', await closedAddress()]]);
    const n1 = await TestPeer.start({ id: 'n1', addresses });
    cleanups.push(() => n1.close());
    await assert.rejects(n1.transport.readIndex('dead', { deadlineMs: Date.now() + 5000 }), UnavailableError);
    await assert.rejects(n1.transport.forward('dead', { values: [Buffer.from('v')], subject: 'root' }, { deadlineMs: Date.now() + 5000 }), UnavailableError, 'never reached a leader: nothing happened');
    const hole = await blackHole();
    cleanups.push(() => hole.close());
    addresses.set('hung', hole.address);
    const pending = n1.transport.readIndex('hung', { deadlineMs: Date.now() + 30_000 });
    const forwarded = n1.transport.forward('hung', { values: [Buffer.from('v')], subject: 'root' }, { deadlineMs: Date.now() + 30_000 });
    n1.transport.close();
    await assert.rejects(pending, ClosedError);
    // The leader may have the forwarded records: their outcome is unknown, not "nothing happened".
    await assert.rejects(forwarded, OutcomeUnknownError);
    await assert.rejects(n1.transport.readIndex('hung', { deadlineMs: Date.now() + 5000 }), ClosedError);
    n1.transport.send([heartbeat('n1', 'hung', 1)]);
    assert.equal(n1.metrics.dropped.get(SendDropReason.Closed), 1);
  });
});

describe('PeerService.drain', { timeout: 30_000 }, () => {
  it('ends open streams with UNAVAILABLE and refuses new ones', async () => {
    const { peers: [n1, n2] } = await peers(['n1', 'n2']);
    n1!.transport.send([heartbeat('n1', 'n2', 1)]);
    await n2!.inbox.waitFor(isHeartbeat(1));
    assert.equal(n2!.service.openStreamCount, 1);
    n2!.service.drain();
    assert.equal(n2!.service.openStreamCount, 0);
    await n1!.logger.waitFor(/stream to peer n2 .* ended: UNAVAILABLE node n2 is shutting down/);
  });
});
