/**
 * `postcopy export --parquet` and `postcopy fleet` through the command line, on the QEMU
 * 7.2 captures (imported with import-qemu) and on engine journals (`simulate`: one that
 * completes, one that breaks and recovers with preempt): every migrations row holds the
 * figures `inspect --json` prints for its journal, the event tables hold the journal's
 * events, a corrupt file in the folder is listed and skipped, a small part size gives
 * the same rows in more files, and the questions answer through DuckDB (text and --json).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventKind } from '../../src/engine/events.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import { TAIL_SUFFIX } from '../../src/journal/schema.js';
import { fixture } from '../fixtures.js';
import { scratchDir } from '../scratchDir.js';

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const dir = scratchDir('pcfleet-');
const journals = join(dir, 'journals');
const out = join(dir, 'parquet');

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function json<T = Record<string, unknown>>(...args: string[]): T {
  const r = cli(...args);
  if (r.status !== 0) throw new Error(`postcopy ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Answer {
  folder: string;
  question: string;
  columns: string[];
  rows: Array<Record<string, unknown>>;
}

const sql = (query: string, folder = out): Answer => json<Answer>('fleet', folder, '--sql', query, '--json');

/** The journals of the fleet: three QEMU captures and two engine runs, in a nested folder. */
const JOURNALS = ['qemu/plain.db', 'qemu/preempt.db', 'qemu/fail.db', 'sim/complete.db', 'sim/break-preempt.db'];
let exportSummary: { exported: number; journals: number; skipped: Array<{ path: string; reason: string }>; rows: Record<string, number>; events: number };
/** Per journal path: its migrations row, with the counts of its rows in the event tables (one query). */
const rowsByPath = new Map<string, Record<string, unknown>>();
/** Per journal path: its pauses rows, and the last migration state change. */
const pausesByPath = new Map<string, Array<Record<string, unknown>>>();

test.before(() => {
  mkdirSync(join(journals, 'qemu'), { recursive: true });
  mkdirSync(join(journals, 'sim'), { recursive: true });
  for (const run of ['plain', 'preempt', 'fail']) {
    const r = cli('import-qemu', fixture(run, 'dst-trace.log.gz'), '--src', fixture(run, 'src-trace.log.gz'), '-o', join(journals, 'qemu', `${run}.db`), '--quiet');
    if (r.status !== 0) throw new Error(`import-qemu ${run}: ${r.stderr}`);
  }
  for (const [name, extra] of [['complete', ['--seed', '3']], ['break-preempt', ['--seed', '4', '--preempt', '--break-at', '0.4', '--workload', 'random']]] as const) {
    const r = cli('simulate', '--size', '16M', '--journal', join(journals, 'sim', `${name}.db`), '--quiet', ...extra);
    if (r.status !== 0) throw new Error(`simulate ${name}: ${r.stderr}`);
  }
  // Not a journal: bytes that are no SQLite file, where a journal is expected.
  writeFileSync(join(journals, 'sim', 'corrupt.db'), Buffer.from('this is not a journal, only a file that ends in .db\n'.repeat(50)));
  exportSummary = json('export', journals, '--parquet', out, '--json', '--quiet');
  const n = (table: string, where = 'true'): string => `(SELECT count(*) FROM ${table} x WHERE x.migration_id = m.migration_id AND ${where})`;
  const rows = sql(`SELECT m.*,
      ${n('pauses')} AS n_pauses, ${n('errors')} AS n_errors, ${n('state_changes')} AS n_states, ${n('blocks')} AS n_blocks,
      ${n('requests', 'NOT resend')} AS n_requests, ${n('requests', 'resend')} AS n_resent,
      ${n('pages', "event <> 'received' AND outcome_code <> 2")} AS n_placed, ${n('faults')} AS n_faults,
      (SELECT to_state FROM state_changes x WHERE x.migration_id = m.migration_id AND machine = 'migration' ORDER BY seq DESC LIMIT 1) AS last_migration_state
    FROM migrations m`).rows;
  for (const r of rows) rowsByPath.set(r.journal_path as string, r);
  for (const p of sql('SELECT m.journal_path, p.* FROM pauses p JOIN migrations m USING (migration_id) ORDER BY m.journal_path, p.pause').rows) {
    const list = pausesByPath.get(p.journal_path as string) ?? [];
    list.push(p);
    pausesByPath.set(p.journal_path as string, list);
  }
});

test('export: every journal of the folder is exported, the corrupt one is listed and skipped, and every table has files', (t) => {
  t.is(exportSummary.journals, JOURNALS.length + 1);
  t.is(exportSummary.exported, JOURNALS.length);
  t.is(exportSummary.skipped.length, 1);
  t.is(basename(exportSummary.skipped[0]!.path), 'corrupt.db');
  t.regex(exportSummary.skipped[0]!.reason, /not a readable journal/);
  for (const table of ['migrations', 'blocks', 'state_changes', 'faults', 'requests', 'pages', 'pauses', 'errors']) {
    t.true(readdirSync(join(out, table)).some((f) => f.endsWith('.parquet')), `${table}/ has a Parquet file`);
  }
  t.is(exportSummary.rows.migrations, JOURNALS.length);
  const events = sql('SELECT sum(events) AS n FROM migrations').rows[0]!.n;
  t.is(events, exportSummary.events);
});

test('export (text): the skipped journal is named on stderr with the count at the end; exit 0', (t) => {
  const again = join(dir, 'parquet-text');
  const r = cli('export', journals, '--parquet', again, '--quiet');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /^postcopy export: skipped .*corrupt\.db: .*not a readable journal/m);
  t.regex(r.stdout, /exported 5 of 6 journal\(s\)/);
  t.regex(r.stdout, /skipped \(unreadable\): 1/);
});

const close = (t: { true(v: boolean, m?: string): void }, got: unknown, want: number, what: string): void => {
  t.true(typeof got === 'number' && Math.abs(got - want) <= 0.0015 + 1e-9 * Math.abs(want), `${what}: ${String(got)} vs inspect's ${want}`);
};

for (const name of JOURNALS) {
  test(`migrations row of ${name} holds inspect --json's figures, and the event tables its events`, (t) => {
    const path = join(journals, name);
    const a = json<any>('inspect', path, '--json', '--quiet');
    const m = rowsByPath.get(path)!;
    t.truthy(m, 'a migrations row');
    t.is(m.schema_version, 1);
    t.is(m.source, a.journal.source);
    t.is(m.qemu_version, a.journal.source === 'qemu-trace' ? '7.2' : null);
    t.deepEqual(m.capabilities, [...a.journal.capabilities].sort());
    t.is(m.events, a.journal.events);
    t.is(m.status, a.status);
    t.is(m.postcopy_state, a.postcopyState);
    t.is(m.vcpus, a.vcpus);
    t.is(m.ram_bytes, a.journal.blocks.reduce((s: number, b: { length: number }) => s + b.length, 0));
    t.is(m.block_count, a.journal.blocks.length);
    close(t, m.blocktime_qemu_ms, a.blocktime.qemu.totalMs, 'blocktime qemu');
    close(t, m.blocktime_exact_ms, a.blocktime.exact.totalMs, 'blocktime exact');
    (m.blocktime_qemu_per_vcpu_ms as number[]).forEach((v, i) => close(t, v, a.blocktime.qemu.perVcpuMs[i], `qemu vCPU ${i}`));
    (m.blocktime_exact_per_vcpu_ms as number[]).forEach((v, i) => close(t, v, a.blocktime.exact.perVcpuMs[i], `exact vCPU ${i}`));
    t.is((m.blocktime_exact_per_vcpu_ms as number[]).length, a.vcpus);
    t.is(m.faults, a.faults.count);
    close(t, m.fault_p99_ms, a.faults.p99Ms, 'fault p99');
    close(t, m.fault_max_ms, a.faults.maxMs, 'fault max');
    t.is(m.requests, a.requests.count);
    t.is(m.requests_resent, a.requests.resent);
    t.is(m.requests_outstanding, a.requests.outstanding.length);
    t.is(m.served_main, a.requests.answeredBy.main.count);
    t.is(m.served_preempt, a.requests.answeredBy.preempt.count);
    if (a.requests.answeredBy.main.count > 0) close(t, m.served_main_p99_ms, a.requests.answeredBy.main.p99Ms, 'served main p99');
    t.is(m.served, a.requests.answeredBy.main.count + a.requests.answeredBy.preempt.count + a.requests.answeredBy.unknown.count);
    t.is(m.pages_placed, a.pages.placed);
    t.is(m.pages_zero, a.pages.zero);
    t.is(m.pauses, a.pauses.length);
    t.is(m.still_paused, a.pauses.some((p: { endMs: number | null }) => p.endMs === null));
    t.is(m.errors, a.errors.length);
    t.is(m.first_error_code, a.errors[0]?.code ?? null);
    t.is(m.outcome, a.status === 'completed' ? 'completed' : a.pauses.some((p: { endMs: number | null }) => p.endMs === null) ? 'paused' : m.outcome);

    // The event tables, keyed by the migration's id.
    t.is(m.n_pauses, a.pauses.length);
    t.is(m.n_errors, a.errors.length);
    t.is(m.n_states, a.timeline.length);
    t.is(m.n_blocks, a.journal.blocks.length);
    t.is(m.n_requests, a.requests.count);
    t.is(m.n_resent, a.requests.resent);
    t.is(m.n_placed, a.pages.placed);
    t.is(m.n_faults, a.faults.count);
    t.is(m.last_migration_state, a.status);
    const pauseRows = pausesByPath.get(path) ?? [];
    t.is(pauseRows.length, a.pauses.length);
    pauseRows.forEach((p, i) => {
      t.is(p.start_seq, a.pauses[i].startSeq);
      close(t, p.start_ms, a.pauses[i].startMs, 'pause start');
      t.is(p.reason, a.pauses[i].reason ?? null);
    });
  });
}

test('a small part size writes more files with the same rows (the export streams in parts)', (t) => {
  const small = join(dir, 'parquet-small');
  const s = json<typeof exportSummary>('export', journals, '--parquet', small, '--rows-per-part', '20000', '--json', '--quiet');
  t.deepEqual(s.rows, exportSummary.rows);
  t.true(readdirSync(join(small, 'pages')).length > readdirSync(join(out, 'pages')).length);
  const a = sql('SELECT event, count(*) AS n, sum(offset_bytes) AS o FROM pages GROUP BY event ORDER BY event').rows;
  const b = sql('SELECT event, count(*) AS n, sum(offset_bytes) AS o FROM pages GROUP BY event ORDER BY event', small).rows;
  t.deepEqual(b, a);
});

test('--jobs 2: two processes share the journals out and write the same rows', (t) => {
  const two = join(dir, 'parquet-jobs');
  const s = json<typeof exportSummary & { processes: unknown[] }>('export', journals, '--parquet', two, '--jobs', '2', '--json', '--quiet');
  t.is(s.processes.length, 2);
  t.is(s.exported, JOURNALS.length);
  t.is(s.skipped.length, 1);
  t.deepEqual(s.rows, exportSummary.rows);
  const q = 'SELECT journal_file, events, status, blocktime_exact_ms, served_p99_ms FROM migrations ORDER BY journal_file';
  t.deepEqual(sql(q, two).rows, sql(q).rows);
});

test('export refuses a folder that already holds an export unless --force, and a bad option, exit 2', (t) => {
  const r = cli('export', journals, '--parquet', out, '--quiet');
  t.is(r.status, 2);
  t.regex(r.stderr, /^postcopy export: --parquet .* already holds an export .*--force/m);
  const bad = cli('export', journals, '--parquet', join(dir, 'x'), '--rows-per-part', 'lots');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /^postcopy export: --rows-per-part must be/m);
  const none = cli('export', join(journals, 'sim', 'corrupt.db'), '--parquet', join(dir, 'none'), '--quiet');
  t.is(none.status, 2);
  t.regex(none.stderr, /postcopy export: skipped .*corrupt\.db/);
  t.regex(none.stderr, /postcopy export: no journal could be exported/);
});

test('every file says its schema version in its Parquet metadata', (t) => {
  const rows = sql(`SELECT DISTINCT decode(value) AS v FROM parquet_kv_metadata('${out}/*/*.parquet') WHERE decode(key) = 'postcopy.schema_version'`).rows;
  t.deepEqual(rows, [{ v: '1' }]);
});

test('fleet summary (text and --json) counts the migrations and their outcomes', (t) => {
  const s = json<Answer>('fleet', out, '--json');
  t.is(s.question, 'summary');
  t.is(s.rows.length, 1);
  const row = s.rows[0]!;
  t.is(row.migrations, JOURNALS.length);
  const outcomes = sql('SELECT outcome, count(*) AS n FROM migrations GROUP BY outcome').rows;
  const by = Object.fromEntries(outcomes.map((r) => [r.outcome, r.n]));
  t.is(row.completed, by.completed ?? 0);
  t.is(row.paused, by.paused ?? 0);
  t.true((by.paused as number) >= 1, 'the fail capture is left paused');
  const text = cli('fleet', out);
  t.is(text.status, 0, text.stderr);
  t.regex(text.stdout, new RegExp(`migrations\\s+${JOURNALS.length}\\b`));
});

test('fleet --worst N --by blocktime|p99 ranks the migrations by that figure', (t) => {
  for (const [by, col] of [['blocktime', 'blocktime_exact_ms'], ['p99', 'served_p99_ms']] as const) {
    const w = json<Answer>('fleet', out, '--worst', '2', '--by', by, '--json');
    t.is(w.question, 'worst');
    t.is(w.rows.length, 2);
    const all = sql(`SELECT journal_file, round(${col}, 3) AS v FROM migrations ORDER BY ${col} DESC NULLS LAST, journal_path LIMIT 2`).rows;
    t.deepEqual(w.rows.map((r) => [r.journal_file, r[col]]), all.map((r) => [r.journal_file, r.v]));
  }
  const bad = cli('fleet', out, '--by', 'p99');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /^postcopy fleet: --by ranks --worst/m);
});

test('fleet --causes: the paused QEMU capture and the pauses, by cause', (t) => {
  const c = json<{ question: string; failures: Answer; pauses: Answer }>('fleet', out, '--causes', '--json');
  t.is(c.question, 'causes');
  const paused = c.failures.rows.filter((r) => r.outcome === 'paused');
  t.true(paused.length >= 1);
  const pauses = sql('SELECT count(*) AS n FROM pauses').rows[0]!.n;
  t.is(c.pauses.rows.reduce((s: number, r) => s + (r.pauses as number), 0), pauses as number);
  const text = cli('fleet', out, '--causes');
  t.is(text.status, 0);
  t.regex(text.stdout, /Pauses by cause/);
});

test('fleet --group-by source: percentiles per source; an unknown column is refused with the list', (t) => {
  const g = json<Answer>('fleet', out, '--group-by', 'source', '--json');
  t.is(g.question, 'group-by');
  const by = Object.fromEntries(g.rows.map((r) => [r.source, r.migrations]));
  t.deepEqual(by, { 'qemu-trace': 3, engine: 2 });
  t.true(g.columns.includes('served_p99_p99_ms'));
  const bad = cli('fleet', out, '--group-by', 'no_such_column');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /^postcopy fleet: --group-by no_such_column: migrations has no such column \(it has .*capability_set/m);
});

test('fleet --sql: views named like the tables; a query DuckDB refuses is exit 2 with the reason', (t) => {
  const r = sql("SELECT m.source, count(*) AS pages FROM pages p JOIN migrations m USING (migration_id) WHERE p.event = 'received' GROUP BY m.source ORDER BY m.source");
  t.deepEqual(r.columns, ['source', 'pages']);
  t.is(r.rows.length, 2);
  const bad = cli('fleet', out, '--sql', 'SELEKT 1');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /^postcopy fleet: the query failed: Parser Error/m);
  const two = cli('fleet', out, '--sql', 'SELECT 1', '--causes');
  t.is(two.status, 2);
  t.regex(two.stderr, /^postcopy fleet: one question at a time/m);
  const missing = cli('fleet', join(dir, 'journals'));
  t.is(missing.status, 2);
  t.regex(missing.stderr, /^postcopy fleet: .* holds no export \(no migrations\/\*\.parquet\)/m);
});

test('a journal damaged part-way is exported up to the damage and listed; the rest of the folder is exported', (t) => {
  const folder = join(dir, 'damaged');
  mkdirSync(folder);
  // As a killed writer leaves it: 120 events, those past the last whole segment in the crash tail, whose event 110 is then of an unknown kind.
  const live = join(dir, 'live.db');
  const w = JournalWriter.create(live, {
    engineVersion: 'test', source: 'engine', created: new Date(0).toISOString(), timeOriginNs: 0,
    blocks: [{ name: 'pc.ram', length: 1 << 20, hostPageSize: 4096, hostAddress: 0 }], vcpuTids: [1], capabilities: [], blocktimeMode: 'both',
  }, { segmentEvents: 50 });
  for (let i = 0; i < 120; i++) w.append(EventKind.IN_FAULT, i, -1, -1, 4096 * (i % 200), 1, 0, null);
  const path = join(folder, 'damaged.db');
  for (const s of ['', '-wal', TAIL_SUFFIX]) if (existsSync(live + s)) copyFileSync(live + s, path + s);
  w.close();
  const tail = readFileSync(path + TAIL_SUFFIX);
  tail[64 + 10] = 201;
  writeFileSync(path + TAIL_SUFFIX, tail);
  copyFileSync(join(journals, 'sim', 'complete.db'), join(folder, 'complete.db'));

  const pq = join(dir, 'parquet-damaged');
  const r = cli('export', folder, '--parquet', pq, '--quiet');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /^postcopy export: .*damaged\.db is damaged from #110: exported the 110 event\(s\) before it \(.*event 110 has unknown kind 201\)/m);
  t.regex(r.stdout, /exported 2 of 2 journal\(s\)/);
  const rows = sql('SELECT journal_file, events, unreadable_from, faults FROM migrations ORDER BY journal_file', pq).rows;
  t.deepEqual(rows.map((x) => [x.journal_file, x.unreadable_from]), [['complete.db', null], ['damaged.db', 110]]);
  t.is(rows[1]!.events, 110);
  t.is(rows[1]!.faults, 110);
});
