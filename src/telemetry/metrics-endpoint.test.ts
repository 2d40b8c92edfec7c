/**
 * Goal: `GET /metrics` serves a valid Prometheus exposition holding the RPC, storage and runtime
 * instruments with the values the node really has, and the endpoint refuses other paths/methods.
 * Method: Telemetry with `metricsAddr: 127.0.0.1:0`, a real grpc-js server (testdata/echo-service)
 * appending to a real CommitLog with small segments; the scraped text is piped through the real
 * `promtool check metrics` (Debian package `prometheus`; CI installs it) and its samples compared
 * with the log's own accessors.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CommitLog } from '../storage/index.js';
import { parseHostPort } from './metrics-server.js';
import { Telemetry } from './telemetry.js';
import { testLogger } from './test-logger.js';
import { callAppend, echoClient, startEchoServer, type EchoClient, type EchoServer } from './testdata/echo-service.js';
import { hasSample, parseSamples, sampleValue } from './testdata/prom-text.js';

describe('metrics endpoint', () => {
  let dir: string;
  let log: CommitLog;
  let telemetry: Telemetry;
  let server: EchoServer;
  let client: EchoClient;
  let url: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'annal-metrics-'));
    log = await CommitLog.open(dir, { fsync: { kind: 'never' }, maxStoreBytes: 1024 });
    telemetry = await Telemetry.start({ logger: testLogger({ name: 'metrics endpoint' }), metricsAddr: '127.0.0.1:0', nodeName: 'node-0' });
    server = await startEchoServer(telemetry, log, { storage: telemetry.storageMetrics(() => log) });
    client = echoClient(server.address);
    url = telemetry.metricsEndpoint!.url;
  });

  after(async () => {
    client?.close();
    await server?.close();
    await telemetry?.shutdown();
    await log?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes promtool check metrics and reports the log as it is', async () => {
    for (let i = 0; i < 40; i++) assert.equal((await callAppend(client, { value: `value-${i}`.padEnd(64, '.') })).error, undefined);
    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await response.text();

    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.error, undefined, 'promtool not found: apt-get install prometheus (CI installs it)');
    assert.equal(check.status, 0, `promtool check metrics failed:\n${check.stdout}${check.stderr}`);

    const samples = parseSamples(text);
    assert.equal(sampleValue(samples, 'annal_storage_size_bytes'), log.sizeBytes());
    assert.ok(log.segmentCount() > 1, 'small segments must have rolled');
    assert.equal(sampleValue(samples, 'annal_storage_segments'), log.segmentCount());
    assert.equal(sampleValue(samples, 'annal_storage_lowest_offset'), log.lowestOffset());
    assert.equal(sampleValue(samples, 'annal_storage_highest_offset'), log.highestOffset());
    const freeRatio = sampleValue(samples, 'annal_storage_disk_free_ratio');
    assert.ok(freeRatio > 0 && freeRatio <= 1, `free ratio ${freeRatio}`);
    assert.equal(sampleValue(samples, 'annal_storage_append_duration_seconds_count'), 40);
    assert.equal(sampleValue(samples, 'annal_rpc_server_requests_total', { grpc_method: 'Append', grpc_code: 'OK' }), 40);
    assert.ok(sampleValue(samples, 'annal_runtime_heap_used_bytes') > 0);
    assert.ok(hasSample(samples, 'annal_runtime_event_loop_lag_p99_seconds'));
    assert.match(text, /target_info\{[^}]*service_instance_id="node-0"/);
  });

  it('answers 404 off /metrics and 405 for other methods', async () => {
    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404);
    assert.equal((await fetch(url, { method: 'POST', body: 'x' })).status, 405);
  });

  it('refuses an address in use with a typed error naming it', async () => {
    const taken = telemetry.metricsEndpoint!.address;
    await assert.rejects(Telemetry.start({ metricsAddr: taken }), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'INVALID_ARGUMENT');
      assert.match(error.message, new RegExp(`cannot listen on ${taken.replace(/[.[\]]/g, '\\$&')} for metrics: EADDRINUSE`));
      return true;
    });
  });

  it('parses the address forms --metrics-addr accepts', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseHostPort(':9464'), { host: '', port: 9464 });
    assert.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
    assert.throws(() => parseHostPort('localhost'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => parseHostPort('host:70000'), { code: 'INVALID_ARGUMENT' });
  });
});
