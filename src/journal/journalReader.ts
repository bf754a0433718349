import Database from 'better-sqlite3';
import { existsSync, rmSync, statSync } from 'node:fs';
import { unpack } from 'msgpackr';
import { JournalError, JournalFormatError, JournalTailError } from '../errors.js';
import { fileKind } from '../regularFile.js';
import { FORMAT_VERSION, TAIL_SUFFIX } from './schema.js';
import { decodeSegment, recordOf, segmentChecksum, type Segment } from './segment.js';
import type { EventRecord } from '../engine/events.js';
import { readTailFile, segmentFrom } from './tailRead.js';
import { validateMeta, type JournalMeta } from './meta.js';

interface SegmentRow {
  segment: number;
  first_seq: number;
  count: number;
  crc: number;
  data: Buffer;
}

/** Columns every table must have (a reader checks them before trusting a query). */
const TABLES: Record<string, string[]> = {
  meta: ['key', 'value'],
  events: ['segment', 'first_seq', 'count', 't_first', 't_last', 'crc', 'data'],
  segment_kinds: ['kind', 'segment', 'count'],
  segment_blocks: ['block', 'segment', 'min_offset', 'max_offset'],
  snapshots: ['seq', 'state'],
};

/** The crash tail beside a journal, as the reader found it (never changed). */
export interface TailInfo {
  /** `<journal>-tail`. */
  path: string;
  /** Whether the file exists. */
  present: boolean;
  /** Events the tail adds after SQLite's (readable ones only). */
  events: number;
  /** Events its header says it holds (0 when the header is unreadable). */
  published: number;
  /** Its first sequence number, when its header could be read. */
  baseSeq: number | null;
  /** Why it cannot be read whole (null: it can). */
  problem: string | null;
}

/**
 * Reads a journal without ever changing it: SQLite is opened read-only, and the crash
 * tail a killed writer left (`<journal>-tail`) is read as a copy and never folded,
 * rewritten or removed (`postcopy salvage` makes a new journal of it). Opening validates
 * the format version, the schema and the meta (JournalFormatError naming the table or the
 * key); reading validates every segment (sequence continuity, checksum, decoding) and then
 * the tail's events, and reports the first bad one as a JournalError naming the file and
 * the first sequence number that could not be read. Everything before it stays readable:
 * `readablePrefix()` says how far that is.
 */
export class JournalReader {
  readonly path: string;
  readonly meta: JournalMeta;
  /** The crash tail, as found. */
  readonly tail: TailInfo;
  private readonly db!: Database.Database;
  private readonly nextSegment: Database.Statement;
  /** The tail's events after SQLite's, and the error that stops reading it, if any. */
  private tailSegment: Segment | null = null;
  private tailError: JournalError | null = null;
  /** Neither `-wal` nor `-shm` existed at open: SQLite's read-only connection makes them. */
  private readonly createdSidecars: boolean;

  private constructor(path: string) {
    this.path = path;
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new JournalError(path, -1, 'no such journal file');
    }
    if (!st.isFile()) throw new JournalError(path, -1, `not a journal: it is ${fileKind(st)}, not a regular file`);
    for (const side of ['-wal', '-shm']) {
      // SQLite would open a FIFO there and wait for a writer forever.
      let ss;
      try {
        ss = statSync(path + side);
      } catch {
        continue;
      }
      if (!ss.isFile()) throw new JournalError(path, -1, `not a readable journal: its ${side} file is ${fileKind(ss)}, not a regular file`);
    }
    this.createdSidecars = !existsSync(path + '-wal') && !existsSync(path + '-shm');
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      this.db.pragma('schema_version'); // reads the header: a non-SQLite file fails here
    } catch (err) {
      this.close();
      throw new JournalError(path, -1, `not a readable journal (${(err as Error).message})`);
    }
    const db = this.db;
    try {
      this.checkSchema();
      this.meta = this.readMeta();
      this.nextSegment = db.prepare('SELECT segment, first_seq, count, crc, data FROM events WHERE first_seq >= ? ORDER BY first_seq LIMIT 1');
      this.tail = this.readTail();
    } catch (err) {
      this.close();
      if (err instanceof JournalError) throw err;
      throw new JournalError(path, -1, `not a readable journal (${(err as Error).message})`);
    }
  }

  /** Opens a journal for reading (never changes it); throws JournalError when it cannot be read at all. */
  static open(path: string): JournalReader {
    return new JournalReader(path);
  }

  /** Runs a query on `table`; an SQLite failure becomes a JournalFormatError naming the table. */
  private query<T>(table: string, fn: () => T, seq = -1): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof JournalError) throw err;
      throw new JournalFormatError(this.path, `table ${table}`, `cannot be read (${(err as Error).message})`, seq);
    }
  }

  private checkSchema(): void {
    for (const [table, cols] of Object.entries(TABLES)) {
      const have = this.query(table, () => this.db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as Array<{ name: string }>);
      if (have.length === 0) throw new JournalFormatError(this.path, `table ${table}`, 'missing (not a journal, or not one this engine wrote)');
      const names = new Set(have.map((c) => c.name));
      const missing = cols.filter((c) => !names.has(c));
      if (missing.length > 0) throw new JournalFormatError(this.path, `table ${table}`, `has no column ${missing.join(', ')}`);
    }
  }

  private readMeta(): JournalMeta {
    const rows = this.query('meta', () => this.db.prepare('SELECT key, value FROM meta').all() as Array<{ key: unknown; value: unknown }>);
    const meta: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const r of rows) {
      if (typeof r.key !== 'string') throw new JournalFormatError(this.path, 'table meta', `a key is not text (${typeof r.key})`);
      if (typeof r.value !== 'string') throw new JournalFormatError(this.path, `meta.${r.key}`, 'is not JSON text');
      try {
        meta[r.key] = JSON.parse(r.value);
      } catch {
        throw new JournalFormatError(this.path, `meta.${r.key}`, 'is not JSON');
      }
    }
    if (meta.formatVersion !== FORMAT_VERSION) {
      throw new JournalError(this.path, -1, `unknown journal format version ${JSON.stringify(meta.formatVersion)} (this engine reads version ${FORMAT_VERSION})`);
    }
    return validateMeta(this.path, { ...meta });
  }

  /** Sequence number after the last one stored in SQLite (0 when none); not validated beyond its type. */
  private sqliteEnd(): number {
    const row = this.query('events', () => this.db.prepare('SELECT first_seq, count FROM events ORDER BY first_seq DESC LIMIT 1').get() as { first_seq: unknown; count: unknown } | undefined);
    if (row === undefined) return 0;
    const end = Number(row.first_seq) + Number(row.count);
    if (!Number.isSafeInteger(end) || end < 0) throw new JournalFormatError(this.path, 'table events', `the last segment row says first_seq ${String(row.first_seq)}, count ${String(row.count)}`);
    return end;
  }

  /** Reads the crash tail, if any, as a copy: the events SQLite does not hold, and what stops it being read whole. */
  private readTail(): TailInfo {
    const path = this.path + TAIL_SUFFIX;
    let exists = true;
    try {
      statSync(path);
    } catch {
      exists = false;
    }
    if (!exists) return { path, present: false, events: 0, published: 0, baseSeq: null, problem: null };
    const t = readTailFile(path);
    let end: number;
    try {
      end = this.sqliteEnd();
    } catch (err) {
      // The tail cannot be placed after SQLite's events; reading stops at the bad row before it anyway.
      const info: TailInfo = { path, present: true, events: 0, published: t.published, baseSeq: t.baseSeq, problem: `it cannot be placed: ${(err as Error).message}` };
      this.tailError = err as JournalError;
      return info;
    }
    const info: TailInfo = { path, present: true, events: 0, published: t.published, baseSeq: t.baseSeq, problem: t.problem };
    if (t.baseSeq !== null && t.baseSeq > end && (t.published > 0 || t.segment !== null)) {
      info.problem = `it starts at sequence number ${t.baseSeq}, after a gap (SQLite ends at ${end})${t.problem ? `; ${t.problem}` : ''}`;
      this.tailError = new JournalTailError(this.path, path, end, info.problem);
      return info;
    }
    const readable = t.segment === null ? null : segmentFrom(t.segment, end);
    this.tailSegment = readable;
    info.events = readable?.count ?? 0;
    if (t.problem !== null) {
      const firstBad = t.segment === null ? (t.baseSeq ?? end) : t.segment.firstSeq + t.segment.count;
      this.tailError = new JournalTailError(this.path, path, Math.max(end, firstBad), t.problem);
    }
    return info;
  }

  /**
   * Segments in order, starting with the one holding `fromSeq`. Throws JournalError at
   * the first segment that is missing, corrupt or out of sequence; every segment yielded
   * before it is sound.
   */
  *segments(fromSeq = 0): Generator<Segment> {
    let expected = 0;
    // Find the segment holding fromSeq (segments are few: walk from the start index).
    if (fromSeq > 0) {
      const row = this.query('events', () => this.db.prepare('SELECT first_seq FROM events WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1').get(fromSeq) as
        | { first_seq: number }
        | undefined);
      expected = row ? row.first_seq : 0;
    }
    for (;;) {
      let row: SegmentRow | undefined;
      try {
        row = this.nextSegment.get(expected) as SegmentRow | undefined;
      } catch (err) {
        throw new JournalError(this.path, expected, `the events table cannot be read (${(err as Error).message})`);
      }
      if (row === undefined) break;
      if (!Number.isSafeInteger(row.first_seq) || !Number.isSafeInteger(row.count) || row.count <= 0 || !Buffer.isBuffer(row.data) || typeof row.crc !== 'number') {
        throw new JournalFormatError(this.path, 'table events', `the row of segment ${String(row.segment)} has values of the wrong type`, expected);
      }
      if (row.first_seq !== expected) {
        throw new JournalError(this.path, expected, `events ${expected}..${row.first_seq - 1} are missing`);
      }
      const blob = new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength);
      if (segmentChecksum(blob) !== row.crc) {
        throw new JournalError(this.path, expected, `segment ${row.segment} fails its checksum (corrupted)`);
      }
      let seg: Segment;
      try {
        seg = decodeSegment(blob);
      } catch (err) {
        throw new JournalError(this.path, expected, `segment ${row.segment} does not decode: ${(err as Error).message}`);
      }
      if (seg.firstSeq !== row.first_seq || seg.count !== row.count) {
        throw new JournalError(this.path, expected, `segment ${row.segment} says events ${seg.firstSeq}+${seg.count}, its row says ${row.first_seq}+${row.count}`);
      }
      yield seg;
      expected += seg.count;
    }
    // The crash tail: its events after SQLite's, then what stops it being read whole.
    const tail = this.tailSegment;
    if (tail !== null && tail.firstSeq === expected) {
      const part = segmentFrom(tail, fromSeq);
      if (part !== null) yield part;
      expected += tail.count;
    }
    if (this.tailError !== null) throw this.tailError;
  }

  /** Every record as an object, in order (small journals, tests and tools only). */
  *records(fromSeq = 0, toSeq = Infinity): Generator<EventRecord> {
    for (const seg of this.segments(fromSeq)) {
      for (let i = 0; i < seg.count; i++) {
        const seq = seg.firstSeq + i;
        if (seq < fromSeq) continue;
        if (seq > toSeq) return;
        yield recordOf(seg, i);
      }
      if (seg.firstSeq + seg.count > toSeq) return; // do not read (or fail on) segments past the range
    }
  }

  /**
   * Every readable event, past the damage (for salvage): the sound segments of SQLite in
   * order, then the tail's readable events, each yielded as a segment, and every range that
   * cannot be read as `{ from, to, reason }` (events from..to-1; `to` null when how many is
   * unknown). Overlaps are cut so no sequence number is yielded twice. Never throws a
   * JournalError for damage; the journal is not changed.
   */
  *scan(): Generator<{ segment: Segment; fromTail: boolean } | { from: number; to: number | null; reason: string }> {
    let expected = 0;
    /** Why the rows since `expected` could not be taken (their extent shows at the next sound row). */
    let pending: string | null = null;
    const rows = this.db.prepare('SELECT segment, first_seq, count, crc, data FROM events ORDER BY first_seq');
    const it = rows.iterate() as IterableIterator<SegmentRow>;
    try {
      for (;;) {
        let next: IteratorResult<SegmentRow>;
        try {
          next = it.next();
        } catch (err) {
          pending = `the rest of the events table cannot be read (${(err as Error).message})`;
          break;
        }
        if (next.done) break;
        const row = next.value;
        const typed = Number.isSafeInteger(row.first_seq) && Number.isSafeInteger(row.count) && row.count > 0 && row.first_seq >= 0 && Buffer.isBuffer(row.data) && typeof row.crc === 'number';
        if (!typed) {
          pending ??= `the row of segment ${String(row.segment)} has values of the wrong type`;
          continue;
        }
        const rowEnd = row.first_seq + row.count;
        if (rowEnd <= expected) continue; // wholly a repeat of events already taken
        if (row.first_seq > expected) yield { from: expected, to: row.first_seq, reason: pending ?? 'missing from the events table' };
        pending = null;
        const blob = new Uint8Array(row.data.buffer, row.data.byteOffset, row.data.byteLength);
        let seg: Segment | null = null;
        let reason = '';
        if (segmentChecksum(blob) !== row.crc) reason = `segment ${row.segment} fails its checksum`;
        else {
          try {
            seg = decodeSegment(blob);
            if (seg.firstSeq !== row.first_seq || seg.count !== row.count) {
              reason = `segment ${row.segment} says events ${seg.firstSeq}+${seg.count}, its row says ${row.first_seq}+${row.count}`;
              seg = null;
            }
          } catch (err) {
            reason = `segment ${row.segment} does not decode: ${(err as Error).message}`;
          }
        }
        const from = Math.max(expected, row.first_seq);
        if (seg === null) yield { from, to: rowEnd, reason };
        else {
          const part = segmentFrom(seg, from);
          if (part !== null) yield { segment: part, fromTail: false };
        }
        expected = rowEnd;
      }
    } finally {
      it.return?.(); // frees the statement, so the reader can close
    }
    if (pending !== null) {
      // Rows of unknown extent at the end of SQLite: they reach the tail's first event, if it says where that is.
      const base = this.tail.present ? this.tail.baseSeq : null;
      if (base === null || base <= expected) {
        yield { from: expected, to: null, reason: pending };
        return;
      }
      yield { from: expected, to: base, reason: pending };
      expected = base;
    }
    const t = this.tail;
    if (!t.present) return;
    const read = readTailFile(t.path);
    if (read.baseSeq !== null && read.baseSeq > expected && read.published > 0) yield { from: expected, to: read.baseSeq, reason: 'missing between SQLite and the crash tail' };
    if (read.segment !== null) {
      const part = segmentFrom(read.segment, expected);
      if (part !== null) {
        yield { segment: part, fromTail: true };
        expected = part.firstSeq + part.count;
      }
    }
    if (read.problem !== null) {
      const from = Math.max(expected, read.segment === null ? (read.baseSeq ?? expected) : read.segment.firstSeq + read.segment.count);
      const claimedEnd = read.baseSeq === null ? null : read.baseSeq + read.published;
      // A header that can be read and whose events SQLite already holds loses nothing.
      if (claimedEnd === null || claimedEnd > from) yield { from, to: claimedEnd, reason: `the crash tail is damaged: ${read.problem}` };
    }
  }

  /**
   * How much of the journal can be read: the events before the first bad segment, and
   * the error that stopped the reading (null when everything is sound).
   */
  readablePrefix(): { events: number; error: JournalError | null } {
    let events = 0;
    try {
      for (const seg of this.segments()) events = seg.firstSeq + seg.count;
    } catch (err) {
      if (err instanceof JournalError) return { events, error: err };
      throw err;
    }
    return { events, error: null };
  }

  /** Number of events stored (from the segment rows; not validated). */
  eventCount(): number {
    return this.sqliteEnd() + (this.tailSegment?.count ?? 0);
  }

  /** Segments (ids) that hold at least one event of `kind`, with their counts. */
  segmentsWithKind(kind: number): Array<{ segment: number; count: number }> {
    return this.query('segment_kinds', () => this.db.prepare('SELECT segment, count FROM segment_kinds WHERE kind = ? ORDER BY segment').all(kind) as Array<{ segment: number; count: number }>);
  }

  /** Total events of a kind, from the index (no segment is decoded). */
  countOfKind(kind: number): number {
    const r = this.query('segment_kinds', () => this.db.prepare('SELECT COALESCE(SUM(count), 0) AS n FROM segment_kinds WHERE kind = ?').get(kind) as { n: unknown });
    let n = Number(r.n) || 0;
    const tail = this.tailSegment;
    if (tail !== null) for (let i = 0; i < tail.count; i++) if (tail.kind[i] === kind) n++;
    return n;
  }

  /** The latest snapshot taken at or before `seq` (state before event `seq`), or null. */
  snapshotAtOrBefore(seq: number): { seq: number; state: unknown } | null {
    const row = this.query('snapshots', () => this.db.prepare('SELECT seq, state FROM snapshots WHERE seq <= ? ORDER BY seq DESC LIMIT 1').get(seq) as
      | { seq: number; state: Buffer }
      | undefined, seq);
    if (!row) return null;
    if (!Number.isSafeInteger(row.seq) || !Buffer.isBuffer(row.state)) throw new JournalFormatError(this.path, 'table snapshots', 'a row has values of the wrong type', seq);
    try {
      return { seq: row.seq, state: unpack(row.state) };
    } catch (err) {
      throw new JournalError(this.path, row.seq, `snapshot does not decode (${(err as Error).message})`);
    }
  }

  /**
   * Closes the connection. A read-only SQLite connection to a WAL journal creates an empty
   * `-wal` and a `-shm` (its index of the WAL) when they are missing, and cannot remove them
   * at close; the reader removes those it created, when the `-wal` is still empty (no writer
   * ever reopens an existing journal: JournalWriter.create refuses one, or replaces it whole).
   */
  close(): void {
    if (this.db === undefined || !this.db.open) return;
    this.db.close();
    if (this.createdSidecars) {
      try {
        if (statSync(this.path + '-wal').size === 0) for (const s of ['-wal', '-shm']) rmSync(this.path + s, { force: true });
      } catch {
        // already gone
      }
    }
  }
}
