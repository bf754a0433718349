import Database from 'better-sqlite3';
import { existsSync, rmSync, statSync } from 'node:fs';
import { unpack } from 'msgpackr';
import { JournalError } from '../errors.js';
import { FORMAT_VERSION, TAIL_SUFFIX } from './schema.js';
import { decodeSegment, encodeSegment, recordOf, segmentChecksum, type Segment } from './segment.js';
import type { EventRecord } from '../engine/events.js';
import { TailBuffer } from './tailBuffer.js';
import { mapTailFile, releaseTailFile } from './tailFile.js';
import type { JournalMeta } from './meta.js';

export interface JournalOpenOptions {
  /**
   * Fold a crash-surviving tail left by a killed writer into SQLite (default true; needs
   * write access). With false the tail is read but the file is not changed.
   */
  fold?: boolean;
}

interface SegmentRow {
  segment: number;
  first_seq: number;
  count: number;
  crc: number;
  data: Buffer;
}

/**
 * Reads a journal. Opening validates the format version and folds a crash-surviving
 * tail into SQLite; reading validates every segment (sequence continuity, checksum,
 * decoding) and reports the first bad one as a JournalError naming the file and the
 * first sequence number that could not be read. Everything before it stays readable:
 * `readablePrefix()` says how far that is.
 */
export class JournalReader {
  readonly path: string;
  readonly meta: JournalMeta;
  /** Events folded in from a crash-surviving tail at open. */
  readonly foldedEvents: number;
  private readonly db: Database.Database;
  private readonly nextSegment: Database.Statement;
  private tailSegment: Segment | null = null;

  private constructor(path: string, opts: JournalOpenOptions) {
    this.path = path;
    if (!existsSync(path)) throw new JournalError(path, -1, 'no such journal file');
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: true });
      db.pragma('journal_mode'); // touches the header: a non-SQLite file fails here
    } catch (err) {
      throw new JournalError(path, -1, `not a readable journal (${(err as Error).message})`);
    }
    this.db = db;
    this.meta = this.readMeta();
    this.nextSegment = db.prepare('SELECT segment, first_seq, count, crc, data FROM events WHERE first_seq >= ? ORDER BY first_seq LIMIT 1');
    this.foldedEvents = this.foldTail(opts.fold ?? true);
  }

  /** Opens a journal for reading; throws JournalError when it cannot be read at all. */
  static open(path: string, opts: JournalOpenOptions = {}): JournalReader {
    return new JournalReader(path, opts);
  }

  private readMeta(): JournalMeta {
    let rows: Array<{ key: string; value: string }>;
    try {
      rows = this.db.prepare('SELECT key, value FROM meta').all() as Array<{ key: string; value: string }>;
    } catch (err) {
      throw new JournalError(this.path, -1, `not a journal: no readable meta table (${(err as Error).message})`);
    }
    const meta: Record<string, unknown> = {};
    for (const r of rows) {
      try {
        meta[r.key] = JSON.parse(r.value);
      } catch {
        throw new JournalError(this.path, -1, `meta value '${r.key}' is not JSON`);
      }
    }
    if (meta.formatVersion !== FORMAT_VERSION) {
      throw new JournalError(this.path, -1, `unknown journal format version ${JSON.stringify(meta.formatVersion)} (this engine reads version ${FORMAT_VERSION})`);
    }
    for (const k of ['source', 'blocks', 'vcpuTids']) {
      if (!(k in meta)) throw new JournalError(this.path, -1, `meta is missing '${k}'`);
    }
    return meta as unknown as JournalMeta;
  }

  /** Last sequence number stored in SQLite, or -1. */
  private sqliteEnd(): number {
    const row = this.db.prepare('SELECT first_seq, count FROM events ORDER BY first_seq DESC LIMIT 1').get() as
      | { first_seq: number; count: number }
      | undefined;
    return row ? row.first_seq + row.count : 0;
  }

  /** Folds events a killed writer left in its tail file; returns how many. */
  private foldTail(fold: boolean): number {
    const tailPath = this.path + TAIL_SUFFIX;
    if (!existsSync(tailPath)) return 0;
    const size = statSync(tailPath).size;
    const memory = size > 0 ? mapTailFile(tailPath, size) : null;
    try {
      return this.foldFrom(memory, tailPath, fold);
    } finally {
      if (memory !== null) releaseTailFile(memory); // every event was copied out
    }
  }

  private foldFrom(memory: Uint8Array | null, tailPath: string, fold: boolean): number {
    const tail = memory ? TailBuffer.open(memory) : null;
    if (tail === null) {
      if (fold) rmSync(tailPath, { force: true });
      return 0;
    }
    const end = this.sqliteEnd();
    const skip = Math.max(0, end - tail.baseSeq);
    const n = tail.count - skip;
    if (tail.baseSeq > end) {
      throw new JournalError(this.path, end, `the tail file starts at sequence number ${tail.baseSeq}, after a gap`);
    }
    if (n <= 0) {
      if (fold) rmSync(tailPath, { force: true });
      return 0;
    }
    // Re-base the unsaved events as a segment of their own (copying out of the mapping).
    const c = tail.cols;
    const payloadStart = skip === 0 ? 0 : c.payloadEnd[skip - 1]!;
    const payloadEnd = new Uint32Array(n);
    for (let i = 0; i < n; i++) payloadEnd[i] = c.payloadEnd[skip + i]! - payloadStart;
    const seg: Segment = {
      firstSeq: tail.baseSeq + skip,
      count: n,
      kind: c.kind.slice(skip, skip + n),
      t: c.t.slice(skip, skip + n),
      cause: c.cause.slice(skip, skip + n),
      block: c.block.slice(skip, skip + n),
      offset: c.offset.slice(skip, skip + n),
      a: c.a.slice(skip, skip + n),
      b: c.b.slice(skip, skip + n),
      payloadEnd,
      payload: c.payload.slice(payloadStart, payloadStart + (n > 0 ? payloadEnd[n - 1]! : 0)),
    };
    if (!fold) {
      this.tailSegment = seg;
      return n;
    }
    const blob = encodeSegment(seg.firstSeq, n, seg);
    const nextId = (this.db.prepare('SELECT COALESCE(MAX(segment) + 1, 0) AS id FROM events').get() as { id: number }).id;
    const kindCounts = new Map<number, number>();
    for (let i = 0; i < n; i++) kindCounts.set(seg.kind[i]!, (kindCounts.get(seg.kind[i]!) ?? 0) + 1);
    const blocks = new Map<number, [number, number]>();
    for (let i = 0; i < n; i++) {
      const b = seg.block[i]!;
      if (b < 0) continue;
      const r = blocks.get(b);
      const o = seg.offset[i]!;
      if (!r) blocks.set(b, [o, o]);
      else blocks.set(b, [Math.min(r[0], o), Math.max(r[1], o)]);
    }
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO events (segment, first_seq, count, t_first, t_last, crc, data) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(nextId, seg.firstSeq, n, seg.t[0]!, seg.t[n - 1]!, segmentChecksum(blob), blob);
      const ik = this.db.prepare('INSERT INTO segment_kinds (kind, segment, count) VALUES (?, ?, ?)');
      for (const [k, cnt] of kindCounts) ik.run(k, nextId, cnt);
      const ib = this.db.prepare('INSERT INTO segment_blocks (block, segment, min_offset, max_offset) VALUES (?, ?, ?, ?)');
      for (const [b, [lo, hi]] of blocks) ib.run(b, nextId, lo, hi);
    })();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    rmSync(tailPath, { force: true });
    return n;
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
      const row = this.db.prepare('SELECT first_seq FROM events WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1').get(fromSeq) as
        | { first_seq: number }
        | undefined;
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
    if (this.tailSegment && this.tailSegment.firstSeq === expected) yield this.tailSegment;
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
    return this.db.prepare('SELECT segment, count FROM segment_kinds WHERE kind = ? ORDER BY segment').all(kind) as Array<{ segment: number; count: number }>;
  }

  /** Total events of a kind, from the index (no segment is decoded). */
  countOfKind(kind: number): number {
    const r = this.db.prepare('SELECT COALESCE(SUM(count), 0) AS n FROM segment_kinds WHERE kind = ?').get(kind) as { n: number };
    return r.n;
  }

  /** The latest snapshot taken at or before `seq` (state before event `seq`), or null. */
  snapshotAtOrBefore(seq: number): { seq: number; state: unknown } | null {
    const row = this.db.prepare('SELECT seq, state FROM snapshots WHERE seq <= ? ORDER BY seq DESC LIMIT 1').get(seq) as
      | { seq: number; state: Buffer }
      | undefined;
    if (!row) return null;
    try {
      return { seq: row.seq, state: unpack(row.state) };
    } catch (err) {
      throw new JournalError(this.path, row.seq, `snapshot does not decode (${(err as Error).message})`);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
