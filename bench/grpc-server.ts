/**
 * The server side of bench/grpc.ts, run as a child process so that client and server each have
 * their own event loop (and core), as in a real deployment.
 *
 *   node dist/bench/grpc-server.js echo
 *     A no-op grpc-js bidi server with raw-bytes codecs: `/bench.Echo/Echo` sends every message
 *     back, `/bench.Echo/Ack` answers each with 8 bytes. It stores nothing: the baseline.
 *   node dist/bench/grpc-server.js annal <dataDir> <fsync> [prefillRecords] [prefillValueBytes]
 *     annal's LogServer over a CommitLog; optionally prefilled directly through the log.
 *
 * Prints one JSON line `{"address":"127.0.0.1:port"}` when ready; exits on SIGTERM.
 */
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { LogServer } from '../src/server/index.js';
import { CommitLog, parseFsyncPolicy } from '../src/storage/index.js';
import { ECHO_SERVICE } from './grpc-echo.js';
import { prefill } from './util.js';

const ACK = Buffer.from([0x08, 0x01, 0, 0, 0, 0, 0, 0]);

async function startEcho(): Promise<{ address: string; stop: () => Promise<void> }> {
  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  server.addService(ECHO_SERVICE, {
    echo: (call: ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (message: Buffer) => call.write(message));
      call.on('end', () => call.end());
    },
    ack: (call: ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', () => call.write(ACK));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, p) => (error ? reject(error) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

async function startAnnal(dataDir: string, fsync: string, prefillRecords: number, prefillValueBytes: number) {
  const log = await CommitLog.open(dataDir, { fsync: parseFsyncPolicy(fsync) });
  await prefill(log, prefillRecords, prefillValueBytes);
  const quiet = { error: (o: object, m: string) => console.error(m, o), warn: () => {}, info: () => {} };
  const server = new LogServer({ log, nodeName: 'bench', logger: quiet, maxRecordBytes: 1024 * 1024 });
  const address = await server.start('127.0.0.1', 0);
  return {
    address,
    stop: async () => {
      await server.shutdown();
      await log.close();
    },
  };
}

async function main(): Promise<void> {
  const [mode, dataDir, fsync, prefillRecords, prefillValueBytes] = process.argv.slice(2);
  const started =
    mode === 'echo'
      ? await startEcho()
      : await startAnnal(dataDir!, fsync ?? 'always', Number(prefillRecords ?? 0), Number(prefillValueBytes ?? 100));
  process.once('SIGTERM', () => {
    void started.stop().then(() => process.exit(0));
  });
  process.stdout.write(`${JSON.stringify({ address: started.address })}\n`);
}

void main();
