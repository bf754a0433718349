/**
 * Rows into DuckDB: a row of plain values typed by the column's SQL type through
 * @duckdb/node-api's appender (small tables), and the staged events in typed arrays of
 * our own, which DuckDB reads through a table function while it writes a part (the big
 * tables: no object per event, no string per event, and no DuckDB table in between).
 */
import {
  BIGINT,
  DOUBLE,
  DuckDBTableFunction,
  INTEGER,
  LIST,
  SMALLINT,
  UTINYINT,
  VARCHAR,
  type DuckDBAppender,
  type DuckDBBigIntVector,
  type DuckDBDataChunk,
  type DuckDBDoubleVector,
  type DuckDBSmallIntVector,
  type DuckDBType,
  type DuckDBUTinyIntVector,
} from '@duckdb/node-api';
import type { Segment } from '../../journal/segment.js';
import { EVENT_TABLE_SQL, STAGED_EVENT_COLUMNS, type ColumnDef } from './parquetSchema.js';

/** A value of a small table's row: null, or what the column's type takes. */
export type RowValue = null | string | number | boolean | number[] | string[];

/** Appends one row whose values follow `columns` (types as parquetSchema writes them). */
export function appendRow(appender: DuckDBAppender, columns: readonly ColumnDef[], values: readonly RowValue[]): void {
  if (values.length !== columns.length) throw new Error(`a row of ${values.length} values for ${columns.length} columns`);
  columns.forEach((col, i) => {
    const v = values[i]!;
    if (v === null) {
      appender.appendNull();
      return;
    }
    switch (col.type) {
      case 'INTEGER':
      case 'SMALLINT':
        appender.appendInteger(Number(v));
        return;
      case 'BIGINT':
        appender.appendBigInt(BigInt(Math.round(Number(v))));
        return;
      case 'DOUBLE':
        appender.appendDouble(Number(v));
        return;
      case 'BOOLEAN':
        appender.appendBoolean(Boolean(v));
        return;
      case 'VARCHAR':
        appender.appendVarchar(String(v));
        return;
      case 'VARCHAR[]':
        appender.appendList((v as string[]).map(String), LIST(VARCHAR));
        return;
      case 'DOUBLE[]':
        appender.appendList((v as number[]).map(Number), LIST(DOUBLE));
        return;
      case 'BIGINT[]':
        appender.appendList((v as number[]).map((x) => BigInt(Math.round(x))), LIST(BIGINT));
        return;
      default:
        throw new Error(`no appender for column ${col.name} of type ${col.type}`);
    }
  });
  appender.endRow();
}

/** DuckDB's vector size: the most rows a table function returns per call. */
const CHUNK_ROWS = 2048;
/** The types of STAGED_EVENT_COLUMNS, in order. */
const STAGED_TYPES: DuckDBType[] = [BIGINT, DOUBLE, DOUBLE, DOUBLE, UTINYINT, SMALLINT, DOUBLE, DOUBLE, DOUBLE];
if (STAGED_TYPES.length !== STAGED_EVENT_COLUMNS.length) throw new Error('STAGED_TYPES does not follow STAGED_EVENT_COLUMNS');

/** The event tables, in the order of EVENT_TABLE_SQL: a staged event goes to one of them. */
export const EVENT_TABLES = Object.keys(EVENT_TABLE_SQL) as Array<keyof typeof EVENT_TABLE_SQL>;
/** Event kind -> index in EVENT_TABLES, -1 for a kind no event table holds. */
const TABLE_OF_KIND = (() => {
  const t = new Int8Array(256).fill(-1);
  EVENT_TABLES.forEach((table, i) => {
    for (const k of EVENT_TABLE_SQL[table].kinds) t[k] = i;
  });
  return t;
})();

/**
 * The staged events of one event table (STAGED_EVENT_COLUMNS), column by column in typed
 * arrays that grow by doubling. The migration id (a bigint) is kept once per migration:
 * a row holds its index in `ids`.
 */
export class StagedColumns {
  rows = 0;
  private readonly ids: bigint[] = [];
  private idAt = new Int32Array(0);
  private seq = new Float64Array(0);
  private t = new Float64Array(0);
  private cause = new Float64Array(0);
  private kind = new Uint8Array(0);
  private block = new Int16Array(0);
  private offset = new Float64Array(0);
  private a = new Float64Array(0);
  private b = new Float64Array(0);

  /** Room for `more` rows beyond `rows`. */
  reserve(more: number): void {
    const need = this.rows + more;
    if (need <= this.seq.length) return;
    const cap = Math.max(need, this.seq.length * 2, 4096);
    const grow = <T extends Float64Array | Int32Array | Uint8Array | Int16Array>(old: T, make: (n: number) => T): T => {
      const fresh = make(cap);
      fresh.set(old.subarray(0, this.rows));
      return fresh;
    };
    this.idAt = grow(this.idAt, (n) => new Int32Array(n));
    this.seq = grow(this.seq, (n) => new Float64Array(n));
    this.t = grow(this.t, (n) => new Float64Array(n));
    this.cause = grow(this.cause, (n) => new Float64Array(n));
    this.kind = grow(this.kind, (n) => new Uint8Array(n));
    this.block = grow(this.block, (n) => new Int16Array(n));
    this.offset = grow(this.offset, (n) => new Float64Array(n));
    this.a = grow(this.a, (n) => new Float64Array(n));
    this.b = grow(this.b, (n) => new Float64Array(n));
  }

  /** The index in `ids` of migration `id`, added unless it is the last one. */
  idIndex(id: bigint): number {
    if (this.ids[this.ids.length - 1] !== id) this.ids.push(id);
    return this.ids.length - 1;
  }

  /** Appends event i of `seg` (room reserved) for the migration of `ids[idIndex]`. */
  push(idIndex: number, seg: Segment, i: number): void {
    const r = this.rows++;
    this.idAt[r] = idIndex;
    this.seq[r] = seg.firstSeq + i;
    this.t[r] = seg.t[i]!;
    this.cause[r] = seg.cause[i]!;
    this.kind[r] = seg.kind[i]!;
    this.block[r] = seg.block[i]!;
    this.offset[r] = seg.offset[i]!;
    this.a[r] = seg.a[i]!;
    this.b[r] = seg.b[i]!;
  }

  /** Fills `out` with rows [from, from+n) (n ≤ CHUNK_ROWS). */
  fill(out: DuckDBDataChunk, from: number, n: number): void {
    out.rowCount = n;
    const v = STAGED_TYPES.map((_, c) => out.getColumnVector(c));
    const id = v[0] as DuckDBBigIntVector;
    const [seq, t, cause] = [v[1], v[2], v[3]] as DuckDBDoubleVector[];
    const kind = v[4] as DuckDBUTinyIntVector;
    const block = v[5] as DuckDBSmallIntVector;
    const [offset, a, b] = [v[6], v[7], v[8]] as DuckDBDoubleVector[];
    for (let r = 0; r < n; r++) {
      const i = from + r;
      id.setItem(r, this.ids[this.idAt[i]!]!);
      seq!.setItem(r, this.seq[i]!);
      t!.setItem(r, this.t[i]!);
      cause!.setItem(r, this.cause[i]!);
      kind.setItem(r, this.kind[i]!);
      block.setItem(r, this.block[i]!);
      offset!.setItem(r, this.offset[i]!);
      a!.setItem(r, this.a[i]!);
      b!.setItem(r, this.b[i]!);
    }
    for (const vector of v) vector.flush();
  }

  /** Empties the columns, keeping their memory for the next part. */
  clear(): void {
    this.rows = 0;
    this.ids.length = 0;
  }
}

/** The staged events of every event table (EVENT_TABLES order). */
export class StagedEvents {
  readonly tables = EVENT_TABLES.map(() => new StagedColumns());

  /** Event rows staged (all tables). */
  get rows(): number {
    let n = 0;
    for (const t of this.tables) n += t.rows;
    return n;
  }

  /** Stages the events of `seg` that an event table holds, for the migration `id`. */
  add(id: bigint, seg: Segment): void {
    const tables = this.tables;
    const idIndex = tables.map((t) => {
      t.reserve(seg.count);
      return t.idIndex(id);
    });
    const kind = seg.kind;
    for (let i = 0; i < seg.count; i++) {
      const table = TABLE_OF_KIND[kind[i]!]!;
      if (table >= 0) tables[table]!.push(idIndex[table]!, seg, i);
    }
  }

  clear(): void {
    for (const t of this.tables) t.clear();
  }
}

/**
 * The table function `name(source INTEGER)`: the rows of the StagedColumns that
 * `sources(source)` returns, in the order they were staged (one scanning thread, so a
 * COPY over it writes them in that order). The columns are STAGED_EVENT_COLUMNS.
 */
export function stagedEventsFunction(name: string, sources: (source: number) => StagedColumns): DuckDBTableFunction {
  return DuckDBTableFunction.create({
    name,
    parameterTypes: [INTEGER],
    bindFunction: (bind) => {
      // A callback's error goes to DuckDB (the COPY fails with it), not up through its thread.
      try {
        const staged = sources(Number(bind.getParameter(0)));
        STAGED_EVENT_COLUMNS.forEach((c, i) => bind.addResultColumn(c.name, STAGED_TYPES[i]!));
        bind.setBindData({ staged });
        bind.setCardinality(staged.rows, true);
      } catch (err) {
        bind.setError((err as Error).message);
      }
    },
    initFunction: (init) => {
      init.setMaxThreads(1);
      init.setInitData({ next: 0 });
    },
    mainFunction: (info, out) => {
      const { staged } = info.bindData as { staged: StagedColumns };
      const state = info.initData as { next: number };
      const n = Math.min(CHUNK_ROWS, staged.rows - state.next);
      if (n <= 0) {
        out.rowCount = 0;
        return;
      }
      try {
        staged.fill(out, state.next, n);
      } catch (err) {
        out.rowCount = 0;
        info.setError((err as Error).message);
        return;
      }
      state.next += n;
    },
  });
}
