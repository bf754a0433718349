import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { JournalError } from '../errors.js';
import { analyzeJournal } from '../forensics/analysis.js';
import type { Analysis } from '../forensics/analysisTypes.js';
import { JournalReader } from '../journal/journalReader.js';
import { renderReport } from '../report/renderReport.js';
import { formatMs } from '../text.js';
import { setCurrentJournal } from './lastResort.js';
import { refuseOutputIsInput } from './outputs.js';
import { readableNote } from './inspectCommand.js';

export interface ReportCommandOptions {
  output?: string;
  title?: string;
}

/** What the command needs besides the file system; tests may give their own analysis. */
export interface ReportCommandDeps {
  analyze: (reader: JournalReader) => Analysis;
}

/**
 * `postcopy report <journal> -o report.html`: analyses the journal and writes one
 * self-contained HTML file. Exit 0 when written; 2 when the journal cannot be read or the
 * file cannot be written, and also when the journal is damaged part-way (its crash tail
 * included): the report of its readable part is written, with a warning saying how many
 * events are readable. The journal and its tail are never changed.
 */
export function reportCommand(path: string, opts: ReportCommandOptions, deps: ReportCommandDeps = { analyze: analyzeJournal }): number {
  const output = opts.output ?? 'report.html';
  setCurrentJournal(path);
  // The report never replaces its own journal (nor a link to it): refused before anything is read or written.
  refuseOutputIsInput(output, '-o', [{ what: 'the journal this report reads', path }]);
  let journal: JournalReader;
  try {
    journal = JournalReader.open(path);
  } catch (err) {
    return unreadable(err);
  }
  let analysis: Analysis;
  try {
    analysis = deps.analyze(journal);
  } catch (err) {
    return unreadable(err);
  } finally {
    journal.close();
  }
  const html = renderReport(analysis, opts.title !== undefined ? { title: opts.title } : {});
  // Written beside and renamed: a browser or a watcher never sees half a report.
  const partial = `${output}.partial-${process.pid}`;
  try {
    writeFileSync(partial, html);
    renameSync(partial, output);
  } catch (err) {
    rmSync(partial, { force: true });
    console.error(`postcopy report: cannot write ${output}: ${(err as Error).message}`);
    return 2;
  }
  const damaged = analysis.journal.unreadableFrom !== null;
  if (damaged) {
    console.error(`postcopy report: warning: ${path} is damaged from sequence number ${analysis.journal.unreadableFrom} (${analysis.journal.unreadableReason ?? 'unknown reason'}): the report covers the readable part (${readableNote(analysis.journal.unreadableFrom!)})`);
  }
  if (analysis.anomalies.count > 0) {
    const f = analysis.anomalies.first[0]!;
    console.error(`postcopy report: warning: ${analysis.anomalies.count} event(s) of ${path} cannot have been written by the engine or the importer (first #${f.seq}: ${f.reason}); the report leaves them out`);
  }
  console.log(`${output}: ${Math.ceil(Buffer.byteLength(html) / 1024)} KiB report of ${path}: ${analysis.status}, ${formatMs(analysis.durationMs)}, ${analysis.vcpus} vCPUs, ${analysis.faults.count} faults, ${analysis.requests.outstanding.length} outstanding requests`);
  // As inspect: the report of the readable part is written, but the input could not be read whole.
  return damaged ? 2 : 0;
}

function unreadable(err: unknown): number {
  if (!(err instanceof JournalError)) throw err;
  console.error(`postcopy report: ${err.message}`);
  return 2;
}
