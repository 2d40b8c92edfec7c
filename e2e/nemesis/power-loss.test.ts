// Goal: the harness's power loss drops exactly what a power cut may drop given what the node
// reported durable (the sync-report failpoint): bytes written after a file's last fsync, and
// segment files created after their directory's last fsync; a segment whose entry was synced
// stays (cut to its synced length), and files other than segments are left alone.
// Method: a report and files laid out as a node leaves them, then NemesisCluster.dropUnsynced.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { NemesisCluster, type NodeSlot } from './cluster.js';
import type { ClusterCerts } from '../cluster-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'annal-power-loss-'));
after(() => rmSync(dir, { recursive: true, force: true }));

it('power loss removes segments whose directory entry was not synced and cuts files to their synced length', () => {
  const cluster = new NemesisCluster({ dir, certs: {} as ClusterCerts, size: 1 });
  const slot = { name: 'n1', dataDir: join(dir, 'n1') } as NodeSlot;
  const log = join(slot.dataDir, 'raft', 'log.0');
  mkdirSync(log, { recursive: true });
  writeFileSync(join(log, '00000000000000000000.store'), Buffer.alloc(100));
  writeFileSync(join(log, '00000000000000000000.index'), Buffer.alloc(24));
  // Rolled to a new segment after the directory's last fsync, and written and synced since.
  writeFileSync(join(log, '00000000000000000200.store'), Buffer.alloc(40));
  writeFileSync(join(log, '00000000000000000200.index'), Buffer.alloc(12));
  writeFileSync(join(log, 'LOCK'), '');
  writeFileSync(
    cluster.syncReportPath(slot),
    JSON.stringify({
      [log]: ['00000000000000000000.index', '00000000000000000000.store'],
      [join(log, '00000000000000000000.store')]: 60,
      [join(log, '00000000000000000000.index')]: 24,
      [join(log, '00000000000000000200.store')]: 40,
    }),
  );
  const dropped = cluster.dropUnsynced(slot);
  assert.deepEqual(readdirSync(log).sort(), ['00000000000000000000.index', '00000000000000000000.store', 'LOCK']);
  assert.deepEqual(dropped.files.sort(), [join(log, '00000000000000000200.index'), join(log, '00000000000000000200.store')]);
  assert.equal(statSync(join(log, '00000000000000000000.store')).size, 60);
  assert.equal(dropped.bytes, 40);
  // A second power loss with nothing written since drops nothing.
  assert.deepEqual(cluster.dropUnsynced(slot), { bytes: 0, files: [] });
  assert.ok(existsSync(join(log, 'LOCK')));
});
