/**
 * The analysis of long or damaged journals: series stay within their bounds whatever the
 * number of events, and a journal damaged part-way is explained up to the damage.
 */
import test from 'ava';
import Database from 'better-sqlite3';
import { MigCommand } from '../../src/engine/constants.js';
import { encodeAdvise, hostPageSizeSummary } from '../../src/engine/wire.js';
import { analyze, cli, handDriven, tmpPath } from './helpers.js';

const MS = 1e6;
const PAGES = 6000;

/**
 * A journal of `PAGES` faults by vCPU 0, each served 0.1 ms later, in small segments:
 * far more blocked intervals and received points than the series keep.
 */
function longJournal(path: string): void {
  const { engine, writer, host } = handDriven(path, PAGES, [101], { segmentEvents: 1024 });
  engine.command(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary([4096]), targetPageSize: 4096 }), 1 * MS);
  engine.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0), 2 * MS);
  engine.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0), 3 * MS);
  const data = new Uint8Array(4096);
  for (let i = 0; i < PAGES; i++) {
    const t = 10 * MS + i * MS;
    engine.fault(host + i * 4096, 101, t);
    engine.page(0, 0, i * 4096, false, data, 0, t + 0.1 * MS);
  }
  engine.endOfStream(0, 10 * MS + PAGES * MS);
  writer.close();
}

test('series are downsampled, never longer than their bound, and keep their ends', (t) => {
  const path = tmpPath('long.db');
  longJournal(path);
  const a = analyze(path);
  t.is(a.status, 'completed');
  t.is(a.pages.placed, PAGES);
  t.is(a.faults.count, PAGES);
  t.true(a.series.received.length <= 2000);
  t.deepEqual(a.series.received.at(-1), [10 + (PAGES - 1) + 0.1, PAGES]);
  for (let i = 1; i < a.series.received.length; i++) t.true(a.series.received[i]![1] > a.series.received[i - 1]![1]);
  const intervals = a.series.vcpuBlocked[0]!.intervals;
  t.true(intervals.length <= 2000 && intervals.length >= 1000);
  t.deepEqual(intervals[0]![0], 10); // the first fault
  t.true(a.series.latencyCdf.length <= 200);
  t.is(a.faults.slowest.length, 20);
  t.is(Math.round(a.blocktime.exact.perVcpuMs[0]! * 1000), PAGES * 100); // 0.1 ms per fault, summed exactly
  t.is(a.blocktime.exact.totalMs, a.blocktime.exact.perVcpuMs[0]); // one vCPU: blocked means all blocked
});

test('a journal damaged part-way is explained up to the damage; inspect says where and exits 2', (t) => {
  const path = tmpPath('damaged.db');
  longJournal(path);
  const db = new Database(path);
  const row = db.prepare('SELECT first_seq, data FROM events WHERE segment = 5').get() as { first_seq: number; data: Buffer };
  const data = Buffer.from(row.data);
  data[data.length >> 1] ^= 0xff;
  db.prepare('UPDATE events SET data = ? WHERE segment = 5').run(data);
  db.close();

  const a = analyze(path);
  t.is(a.journal.unreadableFrom, row.first_seq);
  t.regex(a.journal.unreadableReason!, /checksum/);
  t.is(a.journal.events, row.first_seq);
  t.true(a.pages.placed > 0 && a.pages.placed < PAGES);
  t.is(a.status, 'postcopy-active'); // as far as the readable events go

  const r = cli('inspect', path);
  t.is(r.status, 2);
  t.regex(r.stdout, new RegExp(`damaged from #${row.first_seq}`));
  t.regex(r.stderr, /checksum/);
});
