/**
 * Where the QEMU 7.2 captures live: `../shared/fixtures/qemu-7.2/` relative to the
 * repository root, resolved from this file's compiled location (dist/test/qemu-trace).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../shared/fixtures/qemu-7.2');

/** The path of a fixture file; throws a clear error when the fixtures are not there. */
export function fixture(...parts: string[]): string {
  const path = join(FIXTURES_DIR, ...parts);
  if (!existsSync(path)) {
    throw new Error(
      `QEMU 7.2 fixture missing: ${path}. The fixtures are expected in ../shared/fixtures/qemu-7.2/ ` +
        'beside the repository (CI provides them).',
    );
  }
  return path;
}
