import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { fileKind } from '../regularFile.js';
import { KNOWN_KIND, type Segment } from './segment.js';
import { TAIL_MAGIC, TAIL_VERSION, tailBytes, tailLayout } from './tailBuffer.js';

/** Largest capacities a tail header may claim (far above the writer's defaults, 65 536 events and 4 MiB). */
const MAX_TAIL_EVENTS = 1 << 22;
const MAX_TAIL_PAYLOAD = 2 ** 30;
const HEADER_BYTES = 64;

/** What a crash tail holds, read without changing it. */
export interface TailRead {
  /** Events readable from the tail, whole and in order (firstSeq = the tail's base), or null. */
  segment: Segment | null;
  /** Events the header says it holds (published), when the header could be read. */
  published: number;
  /** The tail's first sequence number, when the header could be read. */
  baseSeq: number | null;
  /** Why the tail cannot be read whole (null: every published event is readable). */
  problem: string | null;
}

/**
 * Reads a crash tail file (`<journal>-tail`) as a copy: no mapping, no write, the file is
 * left byte for byte as it was. A file of zero bytes or whose header is all zeros was
 * never formatted (the writer died between creating and formatting it): it holds no
 * events and is no problem. Anything else must be a whole tail: its magic, version and
 * capacities, a size equal to what the capacities need, a count within capacity, a whole
 * base sequence number, then every published event of a known kind with consistent
 * payload bounds. The events before the first bad one are returned.
 */
export function readTailFile(tailPath: string): TailRead {
  const none = (problem: string | null, published = 0, baseSeq: number | null = null): TailRead => ({ segment: null, published, baseSeq, problem });
  const pre = statSync(tailPath);
  if (!pre.isFile()) return none(`it is ${fileKind(pre)}, not a regular file`);
  // O_NONBLOCK: should it have been swapped for a FIFO since, opening it does not wait for a writer.
  const fd = openSync(tailPath, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return none(`it is ${fileKind(st)}, not a regular file`);
    const size = st.size;
    if (size === 0) return none(null);
    const header = new Uint8Array(new ArrayBuffer(HEADER_BYTES));
    const got = readSync(fd, header, 0, HEADER_BYTES, 0);
    if (got < HEADER_BYTES) return none(`it is ${size} bytes, shorter than its ${HEADER_BYTES}-byte header`);
    if (header.every((b) => b === 0)) return none(null);
    const h32 = new Uint32Array(header.buffer);
    const h64 = new Float64Array(header.buffer);
    if (h32[0] !== TAIL_MAGIC) return none(`its header does not start with the tail magic (0x${h32[0]!.toString(16)})`);
    if (h32[1] !== TAIL_VERSION) return none(`unknown tail version ${h32[1]} (this engine reads version ${TAIL_VERSION})`);
    const capacity = h32[2]!;
    const payloadCapacity = h32[3]!;
    const published = h32[6]!;
    const baseSeq = h64[2]!;
    if (!Number.isSafeInteger(baseSeq) || baseSeq < 0) return none(`its base sequence number ${baseSeq} is not a whole number >= 0`, published);
    if (capacity === 0 || capacity > MAX_TAIL_EVENTS || payloadCapacity > MAX_TAIL_PAYLOAD) {
      return none(`its header claims a capacity of ${capacity} events and ${payloadCapacity} payload bytes`, published, baseSeq);
    }
    if (published > capacity) return none(`its header says ${published} events, more than its capacity of ${capacity}`, published, baseSeq);
    const need = tailBytes(capacity, payloadCapacity);
    if (size !== need) return none(`it is ${size} bytes, its header (capacity ${capacity} events, ${payloadCapacity} payload bytes) needs ${need}: ${size < need ? 'cut' : 'grown'}`, published, baseSeq);
    // Only the published events' part of each column is read: a header may claim a capacity of
    // millions of events over a sparse file, and a reader must not allocate for what is not there.
    const l = tailLayout(capacity, payloadCapacity);
    const readAt = (offset: number, bytes: number): ArrayBuffer => {
      const buf = new Uint8Array(new ArrayBuffer(bytes));
      let at = 0;
      while (at < bytes) {
        const got = readSync(fd, buf, at, bytes - at, offset + at);
        if (got === 0) throw new Error(`the tail ended at byte ${offset + at} while being read`);
        at += got;
      }
      return buf.buffer;
    };
    const kinds = new Uint8Array(readAt(l.kind, published));
    const ends = new Uint32Array(readAt(l.payloadEnd, published * 4));
    let good = 0;
    let problem: string | null = null;
    let prevEnd = 0;
    for (; good < published; good++) {
      const kind = kinds[good]!;
      if (KNOWN_KIND[kind] !== 1) {
        problem = `event ${baseSeq + good} has unknown kind ${kind}`;
        break;
      }
      const end = ends[good]!;
      if (end < prevEnd || end > payloadCapacity) {
        problem = `the payload bounds of event ${baseSeq + good} are inconsistent`;
        break;
      }
      prevEnd = end;
    }
    const segment: Segment | null =
      good === 0
        ? null
        : {
            firstSeq: baseSeq,
            count: good,
            kind: kinds.slice(0, good),
            t: new Float64Array(readAt(l.t, good * 8)),
            cause: new Float64Array(readAt(l.cause, good * 8)),
            block: new Int16Array(readAt(l.block, good * 2)),
            offset: new Float64Array(readAt(l.offset, good * 8)),
            a: new Float64Array(readAt(l.a, good * 8)),
            b: new Float64Array(readAt(l.b, good * 8)),
            payloadEnd: ends.slice(0, good),
            payload: new Uint8Array(readAt(l.payload, prevEnd)),
          };
    return { segment, published, baseSeq, problem };
  } finally {
    closeSync(fd);
  }
}

/** The events of `seg` from sequence number `from` on (a copy re-based at `from`), or null when none. Pure. */
export function segmentFrom(seg: Segment, from: number): Segment | null {
  const skip = Math.max(0, from - seg.firstSeq);
  const n = seg.count - skip;
  if (n <= 0) return null;
  if (skip === 0) return seg;
  const start = seg.payloadEnd[skip - 1]!;
  const payloadEnd = new Uint32Array(n);
  for (let i = 0; i < n; i++) payloadEnd[i] = seg.payloadEnd[skip + i]! - start;
  return {
    firstSeq: seg.firstSeq + skip,
    count: n,
    kind: seg.kind.slice(skip),
    t: seg.t.slice(skip),
    cause: seg.cause.slice(skip),
    block: seg.block.slice(skip),
    offset: seg.offset.slice(skip),
    a: seg.a.slice(skip),
    b: seg.b.slice(skip),
    payloadEnd,
    payload: seg.payload.slice(start, seg.payloadEnd[seg.count - 1]!),
  };
}
