import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
process.on('exit', () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/**
 * A fresh folder under the system temp folder, removed when the test process exits
 * (set KEEP_TEST_FILES=1 to keep it for a post-mortem).
 */
export function scratchDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  if (!process.env.KEEP_TEST_FILES) made.push(d);
  return d;
}
