import { exportToParquet, type ExportSummary } from '../io/fleet/parquetExport.js';
import { UsageError } from '../errors.js';
import { createProgress } from './progress.js';

export interface ExportCommandOptions {
  parquet: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
  rowsPerPart?: string;
  jobs?: string;
}

/**
 * `postcopy export <journal… | folder…> --parquet OUT/`: the journals (files, and the
 * `*.db` files of folders at any depth) as Parquet tables under OUT (docs/parquet.md).
 * A journal that cannot be read is listed and skipped, never stops the export; one damaged
 * part-way is exported up to the damage and listed. Exit 0 when written (skipped journals
 * listed on stderr with their count), 2 when no journal could be exported, OUT already
 * holds an export (without --force) or an option is wrong.
 */
export async function exportCommand(inputs: string[], opts: ExportCommandOptions): Promise<number> {
  const rowsPerPart = opts.rowsPerPart === undefined ? undefined : Number(opts.rowsPerPart);
  if (rowsPerPart !== undefined && !(Number.isSafeInteger(rowsPerPart) && rowsPerPart >= 1000)) {
    throw new UsageError(`--rows-per-part must be a whole number >= 1000, got '${opts.rowsPerPart}'`);
  }
  const jobs = opts.jobs === undefined ? 1 : Number(opts.jobs);
  if (!(Number.isSafeInteger(jobs) && jobs >= 1 && jobs <= 64)) throw new UsageError(`--jobs must be a whole number from 1 to 64, got '${opts.jobs}'`);
  const progress = createProgress('export', { format: 'export [{bar}] {value}/{total} journals', enabled: !opts.json && !opts.quiet });
  let s: ExportSummary;
  try {
    s = await exportToParquet(inputs, opts.parquet, {
      replace: !!opts.force,
      jobs,
      ...(rowsPerPart !== undefined ? { rowsPerPart } : {}),
      onJournal: (done, total) => progress.update(done, total),
    });
  } finally {
    progress.stop();
  }
  const nothing = s.exported === 0;
  if (opts.json) {
    console.log(JSON.stringify({ ok: !nothing, ...s, seconds: Math.round(s.seconds * 1000) / 1000 }, null, 2));
  } else {
    for (const k of s.skipped) console.error(`postcopy export: skipped ${k.path}: ${k.reason}`);
    for (const d of s.damaged) console.error(`postcopy export: ${d.path} is damaged from #${d.unreadableFrom}: exported the ${d.unreadableFrom.toLocaleString('en-US')} event(s) before it (${d.reason})`);
    const rows = Object.entries(s.rows).map(([t, n]) => `${t} ${n.toLocaleString('en-US')}`).join(', ');
    console.log(`exported ${s.exported} of ${s.journals} journal(s), ${s.events.toLocaleString('en-US')} events, in ${s.seconds.toFixed(2)} s to ${s.out} (schema version ${s.schemaVersion}, ${s.files} Parquet file(s))`);
    console.log(`  rows: ${rows}`);
    const unread = s.skipped.length;
    console.log(`  skipped (unreadable): ${unread}${s.damaged.length > 0 ? `; damaged, exported up to the damage: ${s.damaged.length}` : ''}`);
  }
  if (nothing) {
    if (!opts.json) console.error(`postcopy export: no journal could be exported${s.journals === 0 ? ' (no journal file among the arguments: a folder is searched for *.db files)' : ''}`);
    return 2;
  }
  return 0;
}
