/**
 * e2e support: spawn `annal` (the compiled CLI next to this file's dist folder) as real processes,
 * learn an agent's RPC address from its log, run client commands, and clean up every process a
 * test started even when the test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** dist/src/cli/main.js, found from dist/e2e/. */
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface AgentProcess {
  child: ChildProcess;
  /** Resolves with `host:port` once the agent logs that it serves; rejects if it exits first. */
  address: Promise<string>;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderrLines: string[];
}

const children = new Set<ChildProcess>();

/**
 * Starts `annal <args>`. An `agent` without `--bind-addr` gossips on 127.0.0.1 port 0, so that
 * agents of tests running in parallel don't contend for the default 8401.
 */
export function spawnAgent(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; wrap?: readonly string[] } = {}): AgentProcess {
  const fullArgs = args[0] === 'agent' && !args.includes('--bind-addr') ? [...args, '--bind-addr', '127.0.0.1:0'] : args;
  // `wrap` runs the agent through a command that execs it (e.g. `ip netns exec <ns>`): same pid.
  const [command, ...prefix] = [...(options.wrap ?? []), process.execPath];
  const child = spawn(command!, [...prefix, CLI, ...fullArgs], { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const stderrLines: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  const address = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderrLines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; rpcAddress?: string };
        if (entry.msg === 'serving log.v1.Log' && entry.rpcAddress) resolve(entry.rpcAddress);
      } catch {
        // not a log line
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`agent exited (code ${code}, signal ${signal}) before serving:\n${stderrLines.join('\n')}`)),
    );
  });
  address.catch(() => {}); // tests that expect a failed start await `exited` instead
  child.stdout!.resume();
  return { child, address, exited, stderrLines };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one `annal` command to completion (killed after `timeoutMs`). */
export function runCli(args: string[], options: { input?: string; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Kills every process this module started that is still running. */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}
