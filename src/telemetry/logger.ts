/**
 * Structured logs: pino JSON, one line per event. Components log through a child logger carrying
 * `component` (`logger.child({ component: 'server' })`, or `componentLogger(root, 'server')`), so an
 * operator can filter one component's lines with `jq 'select(.component == "server")'`.
 */
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';
import { assertUint, InvalidArgumentError } from '../util/index.js';

export type { Logger } from 'pino';

/** The levels `--log-level` accepts, quietest last. `silent` writes nothing. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  /** Lines below this level are dropped before they are formatted. Default `info`. */
  level?: LogLevel;
  /**
   * Where lines go: a file path (appended to), a file descriptor, or a stream. Default stdout
   * (fd 1).
   */
  destination?: string | number | DestinationStream;
  /**
   * For file paths and fds. 0 (default): each line is written synchronously, one write(2) per
   * line. Above 0: lines are buffered and written asynchronously when 4 KiB have gathered or every
   * flushIntervalMs, whichever comes first, and flushed at process exit (a SIGKILL loses at most
   * one interval). Measured here for access-log lines: 4.9 µs per line synchronous, 6.2–7.1 µs
   * buffered (pino's formatting dominates), so buffering is for slow or blocking destinations
   * (a pipe whose reader lags), not for speed.
   */
  flushIntervalMs?: number;
  /** Fields on every line (e.g. `{ node: 'annal-0' }`). */
  base?: Record<string, unknown>;
}

/** The root logger of a process (or of one test). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const target = options.destination ?? 1;
  const destination =
    typeof target === 'string' || typeof target === 'number' ? fileDestination(target, options.flushIntervalMs ?? 0) : target;
  return pino(
    {
      level,
      base: options.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

const BUFFER_BYTES = 4096;

function fileDestination(target: string | number, flushIntervalMs: number): DestinationStream {
  assertUint(flushIntervalMs, 'flushIntervalMs');
  // Open a file here, synchronously: sonic-boom's own open is asynchronous, and lines logged just
  // before an early process.exit would be lost while it is still opening.
  const fd = typeof target === 'number' ? target : openLogFile(target);
  if (flushIntervalMs === 0) return pino.destination({ dest: fd, sync: true });
  const destination = pino.destination({ dest: fd, sync: false, minLength: BUFFER_BYTES });
  const timer = setInterval(() => {
    try {
      destination.flush();
    } catch {
      // Destroyed (closed, EPIPE): nothing left to flush; the close listener stops the timer.
    }
  }, flushIntervalMs);
  timer.unref();
  destination.once('close', () => clearInterval(timer));
  return destination;
}

function openLogFile(path: string): number {
  try {
    mkdirSync(dirname(path), { recursive: true });
    return openSync(path, 'a');
  } catch (error) {
    throw new InvalidArgumentError(`cannot open log file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
}

/** A child logger for one component: every line carries `component: name`. */
export function componentLogger(parent: Logger, name: string): Logger {
  return parent.child({ component: name });
}

/** A logger that drops everything (the default where none is given). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Parses a `--log-level` value; throws InvalidArgumentError naming the accepted values. */
export function parseLogLevel(text: string): LogLevel {
  const level = LOG_LEVELS.find((candidate) => candidate === text.trim().toLowerCase());
  if (level === undefined) {
    throw new InvalidArgumentError(`unknown log level ${JSON.stringify(text)}: use one of ${LOG_LEVELS.join(', ')}`);
  }
  return level;
}
