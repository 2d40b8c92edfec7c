/**
 * Goal: an operator's view of a real node. `annal agent --metrics-addr --otlp-endpoint` serves a
 * /metrics that promtool accepts and whose counters move by exactly what was produced, writes an
 * access-log line per call, and exports the span tree of a produce (client span → server span →
 * storage.append) with the status of a failed call; spans still buffered at SIGTERM are flushed.
 * With mTLS and the ACL, a denied call is counted, logged and traced with its subject, and the
 * `authorize` span sits between the server span and the storage span of an allowed one.
 * Method: a real agent process on 127.0.0.1 (ports 0, temp data dir), a real OTLP/HTTP receiver
 * on a loopback listener in this process, the annal client library with its own telemetry
 * exporting client spans to the same receiver, and the real `promtool check metrics`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AnnalClient } from '../src/client/index.js';
import { Telemetry } from '../src/telemetry/index.js';
import { startOtlpReceiver, type OtlpReceiver } from '../src/telemetry/testdata/otlp-receiver.js';
import { parseSamples, sampleValue } from '../src/telemetry/testdata/prom-text.js';
import { killAll, runCli, spawnAgent, type AgentProcess } from './cli-harness.js';

const CONFIG_DIR = fileURLToPath(new URL('../../config/', import.meta.url));

const SERVER = 2;
const CLIENT = 3;
const STATUS_ERROR = 2;
const WAIT_MS = 20_000;

/** Resolves with the first JSON log line of `agent` that `match` accepts (lines seen so far included). */
function logLine(agent: AgentProcess, match: (entry: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const scan = (): boolean => {
      for (const line of agent.stderrLines) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (match(entry)) {
            resolve(entry);
            return true;
          }
        } catch {
          // not JSON
        }
      }
      return false;
    };
    if (scan()) return;
    const timer = setTimeout(() => reject(new Error(`no matching log line:\n${agent.stderrLines.join('\n')}`)), WAIT_MS);
    const onData = (): void => {
      // stderrLines is filled by the harness's own line reader, which runs before this listener.
      setImmediate(() => {
        if (scan()) {
          clearTimeout(timer);
          agent.child.stderr!.off('data', onData);
        }
      });
    };
    agent.child.stderr!.on('data', onData);
  });
}

describe('telemetry of a running agent', () => {
  let dir: string;
  let receiver: OtlpReceiver;
  let agent: AgentProcess;
  let client: AnnalClient;
  let clientTelemetry: Telemetry;
  let metricsUrl: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-e2e-telemetry-'));
    receiver = await startOtlpReceiver();
    agent = spawnAgent([
      'agent', '--insecure', '--data-dir', join(dir, 'data'), '--rpc-port', '0', '--node-name', 'e2e-0',
      '--log-level', 'info', '--metrics-addr', '127.0.0.1:0', '--otlp-endpoint', receiver.endpoint, '--trace-sample-ratio', '1',
    ]);
    const address = await agent.address;
    metricsUrl = String((await logLine(agent, (entry) => entry['msg'] === 'serving Prometheus metrics'))['url']);
    clientTelemetry = await Telemetry.start({ otlpEndpoint: receiver.endpoint, serviceName: 'e2e-client', env: {} });
    client = new AnnalClient({ address, security: { insecure: true }, interceptors: clientTelemetry.clientInterceptors() });
  });

  after(async () => {
    client?.close();
    await clientTelemetry?.shutdown();
    killAll();
    await receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async () => {
    const response = await fetch(metricsUrl);
    assert.equal(response.status, 200);
    return response.text();
  };

  it('moves the produce counters by exactly N and passes promtool', async () => {
    const produce = { grpc_service: 'log.v1.Log', grpc_method: 'Produce' };
    const before = parseSamples(await scrape());
    const n = 30;
    for (let i = 0; i < n; i++) assert.equal(await client.produce(Buffer.from(`record-${i}`)), i);
    const text = await scrape();
    const after = parseSamples(text);
    const delta = (name: string, labels: Record<string, string> = {}) => sampleValue(after, name, labels) - sampleValue(before, name, labels);
    assert.equal(delta('annal_rpc_server_requests_total', { ...produce, grpc_code: 'OK' }), n);
    assert.equal(delta('annal_rpc_server_duration_seconds_count', produce), n);
    assert.equal(delta('annal_storage_append_calls_total'), n);
    assert.equal(delta('annal_storage_appended_records_total'), n);
    // One append in 16 is timed (AppendTimer): n = 30 calls give one or two samples.
    assert.ok([1, 2].includes(delta('annal_storage_append_duration_seconds_count')));
    assert.ok(delta('annal_rpc_server_received_bytes_total', produce) >= n * 'record-0'.length);
    // fsync=always (the default): each sequential produce waits for at least one fdatasync round.
    assert.ok(delta('annal_storage_fsync_duration_seconds_count') >= n, 'every durable produce is covered by a timed fsync');
    assert.equal(sampleValue(after, 'annal_storage_highest_offset'), n - 1);
    assert.equal(sampleValue(after, 'annal_rpc_server_in_flight_calls', produce), 0);

    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.error, undefined, 'promtool not found: apt-get install prometheus (CI installs it)');
    assert.equal(check.status, 0, `promtool check metrics failed:\n${check.stdout}${check.stderr}`);

    const access = await logLine(agent, (entry) => entry['component'] === 'access' && entry['method'] === '/log.v1.Log/Produce');
    assert.equal(access['code'], 'OK');
    assert.equal(access['level'], 30);
    assert.match(String(access['peer']), /^127\.0\.0\.1:\d+$/);
    assert.equal(typeof access['durationMs'], 'number');
    assert.ok(Number(access['requestBytes']) > 0);
    // Offset 0 encodes as an empty ProduceResponse (proto3 omits defaults); later ones do not.
    const later = await logLine(agent, (entry) => entry['component'] === 'access' && Number(entry['responseBytes']) > 0);
    assert.equal(later['method'], '/log.v1.Log/Produce');

    // A produce stream closed by the client ends OK on the server, not CANCELLED: close() waits
    // for the call's status before the channel can be closed.
    const stream = { grpc_service: 'log.v1.Log', grpc_method: 'ProduceStream' };
    const beforeStream = parseSamples(await scrape());
    const producer = client.produceStream();
    await producer.send(Buffer.from('streamed'));
    await producer.close();
    const afterStream = parseSamples(await scrape());
    const streamDelta = (code: string) => sampleValue(afterStream, 'annal_rpc_server_requests_total', { ...stream, grpc_code: code }) -
      sampleValue(beforeStream, 'annal_rpc_server_requests_total', { ...stream, grpc_code: code });
    assert.equal(streamDelta('OK'), 1);
    assert.equal(streamDelta('CANCELLED'), 0);
  });

  it('exports client → server → storage.append, and a failed consume with its code', async () => {
    const offset = await client.produce(Buffer.from('traced'));
    await assert.rejects(client.consume(offset + 1000), { code: 'OFFSET_OUT_OF_RANGE' });
    await clientTelemetry.flushTraces();
    const serverSpanOf = (method: string) => receiver.spans.find((span) => span.kind === SERVER && span.name === method);
    // The agent exports on its batch timer (1 s): wait for both server spans to arrive.
    await receiver.waitFor(() => serverSpanOf('log.v1.Log/Consume') !== undefined && receiver.spans.some((span) => span.name === 'storage.append'), WAIT_MS);

    const clientProduce = receiver.spans.filter((span) => span.kind === CLIENT && span.name === 'log.v1.Log/Produce').at(-1);
    assert.ok(clientProduce);
    const serverProduce = receiver.spans.find((span) => span.kind === SERVER && span.parentSpanId === clientProduce.spanId);
    assert.ok(serverProduce, 'the server continued the client trace');
    assert.equal(serverProduce.resource['service.instance.id'], 'e2e-0');
    assert.equal(serverProduce.attributes['rpc.status_code'], 'OK');
    const append = receiver.spans.find((span) => span.parentSpanId === serverProduce.spanId);
    assert.equal(append?.name, 'storage.append');

    const consume = serverSpanOf('log.v1.Log/Consume')!;
    assert.equal(consume.attributes['rpc.status_code'], 'OUT_OF_RANGE');
    assert.notEqual(consume.statusCode, STATUS_ERROR, 'a caller fault is not a server error');
    const clientConsume = receiver.spans.find((span) => span.kind === CLIENT && span.spanId === consume.parentSpanId);
    assert.equal(clientConsume?.statusCode, STATUS_ERROR);
  });

  it('flushes buffered spans when SIGTERM stops the agent, and exits 0', async () => {
    const stream = client.produceStream();
    for (let i = 0; i < 5; i++) await stream.send(Buffer.from(`stream-${i}`));
    await stream.close();
    agent.child.kill('SIGTERM');
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
    const streamSpan = receiver.spans.findLast((span) => span.kind === SERVER && span.name === 'log.v1.Log/ProduceStream');
    assert.ok(streamSpan, 'the ProduceStream span was exported before exit');
    const appends = receiver.spans.filter((span) => span.parentSpanId === streamSpan.spanId && span.name === 'storage.append');
    assert.equal(appends.length, 5);
  });
});

describe('telemetry of an agent with mTLS and the ACL', () => {
  let dir: string;
  let receiver: OtlpReceiver;
  let agent: AgentProcess;
  let clientTelemetry: Telemetry;
  let metricsUrl: string;
  const clients: AnnalClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-e2e-telemetry-tls-'));
    const certs = join(dir, 'certs');
    assert.equal((await runCli(['certs', '--config-dir', CONFIG_DIR, '--out', certs])).code, 0);
    receiver = await startOtlpReceiver();
    agent = spawnAgent([
      'agent', '--data-dir', join(dir, 'data'), '--node-name', 'secure', '--rpc-port', '0', '--log-level', 'info',
      '--server-tls-cert-file', join(certs, 'server.pem'), '--server-tls-key-file', join(certs, 'server-key.pem'),
      '--server-tls-ca-file', join(certs, 'ca.pem'), '--peer-tls-cert-file', join(certs, 'peer.pem'),
      '--peer-tls-key-file', join(certs, 'peer-key.pem'), '--peer-tls-ca-file', join(certs, 'ca.pem'),
      '--acl-model-file', join(CONFIG_DIR, 'model.conf'), '--acl-policy-file', join(CONFIG_DIR, 'policy.csv'),
      '--metrics-addr', '127.0.0.1:0', '--otlp-endpoint', receiver.endpoint,
    ]);
    const address = await agent.address;
    metricsUrl = String((await logLine(agent, (entry) => entry['msg'] === 'serving Prometheus metrics'))['url']);
    clientTelemetry = await Telemetry.start({ otlpEndpoint: receiver.endpoint, serviceName: 'e2e-client', env: {} });
    for (const who of ['root', 'nobody']) {
      const tls = {
        caPem: readFileSync(join(certs, 'ca.pem')),
        certPem: readFileSync(join(certs, `${who}-client.pem`)),
        keyPem: readFileSync(join(certs, `${who}-client-key.pem`)),
      };
      clients.push(new AnnalClient({ address, security: { tls }, interceptors: clientTelemetry.clientInterceptors() }));
    }
  });

  after(async () => {
    for (const client of clients) client.close();
    await clientTelemetry?.shutdown();
    killAll();
    await receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts, logs and traces an allowed and a denied produce with their subjects', async () => {
    const [root, nobody] = clients as [AnnalClient, AnnalClient];
    assert.equal(await root.produce(Buffer.from('allowed')), 0);
    await assert.rejects(nobody.produce(Buffer.from('denied')), { code: 'PERMISSION_DENIED' });

    const denied = await logLine(agent, (entry) => entry['component'] === 'access' && entry['code'] === 'PERMISSION_DENIED');
    assert.equal(denied['subject'], 'nobody');
    assert.equal(denied['method'], '/log.v1.Log/Produce');
    const allowed = await logLine(agent, (entry) => entry['component'] === 'access' && entry['code'] === 'OK');
    assert.equal(allowed['subject'], 'root');

    const samples = parseSamples(await (await fetch(metricsUrl)).text());
    const produce = { grpc_method: 'Produce' };
    assert.equal(sampleValue(samples, 'annal_rpc_server_errors_total', { ...produce, grpc_code: 'PERMISSION_DENIED' }), 1);
    assert.equal(sampleValue(samples, 'annal_rpc_server_requests_total', { ...produce, grpc_code: 'OK' }), 1);
    assert.equal(sampleValue(samples, 'annal_storage_append_calls_total'), 1, 'the denied record never reached the log');

    await clientTelemetry.flushTraces();
    const serverSpan = (subject: string) =>
      receiver.spans.find((span) => span.kind === SERVER && span.name === 'log.v1.Log/Produce' && span.attributes['annal.subject'] === subject);
    await receiver.waitFor(() => serverSpan('root') !== undefined && serverSpan('nobody') !== undefined, WAIT_MS);
    const childrenOf = (parent: string) => receiver.spans.filter((span) => span.parentSpanId === parent);
    const rootChildren = childrenOf(serverSpan('root')!.spanId);
    assert.deepEqual(rootChildren.map((span) => span.name).sort(), ['authorize', 'storage.append']);
    assert.equal(rootChildren.find((span) => span.name === 'authorize')?.attributes['rpc.status_code'], 'OK');
    const nobodySpan = serverSpan('nobody')!;
    assert.equal(nobodySpan.attributes['rpc.status_code'], 'PERMISSION_DENIED');
    const nobodyChildren = childrenOf(nobodySpan.spanId);
    assert.deepEqual(nobodyChildren.map((span) => [span.name, span.attributes['rpc.status_code']]), [['authorize', 'PERMISSION_DENIED']]);
  });
});
