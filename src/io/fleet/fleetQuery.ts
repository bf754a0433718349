/**
 * Questions about a fleet, answered by DuckDB over an export's Parquet files: one view
 * per table (`migrations`, `pauses`, ... as in parquetSchema.ts) over `<table>/*.parquet`,
 * so `--sql` queries and the built-in questions read the same thing Spark or Trino would.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { UsageError } from '../../errors.js';
import { FLEET_TABLES, SCHEMA_VERSION, SCHEMA_VERSION_KEY, ident, literal } from './parquetSchema.js';

/** A query's answer as plain JSON data: column names, and rows as objects. */
export interface FleetAnswer {
  columns: string[];
  rows: Array<Record<string, unknown>>;
}

/** What `--worst` ranks by. */
export type WorstBy = 'blocktime' | 'p99';

/** An export folder opened for queries (close it when done). */
export class Fleet {
  private constructor(
    readonly folder: string,
    private readonly instance: DuckDBInstance,
    private readonly db: DuckDBConnection,
  ) {}

  /**
   * Opens `folder` (what `postcopy export --parquet` wrote). UsageError when it holds no
   * export, or one written with a schema version this engine does not read.
   */
  static async open(folder: string): Promise<Fleet> {
    const dir = resolve(folder);
    if (!existsSync(dir)) throw new UsageError(`${folder}: no such folder`);
    if (!statSync(dir).isDirectory()) throw new UsageError(`${folder} is not a folder (give the folder postcopy export --parquet wrote)`);
    const parts = (table: string): string[] => {
      const d = join(dir, table);
      return existsSync(d) && statSync(d).isDirectory() ? readdirSync(d).filter((f) => f.endsWith('.parquet')) : [];
    };
    if (parts('migrations').length === 0) throw new UsageError(`${folder} holds no export (no migrations/*.parquet): write one with postcopy export <journals|folder> --parquet ${folder}`);
    const instance = await DuckDBInstance.create(':memory:', { threads: '2' });
    const db = await instance.connect();
    const fleet = new Fleet(dir, instance, db);
    try {
      await fleet.checkVersion();
      for (const table of FLEET_TABLES) {
        // A table with no file (an older export): an empty view would hide the mistake, so no view.
        if (parts(table).length === 0) continue;
        await db.run(`CREATE VIEW ${ident(table)} AS SELECT * FROM read_parquet(${literal(join(dir, table, '*.parquet'))}, union_by_name = true)`);
      }
    } catch (err) {
      fleet.close();
      throw err;
    }
    return fleet;
  }

  private async checkVersion(): Promise<void> {
    const r = await this.db.runAndReadAll(
      `SELECT DISTINCT decode(value) AS v FROM parquet_kv_metadata(${literal(join(this.folder, 'migrations', '*.parquet'))}) WHERE decode(key) = ${literal(SCHEMA_VERSION_KEY)}`,
    );
    const versions = r.getRowObjectsJS().map((row) => Number(row.v));
    const newer = versions.filter((v) => !(v >= 1 && v <= SCHEMA_VERSION));
    if (newer.length > 0) throw new UsageError(`${this.folder} was exported with schema version ${newer.join(', ')}; this engine reads versions 1..${SCHEMA_VERSION}: query it with a newer postcopy, or with --sql in DuckDB directly`);
  }

  /** Runs any SQL over the views; DuckDB's error becomes a UsageError naming the query. */
  async sql(query: string): Promise<FleetAnswer> {
    let reader;
    try {
      reader = await this.db.runAndReadAll(query);
    } catch (err) {
      throw new UsageError(`the query failed: ${(err as Error).message.split('\n')[0]}`);
    }
    return { columns: reader.columnNames(), rows: reader.getRowObjectsJS().map((row) => plain(row) as Record<string, unknown>) };
  }

  /** The fleet in one row: how many migrations, how they ended, events, RAM, pauses, blocktime and served-request latency across migrations. */
  async summary(): Promise<FleetAnswer> {
    return this.sql(`SELECT
      count(*) AS migrations,
      count(*) FILTER (outcome = 'completed') AS completed,
      count(*) FILTER (outcome = 'paused') AS paused,
      count(*) FILTER (outcome = 'failed') AS failed,
      count(*) FILTER (outcome = 'unfinished') AS unfinished,
      count(*) FILTER (unreadable_from IS NOT NULL) AS damaged,
      sum(events) AS events,
      sum(ram_bytes) AS ram_bytes,
      sum(pauses) AS pauses,
      round(sum(paused_ms), 3) AS paused_ms,
      round(median(blocktime_exact_ms), 3) AS blocktime_exact_p50_ms,
      round(quantile_cont(blocktime_exact_ms, 0.99), 3) AS blocktime_exact_p99_ms,
      round(max(blocktime_exact_ms), 3) AS blocktime_exact_max_ms,
      round(median(served_p99_ms), 3) AS served_p99_p50_ms,
      round(quantile_cont(served_p99_ms, 0.99), 3) AS served_p99_p99_ms,
      round(max(served_max_ms), 3) AS served_max_ms,
      sum(faults) AS faults,
      sum(requests) AS requests,
      min(created) AS first_created,
      max(created) AS last_created
    FROM migrations`);
  }

  /** The `n` worst migrations by exact blocktime or by served-request p99. */
  async worst(n: number, by: WorstBy): Promise<FleetAnswer> {
    const key = by === 'blocktime' ? 'blocktime_exact_ms' : 'served_p99_ms';
    return this.sql(`SELECT journal_file, outcome, status, capability_set, vcpus, ram_bytes,
      round(blocktime_exact_ms, 3) AS blocktime_exact_ms, round(blocktime_qemu_ms, 3) AS blocktime_qemu_ms,
      round(served_p99_ms, 3) AS served_p99_ms, round(fault_p99_ms, 3) AS fault_p99_ms, pauses, journal_path
    FROM migrations ORDER BY ${key} DESC NULLS LAST, journal_path LIMIT ${Math.floor(n)}`);
  }

  /** Migrations that did not complete, by outcome and cause; then pauses by cause (recovered or not). */
  async causes(): Promise<{ failures: FleetAnswer; pauses: FleetAnswer }> {
    const failures = await this.sql(`SELECT outcome,
      COALESCE(CASE WHEN outcome = 'paused' THEN first_pause_cause END, first_failure_message, first_error_code, unreadable_reason, 'no error recorded') AS cause,
      count(*) AS migrations, min(journal_file) AS example
    FROM migrations WHERE outcome <> 'completed' GROUP BY ALL ORDER BY migrations DESC, outcome, cause`);
    const pauses = this.hasView('pauses')
      ? await this.sql(`SELECT cause, count(*) AS pauses, count(DISTINCT migration_id) AS migrations,
          count(*) FILTER (end_ms IS NOT NULL) AS recovered, count(*) FILTER (end_ms IS NULL) AS never_recovered,
          round(median(duration_ms), 3) AS duration_p50_ms, round(max(duration_ms), 3) AS duration_max_ms
        FROM pauses GROUP BY cause ORDER BY pauses DESC, cause`)
      : { columns: [], rows: [] };
    return { failures, pauses };
  }

  /** Percentiles across migrations of blocktime and latency figures, per value of a migrations column. */
  async percentilesBy(column: string): Promise<FleetAnswer> {
    const cols = (await this.sql('SELECT column_name FROM (DESCRIBE migrations)')).rows.map((r) => String(r.column_name));
    if (!cols.includes(column)) throw new UsageError(`--group-by ${column}: migrations has no such column (it has ${cols.join(', ')})`);
    const c = ident(column);
    return this.sql(`SELECT ${c} AS ${c}, count(*) AS migrations,
      round(quantile_cont(blocktime_exact_ms, 0.5), 3) AS blocktime_exact_p50_ms,
      round(quantile_cont(blocktime_exact_ms, 0.99), 3) AS blocktime_exact_p99_ms,
      round(quantile_cont(served_p99_ms, 0.5), 3) AS served_p99_p50_ms,
      round(quantile_cont(served_p99_ms, 0.99), 3) AS served_p99_p99_ms,
      round(quantile_cont(fault_p99_ms, 0.5), 3) AS fault_p99_p50_ms,
      round(quantile_cont(fault_p99_ms, 0.99), 3) AS fault_p99_p99_ms,
      round(sum(blocktime_exact_ms) / nullif(sum(ram_bytes) / 1073741824, 0), 3) AS blocktime_ms_per_gib
    FROM migrations GROUP BY ALL ORDER BY migrations DESC, ${c}`);
  }

  private viewNames: Set<string> | null = null;
  private hasView(name: string): boolean {
    this.viewNames ??= new Set(FLEET_TABLES.filter((t) => existsSync(join(this.folder, t)) && readdirSync(join(this.folder, t)).some((f) => f.endsWith('.parquet'))));
    return this.viewNames.has(name);
  }

  close(): void {
    this.db.closeSync();
    this.instance.closeSync();
  }
}

/** Pure: a DuckDB JS value as JSON data (bigint as a number when exact, else a string; dates as ISO text). */
export function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return v;
}
