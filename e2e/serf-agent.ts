/**
 * Test and benchmark support: real `serf agent` processes (Debian's serf) on 127.0.0.1 with free
 * ports and a temp dir, their log lines, and their RPC views (`serf members -format=json`). Every
 * agent is tracked so `killAllAgents()` can clean up even after a failure.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SerfMember {
  readonly name: string;
  readonly addr: string;
  readonly port: number;
  readonly tags: Record<string, string>;
  readonly status: string;
  readonly protocol: Record<string, number>;
}

export interface SerfAgent {
  readonly name: string;
  readonly bindAddr: string;
  readonly rpcAddr: string;
  readonly process: ChildProcess;
  /** Log lines so far (stdout + stderr). */
  readonly log: string[];
}

const agents = new Set<SerfAgent>();

/** A port free for both TCP and UDP on 127.0.0.1 (memberlist needs both). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
    const udp = createSocket('udp4');
    const udpFree = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => (udpFree ? udp.close(() => resolve()) : resolve()));
    if (udpFree) return port;
  }
  throw new Error('no port free for both TCP and UDP');
}

export interface AgentOptions {
  readonly name: string;
  readonly tags?: Record<string, string>;
  readonly join?: string;
  readonly encryptKey?: string;
  /** serf's timing profile; `local` is the fastest it offers. */
  readonly profile?: 'lan' | 'wan' | 'local';
}

export async function startAgent(options: AgentOptions): Promise<SerfAgent> {
  const bindAddr = `127.0.0.1:${await freePort()}`;
  const rpcAddr = `127.0.0.1:${await freePort()}`;
  const args = ['agent', `-node=${options.name}`, `-bind=${bindAddr}`, `-rpc-addr=${rpcAddr}`, `-profile=${options.profile ?? 'local'}`, '-log-level=debug'];
  for (const [key, value] of Object.entries(options.tags ?? {})) args.push('-tag', `${key}=${value}`);
  if (options.join) args.push(`-join=${options.join}`);
  if (options.encryptKey) args.push(`-encrypt=${options.encryptKey}`);
  const child = spawn('serf', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const agent: SerfAgent = { name: options.name, bindAddr, rpcAddr, process: child, log: [] };
  agents.add(agent);
  const collect = (chunk: Buffer): void => void agent.log.push(...chunk.toString().split('\n').filter((line) => line.trim() !== ''));
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  child.once('exit', () => agents.delete(agent));
  await waitFor(async () => (await rpcMembers(agent).catch(() => undefined)) !== undefined, 10_000, `serf agent ${options.name} RPC to answer`);
  return agent;
}

/** `serf members -format=json` through the agent's RPC address. */
export async function rpcMembers(agent: SerfAgent): Promise<SerfMember[]> {
  const { stdout } = await run('serf', ['members', `-rpc-addr=${agent.rpcAddr}`, '-format=json'], { timeout: 5_000 });
  return (JSON.parse(stdout) as { members: SerfMember[] }).members;
}

export async function rpcMember(agent: SerfAgent, name: string): Promise<SerfMember | undefined> {
  return (await rpcMembers(agent)).find((member) => member.name === name);
}

/** The human `serf members -detailed` listing, one line per member. */
export async function rpcMembersDetailed(agent: SerfAgent): Promise<string[]> {
  const { stdout } = await run('serf', ['members', `-rpc-addr=${agent.rpcAddr}`, '-detailed'], { timeout: 5_000 });
  return stdout.split('\n').filter((line) => line.trim() !== '');
}

/** Runs `serf query` with the given filter flags; returns the names that acked. */
export async function rpcQueryAcks(agent: SerfAgent, filters: string[]): Promise<string[]> {
  const { stdout } = await run('serf', ['query', `-rpc-addr=${agent.rpcAddr}`, '-timeout=1s', '-format=json', ...filters, 'annal-test'], { timeout: 10_000 });
  return ((JSON.parse(stdout) as { Acks: string[] | null }).Acks ?? []).sort();
}

export async function rpcSetTag(agent: SerfAgent, key: string, value: string): Promise<void> {
  await run('serf', ['tags', `-rpc-addr=${agent.rpcAddr}`, '-set', `${key}=${value}`], { timeout: 5_000 });
}

export async function rpcLeave(agent: SerfAgent): Promise<void> {
  await run('serf', ['leave', `-rpc-addr=${agent.rpcAddr}`], { timeout: 15_000 });
}

export async function keygen(): Promise<string> {
  const { stdout } = await run('serf', ['keygen'], { timeout: 5_000 });
  return stdout.trim();
}

export function killAgent(agent: SerfAgent, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  return new Promise((resolve) => {
    if (agent.process.exitCode !== null || agent.process.signalCode !== null) return resolve();
    agent.process.once('exit', () => resolve());
    agent.process.kill(signal);
  });
}

export async function killAllAgents(): Promise<void> {
  await Promise.all([...agents].map((agent) => killAgent(agent)));
}

/** Polls `condition` (every 50 ms) until true; throws after `timeoutMs` naming `what`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await condition()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
