/**
 * Goal: an append acknowledged under the default fsync policy survives kill -9 of the process.
 * Method: a child process appends from concurrent writers and prints each acknowledged offset
 * and value; the test kills it with SIGKILL mid-stream, reopens the log, and checks that every
 * acknowledged record is there with its value. Repeated kills exercise recovery of the tail.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CommitLog } from './log.js';

const WRITER = join(dirname(fileURLToPath(import.meta.url)), 'testdata', 'crash-writer.js');
const dir = mkdtempSync(join(tmpdir(), 'annal-crash-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the writer until it has acknowledged `acks` appends, then kills it with SIGKILL. */
async function runAndKill(acks: number, fsync: string): Promise<Map<number, string>> {
  const child = spawn(process.execPath, [WRITER, dir, fsync, '16'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const acknowledged = new Map<number, string>();
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  const lines = createInterface({ input: child.stdout });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
  for await (const line of lines) {
    if (line.startsWith('ready')) continue;
    const space = line.indexOf(' ');
    acknowledged.set(Number(line.slice(0, space)), line.slice(space + 1));
    if (acknowledged.size === acks) child.kill('SIGKILL');
  }
  clearTimeout(timeout);
  assert.equal(await exited, 'SIGKILL');
  assert.ok(acknowledged.size >= acks, `writer acknowledged only ${acknowledged.size} appends`);
  return acknowledged;
}

describe('kill -9', () => {
  it('keeps every acknowledged append under fsync=always, across repeated kills', async () => {
    const all = new Map<number, string>();
    for (let round = 0; round < 3; round++) {
      for (const [offset, value] of await runAndKill(3000, 'always')) all.set(offset, value);
      const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 500 });
      try {
        for (const [offset, value] of all) {
          assert.equal(log.read(offset).value.toString(), value, `offset ${offset} after round ${round}`);
        }
        assert.ok(log.segmentCount() > 1);
      } finally {
        await log.close();
      }
    }
  });

  it('keeps every acknowledged append under fsync=never too (the OS has the bytes)', async () => {
    const acknowledged = await runAndKill(3000, 'never');
    const log = await CommitLog.open(dir, { maxIndexBytes: 12 * 500 });
    try {
      for (const [offset, value] of acknowledged) assert.equal(log.read(offset).value.toString(), value);
    } finally {
      await log.close();
    }
  });
});
