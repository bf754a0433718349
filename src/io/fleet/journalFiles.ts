/**
 * Which files an export reads: each argument is a journal file, or a folder whose `*.db`
 * files (at any depth) are journals. A journal's sidecars (`-wal`, `-shm`, `-tail`) are
 * never journals of their own. An argument that does not exist is reported, not thrown:
 * the export lists it with the journals it could not read.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface JournalList {
  /** Absolute paths, each once, in argument order (a folder's files sorted by path). */
  journals: string[];
  /** Arguments that name nothing readable, with why. */
  missing: Array<{ path: string; reason: string }>;
}

/** Lists the journals the arguments name (files as given; folders walked for `*.db`). */
export function listJournals(args: readonly string[]): JournalList {
  const seen = new Set<string>();
  const journals: string[] = [];
  const missing: JournalList['missing'] = [];
  const add = (p: string): void => {
    if (!seen.has(p)) {
      seen.add(p);
      journals.push(p);
    }
  };
  for (const arg of args) {
    const path = resolve(arg);
    let st;
    try {
      st = statSync(path);
    } catch {
      missing.push({ path, reason: 'no such file or folder' });
      continue;
    }
    if (st.isDirectory()) {
      for (const f of walk(path, missing)) add(f);
    } else add(path);
  }
  return { journals, missing };
}

function* walk(dir: string, missing: JournalList['missing']): Generator<string> {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (err) {
    missing.push({ path: dir, reason: `the folder cannot be listed (${(err as Error).message})` });
    return;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p, missing);
    else if (e.name.endsWith('.db')) yield p;
  }
}
