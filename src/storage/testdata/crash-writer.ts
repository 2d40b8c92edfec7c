/**
 * Child process for the kill -9 test: appends forever from several concurrent writers and prints
 * "<offset> <value>" for every acknowledged append. Usage: node crash-writer.js <dir> <fsync> <writers>
 */
import { CommitLog, parseFsyncPolicy } from '../index.js';

const [dir, fsync = 'always', writersText = '8'] = process.argv.slice(2);
if (!dir) throw new Error('usage: crash-writer <dir> [fsync] [writers]');
const log = await CommitLog.open(dir, { fsync: parseFsyncPolicy(fsync), maxIndexBytes: 12 * 500 });
process.stdout.write(`ready ${log.nextOffset()}\n`);

async function writer(id: number): Promise<void> {
  for (let seq = 0; ; seq++) {
    const value = `w${id}-${seq}-${'x'.repeat(seq % 50)}`;
    const offset = await log.append({ value: Buffer.from(value) });
    process.stdout.write(`${offset} ${value}\n`);
  }
}
await Promise.all(Array.from({ length: Number(writersText) }, (_, i) => writer(i)));
