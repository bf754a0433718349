/** Compiles a C baseline from bench/c into bench/.build (gitignored) with the system cc. */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, from dist/bench. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Builds bench/c/<name>.c with -O2 (plus extra flags) and returns the binary's path. */
export function buildC(name: string, extraFlags: string[] = []): string {
  const out = join(repoRoot, 'bench', '.build');
  mkdirSync(out, { recursive: true });
  const bin = join(out, name);
  execFileSync('cc', ['-O2', '-o', bin, join(repoRoot, 'bench', 'c', `${name}.c`), ...extraFlags], { stdio: 'inherit' });
  return bin;
}
