/** The codec stays pure like the rest of src/engine: no node: imports, no Buffer, imports only from src/engine and src/errors. */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/engine/qemuWire -> repository root
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const folder = join(root, 'src', 'engine', 'qemuWire');

test('src/engine/qemuWire imports nothing from node: nor outside src/engine and src/errors.ts, and uses no Buffer', (t) => {
  const files = readdirSync(folder).filter((f) => f.endsWith('.ts'));
  t.true(files.length >= 6, `found ${files.join(', ')}`);
  for (const file of files) {
    const text = readFileSync(join(folder, file), 'utf8');
    const imports = [...text.matchAll(/\bfrom\s+'([^']+)'/g)].map((m) => m[1]!);
    for (const spec of imports) {
      t.true(spec.startsWith('./') || /^\.\.\/[A-Za-z]+\.js$/.test(spec) || spec === '../../errors.js', `${file} imports ${spec}`);
    }
    t.notRegex(text, /\bBuffer\b/, `${file} uses Buffer`);
  }
});
