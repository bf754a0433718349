import { Packr } from 'msgpackr';
import { crc32 } from 'node:zlib';
import { EventKind, EVENT_KIND_NAMES, assertNever, type EventKindValue, type EventRecord } from '../engine/events.js';

/**
 * A segment: many consecutive events stored as columns, the unit of the journal's
 * `events` table. One row per segment is what lets journaling reach millions of events
 * per second: SQLite sees one blob per tens of thousands of events, and msgpackr encodes
 * typed arrays at memory speed.
 *
 * Columns, one element per event (seq = firstSeq + index):
 *   kind u8, t f64 (ns), cause f64 (seq of the causing input, -1 for inputs),
 *   block i16 (-1: none), offset f64, a f64, b f64, payloadEnd u32 (end of this event's
 *   payload in `payload`; the payload is [payloadEnd[i-1], payloadEnd[i]), empty = none).
 */
export interface SegmentColumns {
  kind: Uint8Array;
  t: Float64Array;
  cause: Float64Array;
  block: Int16Array;
  offset: Float64Array;
  a: Float64Array;
  b: Float64Array;
  payloadEnd: Uint32Array;
  payload: Uint8Array;
}

/** A decoded segment: its first sequence number, its event count and its columns. */
export interface Segment extends SegmentColumns {
  firstSeq: number;
  count: number;
}

/** Format version of a segment blob. */
export const SEGMENT_VERSION = 1;

// Plain structures; typed arrays are msgpackr extensions, copied at memory speed.
const packr = new Packr({ structuredClone: false, useRecords: false, moreTypes: true });

/** Encodes the first `count` events of `cols` as a blob (pure: copies, never aliases). */
export function encodeSegment(firstSeq: number, count: number, cols: SegmentColumns): Uint8Array {
  const payloadBytes = count === 0 ? 0 : cols.payloadEnd[count - 1]!;
  return packr.pack({
    v: SEGMENT_VERSION,
    firstSeq,
    count,
    kind: cols.kind.subarray(0, count),
    t: cols.t.subarray(0, count),
    cause: cols.cause.subarray(0, count),
    block: cols.block.subarray(0, count),
    offset: cols.offset.subarray(0, count),
    a: cols.a.subarray(0, count),
    b: cols.b.subarray(0, count),
    payloadEnd: cols.payloadEnd.subarray(0, count),
    payload: cols.payload.subarray(0, payloadBytes),
  });
}

/** Checksum stored beside each blob: a flipped byte is found before decoding. */
export function segmentChecksum(blob: Uint8Array): number {
  return crc32(blob);
}

/**
 * The role of each event kind in the journal. The switch is exhaustive: a kind added to
 * EventKind without a role here does not compile, so the codec cannot forget it. Pure.
 */
export function kindRole(kind: EventKindValue): 'input' | 'effect' | 'observation' {
  switch (kind) {
    case EventKind.IN_COMMAND:
    case EventKind.IN_PAGE:
    case EventKind.IN_FAULT:
    case EventKind.IN_CHANNEL_BROKEN:
    case EventKind.IN_CHANNEL_CONNECTED:
    case EventKind.IN_EOS:
    case EventKind.IN_RESIZE:
    case EventKind.IN_STREAM_ERROR:
      return 'input';
    case EventKind.FX_STATE:
    case EventKind.FX_REGISTER:
    case EventKind.FX_UNREGISTER:
    case EventKind.FX_HUGEPAGES:
    case EventKind.FX_DISCARD:
    case EventKind.FX_WRITE:
    case EventKind.FX_COPY:
    case EventKind.FX_ZERO:
    case EventKind.FX_WAKE:
    case EventKind.FX_REQUEST:
    case EventKind.FX_RECV_BITMAP:
    case EventKind.FX_RESUME_ACK:
    case EventKind.FX_BLOCKTIME:
    case EventKind.FX_ERROR:
    case EventKind.FX_FAULT_SEEN:
    case EventKind.FX_PROBE:
      return 'effect';
    case EventKind.TR_BLOCKTIME_BEGIN:
    case EventKind.TR_BLOCKTIME_END:
    case EventKind.TR_NOTE:
    case EventKind.TAP_CONN_OPEN:
    case EventKind.TAP_CONN_ROLE:
    case EventKind.TAP_CONN_CLOSE:
    case EventKind.TAP_CONN_ERROR:
    case EventKind.TAP_UNDECODED:
    case EventKind.TAP_PONG:
    case EventKind.TAP_SHUT:
      return 'observation';
    default:
      return assertNever(kind, 'event kind');
  }
}

/** 1 for every byte value that is a known kind: the decoder's per-event check. */
export const KNOWN_KIND = (() => {
  const t = new Uint8Array(256);
  for (const k of Object.keys(EVENT_KIND_NAMES)) if (kindRole(Number(k) as EventKindValue)) t[Number(k)] = 1;
  return t;
})();

/**
 * Decodes a blob; throws a plain Error describing the first inconsistency (the reader
 * wraps it in a JournalError naming the file and sequence number).
 */
export function decodeSegment(blob: Uint8Array): Segment {
  const o = packr.unpack(blob) as Record<string, unknown>;
  if (o === null || typeof o !== 'object') throw new Error('segment blob is not an object');
  if (o.v !== SEGMENT_VERSION) throw new Error(`unknown segment version ${String(o.v)}`);
  const count = o.count;
  const firstSeq = o.firstSeq;
  if (!Number.isSafeInteger(count) || (count as number) < 0) throw new Error(`bad event count ${String(count)}`);
  if (!Number.isSafeInteger(firstSeq) || (firstSeq as number) < 0) throw new Error(`bad first sequence number ${String(firstSeq)}`);
  const n = count as number;
  const col = <T>(name: string, ctor: { new (...args: never[]): T; name: string }): T => {
    const v = o[name];
    if (!(v instanceof ctor) || (v as unknown as { length: number }).length !== (name === 'payload' ? (v as unknown as { length: number }).length : n)) {
      throw new Error(`column ${name} is missing or not ${n} ${ctor.name} elements`);
    }
    return v;
  };
  const seg: Segment = {
    firstSeq: firstSeq as number,
    count: n,
    kind: col('kind', Uint8Array),
    t: col('t', Float64Array),
    cause: col('cause', Float64Array),
    block: col('block', Int16Array),
    offset: col('offset', Float64Array),
    a: col('a', Float64Array),
    b: col('b', Float64Array),
    payloadEnd: col('payloadEnd', Uint32Array),
    payload: col('payload', Uint8Array),
  };
  for (let i = 0; i < n; i++) {
    if (KNOWN_KIND[seg.kind[i]!] !== 1) throw new Error(`event ${seg.firstSeq + i} has unknown kind ${seg.kind[i]}`);
  }
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const e = seg.payloadEnd[i]!;
    if (e < prev || e > seg.payload.length) throw new Error(`payload bounds of event ${seg.firstSeq + i} are inconsistent`);
    prev = e;
  }
  return seg;
}

/** The payload of event `i` of a segment, or null (a view, not a copy). */
export function payloadOf(seg: SegmentColumns, i: number): Uint8Array | null {
  const start = i === 0 ? 0 : seg.payloadEnd[i - 1]!;
  const end = seg.payloadEnd[i]!;
  return end > start ? seg.payload.subarray(start, end) : null;
}

/** Event `i` of a segment as an object (for tests, diffs and small outputs only). */
export function recordOf(seg: Segment, i: number): EventRecord {
  return {
    seq: seg.firstSeq + i,
    kind: seg.kind[i]! as EventKindValue,
    t: seg.t[i]!,
    cause: seg.cause[i]!,
    block: seg.block[i]!,
    offset: seg.offset[i]!,
    a: seg.a[i]!,
    b: seg.b[i]!,
    payload: payloadOf(seg, i),
  };
}
