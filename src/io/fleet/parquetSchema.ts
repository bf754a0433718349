/**
 * The Parquet schema of an exported fleet (docs/parquet.md documents every column): one
 * folder per table under the export folder, `<table>/part-*.parquet`, so Spark, Trino
 * and DuckDB read a folder as a table. Each file carries `postcopy.schema_version` in
 * its key-value metadata, and `migrations` also has a `schema_version` column.
 *
 * SCHEMA_VERSION changes whenever a reader of the old layout would misread the new one
 * (a column renamed, retyped or re-meant); adding a column is not such a change.
 */
export const SCHEMA_VERSION = 1;

/** Key of the schema version in every file's Parquet key-value metadata. */
export const SCHEMA_VERSION_KEY = 'postcopy.schema_version';

/** The tables, in the order `fleet` creates its views. */
export const FLEET_TABLES = ['migrations', 'blocks', 'state_changes', 'faults', 'requests', 'pages', 'pauses', 'errors'] as const;
export type FleetTable = (typeof FLEET_TABLES)[number];

/** A column: its name and its SQL type as written to Parquet (DuckDB names). */
export interface ColumnDef {
  name: string;
  type: string;
}

const c = (name: string, type: string): ColumnDef => ({ name, type });

/** One row per migration (journal): identity, sizes, outcome and the analysis' figures. */
export const MIGRATION_COLUMNS: ColumnDef[] = [
  c('schema_version', 'INTEGER'),
  c('migration_id', 'BIGINT'),
  c('journal_path', 'VARCHAR'),
  c('journal_file', 'VARCHAR'),
  c('source', 'VARCHAR'),
  c('engine_version', 'VARCHAR'),
  c('qemu_version', 'VARCHAR'),
  c('host', 'VARCHAR'),
  c('run_kind', 'VARCHAR'),
  c('workload', 'VARCHAR'),
  c('seed', 'BIGINT'),
  c('run_json', 'VARCHAR'),
  c('created', 'VARCHAR'),
  c('capabilities', 'VARCHAR[]'),
  c('capability_set', 'VARCHAR'),
  c('block_count', 'INTEGER'),
  c('ram_bytes', 'BIGINT'),
  c('target_pages', 'BIGINT'),
  c('host_page_bytes', 'INTEGER'),
  c('vcpus', 'INTEGER'),
  c('events', 'BIGINT'),
  c('unreadable_from', 'BIGINT'),
  c('unreadable_reason', 'VARCHAR'),
  c('anomalies', 'BIGINT'),
  c('status', 'VARCHAR'),
  c('postcopy_state', 'VARCHAR'),
  c('outcome', 'VARCHAR'),
  c('duration_ms', 'DOUBLE'),
  c('precopy_ms', 'DOUBLE'),
  c('postcopy_ms', 'DOUBLE'),
  c('pauses', 'INTEGER'),
  c('paused_ms', 'DOUBLE'),
  c('still_paused', 'BOOLEAN'),
  c('first_pause_cause', 'VARCHAR'),
  c('blocktime_qemu_ms', 'DOUBLE'),
  c('blocktime_qemu_per_vcpu_ms', 'DOUBLE[]'),
  c('blocktime_exact_ms', 'DOUBLE'),
  c('blocktime_exact_per_vcpu_ms', 'DOUBLE[]'),
  c('blocktime_exact_per_vcpu_faults', 'BIGINT[]'),
  c('vcpus_still_blocked', 'INTEGER'),
  c('faults', 'BIGINT'),
  c('faults_timed', 'BIGINT'),
  c('faults_unanswered', 'BIGINT'),
  c('fault_p50_ms', 'DOUBLE'),
  c('fault_p90_ms', 'DOUBLE'),
  c('fault_p99_ms', 'DOUBLE'),
  c('fault_max_ms', 'DOUBLE'),
  c('requests', 'BIGINT'),
  c('requests_resent', 'BIGINT'),
  c('requests_outstanding', 'BIGINT'),
  c('served', 'BIGINT'),
  c('served_p50_ms', 'DOUBLE'),
  c('served_p99_ms', 'DOUBLE'),
  c('served_max_ms', 'DOUBLE'),
  c('served_main', 'BIGINT'),
  c('served_main_p99_ms', 'DOUBLE'),
  c('served_preempt', 'BIGINT'),
  c('served_preempt_p99_ms', 'DOUBLE'),
  c('pages_placed', 'BIGINT'),
  c('pages_zero', 'BIGINT'),
  c('pages_precopy', 'BIGINT'),
  c('pages_main', 'BIGINT'),
  c('pages_preempt', 'BIGINT'),
  c('discarded_ranges', 'BIGINT'),
  c('errors', 'INTEGER'),
  c('failures', 'INTEGER'),
  c('first_error_code', 'VARCHAR'),
  c('first_error_message', 'VARCHAR'),
  c('first_failure_message', 'VARCHAR'),
];

export const BLOCK_COLUMNS: ColumnDef[] = [c('migration_id', 'BIGINT'), c('block', 'SMALLINT'), c('name', 'VARCHAR'), c('length_bytes', 'BIGINT'), c('host_page_bytes', 'INTEGER')];

export const STATE_COLUMNS: ColumnDef[] = [
  c('migration_id', 'BIGINT'),
  c('seq', 'BIGINT'),
  c('t_ms', 'DOUBLE'),
  c('cause_seq', 'BIGINT'),
  c('machine', 'VARCHAR'),
  c('from_state', 'VARCHAR'),
  c('to_state', 'VARCHAR'),
  c('event', 'VARCHAR'),
];

export const PAUSE_COLUMNS: ColumnDef[] = [
  c('migration_id', 'BIGINT'),
  c('pause', 'INTEGER'),
  c('start_seq', 'BIGINT'),
  c('start_ms', 'DOUBLE'),
  c('end_ms', 'DOUBLE'),
  c('duration_ms', 'DOUBLE'),
  c('cause_seq', 'BIGINT'),
  c('cause', 'VARCHAR'),
  c('reason', 'VARCHAR'),
  c('source_last_event', 'VARCHAR'),
  c('source_last_ms', 'DOUBLE'),
];

export const ERROR_COLUMNS: ColumnDef[] = [
  c('migration_id', 'BIGINT'),
  c('seq', 'BIGINT'),
  c('t_ms', 'DOUBLE'),
  c('code', 'VARCHAR'),
  c('failure', 'BOOLEAN'),
  c('message', 'VARCHAR'),
  c('cause_seq', 'BIGINT'),
  c('input', 'VARCHAR'),
];

/**
 * The journal's events behind the faults, requests and pages tables, staged as the
 * journal stores them (every field a number, so the export keeps typed arrays) and
 * turned into each table's columns by DuckDB when a part is written (EVENT_TABLE_SQL).
 */
export const STAGED_EVENT_COLUMNS: ColumnDef[] = [
  c('migration_id', 'BIGINT'),
  c('seq', 'DOUBLE'),
  c('t', 'DOUBLE'),
  c('cause', 'DOUBLE'),
  c('kind', 'UTINYINT'),
  c('block', 'SMALLINT'),
  c('offset_bytes', 'DOUBLE'),
  c('a', 'DOUBLE'),
  c('b', 'DOUBLE'),
];

/** The SELECT (over the table's staged events, STAGED_EVENT_COLUMNS) of each event table. Event kinds: src/engine/events.ts. */
export const EVENT_TABLE_SQL: Record<'faults' | 'requests' | 'pages', { kinds: number[]; select: string }> = {
  // FX_FAULT_SEEN (46): block, offset = host page; a = vCPU (-1: not a vCPU); b = FaultDisposition.
  faults: {
    kinds: [46],
    select: `migration_id, CAST(seq AS BIGINT) AS seq, t / 1e6 AS t_ms, CAST(cause AS BIGINT) AS fault_seq, block, CAST(offset_bytes AS BIGINT) AS offset_bytes,
      CAST(a AS INTEGER) AS vcpu, CAST(b AS TINYINT) AS disposition_code,
      COALESCE(['requested', 'resent', 'already-received', 'discarded-zero', 'held'][CAST(b AS INTEGER) + 1], 'unknown') AS disposition`,
  },
  // FX_REQUEST (41): block, offset (host page); a = length; b = RequestFlag bits.
  requests: {
    kinds: [41],
    select: `migration_id, CAST(seq AS BIGINT) AS seq, t / 1e6 AS t_ms, CAST(cause AS BIGINT) AS cause_seq, block, CAST(offset_bytes AS BIGINT) AS offset_bytes,
      CAST(a AS BIGINT) AS length_bytes, CAST(b AS INTEGER) AS flags,
      (CAST(b AS INTEGER) & 6) <> 0 AS resend, (CAST(b AS INTEGER) & 8) = 0 AS sent, (CAST(b AS INTEGER) & 16) <> 0 AS held`,
  },
  // IN_PAGE (2): a = channel, b = 1 zero page; FX_COPY (38) / FX_ZERO (39): a = length, b = PlaceOutcome.
  pages: {
    kinds: [2, 38, 39],
    select: `migration_id, CAST(seq AS BIGINT) AS seq, t / 1e6 AS t_ms, CAST(cause AS BIGINT) AS cause_seq,
      CASE kind WHEN 2 THEN 'received' WHEN 38 THEN 'copied' ELSE 'zeroed' END AS event,
      block, CAST(offset_bytes AS BIGINT) AS offset_bytes,
      CASE WHEN kind = 2 THEN CAST(a AS TINYINT) END AS channel,
      CASE WHEN kind = 2 THEN 4096 ELSE CAST(a AS BIGINT) END AS length_bytes,
      CASE WHEN kind = 2 THEN b = 1 ELSE kind = 39 END AS zero,
      CASE WHEN kind <> 2 THEN CAST(b AS TINYINT) END AS outcome_code`,
  },
};

/** Quotes an identifier for DuckDB SQL. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes a string literal for DuckDB SQL. */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
