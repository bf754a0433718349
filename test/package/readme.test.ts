import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/paths.js';

/** The TypeScript block of the README's "## Embedding" section. */
export function embeddingBlock(readme: string): string | null {
  const section = /^## Embedding\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  return section === undefined ? null : (/^```ts\n([\s\S]*?)^```$/m.exec(section)?.[1] ?? null);
}

test("the README's embedding program is examples/embedding.ts, verbatim, and at most ~60 lines", (t) => {
  const block = embeddingBlock(readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8'));
  const example = readFileSync(join(PACKAGE_ROOT, 'examples', 'embedding.ts'), 'utf8');
  t.not(block, null, 'README.md has a ```ts block under ## Embedding');
  t.is(block, example, 'the README block and examples/embedding.ts differ: copy the file into the README');
  t.true(example.split('\n').length <= 62, `${example.split('\n').length} lines`);
});

test('a README block that drifted from the file is caught', (t) => {
  t.is(embeddingBlock('## Embedding\n\ntext\n\n```ts\nconst a = 1;\n```\n\n## Next\n'), 'const a = 1;\n');
  t.is(embeddingBlock('## Other\n```ts\nx\n```\n## Next\n'), null);
});
