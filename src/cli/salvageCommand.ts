import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { JournalError, PostcopyError } from '../errors.js';
import { TAIL_SUFFIX } from '../journal/schema.js';
import { salvageJournal, type SalvageResult } from '../journal/salvage.js';

export interface SalvageCommandOptions {
  output: string;
  force?: boolean;
  json?: boolean;
}

/** The canonical path of `p` (its folder resolved through links when the file does not exist). */
function canonical(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    try {
      return join(realpathSync(dirname(resolve(p))), basename(p));
    } catch {
      return resolve(p);
    }
  }
}

/**
 * `postcopy salvage <journal> -o <new>`: copies every readable event of a damaged journal
 * (sound SQLite segments, then the crash tail's readable events) into a new journal, and
 * says how many it kept and which sequence numbers it dropped. The input is never changed.
 * Exit 0 when at least one event was kept, 1 when none could be, 2 when the input cannot
 * be opened at all (not a journal, meta unreadable), -o names the input (or one of its
 * files) or an existing file without --force, or the output cannot be written.
 */
export function salvageCommand(path: string, opts: SalvageCommandOptions): number {
  const out = canonical(opts.output);
  const input = canonical(path);
  if ([input, input + TAIL_SUFFIX, input + '-wal', input + '-shm'].includes(out)) {
    return fail(`postcopy salvage: -o ${opts.output} is the input journal (or one of its files): salvage writes a new journal and never changes its input`, opts.json);
  }
  if (existsSync(opts.output) && !opts.force) {
    return fail(`postcopy salvage: ${opts.output} already exists (choose another path, or --force to replace it)`, opts.json);
  }
  let r: SalvageResult;
  try {
    r = salvageJournal(path, opts.output, { overwrite: opts.force ?? false });
  } catch (err) {
    if (!(err instanceof PostcopyError)) throw err;
    return fail(err instanceof JournalError ? err.message : `postcopy salvage: ${err.message}`, opts.json);
  }
  if (opts.json) console.log(JSON.stringify({ ok: r.kept > 0, ...r }, null, 2));
  else console.log(formatSalvage(r));
  return r.kept > 0 ? 0 : 1;
}

function fail(message: string, json?: boolean): number {
  if (json) console.log(JSON.stringify({ ok: false, error: message }));
  else console.error(message);
  return 2;
}

/** Pure: what a person reads after a salvage. */
export function formatSalvage(r: SalvageResult): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const out = [
    r.kept === 0
      ? `${r.input}: no event is readable; no journal was written`
      : `${r.output}: kept ${n(r.kept)} event(s) of ${r.input}${r.fromTail > 0 ? ` (${n(r.fromTail)} from its crash tail)` : ''}`,
  ];
  if (r.dropped.length === 0) out.push('  dropped none: every event was readable');
  else {
    const unknown = r.dropped.some((d) => d.to === null);
    const how = r.droppedCount === 0 ? 'an unknown number of' : `${n(r.droppedCount)}${unknown ? ' and more (how many past the damage is unknown)' : ''}`;
    out.push(`  dropped ${how} event(s):`);
    for (const d of r.dropped) out.push(`    #${d.from}${d.to === null ? ' on' : d.to - d.from > 1 ? `..#${d.to - 1}` : ''}: ${d.reason}`);
  }
  if (r.renumbered) out.push('  the events after a dropped range were renumbered, so the new journal has no gap (meta run.salvagedFrom lists what was dropped)');
  if (r.causesCleared > 0) out.push(`  ${n(r.causesCleared)} cause(s) pointed into a dropped range and were cleared (-1)`);
  out.push('  snapshots are not copied; the input was not changed');
  if (r.kept > 0) out.push(`next: postcopy inspect ${r.output}`);
  return out.join('\n');
}
