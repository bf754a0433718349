import { PostcopyError } from '../errors.js';
import { importQemuTrace, partialJournalPath, removeJournalFiles, type ImportSummary, type TraceFileSummary } from '../io/qemu/qemuImport.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { onInterrupt } from './interrupt.js';
import { createProgress } from './progress.js';
import { setCurrentJournal } from './lastResort.js';
import { refuseOutputIsInput } from './outputs.js';
import { inMs } from './jsonUnits.js';

export interface ImportCommandOptions {
  src?: string;
  stderr?: string;
  threads?: string;
  queryMigrate?: string;
  output: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/**
 * `postcopy import-qemu <dst-trace> [--src <src-trace>] [--threads threads.json] -o <journal>`:
 * exit 0 when the journal was written (unknown events and malformed lines are reported,
 * not fatal), 2 when the input is not a trace, a file cannot be read or the journal
 * cannot be written.
 */
export async function importCommand(trace: string, opts: ImportCommandOptions): Promise<number> {
  try {
    // The journal never replaces one of the files it is made from, --force or not.
    refuseOutputIsInput(opts.output, '-o', [
      { what: 'the destination trace', path: trace },
      { what: 'the --src trace', path: opts.src },
      { what: 'the --threads file', path: opts.threads ?? join(dirname(trace), 'threads.json') },
      { what: 'the --query-migrate file', path: opts.queryMigrate ?? join(dirname(trace), 'query-migrate-dst.json') },
    ]);
  } catch (err) {
    return failure(err, opts.json);
  }
  setCurrentJournal(opts.output);
  // An import cut short would pass for a whole one: it writes to a partial file, which Ctrl-C
  // removes (an older journal at the path stays until an import is whole).
  onInterrupt(() => {
    const partial = partialJournalPath(opts.output);
    if (!existsSync(partial)) return;
    removeJournalFiles(partial);
    return `the partial journal ${partial} was removed${existsSync(opts.output) ? `; ${opts.output} is as it was` : ''}`;
  });
  const progress = createProgress('import-qemu', { enabled: !opts.json && !opts.quiet, format: 'import-qemu [{bar}] {percentage}% | pass {pass}/2 | {lines} lines' });
  let summary: ImportSummary;
  try {
    summary = await importQemuTrace({
      dstTrace: trace,
      ...(opts.src !== undefined ? { srcTrace: opts.src } : {}),
      ...(opts.stderr !== undefined ? { stderr: opts.stderr } : {}),
      ...(opts.threads !== undefined ? { threadsPath: opts.threads } : {}),
      ...(opts.queryMigrate !== undefined ? { queryMigratePath: opts.queryMigrate } : {}),
      out: opts.output,
      overwrite: opts.force ?? false,
      // Two passes over the file: the survey (often stopped early), then the import.
      onProgress: (p) => progress.update((p.pass - 1) * p.totalBytes + p.bytesRead, 2 * p.totalBytes, { pass: p.pass, lines: p.lines }),
    });
  } catch (err) {
    progress.stop();
    return failure(err, opts.json);
  }
  progress.stop();
  if (opts.json) console.log(JSON.stringify(inMs(summary), null, 2));
  else console.log(formatImportSummary(summary));
  return 0;
}

/** A refusal or an I/O error: its message, exit 2; anything else is a bug and propagates. */
function failure(err: unknown, json?: boolean): number {
  const ioCode = (err as { code?: unknown }).code;
  if (!(err instanceof PostcopyError) && !(typeof ioCode === 'string' && /^E[A-Z]+$/.test(ioCode))) throw err;
  const message = (err as Error).message;
  if (json) console.log(JSON.stringify({ ok: false, error: message, code: ioCode ?? null }));
  else console.error(`postcopy import-qemu: ${message}`);
  return 2;
}

/** Pure: the summary a person reads after an import. */
export function formatImportSummary(s: ImportSummary): string {
  const out: string[] = [];
  const n = (x: number): string => x.toLocaleString('en-US');
  out.push(`${s.journal}: ${n(s.eventsWritten)} events from ${n(s.dst.lines)} lines of ${s.dst.file}`);
  if (s.src !== null) out.push(`  source trace: ${n(s.src.lines)} lines of ${s.src.file}, kept as notes`);
  if (s.stderr !== null) out.push(`  QEMU's stderr: ${n(s.stderr.lines)} lines of ${s.stderr.file}, kept as notes${s.stderr.untimed > 0 ? ` (${n(s.stderr.untimed)} without a timestamp, put at the end: run QEMU with -msg timestamp=on)` : ''}`);
  out.push(`  blocks: ${s.blocks.length} (${s.blocks.map((b) => b.name).join(', ') || 'none'})`);
  const tids = s.vcpus.tids.map((tid, i) => `${i}=${tid || '?'}`).join(' ');
  out.push(`  vCPUs: ${s.vcpus.count}${tids ? ` (TIDs ${tids})` : ''}, ${s.vcpus.source === 'threads.json' ? `from ${s.vcpus.detail}` : s.vcpus.source === 'inferred' ? `inferred: ${s.vcpus.detail}` : 'unknown'}`);
  if (s.capabilities.length > 0) out.push(`  capabilities: ${s.capabilities.join(', ')}`);
  out.push(`  events: ${Object.entries(s.byKind).map(([k, v]) => `${k} ${n(v)}`).join(', ')}`);
  if (s.faultsServedBeforeRequest > 0) out.push(`  ${n(s.faultsServedBeforeRequest)} fault(s) were served by the stream before QEMU sent their request`);
  for (const f of s.src === null ? [s.dst] : [s.dst, s.src]) out.push(...problems(f));
  for (const w of s.warnings) out.push(`  warning: ${w}`);
  out.push(`next: postcopy inspect ${s.journal}`);
  return out.join('\n');
}

/** Pure: unknown events (top 10 by count) and malformed lines (first 10) of one trace. */
function problems(f: TraceFileSummary): string[] {
  const out: string[] = [];
  const unknown = Object.entries(f.unknown).sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1));
  if (unknown.length > 0) {
    const lines = unknown.reduce((sum, [, c]) => sum + c, 0);
    out.push(`  ${f.file}: ${lines} line(s) of ${unknown.length} unknown event(s), counted and skipped:`);
    for (const [name, count] of unknown.slice(0, 10)) out.push(`    ${String(count).padStart(8)}  ${name}`);
    if (unknown.length > 10) out.push(`    ... and ${unknown.length - 10} more`);
  }
  if (f.malformedCount > 0) {
    out.push(`  ${f.file}: ${f.malformedCount} malformed line(s), skipped:`);
    for (const p of f.malformed.slice(0, 10)) out.push(`    line ${p.line}: ${p.name ? `${p.name}: ` : ''}${p.text}`);
    if (f.malformedCount > 10) out.push(`    ... and ${f.malformedCount - 10} more`);
  }
  if (f.truncated !== null) out.push(`  ${f.file}: ${f.truncated}`);
  return out;
}
