/**
 * Where the QEMU 7.2 captures live: `../shared/fixtures/qemu-7.2/` relative to the
 * repository root (the package root, found by src/paths.ts).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

export const FIXTURES_DIR = resolve(PACKAGE_ROOT, '..', 'shared', 'fixtures', 'qemu-7.2');

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
