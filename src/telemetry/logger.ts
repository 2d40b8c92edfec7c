/**
 * Structured logs: pino JSON, one line per event. Components log through a child logger carrying
 * `component` (`logger.child({ component: 'server' })`, or `componentLogger(root, 'server')`), so an
 * operator can filter one component's lines with `jq 'select(.component == "server")'`.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { InvalidArgumentError } from '../util/index.js';

export type { Logger } from 'pino';

/** The levels `--log-level` accepts, quietest last. `silent` writes nothing. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  /** Lines below this level are dropped before they are formatted. Default `info`. */
  level?: LogLevel;
  /**
   * Where lines go: a file path (appended to), a file descriptor, or a stream. Default stdout
   * (fd 1). File paths and fds are written asynchronously through pino's buffered destination.
   */
  destination?: string | number | DestinationStream;
  /** Fields on every line (e.g. `{ node: 'annal-0' }`). */
  base?: Record<string, unknown>;
}

/** The root logger of a process (or of one test). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const target = options.destination ?? 1;
  const destination =
    typeof target === 'string' || typeof target === 'number'
      ? pino.destination({ dest: target, sync: false, mkdir: typeof target === 'string' })
      : target;
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
