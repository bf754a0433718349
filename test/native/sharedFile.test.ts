import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BackendError } from '../../src/errors.js';
import { mapSharedFile, syncSharedFile } from '../../src/native/sharedFile.js';
import { scratchDir } from '../scratchDir.js';
import { tmpdir } from 'node:os';

const moduleUrl = new URL('../../src/native/sharedFile.js', import.meta.url).href;

test('writes into a shared mapping survive SIGKILL of the writing process', (t) => {
  const dir = scratchDir('shared-file-');
  try {
    const file = join(dir, 'journal.bin');
    const bytes = 3 * 4096 + 100;
    const child = `
      const { mapSharedFile } = await import(${JSON.stringify(moduleUrl)});
      const buf = mapSharedFile(${JSON.stringify(file)}, ${bytes});
      for (let i = 0; i < buf.length; i++) buf[i] = (i * 7 + 3) & 0xff;
      process.kill(process.pid, 'SIGKILL');
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8' });
    t.is(r.signal, 'SIGKILL', r.stderr);
    const data = readFileSync(file);
    t.is(data.length, bytes);
    let mismatches = 0;
    for (let i = 0; i < bytes; i++) if (data[i] !== ((i * 7 + 3) & 0xff)) mismatches++;
    t.is(mismatches, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mapSharedFile sizes the file, shares it with readers, and syncSharedFile flushes it', (t) => {
  const dir = scratchDir('shared-file-');
  try {
    const file = join(dir, 'j.bin');
    const buf = mapSharedFile(file, 10_000);
    t.is(buf.length, 10_000);
    t.is(statSync(file).size, 10_000);
    buf.write('hello', 5000);
    syncSharedFile(buf);
    syncSharedFile(buf, 4999, 7);
    t.is(readFileSync(file).subarray(5000, 5005).toString(), 'hello');
    // Reopening keeps the content; a new size grows the file with zeros.
    const again = mapSharedFile(file, 20_000);
    t.is(again.subarray(5000, 5005).toString(), 'hello');
    t.is(again[15_000], 0);
    t.is(statSync(file).size, 20_000);
    t.throws(() => syncSharedFile(buf, 9_000, 2_000), { instanceOf: BackendError });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mapSharedFile refuses impossible files and sizes with a BackendError', (t) => {
  t.throws(() => mapSharedFile('/nonexistent-dir/x.bin', 4096), { instanceOf: BackendError, message: /cannot open/ });
  t.throws(() => mapSharedFile(join(tmpdir(), 'never-created.bin'), 0), { instanceOf: BackendError, message: /positive integer/ });
});
