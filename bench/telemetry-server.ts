/**
 * The server side of bench/telemetry.ts, run as a child process (its own event loop and core).
 *
 *   node dist/bench/telemetry-server.js <dataDir> <fsync> off
 *     LogServer with telemetry off: no interceptors, no-op instruments, silent logs.
 *   node dist/bench/telemetry-server.js <dataDir> <fsync> on <otlpEndpoint> <accessLogFile> [sampleRatio]
 *     Everything on: the server interceptor (metrics, a sampled span per call with storage.append
 *     child spans, access log at info into a file), storage (append durations through MeteredLog)
 *     and runtime instruments, a /metrics endpoint, OTLP/HTTP span export.
 *
 * Prints one JSON line `{"address":"127.0.0.1:port","metricsUrl":...}` when ready, one line
 * `{"cpuMicros":N}` per SIGUSR2; exits on SIGTERM.
 */
import { LogServer, MeteredLog } from '../src/server/index.js';
import { CommitLog, parseFsyncPolicy } from '../src/storage/index.js';
import { createLogger, Telemetry } from '../src/telemetry/index.js';

async function main(): Promise<void> {
  const [dataDir, fsync, mode, otlpEndpoint, accessLogFile, sampleRatio] = process.argv.slice(2);
  const on = mode === 'on';
  const log = await CommitLog.open(dataDir!, { fsync: parseFsyncPolicy(fsync ?? 'always') });
  const telemetry = on
    ? await Telemetry.start({
        logger: createLogger({ level: 'info', destination: accessLogFile! }),
        nodeName: 'bench',
        metricsAddr: '127.0.0.1:0',
        otlpEndpoint: otlpEndpoint!,
        traceSampleRatio: Number(sampleRatio ?? 1),
        env: {},
      })
    : Telemetry.disabled();
  const storage = on ? telemetry.storageMetrics(() => log) : undefined;
  const server = new LogServer({
    log: storage ? new MeteredLog(log, storage) : log,
    nodeName: 'bench',
    logger: telemetry.logger('server'),
    maxRecordBytes: 1024 * 1024,
    telemetry,
  });
  const address = await server.start('127.0.0.1', 0);
  process.once('SIGTERM', () => {
    void (async () => {
      await server.shutdown();
      await log.close();
      await telemetry.shutdown();
      process.exit(0);
    })();
  });
  // SIGUSR2: print the CPU time this process has used so far, so the parent can charge each run's
  // server CPU per record (steadier than wall-clock rates on a busy machine).
  process.on('SIGUSR2', () => {
    const usage = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuMicros: usage.user + usage.system })}\n`);
  });
  process.stdout.write(`${JSON.stringify({ address, metricsUrl: telemetry.metricsEndpoint?.url })}\n`);
}

void main();
