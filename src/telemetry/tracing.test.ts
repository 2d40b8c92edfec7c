/**
 * Goal: one call produces the span tree an operator follows across processes: the client's span,
 * the server span continuing its `traceparent`, and the handler's `authorize` and `storage.append`
 * children, with RPC attributes, and an error status where the server failed. Also the sampling
 * and endpoint rules, and trace propagation without a client tracer.
 * Method: a real OTLP/HTTP (JSON) receiver on a loopback listener; client and server each have
 * their own Telemetry exporting to it; a real grpc-js server (testdata/echo-service) appends to a
 * real CommitLog. Spans are flushed explicitly, so no waiting on the batch timer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metadata, ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';
import { CommitLog } from '../storage/index.js';
import { spanAround } from './span-interceptor.js';
import { Telemetry } from './telemetry.js';
import { testLogger } from './test-logger.js';
import { callAppend, echoClient, startEchoServer, type EchoClient, type EchoServer } from './testdata/echo-service.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './testdata/otlp-receiver.js';
import { parseSampleRatio, resolveTracesUrl } from './tracing.js';

const SERVER = 2;
const CLIENT = 3;
const STATUS_ERROR = 2;

describe('tracing', () => {
  let dir: string;
  let log: CommitLog;
  let receiver: OtlpReceiver;
  let serverTelemetry: Telemetry;
  let clientTelemetry: Telemetry;
  let server: EchoServer;
  let client: EchoClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-tracing-'));
    log = await CommitLog.open(dir, { fsync: { kind: 'never' } });
    receiver = await startOtlpReceiver();
    serverTelemetry = await Telemetry.start({ logger: testLogger({ name: 'tracing' }), otlpEndpoint: receiver.endpoint, nodeName: 'node-0', env: {} });
    clientTelemetry = await Telemetry.start({ otlpEndpoint: receiver.endpoint, serviceName: 'annal-client', env: {} });
    server = await startEchoServer(serverTelemetry, log);
    client = echoClient(server.address, clientTelemetry.clientInterceptors());
  });

  after(async () => {
    client?.close();
    await server?.close();
    await clientTelemetry?.shutdown();
    await serverTelemetry?.shutdown();
    await receiver?.close();
    await log?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const flush = async () => {
    await clientTelemetry.flushTraces();
    await serverTelemetry.flushTraces();
  };
  const traceOf = (root: ReceivedSpan) => receiver.spans.filter((span) => span.traceId === root.traceId);

  it('exports client → server → authorize, storage.append as one trace over OTLP/HTTP JSON', async () => {
    const { error } = await callAppend(client, { value: 'hello', subject: 'root' });
    assert.equal(error, undefined);
    await flush();
    assert.ok(receiver.requests.every((request) => request.contentType.startsWith('application/json')));

    const clientSpan = receiver.spans.find((span) => span.kind === CLIENT && span.name === 'test.Echo/Append');
    assert.ok(clientSpan, 'client span exported');
    assert.equal(clientSpan.parentSpanId, undefined, 'the client span is the root');
    assert.equal(clientSpan.resource['service.name'], 'annal-client');
    const spans = traceOf(clientSpan);
    const serverSpan = spans.find((span) => span.kind === SERVER);
    assert.ok(serverSpan, 'server span in the same trace');
    assert.equal(serverSpan.parentSpanId, clientSpan.spanId);
    assert.equal(serverSpan.name, 'test.Echo/Append');
    assert.equal(serverSpan.scope, 'annal.server');
    assert.equal(serverSpan.resource['service.instance.id'], 'node-0');
    assert.equal(serverSpan.attributes['rpc.system.name'], 'grpc');
    assert.equal(serverSpan.attributes['rpc.method'], 'test.Echo/Append');
    assert.equal(serverSpan.attributes['rpc.status_code'], 'OK');
    assert.equal(serverSpan.attributes['network.peer.address'], '127.0.0.1');
    assert.equal(serverSpan.attributes['annal.subject'], 'root');
    assert.ok(Number(serverSpan.attributes['annal.request_bytes']) > 0);
    assert.notEqual(serverSpan.statusCode, STATUS_ERROR);

    const children = spans.filter((span) => span.parentSpanId === serverSpan.spanId).map((span) => span.name);
    assert.deepEqual(children.sort(), ['authorize', 'storage.append']);
    assert.equal(spans.length, 4, `spans: ${spans.map((span) => span.name).join(', ')}`);
  });

  it('marks server faults as errors on both sides, and caller faults only on the client', async () => {
    receiver.spans.length = 0;
    await callAppend(client, { value: 'x', fail: Status.INTERNAL });
    await callAppend(client, { value: 'x', fail: Status.OUT_OF_RANGE });
    await flush();
    const serverSpans = receiver.spans.filter((span) => span.kind === SERVER);
    const internal = serverSpans.find((span) => span.attributes['rpc.status_code'] === 'INTERNAL');
    const outOfRange = serverSpans.find((span) => span.attributes['rpc.status_code'] === 'OUT_OF_RANGE');
    assert.ok(internal && outOfRange);
    assert.equal(internal.statusCode, STATUS_ERROR);
    assert.match(internal.statusMessage ?? '', /failing as asked/);
    assert.equal(internal.attributes['error.type'], 'INTERNAL');
    assert.notEqual(outOfRange.statusCode, STATUS_ERROR, 'OUT_OF_RANGE is the caller’s fault on the server');
    const clientOutOfRange = receiver.spans.find((span) => span.kind === CLIENT && span.traceId === outOfRange.traceId);
    assert.equal(clientOutOfRange?.statusCode, STATUS_ERROR);
  });

  it('continues a traceparent sent by a caller without a tracer', async () => {
    receiver.spans.length = 0;
    const plain = echoClient(server.address);
    try {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parentId = '00f067aa0ba902b7';
      const metadata = new Metadata();
      metadata.set('traceparent', `00-${traceId}-${parentId}-01`);
      await callAppend(plain, { value: 'y' }, metadata);
      await flush();
      const serverSpan = receiver.spans.find((span) => span.kind === SERVER);
      assert.equal(serverSpan?.traceId, traceId);
      assert.equal(serverSpan?.parentSpanId, parentId);
    } finally {
      plain.close();
    }
  });

  it('drops a trace the caller did not sample (parent-based sampling)', async () => {
    receiver.spans.length = 0;
    const plain = echoClient(server.address);
    try {
      const metadata = new Metadata();
      metadata.set('traceparent', '00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-00');
      await callAppend(plain, { value: 'z' }, metadata);
      await flush();
      assert.deepEqual(receiver.spans, []);
    } finally {
      plain.close();
    }
  });

  it('wraps an access-check interceptor in an authorize span that records a refusal', async () => {
    // Refuses calls carrying x-deny, the way auth's ACL interceptor answers PERMISSION_DENIED.
    const denyFlagged: ServerInterceptor = (_method, call) =>
      new ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, nextMetadata) => {
              if (metadata.get('x-deny').length === 0) nextMetadata(metadata);
              else call.sendStatus({ code: Status.PERMISSION_DENIED, details: 'denied', metadata: new Metadata() });
            },
          }),
      });
    const guarded = await startEchoServer(serverTelemetry, log, { interceptors: spanAround('authorize', [denyFlagged]) });
    const guardedClient = echoClient(guarded.address, clientTelemetry.clientInterceptors());
    try {
      receiver.spans.length = 0;
      assert.equal((await callAppend(guardedClient, { value: 'ok' })).error, undefined);
      const denied = new Metadata();
      denied.set('x-deny', '1');
      assert.equal((await callAppend(guardedClient, { value: 'no' }, denied)).error?.code, Status.PERMISSION_DENIED);
      await flush();
      const authorizeSpans = receiver.spans.filter((span) => span.name === 'authorize' && span.scope === 'annal.server');
      const codes = authorizeSpans.map((span) => span.attributes['rpc.status_code']).sort();
      // The handler's own 'authorize' child (echo-service) has no code; the interceptor's have one each.
      assert.deepEqual(codes.filter((code) => code !== undefined), ['OK', 'PERMISSION_DENIED']);
      for (const span of authorizeSpans) {
        const parent = receiver.spans.find((candidate) => candidate.spanId === span.parentSpanId);
        assert.equal(parent?.kind, SERVER);
      }
      const deniedServer = receiver.spans.find((span) => span.kind === SERVER && span.attributes['rpc.status_code'] === 'PERMISSION_DENIED');
      assert.ok(deniedServer);
      assert.equal(receiver.spans.filter((span) => span.parentSpanId === deniedServer.spanId).length, 1, 'no handler spans when refused');
    } finally {
      guardedClient.close();
      await guarded.close();
    }
  });

  it('resolves the endpoint from the flag, then the OTEL_* environment', () => {
    assert.equal(resolveTracesUrl('http://c:4318/', {}), 'http://c:4318/v1/traces');
    assert.equal(resolveTracesUrl(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://e:4318' }), 'http://e:4318/v1/traces');
    assert.equal(resolveTracesUrl(undefined, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x' }), 'http://t:1/x');
    assert.equal(resolveTracesUrl(undefined, {}), undefined);
    assert.throws(() => resolveTracesUrl('c:4318', {}), { code: 'INVALID_ARGUMENT' });
    assert.equal(parseSampleRatio('0.25'), 0.25);
    assert.throws(() => parseSampleRatio('1.5'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => parseSampleRatio(''), { code: 'INVALID_ARGUMENT' });
  });
});
