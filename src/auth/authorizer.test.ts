// Goal: the Casbin ACL from config/ grants root produce and consume, peer replicate, and nothing
// to anyone else; errors name subject and action; bad model or policy files are rejected with the
// file and line; replace() takes effect at once despite the decision cache.
// Method: the shipped config/model.conf and policy.csv, plus small files written by the test.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PermissionDeniedError } from '../util/index.js';
import { Action, ANY_OBJECT, Authorizer, loadEnforcer } from './authorizer.js';
import { CONFIG_DIR, withTempDir } from './test-fixtures.js';

const SHIPPED = { modelFile: join(CONFIG_DIR, 'model.conf'), policyFile: join(CONFIG_DIR, 'policy.csv') };

describe('Authorizer', () => {
  it('follows the shipped policy', async () => {
    const authorizer = await Authorizer.fromFiles(SHIPPED);
    const expected: [string, Action, boolean][] = [
      ['root', Action.Produce, true],
      ['root', Action.Consume, true],
      ['root', Action.Replicate, false],
      ['peer', Action.Replicate, true],
      ['peer', Action.Produce, false],
      ['nobody', Action.Produce, false],
      ['nobody', Action.Consume, false],
      ['server', Action.Consume, false],
      ['', Action.Consume, false],
    ];
    for (const [subject, action, allowed] of expected) {
      assert.equal(authorizer.isAllowed(subject, ANY_OBJECT, action), allowed, `${subject} ${action}`);
    }
    assert.throws(
      () => authorizer.authorize('nobody', ANY_OBJECT, Action.Produce),
      (error: Error) => error instanceof PermissionDeniedError && /"nobody"/.test(error.message) && /\bproduce\b/.test(error.message),
    );
  });

  it('applies a replaced policy immediately, despite cached decisions', async () => {
    await withTempDir(async (dir) => {
      const policyFile = join(dir, 'policy.csv');
      await writeFile(policyFile, 'p, root, *, produce\n');
      const authorizer = await Authorizer.fromFiles({ modelFile: SHIPPED.modelFile, policyFile });
      assert.equal(authorizer.isAllowed('nobody', ANY_OBJECT, Action.Produce), false);
      await writeFile(policyFile, '# nobody may now produce\np, nobody, *, produce\n');
      authorizer.replace(await loadEnforcer({ modelFile: SHIPPED.modelFile, policyFile }));
      assert.equal(authorizer.isAllowed('nobody', ANY_OBJECT, Action.Produce), true);
      assert.equal(authorizer.isAllowed('root', ANY_OBJECT, Action.Produce), false);
    });
  });

  it('rejects malformed policies and models with the file and line', async () => {
    await withTempDir(async (dir) => {
      const policyFile = join(dir, 'policy.csv');
      const modelFile = join(dir, 'model.conf');
      await writeFile(policyFile, 'p, root, *, produce\np, root, consume\n');
      await assert.rejects(loadEnforcer({ modelFile: SHIPPED.modelFile, policyFile }), /policy\.csv:2: "p, root, consume"/);
      await writeFile(policyFile, 'p, root, *, produce\n');
      await writeFile(modelFile, '[request_definition]\nr = sub, act\n[policy_definition]\np = sub, act\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = r.sub == p.sub\n');
      await assert.rejects(loadEnforcer({ modelFile, policyFile }), /request definition must be "r = sub, obj, act"/);
      await assert.rejects(loadEnforcer({ modelFile: join(dir, 'missing.conf'), policyFile }), /cannot read the ACL model file/);
    });
  });
});
