/**
 * `npm run bench`: runs every benchmark in bench/ in turn, each in its own process so one's heap
 * and threads don't skew the next. Each prints tables with ratios against baselines measured in
 * the same run. Options: --only storage,grpc   --with-peers (also runs ../shared/peers/run.sh:
 * NATS JetStream, etcd and raw-disk figures on this machine, for side-by-side ratios).
 * ANNAL_BENCH_SCALE=0.1 shrinks every count for a quick pass.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const ORDER = ['storage', 'grpc', 'raft', 'membership', 'telemetry', 'tls', 'memory', 'cluster'];

function parseArgs(argv: string[]): { only: string[] | undefined; withPeers: boolean } {
  let only: string[] | undefined;
  let withPeers = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--only') only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (argv[i] === '--with-peers') withPeers = true;
    else {
      console.error(`unknown argument ${argv[i]}; usage: npm run bench -- [--only ${ORDER.join(',')}] [--with-peers]`);
      process.exit(2);
    }
  }
  return { only, withPeers };
}

const { only, withPeers } = parseArgs(process.argv.slice(2));
let failed = 0;
for (const name of ORDER) {
  if (only && !only.includes(name)) continue;
  const script = join(here, `${name}.js`);
  if (!existsSync(script)) continue;
  console.log(`\n# bench: ${name}`);
  const result = spawnSync(process.execPath, ['--expose-gc', script], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.error(`bench ${name} exited with ${result.status ?? result.signal}`);
  }
}
if (withPeers) {
  const peers = resolve(here, '..', '..', '..', 'shared', 'peers', 'run.sh');
  if (!existsSync(peers)) console.error(`no peers script at ${peers}`);
  else spawnSync('bash', [peers, '--runs', '1'], { stdio: 'inherit' });
}
process.exit(failed === 0 ? 0 : 1);
