// Goal: a replicated log's follower may lag the leader by a heartbeat, so a ConsumeStream from an
// offset just past its end waits (bounded) for it instead of answering OUT_OF_RANGE at once; a
// single log still refuses at once. Method: a real CommitLog behind a real LogServer on 127.0.0.1,
// served once as is and once as a replica would be (a ServedLog with whenCaughtUp).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AnnalClient } from '../client/index.js';
import { CommitLog } from '../storage/index.js';
import { OffsetOutOfRangeError } from '../util/index.js';
import { LogServer } from './server.js';
import type { ServedLog } from './served-log.js';

const quiet = { error: () => {}, warn: () => {}, info: () => {} };

async function serve(replicaLike: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'annal-past-end-'));
  const log = await CommitLog.open(dir, { fsync: { kind: 'never' } });
  const served: ServedLog = {
    append: (record) => log.append(record),
    appendBatch: (records) => log.appendBatch(records),
    read: (offset) => log.read(offset),
    readBatch: (offset, limits) => log.readBatch(offset, limits),
    lowestOffset: () => log.lowestOffset(),
    nextOffset: () => log.nextOffset(),
    waitForAppend: (offset, signal) => log.waitForAppend(offset, signal),
    ...(replicaLike ? { whenCaughtUp: () => null } : {}),
  };
  const server = new LogServer({ nodeName: 'past-end', log: served, logger: quiet });
  await server.start('127.0.0.1', 0);
  const client = new AnnalClient({ address: server.address, security: { insecure: true } });
  return {
    log,
    client,
    stop: async () => {
      client.close();
      await server.shutdown();
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('a replica waits for an offset just past its end; a single log refuses it at once', async () => {
  const replica = await serve(true);
  try {
    await replica.log.append({ value: Buffer.from('r0') });
    // Offset 2 is past the end (next is 1): it arrives with the next two appends.
    const reading = (async () => {
      for await (const record of replica.client.consumeStream(2)) return record;
      return undefined;
    })();
    await replica.log.append({ value: Buffer.from('r1') });
    await replica.log.append({ value: Buffer.from('r2') });
    const record = await reading;
    assert.equal(record?.offset, 2);
    assert.equal(record?.value.toString(), 'r2');
    // Far past the end it still answers OUT_OF_RANGE, after the bounded wait.
    const startedMs = performance.now();
    await assert.rejects(async () => {
      for await (const _ of replica.client.consumeStream(100)) break;
    }, OffsetOutOfRangeError);
    assert.ok(performance.now() - startedMs >= 900, 'waited for the offset first');
  } finally {
    await replica.stop();
  }
  const single = await serve(false);
  try {
    await single.log.append({ value: Buffer.from('s0') });
    await assert.rejects(async () => {
      for await (const _ of single.client.consumeStream(2)) break;
    }, OffsetOutOfRangeError);
  } finally {
    await single.stop();
  }
});
