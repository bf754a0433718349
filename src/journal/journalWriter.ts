import Database from 'better-sqlite3';
import { existsSync, rmSync } from 'node:fs';
import { pack } from 'msgpackr';
import { isInput, type EventKindValue, type RecordSink } from '../engine/events.js';
import { JournalError } from '../errors.js';
import { FORMAT_VERSION, SCHEMA, TAIL_SUFFIX } from './schema.js';
import { encodeSegment, segmentChecksum, type SegmentColumns } from './segment.js';
import { TailBuffer, tailBytes } from './tailBuffer.js';
import { mapTailFile, releaseTailFile } from './tailFile.js';
import type { JournalMeta } from './meta.js';

export interface JournalWriterOptions {
  /** Events per segment (one SQLite row). */
  segmentEvents?: number;
  /** Payload bytes per segment before an early flush. */
  segmentPayloadBytes?: number;
  /** Take an engine snapshot every this many events (at the next input). 0: never. */
  snapshotEvery?: number;
  /** Keep the unflushed tail in a file mapping that survives SIGKILL (default true). */
  crashSafe?: boolean;
  /** Replace an existing journal at the path. */
  overwrite?: boolean;
  /**
   * Let SQLite checkpoint its WAL on its own (default true). False keeps every commit an
   * append — no 10–20 ms checkpoint lands in the middle of a migration — and `close()`
   * checkpoints once; the WAL grows to the journal's size meanwhile.
   */
  autoCheckpoint?: boolean;
}

/**
 * Writes a journal: a RecordSink that appends into the crash-surviving tail and commits
 * whole segments to SQLite (group commit), so the engine never waits on the disk per
 * event. Call `flush()` at quiet moments (the CLI does it on a timer) and `close()` at
 * the end.
 */
export class JournalWriter implements RecordSink {
  readonly path: string;
  readonly crashSafe: boolean;
  private readonly db: Database.Database;
  private readonly tail: TailBuffer;
  private readonly cols: SegmentColumns;
  /** The shared mapping behind the tail, released at close. */
  private readonly mapped: Uint8Array | null;
  private readonly capacity: number;
  private readonly payloadCapacity: number;
  private count = 0;
  private payloadUsed = 0;
  private baseSeq = 0;
  private readonly snapshotEvery: number;
  private lastSnapshotSeq = 0;
  private snapshotSource: (() => unknown) | null = null;
  private readonly insertSegment: Database.Statement;
  private readonly insertKind: Database.Statement;
  private readonly insertBlock: Database.Statement;
  private readonly insertSnapshot: Database.Statement;
  private readonly kindCounts = new Uint32Array(256);
  private closed = false;
  /** Segments committed to SQLite. */
  segments = 0;

  private constructor(path: string, meta: JournalMeta, opts: JournalWriterOptions) {
    this.path = path;
    this.capacity = opts.segmentEvents ?? 65536;
    this.payloadCapacity = opts.segmentPayloadBytes ?? 4 * 2 ** 20;
    this.snapshotEvery = opts.snapshotEvery ?? 100_000;
    if (existsSync(path)) {
      if (!opts.overwrite) throw new JournalError(path, -1, 'a journal already exists at this path (choose another path or overwrite it)');
      for (const suffix of ['', '-wal', '-shm', TAIL_SUFFIX]) rmSync(path + suffix, { force: true });
    }
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    if (opts.autoCheckpoint === false) this.db.pragma('wal_autocheckpoint = 0');
    this.db.exec(SCHEMA);
    const putMeta = this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
    this.db.transaction(() => {
      for (const [k, v] of Object.entries({ ...meta, formatVersion: FORMAT_VERSION })) putMeta.run(k, JSON.stringify(v));
    })();
    this.insertSegment = this.db.prepare(
      'INSERT INTO events (segment, first_seq, count, t_first, t_last, crc, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.insertKind = this.db.prepare('INSERT INTO segment_kinds (kind, segment, count) VALUES (?, ?, ?)');
    this.insertBlock = this.db.prepare('INSERT INTO segment_blocks (block, segment, min_offset, max_offset) VALUES (?, ?, ?, ?)');
    this.insertSnapshot = this.db.prepare('INSERT OR REPLACE INTO snapshots (seq, state) VALUES (?, ?)');
    const bytes = tailBytes(this.capacity, this.payloadCapacity);
    const mapped = opts.crashSafe === false ? null : mapTailFile(path + TAIL_SUFFIX, bytes);
    this.crashSafe = mapped !== null;
    this.mapped = mapped;
    const memory = mapped ?? new Uint8Array(bytes);
    this.tail = TailBuffer.create(memory, this.capacity, this.payloadCapacity, 0);
    this.cols = this.tail.cols;
  }

  /** Creates a journal file with its meta. */
  static create(path: string, meta: JournalMeta, opts: JournalWriterOptions = {}): JournalWriter {
    try {
      return new JournalWriter(path, meta, opts);
    } catch (err) {
      if (err instanceof JournalError) throw err;
      throw new JournalError(path, -1, `cannot create the journal: ${(err as Error).message}`);
    }
  }

  /** Replaces meta values (e.g. vCPU thread ids known only once the guest starts). */
  updateMeta(values: Partial<JournalMeta>): void {
    const put = this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
    this.db.transaction(() => {
      for (const [k, v] of Object.entries(values)) if (k !== 'formatVersion') put.run(k, JSON.stringify(v));
    })();
  }

  /** Where snapshots come from (the engine); asked at an input boundary every `snapshotEvery` events. */
  setSnapshotSource(fn: () => unknown): void {
    this.snapshotSource = fn;
  }

  /** Sequence number the next event will get. */
  get nextSeq(): number {
    return this.baseSeq + this.count;
  }

  append(
    kind: EventKindValue,
    t: number,
    cause: number,
    block: number,
    offset: number,
    a: number,
    b: number,
    payload: Uint8Array | null,
  ): number {
    if (this.closed) throw new JournalError(this.path, this.nextSeq, 'the journal is closed');
    let n = this.count;
    const plen = payload === null ? 0 : payload.length;
    if (n === this.capacity || this.payloadUsed + plen > this.payloadCapacity) {
      this.flush();
      n = 0;
      if (plen > this.payloadCapacity) return this.appendOversized(kind, t, cause, block, offset, a, b, payload!);
    }
    const seq = this.baseSeq + n;
    if (this.snapshotSource !== null && this.snapshotEvery > 0 && seq - this.lastSnapshotSeq >= this.snapshotEvery && isInput(kind)) {
      this.snapshot(seq);
    }
    const c = this.cols;
    c.kind[n] = kind;
    c.t[n] = t;
    c.cause[n] = cause;
    c.block[n] = block;
    c.offset[n] = offset;
    c.a[n] = a;
    c.b[n] = b;
    if (plen !== 0) {
      c.payload.set(payload!, this.payloadUsed);
      this.payloadUsed += plen;
    }
    c.payloadEnd[n] = this.payloadUsed;
    this.count = n + 1;
    this.tail.publish(n + 1);
    return seq;
  }

  /** A payload larger than a whole segment's payload area: committed at once as its own segment. */
  private appendOversized(kind: EventKindValue, t: number, cause: number, block: number, offset: number, a: number, b: number, payload: Uint8Array): number {
    const seq = this.baseSeq;
    const one: SegmentColumns = {
      kind: Uint8Array.of(kind),
      t: Float64Array.of(t),
      cause: Float64Array.of(cause),
      block: Int16Array.of(block),
      offset: Float64Array.of(offset),
      a: Float64Array.of(a),
      b: Float64Array.of(b),
      payloadEnd: Uint32Array.of(payload.length),
      payload,
    };
    this.commit(seq, 1, one);
    this.baseSeq = seq + 1;
    this.tail.reset(this.baseSeq);
    return seq;
  }

  /** Stores the engine's state as of just before event `seq`. */
  snapshot(seq: number): void {
    if (this.snapshotSource === null) return;
    this.insertSnapshot.run(seq, pack(this.snapshotSource()));
    this.lastSnapshotSeq = seq;
  }

  /** Commits the tail as one segment (one transaction) and empties it. */
  flush(): void {
    if (this.closed) throw new JournalError(this.path, this.nextSeq, 'the journal is closed');
    const n = this.count;
    if (n === 0) return;
    this.commit(this.baseSeq, n, this.cols);
    this.baseSeq += n;
    this.count = 0;
    this.payloadUsed = 0;
    // Only after SQLite has the events: after a crash in between, the reader skips the tail events SQLite has.
    this.tail.reset(this.baseSeq);
  }

  private commit(firstSeq: number, n: number, cols: SegmentColumns): void {
    const blob = encodeSegment(firstSeq, n, cols);
    const segment = this.segments;
    const counts = this.kindCounts;
    counts.fill(0);
    const blockMin = new Map<number, number>();
    const blockMax = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      counts[cols.kind[i]!]!++;
      const blk = cols.block[i]!;
      if (blk >= 0) {
        const off = cols.offset[i]!;
        const lo = blockMin.get(blk);
        if (lo === undefined || off < lo) blockMin.set(blk, off);
        const hi = blockMax.get(blk);
        if (hi === undefined || off > hi) blockMax.set(blk, off);
      }
    }
    this.db.transaction(() => {
      this.insertSegment.run(segment, firstSeq, n, cols.t[0]!, cols.t[n - 1]!, segmentChecksum(blob), blob);
      for (let k = 0; k < 256; k++) if (counts[k]! > 0) this.insertKind.run(k, segment, counts[k]!);
      for (const [blk, lo] of blockMin) this.insertBlock.run(blk, segment, lo, blockMax.get(blk)!);
    })();
    this.segments++;
  }

  /** Flushes, checkpoints the WAL and closes; the tail file is removed (everything is in SQLite). */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
    if (this.mapped !== null) releaseTailFile(this.mapped); // everything is in SQLite; no view of it is used again
    rmSync(this.path + TAIL_SUFFIX, { force: true });
  }
}
