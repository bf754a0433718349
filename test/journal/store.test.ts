import test from 'ava';
import Database from 'better-sqlite3';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventKind, type EventKindValue } from '../../src/engine/events.js';
import { JournalError } from '../../src/errors.js';
import { JournalReader } from '../../src/journal/journalReader.js';
import { JournalWriter } from '../../src/journal/journalWriter.js';
import type { JournalMeta } from '../../src/journal/meta.js';
import { scratchDir } from '../scratchDir.js';

export const META: JournalMeta = {
  engineVersion: 'test',
  source: 'engine',
  created: '2026-11-23T00:00:00Z',
  timeOriginNs: 0,
  blocks: [{ name: 'pc.ram', length: 1 << 20, hostPageSize: 4096, hostAddress: 0x7f0000000000 }],
  vcpuTids: [100, 101],
  capabilities: [],
  blocktimeMode: 'both',
};

function tmp(name: string): string {
  return join(scratchDir('pcj-'), name);
}

/** Deterministic synthetic event i: every field depends on i, some carry payloads. */
function eventOf(i: number): [EventKindValue, number, number, number, number, number, number, Uint8Array | null] {
  const kind = i % 3 === 0 ? EventKind.IN_PAGE : i % 3 === 1 ? EventKind.FX_COPY : EventKind.FX_REQUEST;
  const payload = kind === EventKind.FX_REQUEST ? Uint8Array.of(i & 255, (i >> 8) & 255, 7) : null;
  return [kind, i * 1000, kind === EventKind.IN_PAGE ? -1 : i - 1, 0, (i % 256) * 4096, i % 2, i % 5, payload];
}

function writeEvents(path: string, n: number, opts = {}): void {
  const w = JournalWriter.create(path, META, { segmentEvents: 4096, ...opts });
  for (let i = 0; i < n; i++) {
    const seq = w.append(...eventOf(i));
    if (seq !== i) throw new Error(`append returned ${seq} for event ${i}`);
  }
  w.close();
}

test('events written in segments read back identical, in order, with their payloads', (t) => {
  const path = tmp('round.db');
  writeEvents(path, 20_000);
  const r = JournalReader.open(path);
  t.is(r.eventCount(), 20_000);
  t.is(r.meta.source, 'engine');
  t.deepEqual(r.meta.vcpuTids, [100, 101]);
  let i = 0;
  for (const rec of r.records()) {
    const [kind, time, cause, block, offset, a, b, payload] = eventOf(i);
    t.deepEqual([rec.seq, rec.kind, rec.t, rec.cause, rec.block, rec.offset, rec.a, rec.b], [i, kind, time, cause, block, offset, a, b]);
    t.deepEqual(rec.payload === null ? null : [...rec.payload], payload === null ? null : [...payload]);
    i++;
  }
  t.is(i, 20_000);
  t.is(r.countOfKind(EventKind.FX_REQUEST), Math.floor(20_000 / 3));
  t.true(r.segmentsWithKind(EventKind.FX_REQUEST).length >= 4);
  r.close();
});

test('without auto-checkpoint every commit appends to the WAL until close checkpoints once; the events all read back', (t) => {
  // 12 segments of ~1 MiB each: SQLite's default auto-checkpoint (1000 pages, ~4 MiB) would reuse the WAL from the start.
  const walAfter = (autoCheckpoint: boolean): { walBytes: number; path: string } => {
    const path = tmp(`wal-${autoCheckpoint}.db`);
    const w = JournalWriter.create(path, META, { segmentEvents: 64, autoCheckpoint });
    const payload = new Uint8Array(16_384).fill(7);
    for (let i = 0; i < 64 * 12; i++) w.append(EventKind.FX_RECV_BITMAP, i, -1, 0, 0, payload.length, 0, payload);
    w.flush();
    const walBytes = statSync(path + '-wal').size;
    w.close();
    return { walBytes, path };
  };
  const off = walAfter(false);
  const on = walAfter(true);
  t.true(off.walBytes > 12 * 2 ** 20, `WAL ${off.walBytes} bytes: every segment appended`);
  t.true(on.walBytes < 8 * 2 ** 20, `WAL ${on.walBytes} bytes: checkpointed along the way`);
  for (const { path } of [off, on]) {
    const r = JournalReader.open(path);
    t.is(r.eventCount(), 64 * 12);
    r.close();
    t.is(statSync(path + '-wal', { throwIfNoEntry: false })?.size ?? 0, 0, 'close left nothing in the WAL');
  }
});

test('a payload larger than a segment payload area is stored whole in a segment of its own', (t) => {
  const path = tmp('big.db');
  const w = JournalWriter.create(path, META, { segmentEvents: 64, segmentPayloadBytes: 1024, crashSafe: false });
  w.append(EventKind.IN_FAULT, 1, -1, -1, 0x1000, 1, 0, null);
  const big = new Uint8Array(5000).map((_, i) => i & 255);
  t.is(w.append(EventKind.FX_RECV_BITMAP, 2, 0, 0, 0, big.length, 0, big), 1);
  w.append(EventKind.IN_FAULT, 3, -1, -1, 0x2000, 1, 0, null);
  w.close();
  const recs = [...JournalReader.open(path).records()];
  t.deepEqual(recs.map((r) => r.seq), [0, 1, 2]);
  t.deepEqual([...recs[1]!.payload!], [...big]);
});

test('an existing journal is not overwritten unless asked', (t) => {
  const path = tmp('exists.db');
  writeEvents(path, 10);
  t.throws(() => JournalWriter.create(path, META), { instanceOf: JournalError, message: /already exists/ });
  t.is(JournalReader.open(path).eventCount(), 10, 'the refused create changed nothing');
});

test('a file that is not a journal is refused with a clear error naming it', (t) => {
  const path = tmp('junk.db');
  writeFileSync(path, 'this is not an SQLite database at all, just text\n'.repeat(100));
  const err = t.throws(() => JournalReader.open(path), { instanceOf: JournalError });
  t.true(err!.message.startsWith(path));
  t.regex(err!.message, /not a readable journal/);
  t.is(err!.seq, -1);
  t.throws(() => JournalReader.open(tmp('missing.db')), { instanceOf: JournalError, message: /no such journal file/ });
});

test('an unknown format version is refused and names the version', (t) => {
  const path = tmp('version.db');
  writeEvents(path, 10);
  const db = new Database(path);
  db.prepare("UPDATE meta SET value = '99' WHERE key = 'formatVersion'").run();
  db.close();
  t.throws(() => JournalReader.open(path), { instanceOf: JournalError, message: /unknown journal format version 99 \(this engine reads version 1\)/ });
});

test('a flipped byte in a segment is caught by its checksum at the segment\'s first sequence number; the prefix stays readable', (t) => {
  const path = tmp('flip.db');
  writeEvents(path, 20_000);
  const db = new Database(path);
  const row = db.prepare('SELECT segment, first_seq, data FROM events ORDER BY first_seq LIMIT 1 OFFSET 2').get() as { segment: number; first_seq: number; data: Buffer };
  const data = Buffer.from(row.data);
  data[data.length >> 1] ^= 0x40;
  db.prepare('UPDATE events SET data = ? WHERE segment = ?').run(data, row.segment);
  db.close();
  const r = JournalReader.open(path);
  const err = t.throws(() => [...r.records()], { instanceOf: JournalError });
  t.is(err!.seq, row.first_seq);
  t.regex(err!.message, new RegExp(`fails its checksum.*at sequence number ${row.first_seq}`));
  const prefix = r.readablePrefix();
  t.is(prefix.events, row.first_seq);
  t.is(prefix.error?.seq, row.first_seq);
  t.is([...r.records(0, row.first_seq - 1)].length, row.first_seq);
});

test('a missing segment is reported as a gap at the first missing sequence number', (t) => {
  const path = tmp('gap.db');
  writeEvents(path, 20_000);
  const db = new Database(path);
  const row = db.prepare('SELECT segment, first_seq FROM events ORDER BY first_seq LIMIT 1 OFFSET 1').get() as { segment: number; first_seq: number };
  db.prepare('DELETE FROM events WHERE segment = ?').run(row.segment);
  db.close();
  const err = t.throws(() => [...JournalReader.open(path).records()], { instanceOf: JournalError });
  t.is(err!.seq, row.first_seq);
  t.regex(err!.message, /are missing/);
});

test('a truncated journal file gives a JournalError, never a crash, and its readable prefix', (t) => {
  const path = tmp('trunc.db');
  writeEvents(path, 60_000);
  const full = statSync(path).size;
  truncateSync(path, Math.floor(full * 0.6));
  let err: unknown;
  let prefix = -1;
  try {
    const r = JournalReader.open(path);
    const p = r.readablePrefix();
    prefix = p.events;
    err = p.error;
  } catch (e) {
    err = e;
  }
  t.true(err instanceof JournalError, `got ${String(err)}`);
  t.true((err as JournalError).message.startsWith(path));
  t.true(prefix < 60_000);
  t.truthy(readFileSync(path).length);
});

test('a segment whose blob holds an unknown event kind is refused at that sequence number', async (t) => {
  const { encodeSegment, decodeSegment } = await import('../../src/journal/segment.js');
  const cols = {
    kind: Uint8Array.of(EventKind.IN_FAULT, 200), t: Float64Array.of(1, 2), cause: Float64Array.of(-1, 0), block: Int16Array.of(-1, -1),
    offset: Float64Array.of(0, 0), a: Float64Array.of(0, 0), b: Float64Array.of(0, 0), payloadEnd: Uint32Array.of(0, 0), payload: new Uint8Array(0),
  };
  t.throws(() => decodeSegment(encodeSegment(40, 2, cols)), { message: 'event 41 has unknown kind 200' });
});
