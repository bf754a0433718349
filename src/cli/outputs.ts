/**
 * Nothing a command writes may be something it reads, and nothing it writes replaces an
 * earlier run's journal unasked: the checks every command with an output makes before it
 * writes anything (UsageError: exit 2).
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

/** True when both paths name the same existing file (after links: same device and inode). */
export function sameFile(a: string, b: string): boolean {
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false; // one of them does not exist: no file is both
  }
}

/** Refuses an output that is one of the inputs (a link to one included). */
export function refuseOutputIsInput(output: string, option: string, inputs: Array<{ what: string; path: string | undefined }>): void {
  for (const input of inputs) {
    if (input.path !== undefined && sameFile(output, input.path)) {
      throw new UsageError(`${option} ${output} is ${input.what} (${input.path}): writing it would destroy the input; choose another output file`);
    }
  }
}

/** Refuses an output whose folder does not exist (or is no folder), in one line. */
export function refuseMissingFolder(output: string, option: string): void {
  const dir = dirname(resolve(output));
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new UsageError(`${option} ${output}: the folder ${dir} does not exist`);
  }
  if (!isDir) throw new UsageError(`${option} ${output}: ${dir} is not a folder`);
}

/** `postcopy-journal.db`, else the first free `postcopy-journal-2.db`, `-3.db`, ... beside it. */
export function freshPath(path: string): string {
  if (!existsSync(path)) return path;
  const ext = extname(path);
  const stem = basename(path, ext);
  for (let n = 2; ; n++) {
    const candidate = join(dirname(path), `${stem}-${n}${ext}`);
    if (!existsSync(candidate)) return candidate;
  }
}

/**
 * The journal a run writes: the one asked for with `--journal` (refused when it exists,
 * unless `--force`), or by default `defaultName`, or the next free name beside it (an
 * earlier run's journal is never replaced unasked). Absolute.
 */
export function chooseJournal(given: string | undefined, defaultName: string, force: boolean): { path: string; renamed: boolean } {
  if (given === undefined) {
    const path = resolve(freshPath(defaultName));
    return { path, renamed: path !== resolve(defaultName) };
  }
  refuseMissingFolder(given, '--journal');
  const path = resolve(given);
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) throw new UsageError(`--journal ${given} is a folder, not a journal file`);
    if (!force) throw new UsageError(`--journal ${given} already exists: it may be an earlier run's journal; choose another path, or add --force to replace it`);
  }
  return { path, renamed: false };
}
