#!/usr/bin/env node
// Builds the x86 boot-sector guests that the real-QEMU tests boot (guest/README.md):
// guest/bootblock.S -> dist/guest/bootblock.bin and guest/bootblock-random.S ->
// dist/guest/bootblock-random.bin, with binutils only. Run by `npm run build`
// after tsc. Skipped, with the reason printed, only when `as` is missing (npm test's pretest
// step, scripts/test-deps.mjs, installs binutils).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'guest');
const GUESTS = ['bootblock', 'bootblock-random'];

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
const outs = [];
try {
  mkdirSync(outDir, { recursive: true });
  for (const guest of GUESTS) {
    const obj = join(work, `${guest}.o`);
    const out = join(outDir, `${guest}.bin`);
    execFileSync(as, ['--32', '-o', obj, join(root, 'guest', `${guest}.S`)], { stdio: ['ignore', 'inherit', 'inherit'] });
    execFileSync(ld, ['-m', 'elf_i386', '-Ttext=0x7c00', '-e', 'start', '--oformat=binary', '-o', out, obj], { stdio: ['ignore', 'inherit', 'inherit'] });
    outs.push(out);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
for (const out of outs) {
  const size = statSync(out).size;
  if (size !== 512) {
    console.error(`build-guest: ${out} is ${size} bytes, a boot sector must be 512`);
    process.exit(1);
  }
}
