/**
 * Imports a QEMU 7.2 destination trace (log backend, `.log` or `.log.gz`) into a journal
 * of the format the engine writes, so that `inspect` (analysis.ts) explains QEMU's runs
 * and ours with the same code.
 *
 * Two streaming passes over the trace, bounded memory whatever its size:
 * 1. a survey, parsing only a few events: the RAM blocks (`postcopy_init_range`, or
 *    the faults' `rb=` and offsets when the trace began later), the capabilities, the
 *    vCPU of each faulting thread (`pid=` paired with the next blocktime begin's `cpu:`)
 *    and QEMU's blocktime clock offset (as qemuTraceBlocktime.ts estimates it). All of
 *    it goes into the journal's meta, which is written when the journal is created;
 * 2. the import proper: every line in file order, mapped to the engine's event kinds
 *    (see `TraceImporter`). With a source trace, its lines are merged in by timestamp
 *    as TR_NOTEs (side 'src'); the destination's lines keep their file order, on which
 *    QEMU's own accounting depends.
 *
 * Unknown events are counted by name, malformed lines reported with their line numbers,
 * and the import goes on; a file that is not a trace at all is refused (NotATraceError).
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { assertRegularFile } from '../../regularFile.js';
import { dirname, join } from 'node:path';
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { JournalError, UsageError } from '../../errors.js';
import type { JournalBlock, JournalMeta } from '../../journal/meta.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import { readTrace, traceEventBatches, type LineProblem, type TraceProgress, type TraceReadSummary } from './qemuTrace.js';
import { NO_TIME, type TraceEvent } from '../../engine/qemuTraceEvents.js';
import { SURVEY_EVENTS, SurveyDone, TraceSurvey, resolveVcpus, type VcpuMapping } from './qemuImportSurvey.js';
import { TraceImporter, parseStderr, type StderrLine } from './qemuImportMapping.js';
import { PACKAGE_VERSION } from '../../paths.js';
export interface ImportQemuOptions {
  /** The destination's trace: what the journal describes. */
  dstTrace: string;
  /** The source's trace, merged in by time as notes. */
  srcTrace?: string;
  /** QEMU's stderr on the destination (error_report lines, with -msg timestamp=on), merged in by time as notes. */
  stderr?: string;
  /** threads.json (TID → thread name). Undefined: the one beside the trace, if any; null: none. */
  threadsPath?: string | null;
  /**
   * The destination's `query-migrate` answer (JSON) after the run: QEMU's own blocktime figures,
   * kept beside the replay of its trace. Undefined: query-migrate-dst.json beside the trace, if any; null: none.
   */
  queryMigratePath?: string | null;
  /** The journal to write. */
  out: string;
  /** Replace an existing journal at `out`. */
  overwrite?: boolean;
  onProgress?: (p: ImportProgress) => void;
  /** How many malformed lines each trace summary keeps (the count is always complete). Default 100. */
  keepProblems?: number;
}

export interface ImportProgress {
  /** 1: survey, 2: import. */
  pass: 1 | 2;
  bytesRead: number;
  totalBytes: number;
  lines: number;
}

/** What one trace file held. */
export interface TraceFileSummary {
  file: string;
  lines: number;
  events: number;
  /** Lines of events not in the 7.2 catalogue, by name. */
  unknown: Record<string, number>;
  malformedCount: number;
  /** The first malformed lines, with their line numbers. */
  malformed: Array<{ line: number; name: string; text: string }>;
  timed: boolean;
  truncated: string | null;
}

export interface ImportSummary {
  journal: string;
  dst: TraceFileSummary;
  src: TraceFileSummary | null;
  /** QEMU's stderr, when given: its lines, kept as notes. */
  stderr: { file: string; lines: number; untimed: number } | null;
  eventsWritten: number;
  /** Journal events written, by kind name. */
  byKind: Record<string, number>;
  blocks: Array<{ name: string; hostAddress: number; length: number }>;
  vcpus: {
    count: number;
    tids: number[];
    /** Where the TID → vCPU mapping came from. */
    source: 'threads.json' | 'inferred' | 'none';
    detail: string;
  };
  capabilities: string[];
  /** QEMU's blocktime clock offset, µs after the journal's t = 0 (null: no blocktime lines); analysis.ts derives it again from the journal. */
  blocktimeClockOffsetUs: number | null;
  /**
   * Faults whose page the stream placed between the fault and QEMU's request: QEMU sent
   * no request (FX_FAULT_SEEN says REQUESTED, no FX_REQUEST follows). Common when a vCPU
   * walks memory in the order the source sends it.
   */
  faultsServedBeforeRequest: number;
  /** Things a reader of the analysis should know (missing timestamps, guessed vCPUs...). */
  warnings: string[];
}
/** Engine version written into imported journals' meta. */
const IMPORTER_VERSION = PACKAGE_VERSION;

// ---------------------------------------------------------------------------
// The import

/** Pure: a trace reader's summary as the import reports it. */
function fileSummary(s: TraceReadSummary): TraceFileSummary {
  return {
    file: s.file,
    lines: s.lines,
    events: s.events,
    unknown: s.unknown,
    malformedCount: s.malformedCount,
    malformed: s.malformed.map((p: LineProblem) => ({ line: p.line, name: p.name, text: p.text })),
    timed: s.timed,
    truncated: s.truncated,
  };
}

/**
 * Where an import writes until it is whole (then renamed to the journal's path): an import cut
 * short, by an error or Ctrl-C, never replaces an older journal nor passes for a whole one.
 */
export function partialJournalPath(out: string): string {
  return `${out}.importing`;
}

/** Removes a journal and the files SQLite keeps beside it. */
export function removeJournalFiles(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true });
}

/** threads.json to use: the option, else the one beside the trace when it exists. */
function threadsFileFor(opts: ImportQemuOptions): string | null {
  if (opts.threadsPath !== undefined) return opts.threadsPath;
  const beside = join(dirname(opts.dstTrace), 'threads.json');
  return existsSync(beside) ? beside : null;
}

/** query-migrate-dst.json to use: the option, else the one beside the trace when it exists. */
function queryMigrateFileFor(opts: ImportQemuOptions): string | null {
  if (opts.queryMigratePath !== undefined) return opts.queryMigratePath;
  const beside = join(dirname(opts.dstTrace), 'query-migrate-dst.json');
  return existsSync(beside) ? beside : null;
}

/** What the destination's query-migrate said: its status and blocktime figures (ms); refused with the file and key named. */
export interface QueryMigrateFigures {
  file: string;
  status: string;
  blocktimeMs: number | null;
  perVcpuBlocktimeMs: number[] | null;
}

function readQueryMigrate(path: string): QueryMigrateFigures {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`${path}: not query-migrate's JSON answer (${(err as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError(`${path}: query-migrate's answer must be a JSON object`);
  const o = raw as Record<string, unknown>;
  if (typeof o.status !== 'string') throw new UsageError(`${path}: not query-migrate's answer (it always has a 'status' string)`);
  const total = o['postcopy-blocktime'];
  const perVcpu = o['postcopy-vcpu-blocktime'];
  if (total !== undefined && !(typeof total === 'number' && Number.isFinite(total))) throw new UsageError(`${path}: postcopy-blocktime must be a number, got ${JSON.stringify(total)}`);
  if (perVcpu !== undefined && !(Array.isArray(perVcpu) && perVcpu.every((v) => typeof v === 'number' && Number.isFinite(v)))) {
    throw new UsageError(`${path}: postcopy-vcpu-blocktime must be a list of numbers, got ${JSON.stringify(perVcpu)}`);
  }
  return {
    file: path,
    status: o.status,
    blocktimeMs: typeof total === 'number' ? total : null,
    perVcpuBlocktimeMs: Array.isArray(perVcpu) ? (perVcpu as number[]) : null,
  };
}

/** QEMU's stderr file (plain or .gz), parsed. */
function readStderr(path: string): StderrLine[] {
  const raw = readFileSync(path);
  return parseStderr((path.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));
}

/** Pure: the blocks for the meta, in order of appearance. */
function journalBlocks(survey: TraceSurvey, warnings: string[]): JournalBlock[] {
  const out: JournalBlock[] = [];
  for (const b of survey.blocks.values()) {
    if (!b.declared) warnings.push(`block '${b.name}' has no postcopy_init_range line: its address comes from a fault, its length (${b.length}) is a lower bound`);
    const length = Math.max(TARGET_PAGE_SIZE, b.length - (b.length % TARGET_PAGE_SIZE));
    out.push({ name: b.name, length, maxLength: length, hostPageSize: TARGET_PAGE_SIZE, hostAddress: b.hostAddress });
  }
  return out;
}

/**
 * Imports a destination trace (and optionally its source's) into a new journal at
 * `opts.out`. Throws NotATraceError for a file that is not a trace, JournalError when
 * the journal cannot be written; everything else (unknown events, malformed lines) is
 * counted in the summary and the import goes on.
 */
export async function importQemuTrace(opts: ImportQemuOptions): Promise<ImportSummary> {
  if (existsSync(opts.out) && !opts.overwrite) {
    throw new JournalError(opts.out, -1, 'a journal already exists at this path (choose another path or overwrite it)');
  }
  const keepProblems = opts.keepProblems ?? 100;
  const warnings: string[] = [];
  const progress = (pass: 1 | 2) => (p: TraceProgress) => opts.onProgress?.({ pass, ...p });

  // Inputs that are not regular files (a FIFO, /dev/zero, a directory) are refused at once.
  const threadsPath = threadsFileFor(opts);
  const queryMigratePath = queryMigrateFileFor(opts);
  for (const input of [opts.dstTrace, opts.srcTrace, threadsPath, queryMigratePath]) if (input !== undefined && input !== null) assertRegularFile(input);
  const queryMigrate = queryMigratePath === null ? null : readQueryMigrate(queryMigratePath);

  // Pass 1: the survey.
  const survey = new TraceSurvey(threadsPath === null);
  try {
    await readTrace(opts.dstTrace, (e) => survey.push(e), { only: SURVEY_EVENTS, onProgress: progress(1), keepProblems: 0 });
  } catch (err) {
    if (!(err instanceof SurveyDone)) throw err;
  }
  const vcpus = await resolveVcpus(survey, threadsPath, warnings);
  const blocks = journalBlocks(survey, warnings);
  if (blocks.length === 0) warnings.push('no RAM block found (no postcopy_init_range and no fault): pages and faults cannot be placed in a block');
  const capabilities = [...survey.capabilities].filter((c) => c === 'postcopy-preempt').map(() => 'preempt');

  // Pass 2: the import, the source's lines merged in by time.
  const dst = traceEventBatches(opts.dstTrace, { onProgress: progress(2), keepProblems });
  const src = opts.srcTrace === undefined ? null : traceEventBatches(opts.srcTrace, { keepProblems });
  let writer: JournalWriter | null = null;
  let importer: TraceImporter | null = null;
  let dstSummary: TraceReadSummary | null = null;
  let srcSummary: TraceReadSummary | null = null;
  let originUs = 0;
  const stderr: StderrLine[] = opts.stderr === undefined ? [] : readStderr(opts.stderr);
  let ei = 0;
  /** Writes the stderr lines up to `timeUs` (all of them: Infinity). */
  const stderrUpTo = (timeUs: number): void => {
    for (; ei < stderr.length && (stderr[ei]!.timeUs === NO_TIME ? timeUs === Infinity : stderr[ei]!.timeUs <= timeUs); ei++) {
      const l = stderr[ei]!;
      importer!.stderr(l.timeUs === NO_TIME ? { ...l, timeUs: lastUs } : l);
    }
  };
  let lastUs = 0;
  try {
    let dBatch: TraceEvent[] = [];
    let di = 0;
    let sBatch: TraceEvent[] = [];
    let si = 0;
    for (;;) {
      if (di === dBatch.length && dstSummary === null) {
        const r = await dst.next();
        if (r.done === true) dstSummary = r.value;
        else [dBatch, di] = [r.value, 0];
        continue;
      }
      if (src !== null && si === sBatch.length && srcSummary === null) {
        const r = await src.next();
        if (r.done === true) srcSummary = r.value;
        else [sBatch, si] = [r.value, 0];
        continue;
      }
      if (importer === null) {
        originUs = dBatch.find((e) => e.timeUs !== NO_TIME)?.timeUs ?? sBatch.find((e) => e.timeUs !== NO_TIME)?.timeUs ?? 0;
        writer = JournalWriter.create(partialJournalPath(opts.out), importMeta(opts, blocks, vcpus, capabilities, originUs, threadsPath, queryMigrate), {
          overwrite: true, // the partial file of an earlier import cut short
          crashSafe: false,
        });
        importer = new TraceImporter(writer, blocks, vcpus.tids, originUs);
      }
      if (di === dBatch.length && si === sBatch.length) break;
      if (si === sBatch.length && ei === stderr.length) {
        // Only destination events until this batch ends: the hot loop.
        for (; di < dBatch.length; di++) importer.dst(dBatch[di]!);
        continue;
      }
      const next = di < dBatch.length && !(si < sBatch.length && sBatch[si]!.timeUs < dBatch[di]!.timeUs) ? dBatch[di]! : si < sBatch.length ? sBatch[si]! : null;
      if (next === null) break;
      if (next.timeUs !== NO_TIME) {
        lastUs = Math.max(lastUs, next.timeUs);
        stderrUpTo(next.timeUs);
      }
      if (next === dBatch[di]) importer.dst(dBatch[di++]!);
      else importer.src(sBatch[si++]!);
    }
    if (importer !== null) stderrUpTo(Infinity);
    importer!.finish();
  } catch (err) {
    await dst.return(undefined as never);
    await src?.return(undefined as never);
    if (writer !== null) {
      // A journal cut short by an error would pass for the whole run: remove it.
      try {
        writer.close();
      } catch {
        // the error being thrown says more than this one
      }
      removeJournalFiles(partialJournalPath(opts.out));
    }
    throw err;
  }
  const eventsWritten = writer!.nextSeq;
  writer!.close();
  // Only a whole import takes the journal's name: an older journal stays until then.
  removeJournalFiles(opts.out);
  renameSync(partialJournalPath(opts.out), opts.out);
  const imp = importer!;
  if (!dstSummary!.timed) warnings.push('the trace has no timestamps (QEMU ran without -msg timestamp=on): every event is at t = 0, so blocktime and latencies cannot be derived');
  if (dstSummary!.truncated !== null) warnings.push(`the trace is truncated: ${dstSummary!.truncated}`);
  if (imp.pagesWithoutBlock > 0) warnings.push(`${imp.pagesWithoutBlock} page(s) whose block never showed were written with block -1`);
  if (imp.placementsOutsideBlocks > 0) warnings.push(`${imp.placementsOutsideBlocks} placement(s) outside every known block were kept as notes`);
  return {
    journal: opts.out,
    dst: fileSummary(dstSummary!),
    src: srcSummary === null ? null : fileSummary(srcSummary),
    stderr: opts.stderr === undefined ? null : { file: opts.stderr, lines: stderr.length, untimed: stderr.filter((l) => l.timeUs === NO_TIME).length },
    eventsWritten,
    byKind: imp.kindCounts(),
    blocks: blocks.map((b) => ({ name: b.name, hostAddress: b.hostAddress, length: b.length })),
    vcpus: { count: vcpus.tids.length, tids: vcpus.tids, source: vcpus.source, detail: vcpus.detail },
    capabilities,
    blocktimeClockOffsetUs: Number.isFinite(imp.clockOffsetUs) ? imp.clockOffsetUs : null,
    faultsServedBeforeRequest: imp.requestsOvertaken,
    warnings,
  };
}

/** Pure: the meta of an imported journal. */
function importMeta(
  opts: ImportQemuOptions,
  blocks: JournalBlock[],
  vcpus: VcpuMapping,
  capabilities: string[],
  originUs: number,
  threadsPath: string | null,
  queryMigrate: QueryMigrateFigures | null,
): JournalMeta {
  const usec = originUs % 1e6;
  return {
    engineVersion: IMPORTER_VERSION,
    source: 'qemu-trace',
    created: new Date().toISOString(),
    timeOriginNs: originUs * 1000,
    blocks,
    vcpuTids: vcpus.tids,
    capabilities,
    blocktimeMode: 'qemu',
    run: {
      kind: 'qemu-trace-import',
      qemuVersion: '7.2',
      trace: opts.dstTrace,
      srcTrace: opts.srcTrace ?? null,
      threads: threadsPath,
      queryMigrate,
      vcpuSource: vcpus.source,
      vcpuDetail: vcpus.detail,
      // timeOriginNs loses precision beyond 2^53 ns; this is the first line's exact timestamp.
      firstTimestamp: `${(originUs - usec) / 1e6}.${String(usec).padStart(6, '0')}`,
    },
  };
}

