/**
 * The crash tail is evidence: reading a journal never folds, rewrites or removes its tail,
 * never writes SQLite; a tail that cannot be read whole is a JournalTailError at its first
 * unreadable sequence number with everything before it readable; meta and schema are
 * validated; salvage copies every readable event into a new journal.
 */
import test from 'ava';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { EventKind } from '../../src/engine/events.js';
import { JournalError, JournalFormatError, JournalTailError } from '../../src/errors.js';
import { analyzeJournal } from '../../src/forensics/analysis.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import type { JournalMeta } from '../../src/journal/meta.js';
import { salvageJournal } from '../../src/journal/salvage.js';
import { TAIL_SUFFIX } from '../../src/journal/schema.js';
import { scratchDir } from '../scratchDir.js';

const dir = scratchDir('pctail-');
let n = 0;
const tmp = (name: string): string => join(dir, `${++n}-${name}`);

const META: JournalMeta = {
  engineVersion: 'test',
  source: 'engine',
  created: new Date(0).toISOString(),
  timeOriginNs: 0,
  blocks: [{ name: 'pc.ram', length: 1 << 20, hostPageSize: 4096, hostAddress: 0x7f0000000000 }],
  vcpuTids: [11, 12],
  capabilities: [],
  blocktimeMode: 'both',
};

/** Event i: an IN_FAULT (an input) then an FX_FAULT_SEEN caused by it, alternately. */
function append(w: JournalWriter, i: number): void {
  if (i % 2 === 0) w.append(EventKind.IN_FAULT, i * 1000, -1, -1, 0x7f0000000000 + (i % 256) * 4096, 11, 0, null);
  else w.append(EventKind.FX_FAULT_SEEN, i * 1000, i - 1, 0, ((i - 1) % 256) * 4096, 0, 0, i % 3 === 0 ? Uint8Array.of(i & 0xff) : null);
}

/**
 * A journal as a SIGKILLed writer leaves it: `flushed` events in SQLite, `tailed` more in
 * the crash tail (the files copied while the writer is still open, as the page cache holds them).
 */
function crashed(flushed: number, tailed: number): string {
  const live = tmp('live.db');
  const w = JournalWriter.create(live, META, { segmentEvents: 64 });
  let i = 0;
  for (; i < flushed; i++) append(w, i);
  w.flush();
  for (; i < flushed + tailed; i++) append(w, i);
  const path = tmp('crashed.db');
  for (const s of ['', '-wal', TAIL_SUFFIX]) if (existsSync(live + s)) copyFileSync(live + s, path + s);
  w.close();
  return path;
}

function digests(path: string): string[] {
  return ['', '-wal', TAIL_SUFFIX].map((s) => (existsSync(path + s) ? createHash('sha256').update(readFileSync(path + s)).digest('hex') : 'absent'));
}

function editTail(path: string, fn: (b: Buffer) => Buffer): void {
  writeFileSync(path + TAIL_SUFFIX, fn(readFileSync(path + TAIL_SUFFIX)));
}

test('a crash tail is read after SQLite, never folded or removed: the journal and its tail are unchanged', (t) => {
  const path = crashed(200, 50);
  const before = digests(path);
  const r = JournalReader.open(path);
  t.is(r.eventCount(), 250);
  t.deepEqual(r.readablePrefix(), { events: 250, error: null });
  t.deepEqual([...r.records()].map((x) => x.seq), Array.from({ length: 250 }, (_, i) => i));
  t.is(r.tail.events, 50);
  t.is(r.countOfKind(EventKind.IN_FAULT), 125, 'the tail counts in the kind index');
  const a = analyzeJournal(r);
  t.is(a.journal.events, 250);
  t.is(a.journal.unreadableFrom, null);
  r.close();
  t.true(existsSync(path + TAIL_SUFFIX));
  t.deepEqual(digests(path), before);
});

test('a tail cut short is a JournalTailError after SQLite: the SQLite events stay readable, nothing is removed', (t) => {
  const path = crashed(128, 40);
  editTail(path, (b) => b.subarray(0, 1 << 16));
  const before = digests(path);
  const r = JournalReader.open(path);
  const p = r.readablePrefix();
  t.is(p.events, 128);
  t.true(p.error instanceof JournalTailError);
  t.is(p.error!.seq, 128);
  t.regex(p.error!.message, /crash tail .* is damaged: it is 65536 bytes, its header .* needs \d+: cut/);
  t.is(analyzeJournal(r).journal.unreadableFrom, 128);
  r.close();
  t.deepEqual(digests(path), before);
});

test('an unknown event kind in the tail stops the reading at its sequence number; the events before it are read', (t) => {
  const path = crashed(64, 30);
  editTail(path, (b) => ((b[64 + 10] = 200), b));
  const r = JournalReader.open(path);
  const p = r.readablePrefix();
  t.is(p.events, 74);
  t.is(p.error!.seq, 74);
  t.regex(p.error!.message, /event 74 has unknown kind 200/);
  r.close();
});

test('tail headers that lie (capacity 0xFFFFFFF0, count past capacity, NaN or negative base, a gap, bad magic, random bytes) are JournalTailErrors, never crashes', (t) => {
  const cases: Array<[string, (b: Buffer) => Buffer, RegExp]> = [
    ['capacity', (b) => (b.writeUInt32LE(0xfffffff0, 8), b), /capacity of 4294967280 events/],
    ['count', (b) => (b.writeUInt32LE(0xffffffff, 24), b), /more than its capacity/],
    ['NaN base', (b) => (b.writeDoubleLE(NaN, 16), b), /base sequence number NaN/],
    ['negative base', (b) => (b.writeDoubleLE(-3, 16), b), /base sequence number -3/],
    ['gap', (b) => (b.writeDoubleLE(1000, 16), b), /after a gap/],
    ['magic', (b) => (b.writeUInt32LE(1, 0), b), /tail magic/],
    ['random', (b) => Buffer.from(b.map((_, i) => (i * 7919 + 13) & 0xff)), /damaged/],
  ];
  for (const [name, edit, re] of cases) {
    const path = crashed(64, 5);
    editTail(path, edit);
    const before = digests(path);
    const r = JournalReader.open(path);
    const p = r.readablePrefix();
    t.true(p.error instanceof JournalTailError, name);
    t.is(p.events, 64, name);
    t.regex(p.error!.message, re, name);
    r.close();
    t.deepEqual(digests(path), before, name);
  }
});

test('a tail never formatted (zero bytes, or an all-zero header) holds nothing and is no error', (t) => {
  for (const edit of [() => Buffer.alloc(0), (b: Buffer) => Buffer.alloc(b.length)]) {
    const path = crashed(64, 5);
    editTail(path, edit);
    const r = JournalReader.open(path);
    t.deepEqual(r.readablePrefix(), { events: 64, error: null });
    r.close();
    t.true(existsSync(path + TAIL_SUFFIX));
  }
});

test('meta and schema are validated: a JournalFormatError names the key or the table', (t) => {
  const cases: Array<[string, (db: Database.Database) => void, RegExp]> = [
    ['vcpuTids null', (db) => db.prepare("UPDATE meta SET value = 'null' WHERE key = 'vcpuTids'").run(), /meta\.vcpuTids: must be an array/],
    ['blocks a string', (db) => db.prepare("UPDATE meta SET value = '\"pc.ram\"' WHERE key = 'blocks'").run(), /meta\.blocks: must be an array/],
    ['block length', (db) => db.prepare(`UPDATE meta SET value = '[{"name":"a","length":-1,"hostAddress":0}]' WHERE key = 'blocks'`).run(), /meta\.blocks\[0\]\.length/],
    ['source', (db) => db.prepare("UPDATE meta SET value = '1' WHERE key = 'source'").run(), /meta\.source/],
    ['missing events', (db) => db.exec('DROP TABLE events'), /table events: missing/],
    ['reshaped snapshots', (db) => db.exec('DROP TABLE snapshots; CREATE TABLE snapshots (x)'), /table snapshots: has no column seq, state/],
  ];
  for (const [name, edit, re] of cases) {
    const path = crashed(64, 0);
    const db = new Database(path);
    edit(db);
    db.close();
    const err = t.throws(() => JournalReader.open(path), { instanceOf: JournalFormatError }, name);
    t.regex(err!.message, re, name);
    t.true(err!.message.startsWith(path), name);
  }
});

test('blocks [] is well-formed: the events naming block 0 are anomalies of the analysis, not a crash', (t) => {
  const path = crashed(64, 0);
  const db = new Database(path);
  db.prepare("UPDATE meta SET value = '[]' WHERE key = 'blocks'").run();
  db.close();
  const r = JournalReader.open(path);
  const a = analyzeJournal(r);
  r.close();
  t.is(a.anomalies.count, 32);
  t.regex(a.anomalies.first[0]!.reason, /block 0 is not one of the journal's 0 block/);
});

test('a segment with a valid checksum over a garbage payload is a JournalError at its first sequence number', (t) => {
  const path = crashed(128, 0);
  const db = new Database(path);
  const garbage = Buffer.from('\x93\x01\x02\x03garbage');
  db.prepare('UPDATE events SET data = ?, crc = ? WHERE first_seq = 64').run(garbage, crc32(garbage));
  db.close();
  const r = JournalReader.open(path);
  const p = r.readablePrefix();
  t.is(p.events, 64);
  t.true(p.error instanceof JournalError);
  t.regex(p.error!.message, /does not decode/);
  r.close();
});

test('salvage keeps every readable event, renumbers past a dropped segment, reports what it dropped, and leaves the input unchanged', (t) => {
  const path = crashed(192, 40);
  const db = new Database(path);
  const garbage = Buffer.from('not msgpack at all');
  db.prepare('UPDATE events SET data = ?, crc = ? WHERE first_seq = 64').run(garbage, crc32(garbage));
  db.close();
  editTail(path, (b) => ((b[64 + 30] = 250), b)); // tail events 192..221 readable, 222..231 not
  const before = digests(path);
  const out = tmp('salvaged.db');
  const r = salvageJournal(path, out);
  t.is(r.kept, 192 - 64 + 30);
  t.is(r.fromTail, 30);
  t.deepEqual(r.dropped.map((d) => [d.from, d.to]), [[64, 128], [222, 232]]);
  t.is(r.droppedCount, 74);
  t.true(r.renumbered);
  t.deepEqual(digests(path), before);
  const s = JournalReader.open(out);
  t.deepEqual(s.readablePrefix(), { events: r.kept, error: null });
  const recs = [...s.records()];
  // Input event 128 (an IN_FAULT) is now 64, and its FX_FAULT_SEEN (input 129, cause 128) points at 64.
  t.is(recs[64]!.t, 128_000);
  t.is(recs[65]!.cause, 64);
  t.deepEqual((s.meta.run as { salvagedFrom: { kept: number } }).salvagedFrom.kept, r.kept);
  s.close();
  t.false(existsSync(out + TAIL_SUFFIX));
});

test('salvage of a journal with nothing readable writes no journal', (t) => {
  const path = crashed(0, 20);
  editTail(path, (b) => b.subarray(0, 100));
  const out = tmp('none.db');
  const r = salvageJournal(path, out);
  t.is(r.kept, 0);
  t.false(existsSync(out));
});

test('salvage past a segment row of the wrong types: its extent is where the next sound row starts; the reader closes cleanly', (t) => {
  const path = crashed(256, 0); // four segments of 64
  const db = new Database(path);
  db.prepare("UPDATE events SET count = 'x' WHERE first_seq = 128").run();
  db.close();
  const out = tmp('typed.db');
  const r = salvageJournal(path, out);
  t.deepEqual(r.dropped, [{ from: 128, to: 192, reason: 'the row of segment 2 has values of the wrong type' }]);
  t.is(r.kept, 192);
  const s = JournalReader.open(out);
  t.deepEqual(s.readablePrefix(), { events: 192, error: null });
  s.close();
});
