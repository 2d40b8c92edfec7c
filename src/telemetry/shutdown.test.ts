/**
 * Goal: an unreachable trace collector cannot make a node's shutdown fail.
 * Method: a real OTLP/HTTP exporter pointed at a loopback port nobody listens on; record a span,
 * shut down, and check that shutdown resolves and a warning names the problem.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from './logger.js';
import { Telemetry } from './telemetry.js';

/** A loopback port that was free a moment ago (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('shutdown resolves and warns when the OTLP endpoint refuses connections', async () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const logger = createLogger({ level: 'warn', destination });
  const telemetry = await Telemetry.start({ logger, otlpEndpoint: `http://127.0.0.1:${await closedPort()}`, traceSampleRatio: 1 });
  assert.ok(telemetry.tracingEnabled);
  telemetry.tracer('test').startSpan('lost').end();
  await telemetry.shutdown();
  assert.ok(lines.some((line) => line.includes('could not export the last spans at shutdown')), lines.join(''));
});
