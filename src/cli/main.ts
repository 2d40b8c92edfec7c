#!/usr/bin/env node
/**
 * The `annal` command. Exit codes: 0 success (and after a graceful shutdown on SIGINT/SIGTERM),
 * 1 runtime failure (unusable data dir, node unreachable, a rejected record), 2 usage error
 * (unknown flag, bad value, no TLS files and no --insecure), 141 (128 + SIGPIPE) when whatever
 * reads stdout goes away (`annal consume | head -1`), silently, as a Unix tool killed by SIGPIPE. Errors are one line on stderr, except
 * the agent's refusal to start without security, which prints the commands to make certificates.
 */
import { format } from 'node:util';
import { logVerbosity, setLogger, setLogVerbosity } from '@grpc/grpc-js';
import { Command, CommanderError } from 'commander';
import { AnnalError } from '../util/index.js';
import { addAgentCommands } from './agent-command.js';
import { addCertsCommand } from './certs-command.js';
import { addClientCommands } from './client-commands.js';
import { addDevCommand } from './dev-command.js';
import { UsageError } from './usage-error.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_BROKEN_PIPE = 128 + 13;

function program(): Command {
  const root = new Command('annal')
    .description('annal: a durable, ordered commit log service')
    .version('0.1.0')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: (text, write) => write(`annal: ${text.replace(/^error: /, '')}`) });
  addAgentCommands(root);
  addDevCommand(root);
  addClientCommands(root);
  addCertsCommand(root);
  for (const command of root.commands) {
    command.exitOverride().configureOutput({ outputError: (text, write) => write(`annal ${command.name()}: ${text.replace(/^error: /, '')}`) });
  }
  return root;
}

/**
 * grpc-js logs its own errors straight to stderr ("E No address added ..."), which would add a
 * second, differently formatted line to the one-line errors. The failures it logs also surface as
 * errors annal reports, so its log is off unless GRPC_VERBOSITY / GRPC_NODE_VERBOSITY asks for it;
 * the agent routes it into its own log at debug level (agent-command.ts).
 */
function quietGrpcLog(): void {
  if (process.env.GRPC_VERBOSITY === undefined && process.env.GRPC_NODE_VERBOSITY === undefined) {
    setLogVerbosity(logVerbosity.NONE);
  }
  setLogger({ error: (...args: unknown[]) => process.stderr.write(`grpc-js: ${format(...args)}\n`) });
}

/**
 * grpc-js hands the target host to TLS as the server name even when it is an IP address, and Node
 * then prints a DEP0123 deprecation warning on every client command run with `--addr 127.0.0.1:…`.
 * It is harmless here (the certificate is still checked against the IP SAN), so only that warning
 * is dropped; every other warning is printed as usual.
 */
function quietIpServerNameWarning(): void {
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const options = args[1];
    const code = typeof options === 'object' && options !== null ? (options as { code?: unknown }).code : args[2];
    if (code === 'DEP0123') return;
    emitWarning(...args);
  }) as typeof process.emitWarning;
}

/**
 * A reader that closes the pipe makes the next write to stdout fail with EPIPE, which Node
 * reports as an unhandled 'error' event with a stack trace. Unix tools are killed by SIGPIPE
 * there without a word; Node ignores SIGPIPE, so exit the same way by hand: on the 'error'
 * event, or at the end when the command finished before that event (it comes a tick after the
 * failed write, and a command whose remaining output was already in memory ends sooner).
 */
/**
 * Resolves once everything written to stdout has gone to the OS. Writes to a pipe are
 * asynchronous, and process.exit drops what is still queued: `annal consume | slow-reader`
 * would lose the end of its output.
 */
function flushStdout(): Promise<void> {
  if (process.stdout.writableLength === 0 || process.stdout.destroyed) return Promise.resolve();
  return new Promise((resolve) => process.stdout.write('', () => resolve()));
}

function stdoutBroken(): boolean {
  return (process.stdout.errored as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}

function exitQuietlyOnBrokenPipe(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT_BROKEN_PIPE);
    process.stderr.write(`annal: cannot write to stdout: ${error.message}\n`);
    process.exit(EXIT_FAILURE);
  });
}

async function main(argv: string[]): Promise<number> {
  exitQuietlyOnBrokenPipe();
  quietGrpcLog();
  quietIpServerNameWarning();
  const root = program();
  try {
    await root.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE; // commander printed it
    const command = argv[2] !== undefined && !argv[2].startsWith('-') ? `annal ${argv[2]}` : 'annal';
    if (error instanceof UsageError) {
      process.stderr.write(`${command}: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof AnnalError) {
      process.stderr.write(`${command}: ${error.message}\n`);
      return EXIT_FAILURE;
    }
    process.stderr.write(`${command}: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_FAILURE;
  }
}

// Exit explicitly, once stdout is flushed: a finished command must not linger on a handle (a
// gRPC channel, stdin).
main(process.argv)
  .then(async (code) => {
    await flushStdout();
    return code;
  })
  .then((code) => process.exit(stdoutBroken() ? EXIT_BROKEN_PIPE : code));
