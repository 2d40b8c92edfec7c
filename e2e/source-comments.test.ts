/**
 * Goal: the code speaks of itself: no comment points at a tracker's issue number or at a source
 * file that does not exist (a renamed or never-written file leaves the reader nowhere to go).
 * Method: every .ts file under src/, e2e/ and bench/ (generated code aside) is scanned for
 * `issue <n>` and for `<name>.ts` mentioned in comments, each checked against the repository's
 * own file names.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== 'gen' && name !== 'node_modules') sourceFiles(path, out);
    } else if (name.endsWith('.ts')) {
      out.push(path);
    }
  }
  return out;
}

/** The comment text of a line: after `//`, or inside a block comment (lines starting with `*`). */
function commentOf(line: string): string | undefined {
  const trimmed = line.trim();
  if (trimmed.startsWith('*') || trimmed.startsWith('/*')) return trimmed;
  const slashes = line.indexOf('// ');
  return slashes >= 0 ? line.slice(slashes) : undefined;
}

it('comments name no issue numbers and no missing source files', () => {
  const files = ['src', 'e2e', 'bench'].flatMap((dir) => sourceFiles(join(ROOT, dir)));
  const names = new Set(files.map((path) => basename(path)));
  const problems: string[] = [];
  for (const path of files) {
    readFileSync(path, 'utf8')
      .split('\n')
      .forEach((line, index) => {
        const comment = commentOf(line);
        if (comment === undefined) return;
        const where = `${relative(ROOT, path)}:${index + 1}`;
        if (/\bissues? #?\d+/i.test(comment)) problems.push(`${where}: an issue number: ${comment}`);
        for (const [mentioned] of comment.matchAll(/\b[\w.-]+\.ts\b/g)) {
          if (!names.has(mentioned)) problems.push(`${where}: ${mentioned} does not exist: ${comment}`);
        }
      });
  }
  assert.deepEqual(problems, []);
});
