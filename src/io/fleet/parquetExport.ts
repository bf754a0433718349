/**
 * Journals to Parquet through DuckDB (@duckdb/node-api): every journal is read once,
 * segment by segment; each segment goes to the analysis (src/forensics, the figures of
 * `inspect`) and its events to typed arrays staged per event table (src/io/fleet/duckRows.ts;
 * the small tables' rows to DuckDB tables in memory); whenever `rowsPerPart` event rows are
 * staged (and at the end) DuckDB writes them out with COPY ... (FORMAT parquet), reading
 * the staged arrays through a table function, as one part file per event table, and the
 * staging is emptied. The small tables are written at the end (or once one holds
 * SMALL_TABLE_ROWS rows). Memory is bounded by the part size whatever the size of a journal or of the fleet.
 *
 * A journal that cannot be opened is listed and skipped; one damaged part-way is exported
 * up to the damage (its `unreadable_from` says where) and listed too. Nothing a journal
 * holds stops the export.
 */
import { createHash, randomBytes } from 'node:crypto';
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { basename, join, resolve } from 'node:path';
import { unpack } from 'msgpackr';
import { DuckDBInstance, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import { EventKind, MACHINE_NAMES } from '../../engine/events.js';
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { JournalError, UsageError } from '../../errors.js';
import { startAnalysis } from '../../forensics/analysis.js';
import { outcomeOf, phasesOf, splitErrors, type Analysis, type AnsweredRequests } from '../../forensics/analysisTypes.js';
import { JournalReader } from '../../journal/journalReader.js';
import type { JournalMeta } from '../../journal/meta.js';
import { payloadOf, type Segment } from '../../journal/segment.js';
import { appendRow, EVENT_TABLES, StagedEvents, stagedEventsFunction, type RowValue } from './duckRows.js';
import { listJournals } from './journalFiles.js';
import {
  BLOCK_COLUMNS,
  ERROR_COLUMNS,
  EVENT_TABLE_SQL,
  FLEET_TABLES,
  MIGRATION_COLUMNS,
  PAUSE_COLUMNS,
  SCHEMA_VERSION,
  SCHEMA_VERSION_KEY,
  STATE_COLUMNS,
  ident,
  literal,
  type ColumnDef,
  type FleetTable,
} from './parquetSchema.js';

export interface ExportOptions {
  /** Event rows held before a part is written (default 500 000): the memory bound. */
  rowsPerPart?: number;
  /** Remove the part files of an earlier export in the output folder first (otherwise refused). */
  replace?: boolean;
  /** DuckDB's memory limit (default '1GB'). */
  memoryLimit?: string;
  /**
   * DuckDB threads (default 1). A part is written by one thread anyway (its rows come
   * through the staging's table function, one scan); with more, the others poll for work
   * while the scan waits for the JavaScript thread, and cost CPU that `--jobs` can use.
   */
  threads?: number;
  /**
   * Processes that export at once (default 1): the journals are shared out among `jobs`
   * child processes (src/io/fleet/exportWorker.ts), each writing its own part files into
   * the same folder. Each holds its own parts in memory.
   */
  jobs?: number;
  /** Called after each journal. */
  onJournal?: (done: number, total: number, path: string) => void;
}

/** What an export did. */
export interface ExportSummary {
  out: string;
  schemaVersion: number;
  /** Journals named by the arguments (files given, `*.db` found in folders). */
  journals: number;
  exported: number;
  /** Journals (or arguments) that could not be read at all: not in the export. */
  skipped: Array<{ path: string; reason: string }>;
  /** Journals exported up to damage part-way (the readable prefix is in the export). */
  damaged: Array<{ path: string; reason: string; unreadableFrom: number }>;
  /** Journal events read. */
  events: number;
  /** Rows written per table. */
  rows: Record<FleetTable, number>;
  /** Parquet files written. */
  files: number;
  seconds: number;
  /** Per exporting process: journals, events, its CPU time since it started (user + system) and its peak RSS (getrusage's high-water mark), KiB. */
  processes: Array<{ journals: number; events: number; cpuSeconds: number; maxRssKiB: number }>;
}

/** Small tables staged with their final columns. */
const ROW_TABLES: Array<[FleetTable, ColumnDef[]]> = [
  ['migrations', MIGRATION_COLUMNS],
  ['blocks', BLOCK_COLUMNS],
  ['state_changes', STATE_COLUMNS],
  ['pauses', PAUSE_COLUMNS],
  ['errors', ERROR_COLUMNS],
];

/**
 * A migration's identity, stable across exports and moves of its folder: a hash of
 * what its journal says about its creation (meta.created, meta.timeOriginNs,
 * engineVersion) and the journal's file name, as a signed 64-bit integer (BIGINT in every engine).
 */
export function migrationId(meta: Pick<JournalMeta, 'created' | 'timeOriginNs' | 'engineVersion'>, path: string): bigint {
  const h = createHash('sha256').update(`${meta.created}|${meta.timeOriginNs}|${meta.engineVersion}|${basename(path)}`).digest();
  return h.readBigInt64BE(0);
}

/**
 * Refuses an output folder that already holds an export (rows would be counted twice),
 * unless `replace`, which removes those part files only. Creates the folder.
 */
function prepareOut(out: string, replace: boolean): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new UsageError(`--parquet ${out} is a file, not a folder`);
  mkdirSync(out, { recursive: true });
  for (const table of FLEET_TABLES) {
    const dir = join(out, table);
    if (!existsSync(dir)) continue;
    const parts = readdirSync(dir).filter((f) => f.endsWith('.parquet'));
    if (parts.length === 0) continue;
    if (!replace) throw new UsageError(`--parquet ${out} already holds an export (${table}/ has ${parts.length} Parquet file(s)); choose another folder, or add --force to replace it`);
    for (const f of parts) rmSync(join(dir, f));
  }
  for (const table of FLEET_TABLES) mkdirSync(join(out, table), { recursive: true });
}

/** Exports the journals the arguments name (files, folders) to Parquet under `outDir`. */
export async function exportToParquet(args: readonly string[], outDir: string, opts: ExportOptions = {}): Promise<ExportSummary> {
  const t0 = performance.now();
  const out = resolve(outDir);
  prepareOut(out, !!opts.replace);
  const { journals, missing } = listJournals(args);
  const jobs = Math.max(1, Math.min(opts.jobs ?? 1, journals.length));
  const summary = jobs > 1 ? await exportInProcesses(journals, out, jobs, opts) : await exportJournals(journals, out, opts);
  summary.skipped.unshift(...missing);
  summary.seconds = (performance.now() - t0) / 1000;
  return summary;
}

/** Exports `journals` (paths) into a prepared folder, in this process. */
export async function exportJournals(journals: readonly string[], out: string, opts: ExportOptions = {}): Promise<ExportSummary> {
  const t0 = performance.now();
  const summary: ExportSummary = {
    out,
    schemaVersion: SCHEMA_VERSION,
    journals: journals.length,
    exported: 0,
    skipped: [],
    damaged: [],
    events: 0,
    rows: Object.fromEntries(FLEET_TABLES.map((t) => [t, 0])) as Record<FleetTable, number>,
    files: 0,
    seconds: 0,
    processes: [],
  };
  const writer = await ParquetWriter.open(out, summary, opts);
  try {
    for (let i = 0; i < journals.length; i++) {
      await writer.journal(journals[i]!);
      opts.onJournal?.(i + 1, journals.length, journals[i]!);
    }
    await writer.finish();
  } finally {
    writer.close();
  }
  summary.seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage();
  summary.processes.push({ journals: journals.length, events: summary.events, cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssKiB: process.resourceUsage().maxRSS });
  return summary;
}

/** Message from an export worker: a journal done, or its summary at the end. */
export type WorkerMessage = { journal: string } | { summary: ExportSummary } | { error: string };

/**
 * Shares the journals out among `jobs` child processes (largest first, each to the
 * process with the fewest bytes so far) and merges their summaries.
 */
async function exportInProcesses(journals: readonly string[], out: string, jobs: number, opts: ExportOptions): Promise<ExportSummary> {
  const size = (p: string): number => {
    try {
      return statSync(p).size;
    } catch {
      return 0;
    }
  };
  const shares: Array<{ bytes: number; journals: string[] }> = Array.from({ length: jobs }, () => ({ bytes: 0, journals: [] }));
  for (const j of [...journals].map((p) => ({ p, bytes: size(p) })).sort((a, b) => b.bytes - a.bytes)) {
    const least = shares.reduce((m, x) => (x.bytes < m.bytes ? x : m));
    least.journals.push(j.p);
    least.bytes += j.bytes;
  }
  const worker = fileURLToPath(new URL('./exportWorker.js', import.meta.url));
  let done = 0;
  const parts = await Promise.all(
    shares.map(
      (share) =>
        new Promise<ExportSummary>((resolveShare, reject) => {
          const child = fork(worker, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
          let result: ExportSummary | null = null;
          child.on('message', (m: WorkerMessage) => {
            if ('journal' in m) opts.onJournal?.(++done, journals.length, m.journal);
            else if ('summary' in m) result = m.summary;
            else reject(new Error(`an export process failed: ${m.error}`));
          });
          child.on('exit', (code) => (result !== null ? resolveShare(result) : reject(new Error(`an export process exited ${code} before its summary`))));
          const { onJournal: _drop, ...plain } = opts;
          child.send({ journals: share.journals, out, opts: { ...plain, jobs: 1 } });
        }),
    ),
  );
  const summary = parts[0]!;
  summary.journals = journals.length;
  for (const p of parts.slice(1)) {
    summary.exported += p.exported;
    summary.skipped.push(...p.skipped);
    summary.damaged.push(...p.damaged);
    summary.events += p.events;
    summary.files += p.files;
    summary.processes.push(...p.processes);
    for (const t of FLEET_TABLES) summary.rows[t] += p.rows[t];
  }
  return summary;
}

/**
 * One set of staging of the event tables' rows. The writer has two: while DuckDB writes
 * one set's rows to Parquet (on its own thread), the journals are read into the other.
 */
interface StageSet {
  n: number;
  staged: StagedEvents;
}

/**
 * Rows of a small table held before they are written mid-export (they are also written at
 * the end). Not with every part: each file costs every reader of the folder (`fleet` reads
 * the schema of every file when it opens an export), and these rows are few.
 */
const SMALL_TABLE_ROWS = 100_000;

class ParquetWriter {
  private readonly sets: StageSet[] = [];
  /** The set journals are read into. */
  private set!: StageSet;
  /** The small tables' staging (`staged_<table>`), one for the whole export. */
  private readonly appenders = new Map<FleetTable, DuckDBAppender>();
  /** Rows staged per small table since they were last written. */
  private readonly pending = new Map<FleetTable, number>();
  /** The part being written from the other set, if any (its failure surfaces at the next wait). */
  private writing: Promise<void> | null = null;
  /** Whether DuckDB is writing a part: it then reads the staged events through the JavaScript thread. */
  private copying = false;
  private part = 0;
  /** This export's part files are named part-<runId>-<n>. */
  private readonly runId = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  private readonly rowsPerPart: number;
  private readonly written = new Set<FleetTable>();

  private constructor(
    private readonly instance: DuckDBInstance,
    /** Staging: the appenders' connection. */
    private readonly db: DuckDBConnection,
    /** Writing parts (COPY), concurrently with staging. */
    private readonly copier: DuckDBConnection,
    private readonly out: string,
    private readonly summary: ExportSummary,
    opts: ExportOptions,
  ) {
    this.rowsPerPart = opts.rowsPerPart ?? 500_000;
  }

  static async open(out: string, summary: ExportSummary, opts: ExportOptions): Promise<ParquetWriter> {
    const instance = await DuckDBInstance.create(':memory:', { memory_limit: opts.memoryLimit ?? '1GB', threads: String(opts.threads ?? 1) });
    const w = new ParquetWriter(instance, await instance.connect(), await instance.connect(), out, summary, opts);
    await w.createTables();
    return w;
  }

  private async createTables(): Promise<void> {
    const cols = (c: ColumnDef[]): string => c.map((x) => `${ident(x.name)} ${x.type}`).join(', ');
    for (const [table, columns] of ROW_TABLES) {
      await this.db.run(`CREATE TABLE ${ident(`staged_${table}`)} (${cols(columns)})`);
      this.appenders.set(table, await this.db.createAppender(`staged_${table}`));
    }
    for (const n of [0, 1]) this.sets.push({ n, staged: new StagedEvents() });
    this.set = this.sets[0]!;
    // postcopy_staged(set * tables + table): one event table's staged rows of one set.
    this.copier.registerTableFunction(
      stagedEventsFunction('postcopy_staged', (source) => {
        const set = this.sets[Math.floor(source / EVENT_TABLES.length)];
        const staged = set?.staged.tables[source % EVENT_TABLES.length];
        if (staged === undefined) throw new Error(`postcopy_staged(${source}): no such staging`);
        return staged;
      }),
    );
  }

  /** Exports one journal; a journal that cannot be read is listed in the summary, never thrown. */
  async journal(path: string): Promise<void> {
    let reader: JournalReader;
    try {
      reader = JournalReader.open(path);
    } catch (err) {
      if (!(err instanceof JournalError)) throw err;
      this.summary.skipped.push({ path, reason: err.reason });
      return;
    }
    const id = migrationId(reader.meta, path);
    try {
      const analysis = startAnalysis(reader);
      let unreadable: JournalError | null = null;
      let events = 0;
      try {
        for (const seg of reader.segments()) {
          analysis.segment(seg);
          this.set.staged.add(id, seg);
          this.stageStates(id, seg);
          events += seg.count;
          if (this.set.staged.rows >= this.rowsPerPart) await this.writeParts();
          // DuckDB's scan of the other set waits for this thread: a turn of the event loop per segment feeds it.
          else if (this.copying) await new Promise<void>((resolveTurn) => setImmediate(resolveTurn));
        }
      } catch (err) {
        if (!(err instanceof JournalError)) throw err;
        unreadable = err;
      }
      const a = analysis.finish(unreadable);
      this.stageMigration(id, path, reader.meta, a, analysis.served());
      this.summary.events += events;
      this.summary.exported++;
      if (unreadable !== null) this.summary.damaged.push({ path, reason: unreadable.reason, unreadableFrom: unreadable.seq });
    } finally {
      reader.close();
    }
    if (this.set.staged.rows >= this.rowsPerPart || this.smallTablesFull()) await this.writeParts();
  }

  /** FX_STATE events: the state_changes rows. */
  private stageStates(id: bigint, seg: Segment): void {
    const app = this.appenders.get('state_changes')!;
    for (let i = 0; i < seg.count; i++) {
      if (seg.kind[i] !== EventKind.FX_STATE) continue;
      const p = payloadOf(seg, i);
      let s: { from?: unknown; to?: unknown; event?: unknown } = {};
      try {
        if (p !== null) s = unpack(p) as typeof s;
      } catch {
        s = {}; // the analysis reports it as an anomaly
      }
      const machine = seg.a[i]!;
      const cause = seg.cause[i]!;
      this.appendTo('state_changes', app, STATE_COLUMNS, [
        Number(id),
        seg.firstSeq + i,
        seg.t[i]! / 1e6,
        cause >= 0 ? cause : null,
        MACHINE_NAMES[machine] ?? `machine ${machine}`,
        s.from === undefined ? null : String(s.from),
        s.to === undefined ? null : String(s.to),
        s.event === undefined ? null : String(s.event),
      ], id);
    }
  }

  /** A row of a small table; the migration id goes in as a bigint (the value list carries a placeholder). */
  private appendTo(table: FleetTable, app: DuckDBAppender, columns: ColumnDef[], values: RowValue[], id: bigint): void {
    // appendRow takes plain values; the id is 64 bits, so it is appended here first.
    const idAt = columns.findIndex((c) => c.name === 'migration_id');
    if (idAt === 0) {
      app.appendBigInt(id);
      appendRow(app, columns.slice(1), values.slice(1));
    } else {
      appendRow(app, columns, values);
    }
    this.pending.set(table, (this.pending.get(table) ?? 0) + 1);
  }

  private stageMigration(id: bigint, path: string, meta: JournalMeta, a: Analysis, served: AnsweredRequests): void {
    const run = meta.run ?? {};
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    const ph = phasesOf(a);
    const { failures } = splitErrors(a);
    const ramBytes = a.journal.blocks.reduce((s, b) => s + b.length, 0);
    const hostPages = [...new Set(a.journal.blocks.map((b) => b.hostPageSize))];
    const closedPauses = a.pauses.filter((p) => p.durationMs !== null);
    const firstPause = a.pauses[0];
    const caps = [...a.journal.capabilities].sort();
    const m = this.appenders.get('migrations')!;
    const row: RowValue[] = [
      SCHEMA_VERSION,
      0, // migration_id (appended as a bigint)
      path,
      basename(path),
      String(a.journal.source),
      a.journal.engineVersion ?? null,
      str(run.qemuVersion),
      str(run.host),
      str(run.kind),
      str(run.workload),
      num(run.seed),
      JSON.stringify(run),
      a.journal.created ?? null,
      caps,
      caps.length === 0 ? 'none' : caps.join('+'),
      a.journal.blocks.length,
      ramBytes,
      ramBytes / TARGET_PAGE_SIZE,
      hostPages.length === 1 ? hostPages[0]! : null,
      a.vcpus,
      a.journal.events,
      a.journal.unreadableFrom,
      a.journal.unreadableReason,
      a.anomalies.count,
      a.status,
      a.postcopyState,
      outcomeOf(a),
      a.durationMs,
      ph.precopyMs,
      ph.postcopyMs,
      a.pauses.length,
      closedPauses.reduce((s, p) => s + p.durationMs!, 0) + a.pauses.filter((p) => p.endMs === null).reduce((s, p) => s + (a.durationMs - p.startMs), 0),
      a.pauses.some((p) => p.endMs === null),
      firstPause === undefined ? null : pauseCause(firstPause.reason),
      a.blocktime.qemu.totalMs,
      a.blocktime.qemu.perVcpuMs,
      a.blocktime.exact.totalMs,
      a.blocktime.exact.perVcpuMs,
      a.blocktime.exact.perVcpuFaults,
      a.blocktime.exact.stillBlocked.length,
      a.faults.count,
      a.faults.timed,
      a.faults.unanswered,
      a.faults.p50Ms,
      a.faults.p90Ms,
      a.faults.p99Ms,
      a.faults.maxMs,
      a.requests.count,
      a.requests.resent,
      a.requests.outstanding.length,
      served.count,
      served.count === 0 ? null : served.p50Ms,
      served.count === 0 ? null : served.p99Ms,
      served.count === 0 ? null : served.maxMs,
      a.requests.answeredBy.main.count,
      a.requests.answeredBy.main.count === 0 ? null : a.requests.answeredBy.main.p99Ms,
      a.requests.answeredBy.preempt.count,
      a.requests.answeredBy.preempt.count === 0 ? null : a.requests.answeredBy.preempt.p99Ms,
      a.pages.placed,
      a.pages.zero,
      a.pages.precopy,
      a.pages.byChannel['0'] ?? 0,
      a.pages.byChannel['1'] ?? 0,
      a.pages.discardedRanges,
      a.errors.length,
      failures.length,
      a.errors[0]?.code ?? null,
      a.errors[0]?.message ?? null,
      failures[0]?.message ?? null,
    ];
    m.appendInteger(SCHEMA_VERSION);
    m.appendBigInt(id);
    appendRow(m, MIGRATION_COLUMNS.slice(2), row.slice(2));
    this.pending.set('migrations', (this.pending.get('migrations') ?? 0) + 1);

    const blocks = this.appenders.get('blocks')!;
    a.journal.blocks.forEach((b, i) => this.appendTo('blocks', blocks, BLOCK_COLUMNS, [0, i, b.name, b.length, b.hostPageSize], id));
    const pauses = this.appenders.get('pauses')!;
    a.pauses.forEach((p, i) =>
      this.appendTo('pauses', pauses, PAUSE_COLUMNS, [
        0,
        i,
        p.startSeq,
        p.startMs,
        p.endMs,
        p.durationMs,
        p.causeSeq ?? null,
        pauseCause(p.reason),
        p.reason ?? null,
        p.sourceLast?.event ?? null,
        p.sourceLast?.tMs ?? null,
      ], id),
    );
    const errors = this.appenders.get('errors')!;
    const failed = new Set(failures);
    for (const e of a.errors) {
      this.appendTo('errors', errors, ERROR_COLUMNS, [0, e.seq, e.tMs, e.code, failed.has(e), e.message, e.causeSeq ?? null, e.input ?? null], id);
    }
  }

  /**
   * Hands the current set's rows to DuckDB to write as one part file per event table (on
   * its thread, which takes the staged events from this one a chunk at a time between the
   * segments of the next journals, staged into the other set, which is empty by then: at
   * most one part is being written at a time, so memory holds at most two parts). The
   * small tables are written first when one holds SMALL_TABLE_ROWS rows, or `all`.
   */
  async writeParts(all = false): Promise<void> {
    const set = this.set;
    await this.writing; // the other set is written and empty
    if (all || this.smallTablesFull()) await this.writeSmallTables(this.nextPart());
    this.writing = this.writeSet(set, this.nextPart());
    this.writing.catch(() => {}); // awaited at the next part or at finish, which throw it; never an unhandled rejection
    this.set = this.sets[1 - set.n]!;
  }

  private nextPart(): string {
    return `part-${this.runId}-${String(this.part++).padStart(5, '0')}.parquet`;
  }

  private smallTablesFull(): boolean {
    for (const n of this.pending.values()) if (n >= SMALL_TABLE_ROWS) return true;
    return false;
  }

  /** Writes the small tables' staged rows (no part is being written: same connection, and their appenders keep appending only after). */
  private async writeSmallTables(part: string): Promise<void> {
    for (const app of this.appenders.values()) app.flushSync();
    for (const [table] of ROW_TABLES) {
      if ((this.pending.get(table) ?? 0) === 0) continue;
      await this.copy(table, part, `SELECT * FROM ${ident(`staged_${table}`)}`);
      await this.copier.run(`DELETE FROM ${ident(`staged_${table}`)}`);
      this.pending.set(table, 0);
    }
  }

  private async writeSet(set: StageSet, part: string): Promise<void> {
    this.copying = true;
    try {
      const eventRows = set.staged.rows;
      for (const [t, table] of EVENT_TABLES.entries()) {
        // The scan is one thread in staging order, i.e. (journal, seq) order, which COPY keeps.
        if (eventRows > 0) await this.copy(table, part, `SELECT ${EVENT_TABLE_SQL[table].select} FROM postcopy_staged(${set.n * EVENT_TABLES.length + t})`);
      }
      set.staged.clear();
    } finally {
      this.copying = false;
    }
  }

  private async copy(table: FleetTable, part: string, select: string): Promise<void> {
    const file = join(this.out, table, part);
    const r = await this.copier.run(`COPY (${select}) TO ${literal(file)} (FORMAT parquet, COMPRESSION zstd, KV_METADATA {${literal(SCHEMA_VERSION_KEY)}: ${literal(String(SCHEMA_VERSION))}})`);
    this.summary.rows[table] += Number(r.rowsChanged);
    this.summary.files++;
    this.written.add(table);
  }

  /** Writes what is staged and waits; a table with no row yet gets an empty file, so its schema is always there. */
  async finish(): Promise<void> {
    await this.writeParts(true);
    await this.writing;
    this.writing = null;
    const part = this.nextPart();
    for (const [t, table] of EVENT_TABLES.entries()) {
      if (!this.written.has(table)) await this.copy(table, part, `SELECT ${EVENT_TABLE_SQL[table].select} FROM postcopy_staged(${t})`); // set 0, empty by now
    }
    for (const [table] of ROW_TABLES) {
      if (!this.written.has(table)) await this.copy(table, part, `SELECT * FROM ${ident(`staged_${table}`)}`);
    }
  }

  close(): void {
    try {
      for (const app of this.appenders.values()) app.closeSync();
    } catch {
      // closing after a failure: the connections go anyway
    }
    this.db.closeSync();
    this.copier.closeSync();
    this.instance.closeSync();
  }
}

/**
 * Pure: the cause of a pause, for grouping: the input that paused postcopy as the analysis
 * names it ('IN_CHANNEL_BROKEN (channel 0)'), without its free-form reason; 'unknown' when
 * the journal does not say.
 */
export function pauseCause(reason: string | undefined): string {
  if (reason === undefined || reason === '') return 'unknown';
  const colon = reason.indexOf(': ');
  return colon < 0 ? reason : reason.slice(0, colon);
}
