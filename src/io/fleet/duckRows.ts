/**
 * Rows into DuckDB through @duckdb/node-api's appender: a row of plain values typed by the
 * column's SQL type (small tables), and the staged events as data chunks of typed columns
 * (the big tables: no object per event, no string per event).
 */
import { BIGINT, DOUBLE, DuckDBDataChunk, INTEGER, LIST, SMALLINT, UTINYINT, VARCHAR, type DuckDBAppender, type DuckDBType, type DuckDBVector } from '@duckdb/node-api';
import type { Segment } from '../../journal/segment.js';
import { STAGED_KIND, type ColumnDef } from './parquetSchema.js';

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

/** DuckDB's vector size: rows per data chunk. */
const CHUNK_ROWS = 2048;
const STAGED_TYPES: DuckDBType[] = [INTEGER, DOUBLE, DOUBLE, DOUBLE, UTINYINT, SMALLINT, DOUBLE, DOUBLE, DOUBLE];

/**
 * The staged events (parquetSchema's STAGED_EVENT_COLUMNS): the kinds the event tables
 * hold, copied column by column from a journal's segments into data chunks, one chunk
 * appended at a time.
 */
export class StagedEvents {
  private readonly chunk = DuckDBDataChunk.create(STAGED_TYPES, CHUNK_ROWS);
  private vectors: DuckDBVector[] = [];
  private row = 0;
  /** Rows appended since the last `taken()`. */
  rows = 0;

  constructor(private readonly appender: DuckDBAppender) {
    this.fetchVectors();
  }

  /** Stages the events of `seg` whose kind an event table holds, for migration `mid`. */
  add(mid: number, seg: Segment): void {
    const { kind, t, cause, block, offset, a, b } = seg;
    for (let i = 0; i < seg.count; i++) {
      const k = kind[i]!;
      if (STAGED_KIND[k] !== 1) continue;
      const v = this.vectors;
      const r = this.row;
      v[0]!.setItem(r, mid);
      v[1]!.setItem(r, seg.firstSeq + i);
      v[2]!.setItem(r, t[i]!);
      v[3]!.setItem(r, cause[i]!);
      v[4]!.setItem(r, k);
      v[5]!.setItem(r, block[i]!);
      v[6]!.setItem(r, offset[i]!);
      v[7]!.setItem(r, a[i]!);
      v[8]!.setItem(r, b[i]!);
      if (++this.row === CHUNK_ROWS) this.appendChunk();
    }
  }

  /** Appends the partly filled chunk and flushes the appender: every staged row is in the table. */
  flush(): void {
    if (this.row > 0) this.appendChunk();
    this.appender.flushSync();
  }

  /** Rows since the last call, and the count restarts. */
  taken(): number {
    const n = this.rows;
    this.rows = 0;
    return n;
  }

  close(): void {
    this.flush();
    this.appender.closeSync();
  }

  private appendChunk(): void {
    for (const v of this.vectors) v.flush();
    this.chunk.rowCount = this.row; // the vectors' data stays; only the size changes
    this.appender.appendDataChunk(this.chunk);
    this.rows += this.row;
    this.row = 0;
    this.chunk.rowCount = CHUNK_ROWS;
    this.fetchVectors();
  }

  private fetchVectors(): void {
    this.vectors = STAGED_TYPES.map((_, i) => this.chunk.getColumnVector(i));
  }
}
