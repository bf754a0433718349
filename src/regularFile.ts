import { statSync, type Stats } from 'node:fs';
import { NotARegularFileError } from './errors.js';

/** What a non-regular file is, in words ('a FIFO', 'a directory'...). Pure. */
export function fileKind(s: Stats): string {
  if (s.isFile()) return 'a regular file';
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  return 'a special file';
}

/**
 * Refuses at once an input that is not a regular file: reading a FIFO or /dev/zero would
 * block or never end, a directory cannot be read. A missing file throws the usual ENOENT
 * (callers report it their own way). Symbolic links are followed.
 */
export function assertRegularFile(path: string): void {
  const s = statSync(path);
  if (!s.isFile()) throw new NotARegularFileError(path, fileKind(s));
}
