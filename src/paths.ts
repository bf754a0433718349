/**
 * Where the package's own files are, found once from this module's location rather than by
 * counting '..' in every caller: the compiled tree (dist/src/paths.js) and the sources
 * (src/paths.ts) both sit below the package root, which is the nearest folder up with this
 * package's package.json. Importable from every layer that may touch the file system.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'postcopy-engine') return dir;
    if (dirname(dir) === dir) throw new Error(`postcopy-engine: no package.json of postcopy-engine above ${start}`);
  }
}

/** The package root: the folder holding package.json, native/ and dist/. */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** The package's version, read once from package.json. */
export const PACKAGE_VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The compiled addon (built by `npm ci` through node-gyp). */
export const ADDON_PATH = join(PACKAGE_ROOT, 'native', 'build', 'Release', 'postcopy_native.node');

/** The compiled entry of the migrate command's child processes. */
export const MIGRATION_CHILD_PATH = join(PACKAGE_ROOT, 'dist', 'src', 'io', 'migration', 'migrationChild.js');

/** The compiled `postcopy` command. */
export const CLI_PATH = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');
