/**
 * Test support: one real node (a CommitLog in a temp dir behind a LogServer on 127.0.0.1, port 0)
 * and a client. Tests in server/, client/ and agent/ use it; nothing here is a fake.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AnnalClient } from '../client/index.js';
import { CommitLog } from '../storage/index.js';
import type { LogConfig } from '../storage/index.js';
import { LogServer, type LogServerOptions } from './server.js';
import type { ServiceLogger } from './log-service.js';

export interface TestNode {
  dir: string;
  log: CommitLog;
  server: LogServer;
  client: AnnalClient;
  /** Errors the server logged as unexpected (tests assert this stays empty). */
  unexpected: unknown[];
  stop(): Promise<void>;
}

export async function startTestNode(
  options: { log?: Partial<LogConfig>; server?: Partial<Omit<LogServerOptions, 'log' | 'logger'>> } = {},
): Promise<TestNode> {
  const dir = mkdtempSync(join(tmpdir(), 'annal-rpc-'));
  const log = await CommitLog.open(dir, { fsync: { kind: 'never' }, ...options.log });
  const unexpected: unknown[] = [];
  const logger: ServiceLogger = {
    error: (object) => unexpected.push((object as { err?: unknown }).err ?? object),
    warn: () => {},
    info: () => {},
  };
  const server = new LogServer({ nodeName: 'test-node', ...options.server, log, logger });
  await server.start('127.0.0.1', 0);
  const client = new AnnalClient({ address: server.address, security: { insecure: true } });
  const stop = async (): Promise<void> => {
    client.close();
    await server.shutdown();
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, log, server, client, unexpected, stop };
}

/** Waits until `condition()` holds, checking every `intervalMs`, failing after `timeoutMs`. */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 10_000, intervalMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
