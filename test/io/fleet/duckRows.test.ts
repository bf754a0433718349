import test from 'ava';
import { DuckDBInstance } from '@duckdb/node-api';
import { EVENT_TABLES, StagedEvents, stagedEventsFunction } from '../../../src/io/fleet/duckRows.js';
import { EVENT_TABLE_SQL, STAGED_EVENT_COLUMNS } from '../../../src/io/fleet/parquetSchema.js';
import type { Segment } from '../../../src/journal/segment.js';

/** A segment of `count` events whose kinds cycle through `kinds` (plus one kind no table holds). */
function segment(firstSeq: number, count: number, kinds: number[]): Segment {
  const all = [...kinds, 1];
  const kind = new Uint8Array(count).map((_, i) => all[i % all.length]!);
  const num = (f: (i: number) => number): Float64Array => new Float64Array(count).map((_, i) => f(i));
  return {
    firstSeq,
    count,
    kind,
    t: num((i) => (firstSeq + i) * 1000 + 0.5),
    cause: num((i) => (i % 3 === 0 ? -1 : firstSeq + i - 1)),
    block: new Int16Array(count).map((_, i) => i % 2),
    offset: num((i) => (firstSeq + i) * 4096 * 1024), // past 2^32 for large seq
    a: num((i) => (i % 5) - 1),
    b: num((i) => i % 7),
    payloadEnd: new Uint32Array(count),
    payload: new Uint8Array(0),
  };
}

test('the staged events come back through the table function per event table, in staging order, ids and values exact', async (t) => {
  const kinds = EVENT_TABLES.flatMap((table) => EVENT_TABLE_SQL[table].kinds);
  const ids = [-0x7edcba9876543210n, 0x1234_5678_9abc_def0n];
  // Two migrations, several segments, more rows per table than one chunk (2 048).
  const segs: Array<[bigint, Segment]> = [
    [ids[0]!, segment(0, 5000, kinds)],
    [ids[0]!, segment(5000, 3000, kinds)],
    [ids[1]!, segment(0, 7000, kinds)],
  ];
  const staged = new StagedEvents();
  for (const [id, seg] of segs) staged.add(id, seg);

  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const db = await instance.connect();
  try {
    db.registerTableFunction(stagedEventsFunction('staged_test', (n) => staged.tables[n]!));
    for (const [n, table] of EVENT_TABLES.entries()) {
      const want: unknown[][] = [];
      for (const [id, seg] of segs) {
        for (let i = 0; i < seg.count; i++) {
          if (!EVENT_TABLE_SQL[table].kinds.includes(seg.kind[i]!)) continue;
          want.push([id, seg.firstSeq + i, seg.t[i], seg.cause[i], seg.kind[i], seg.block[i], seg.offset[i], seg.a[i], seg.b[i]]);
        }
      }
      const r = await db.runAndReadAll(`SELECT * FROM staged_test(${n})`);
      t.deepEqual(r.columnNames(), STAGED_EVENT_COLUMNS.map((c) => c.name));
      const got = r.getRows();
      t.true(got.length > 2048, `${table}: more than one chunk`);
      t.deepEqual(got, want, table);
    }
    staged.clear();
    t.is(staged.rows, 0);
    const empty = await db.runAndReadAll('SELECT count(*) AS n FROM staged_test(0)');
    t.is(empty.getRows()[0]![0], 0n);
  } finally {
    db.closeSync();
    instance.closeSync();
  }
});

test('a staging the table function cannot find fails the query with its reason', async (t) => {
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const db = await instance.connect();
  try {
    db.registerTableFunction(
      stagedEventsFunction('staged_missing', (n) => {
        throw new Error(`no staging ${n}`);
      }),
    );
    await t.throwsAsync(db.runAndReadAll('SELECT * FROM staged_missing(7)'), { message: /no staging 7/ });
  } finally {
    db.closeSync();
    instance.closeSync();
  }
});
