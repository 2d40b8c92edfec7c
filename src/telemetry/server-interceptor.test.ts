/**
 * Goal: the server interceptor counts every call exactly once in the RPC metrics (requests, errors,
 * duration histogram, bytes, in-flight and open-stream gauges) and writes one access-log line per
 * call with method, code, duration, subject, peer and byte counts.
 * Method: a real grpc-js server on 127.0.0.1:0 serving a small JSON test service (testdata/
 * echo-service.ts) whose Append writes to a real CommitLog in a temp dir; metrics are read back
 * through the Prometheus exposition (`Telemetry.scrape`), log lines from an in-memory destination.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as Status } from '@grpc/grpc-js';
import { CommitLog } from '../storage/index.js';
import { createLogger } from './logger.js';
import { Telemetry } from './telemetry.js';
import { callAppend, echoClient, startEchoServer, type EchoClient, type EchoServer } from './testdata/echo-service.js';
import { parseSamples, sampleValue } from './testdata/prom-text.js';

interface AccessLine {
  component: string;
  msg: string;
  method: string;
  code: string;
  durationMs: number;
  subject?: string;
  peer: string;
  requestBytes: number;
  responseBytes: number;
  requestMessages?: number;
  responseMessages?: number;
}

describe('server interceptor', () => {
  let dir: string;
  let log: CommitLog;
  let telemetry: Telemetry;
  let server: EchoServer;
  let client: EchoClient;
  const lines: AccessLine[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-telemetry-'));
    log = await CommitLog.open(dir, { fsync: { kind: 'never' } });
    const logger = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    telemetry = await Telemetry.start({ logger, metrics: true });
    server = await startEchoServer(telemetry, log);
    client = echoClient(server.address);
  });

  after(async () => {
    client?.close();
    await server?.close();
    await telemetry?.shutdown();
    await log?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async () => parseSamples(await telemetry.scrape());
  const append = { grpc_service: 'test.Echo', grpc_method: 'Append' };

  it('counts N calls: requests +N, histogram count +N, errors by code, bytes', async () => {
    const before = await scrape();
    const okBefore = sampleValue(before, 'annal_rpc_server_requests_total', { ...append, grpc_code: 'OK' });
    const countBefore = sampleValue(before, 'annal_rpc_server_duration_seconds_count', append);
    const n = 25;
    let requestBytes = 0;
    let responseBytes = 0;
    for (let i = 0; i < n; i++) {
      const request = { value: `record-${i}`, subject: 'root' };
      const { response, error } = await callAppend(client, request);
      assert.equal(error, undefined);
      requestBytes += Buffer.byteLength(JSON.stringify(request));
      responseBytes += Buffer.byteLength(JSON.stringify(response));
    }
    const failed = await callAppend(client, { value: 'x', fail: Status.OUT_OF_RANGE });
    assert.equal(failed.error?.code, Status.OUT_OF_RANGE);

    const after = await scrape();
    assert.equal(sampleValue(after, 'annal_rpc_server_requests_total', { ...append, grpc_code: 'OK' }) - okBefore, n);
    assert.equal(sampleValue(after, 'annal_rpc_server_duration_seconds_count', append) - countBefore, n + 1);
    assert.equal(sampleValue(after, 'annal_rpc_server_errors_total', { ...append, grpc_code: 'OUT_OF_RANGE' }), 1);
    assert.equal(sampleValue(after, 'annal_rpc_server_errors_total', { ...append, grpc_code: 'OK' }), 0);
    const bucketInf = sampleValue(after, 'annal_rpc_server_duration_seconds_bucket', { ...append, le: '+Inf' });
    assert.equal(bucketInf, sampleValue(after, 'annal_rpc_server_duration_seconds_count', append));
    const failedRequestBytes = Buffer.byteLength(JSON.stringify({ value: 'x', fail: Status.OUT_OF_RANGE }));
    assert.equal(sampleValue(after, 'annal_rpc_server_received_bytes_total', append), requestBytes + failedRequestBytes);
    assert.equal(sampleValue(after, 'annal_rpc_server_sent_bytes_total', append), responseBytes);
    assert.equal(sampleValue(after, 'annal_rpc_server_in_flight_calls', append), 0);
  });

  it('writes one access-log line per call with method, code, duration, subject, peer and bytes', async () => {
    lines.length = 0;
    await callAppend(client, { value: 'hello', subject: 'root' });
    await callAppend(client, { value: 'no', subject: 'nobody', fail: Status.PERMISSION_DENIED });
    const access = lines.filter((line) => line.component === 'access');
    assert.equal(access.length, 2);
    const [ok, denied] = access as [AccessLine, AccessLine];
    assert.equal(ok.msg, 'rpc');
    assert.equal(ok.method, '/test.Echo/Append');
    assert.equal(ok.code, 'OK');
    assert.equal(ok.subject, 'root');
    assert.match(ok.peer, /^127\.0\.0\.1:\d+$/);
    assert.ok(ok.durationMs >= 0 && ok.durationMs < 60_000, `durationMs ${ok.durationMs}`);
    assert.equal(ok.requestBytes, Buffer.byteLength(JSON.stringify({ value: 'hello', subject: 'root' })));
    assert.ok(ok.responseBytes > 0);
    assert.equal(denied.code, 'PERMISSION_DENIED');
    assert.equal(denied.subject, 'nobody');
    assert.equal(denied.responseBytes, 0);
  });

  it('tracks open streams and counts a stream once when it ends', async () => {
    const chat = { grpc_service: 'test.Echo', grpc_method: 'Chat' };
    lines.length = 0;
    const stream = client.chat();
    const replies: number[] = [];
    stream.on('data', (reply: { seq: number }) => replies.push(reply.seq));
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    for (let i = 0; i < 3; i++) stream.write({ n: i });
    while (replies.length < 3) await new Promise((resolve) => stream.once('data', resolve));
    const open = await scrape();
    assert.equal(sampleValue(open, 'annal_rpc_server_open_streams', chat), 1);
    assert.equal(sampleValue(open, 'annal_rpc_server_in_flight_calls', chat), 1);
    stream.write({ n: -1 });
    stream.end();
    await ended;
    await new Promise((resolve) => setImmediate(resolve));
    const closed = await scrape();
    assert.equal(sampleValue(closed, 'annal_rpc_server_open_streams', chat), 0);
    assert.equal(sampleValue(closed, 'annal_rpc_server_requests_total', { ...chat, grpc_code: 'OK' }), 1);
    const line = lines.find((entry) => entry.method === '/test.Echo/Chat');
    assert.equal(line?.requestMessages, 4, "three messages and the end marker");
    assert.equal(line?.responseMessages, 3);
  });

  it('counts a call the client cancels once, as CANCELLED', async () => {
    const chat = { grpc_service: 'test.Echo', grpc_method: 'Chat' };
    const before = sampleValue(await scrape(), 'annal_rpc_server_requests_total', { ...chat, grpc_code: 'CANCELLED' });
    const stream = client.chat();
    stream.on('error', () => undefined);
    stream.write({ n: 1 });
    await new Promise((resolve) => stream.once('data', resolve));
    stream.cancel();
    // The server learns of the cancellation asynchronously: poll the exposition (bounded).
    let after = before;
    for (let attempt = 0; attempt < 200 && after === before; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      after = sampleValue(await scrape(), 'annal_rpc_server_requests_total', { ...chat, grpc_code: 'CANCELLED' });
    }
    assert.equal(after - before, 1);
    assert.equal(sampleValue(await scrape(), 'annal_rpc_server_open_streams', chat), 0);
  });
});
