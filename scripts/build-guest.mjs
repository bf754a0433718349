#!/usr/bin/env node
// Builds the x86 boot-sector guest that the real-QEMU tests boot (guest/README.md):
// guest/bootblock.S -> dist/guest/bootblock.bin with binutils only. Run by `npm run build`
// after tsc. Skipped, with the reason printed, only when `as` is missing (npm test's pretest
// step, scripts/test-deps.mjs, installs binutils).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'guest', 'bootblock.S');
const outDir = join(root, 'dist', 'guest');
const out = join(outDir, 'bootblock.bin');

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      if (statSync(join(dir, name)).isFile()) return join(dir, name);
    } catch { /* not here */ }
  }
  return null;
}

const as = onPath('as');
const ld = onPath('ld');
if (!as || !ld) {
  console.log(`build-guest: skipped, ${!as ? '`as`' : '`ld`'} (binutils) is not on PATH; npm test's pretest installs it (apt-get install binutils)`);
  process.exit(0);
}
const work = mkdtempSync(join(tmpdir(), 'postcopy-guest-'));
try {
  const obj = join(work, 'bootblock.o');
  execFileSync(as, ['--32', '-o', obj, source], { stdio: ['ignore', 'inherit', 'inherit'] });
  mkdirSync(outDir, { recursive: true });
  execFileSync(ld, ['-m', 'elf_i386', '-Ttext=0x7c00', '-e', 'start', '--oformat=binary', '-o', out, obj], { stdio: ['ignore', 'inherit', 'inherit'] });
} finally {
  rmSync(work, { recursive: true, force: true });
}
const size = statSync(out).size;
if (size !== 512) {
  console.error(`build-guest: ${out} is ${size} bytes, a boot sector must be 512`);
  process.exit(1);
}
