// Goal: a produce on a follower is one trace across both nodes: the client's span, the
// follower's Produce server span and its storage.append child, and the leader's Forward server
// span continuing that trace. Method: two `annal agent` processes with mTLS exporting to a real
// OTLP/HTTP receiver on 127.0.0.1, a client with telemetry's client interceptors.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { AnnalClient } from '../src/client/index.js';
import { Telemetry } from '../src/telemetry/index.js';
import { startOtlpReceiver, type OtlpReceiver } from '../src/telemetry/testdata/otlp-receiver.js';
import { killAll } from './cli-harness.js';
import { leaderOf, makeCerts, startNode, votersWithLeader, waitForServers, type ClusterCerts, type ClusterNode } from './cluster-harness.js';

const SERVER = 2;
const CLIENT = 3;
let dir: string;
let certs: ClusterCerts;
let receiver: OtlpReceiver;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'annal-e2e-tracing-'));
  certs = await makeCerts(join(dir, 'certs'));
  receiver = await startOtlpReceiver();
});

after(async () => {
  killAll();
  await receiver.close();
  await rm(dir, { recursive: true, force: true });
});

it('follows a produce forwarded by a follower to the leader in one trace', async () => {
  const tracing = ['--otlp-endpoint', receiver.endpoint, '--trace-sample-ratio', '1'];
  const nodes: ClusterNode[] = [await startNode({ name: 't1', dataDir: join(dir, 't1'), certs, bootstrap: true, extra: tracing })];
  nodes.push(await startNode({ name: 't2', dataDir: join(dir, 't2'), certs, join: [nodes[0]!.gossipAddr], extra: tracing }));
  const telemetry = await Telemetry.start({ otlpEndpoint: receiver.endpoint, serviceName: 'e2e-client', env: {} });
  try {
    const leader = leaderOf(await waitForServers(nodes[0]!, certs.root, votersWithLeader(2)));
    const follower = nodes.find((node) => node.rpcAddr !== leader.rpcAddr)!;
    const client = new AnnalClient({ address: follower.rpcAddr, security: certs.root, interceptors: telemetry.clientInterceptors() });
    try {
      await client.produce(Buffer.from('traced'));
    } finally {
      client.close();
    }
    await telemetry.shutdown();
    const produceOf = () => receiver.spans.filter((span) => span.kind === CLIENT && span.name === 'log.v1.Log/Produce').at(-1);
    const forwardIn = (traceId: string) =>
      receiver.spans.find((span) => span.kind === SERVER && span.name === 'annal.raft.v1.Raft/Forward' && span.traceId === traceId);
    const serverProduceOf = (client: { spanId: string }) => receiver.spans.find((span) => span.kind === SERVER && span.parentSpanId === client.spanId);
    const appendOf = (server: { spanId: string }) => receiver.spans.find((span) => span.parentSpanId === server.spanId && span.name === 'storage.append');
    // Each process exports in its own batches: wait for all four spans.
    await receiver.waitFor(() => {
      const produce = produceOf();
      const server = produce === undefined ? undefined : serverProduceOf(produce);
      return server !== undefined && appendOf(server) !== undefined && forwardIn(produce!.traceId) !== undefined;
    }, 20_000);
    const produce = produceOf()!;
    const serverProduce = serverProduceOf(produce);
    assert.ok(serverProduce, 'the follower continued the client span');
    const append = appendOf(serverProduce);
    assert.ok(append, 'the follower recorded the append it forwarded');
    const forward = forwardIn(produce.traceId)!;
    assert.equal(forward.parentSpanId, append.spanId, "the leader's Forward span is a child of the follower's append");
  } finally {
    for (const node of nodes) node.process.child.kill('SIGKILL');
    await Promise.all(nodes.map((node) => node.process.exited));
  }
});
