/**
 * The logger tests hand to the code under test. Quiet by default; `ANNAL_DEBUG=1 npm test` turns
 * on debug logs of every component, written as JSON lines into one file per test run, the way a Go
 * `TestMain` debug flag does. scripts/test.mjs picks the file (ANNAL_DEBUG_FILE) and prints its
 * path before and after the run; a test file run alone (`ANNAL_DEBUG=1 node --test x.test.js`)
 * writes to a file named after its process id in the temp dir and prints that path once.
 *
 *   test('produce', (t) => { const server = startServer({ logger: testLogger(t) }); ... });
 *
 * Each line carries `test` (the test's name) so one test's lines can be picked out:
 *   jq 'select(.test == "produce")' /tmp/annal-test-....log
 *
 * Environment: ANNAL_DEBUG (1/true/on enables), ANNAL_DEBUG_FILE (the file; appended to),
 * ANNAL_DEBUG_LEVEL (default `debug`; `trace` for more).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type DestinationStream } from 'pino';
import { createLogger, parseLogLevel, silentLogger, type Logger } from './logger.js';

/** The fields of node:test's TestContext this helper reads. */
export interface NamedTest {
  readonly name: string;
}

let sharedDestination: DestinationStream | undefined;

/** True when the run asked for debug logs. */
export function debugLogsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = (env['ANNAL_DEBUG'] ?? '').trim().toLowerCase();
  return value === '1' || value === 'true' || value === 'on' || value === 'yes';
}

/** A silent logger, or with ANNAL_DEBUG set, a debug logger writing into the run's debug file. */
export function testLogger(test?: NamedTest): Logger {
  if (!debugLogsEnabled()) return silentLogger();
  const level = parseLogLevel(process.env['ANNAL_DEBUG_LEVEL'] ?? 'debug');
  const logger = createLogger({ level, destination: debugDestination(), base: { pid: process.pid } });
  return test === undefined ? logger : logger.child({ test: test.name });
}

/** One synchronous destination per process: lines survive a crashing test; speed does not matter here. */
function debugDestination(): DestinationStream {
  if (sharedDestination !== undefined) return sharedDestination;
  let path = process.env['ANNAL_DEBUG_FILE'];
  if (path === undefined || path === '') {
    path = join(tmpdir(), `annal-debug-${process.pid}.log`);
    process.stderr.write(`annal: debug logs of this process go to ${path}\n`);
  }
  sharedDestination = pino.destination({ dest: path, sync: true, append: true, mkdir: true });
  return sharedDestination;
}
