// Goal: the link relays the nemesis suite shapes RPC traffic with do what the link faults claim:
// bytes pass both ways unchanged and in order (also when delayed with jitter), a delay holds
// each chunk at least that long, a stalled path holds one direction until healed while the
// other flows, a reset reaches both ends as a reset, a relay whose target is down resets the
// connection it accepted, and closing leaves no listener or socket open.
// Method: real TCP on 127.0.0.1: an echo server as the target of two relayed nodes (0 -> 1).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Prng } from '../../src/util/index.js';
import { LinkProxies } from './link-proxy.js';

let echo: Server;
let echoPort = 0;
let deadPort = 0;

before(async () => {
  echo = createServer((socket) => {
    socket.on('error', () => {}); // the relay resets it in some tests
    socket.pipe(socket);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as AddressInfo).port;
  // A port with nothing listening: bound then closed.
  const dead = createServer().listen(0, '127.0.0.1');
  await once(dead, 'listening');
  deadPort = (dead.address() as AddressInfo).port;
  await new Promise((resolve) => dead.close(resolve));
});

after(() => echo.close());

async function relays(targetPort = (): number => echoPort): Promise<LinkProxies> {
  const proxies = new LinkProxies(2, '127.0.0.1', () => ({ host: '127.0.0.1', port: targetPort() }));
  await proxies.listen();
  return proxies;
}

async function open(proxies: LinkProxies): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port: proxies.port(0, 1) });
  await once(socket, 'connect');
  return socket;
}

/** Collects `bytes` bytes from `socket`; resolves with them and the time the last arrived. */
function receive(socket: Socket, bytes: number): Promise<{ data: Buffer; atMs: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= bytes) {
        socket.off('data', onData);
        resolve({ data: Buffer.concat(chunks), atMs: performance.now() });
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

describe('link relays', () => {
  it('relay bytes both ways, in order, under delay and jitter', async () => {
    const proxies = await relays();
    try {
      proxies.setFaults(0, 1, { delayMs: 5, jitterMs: 30 }, new Prng(1));
      proxies.setFaults(1, 0, { delayMs: 5, jitterMs: 30 }, new Prng(2));
      const socket = await open(proxies);
      const sent = Buffer.from(Array.from({ length: 200 }, (_, i) => `message ${i};`).join(''));
      const received = receive(socket, sent.length);
      // Many small writes: each is its own chunk with its own delay, yet the stream keeps order.
      for (let i = 0; i < sent.length; i += 37) {
        socket.write(sent.subarray(i, i + 37));
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.deepEqual((await received).data, sent);
      assert.ok((proxies.counts()['0>1']?.chunks ?? 0) > 1, 'the requests went through the relay');
      socket.destroy();
    } finally {
      await proxies.close();
    }
  });

  it('hold each chunk at least the delay', async () => {
    const proxies = await relays();
    try {
      proxies.setFaults(0, 1, { delayMs: 300 }, new Prng(1));
      const socket = await open(proxies);
      const received = receive(socket, 5);
      const sentAtMs = performance.now();
      socket.write('hello');
      const { data, atMs } = await received;
      assert.equal(data.toString(), 'hello');
      assert.ok(atMs - sentAtMs >= 295, `echoed after ${(atMs - sentAtMs).toFixed(0)} ms`);
      socket.destroy();
    } finally {
      await proxies.close();
    }
  });

  it('stall one direction until healed, the other flowing', async () => {
    const proxies = await relays();
    try {
      const socket = await open(proxies);
      // The answers (1 -> 0) are held; the requests (0 -> 1) reach the echo server.
      proxies.setFaults(1, 0, { stalled: true }, new Prng(1));
      const received = receive(socket, 4);
      let arrived = false;
      void received.then(() => (arrived = true));
      socket.write('ping');
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(arrived, false, 'nothing comes back while the answers are stalled');
      assert.ok((proxies.counts()['0>1']?.chunks ?? 0) >= 1 && (proxies.counts()['1>0']?.chunks ?? 0) >= 1, 'the request went through and its echo is held');
      proxies.heal();
      assert.equal((await received).data.toString(), 'ping');
      socket.destroy();
    } finally {
      await proxies.close();
    }
  });

  it('reset the connection on a lost-connection fault, and when the target is down', async () => {
    const proxies = await relays();
    try {
      proxies.setFaults(0, 1, { resetChance: 1 }, new Prng(1));
      const socket = await open(proxies);
      const closed = once(socket, 'error');
      socket.write('x');
      const [error] = (await closed) as [NodeJS.ErrnoException];
      assert.equal(error.code, 'ECONNRESET');
      assert.equal(proxies.counts()['0>1']?.resets, 1);
    } finally {
      await proxies.close();
    }
    const down = await relays(() => deadPort);
    try {
      const socket = await open(down);
      const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
      assert.equal(error.code, 'ECONNRESET', 'a refused connect reaches the client as a reset');
    } finally {
      await down.close();
    }
  });

  it('leave nothing open once closed', async () => {
    const proxies = await relays();
    const socket = await open(proxies);
    socket.on('error', () => {});
    socket.write('held');
    assert.ok(proxies.openHandles().length > 0);
    await proxies.close();
    assert.deepEqual(proxies.openHandles(), []);
    socket.destroy();
  });
});
