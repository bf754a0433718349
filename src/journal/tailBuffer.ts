import type { SegmentColumns } from './segment.js';

/**
 * The journal's unflushed tail: the segment being filled, laid out in one memory region
 * that is a shared mapping of a file (`<journal>-tail`). Every append writes the event's
 * fields and then publishes the new count in the header, so when the process dies by
 * SIGKILL the page cache still holds every published event, whole. Readers read those
 * events after SQLite's from a copy of the file (tailRead.ts) and never change it;
 * `postcopy salvage` makes a new journal of them.
 *
 * Layout (little-endian, 8-byte aligned):
 *   header 64 bytes: magic u32, version u32, capacity u32, payloadCapacity u32,
 *                    baseSeq f64 @16, count u32 @24
 *   then columns kind, t, cause, block, offset, a, b, payloadEnd, payload.
 */
export const TAIL_MAGIC = 0x5443_4a50; // 'PJCT'
export const TAIL_VERSION = 1;
const HEADER_BYTES = 64;

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Bytes a tail region needs for `capacity` events and `payloadCapacity` payload bytes (pure). */
export function tailBytes(capacity: number, payloadCapacity: number): number {
  return layout(capacity, payloadCapacity).total;
}

/** Byte offset of each column of a tail region, and its total size (pure). */
export function tailLayout(capacity: number, payloadCapacity: number) {
  return layout(capacity, payloadCapacity);
}

function layout(capacity: number, payloadCapacity: number) {
  let at = HEADER_BYTES;
  const place = (bytes: number): number => {
    const here = at;
    at = align8(at + bytes);
    return here;
  };
  const o = {
    kind: place(capacity),
    t: place(capacity * 8),
    cause: place(capacity * 8),
    block: place(capacity * 2),
    offset: place(capacity * 8),
    a: place(capacity * 8),
    b: place(capacity * 8),
    payloadEnd: place(capacity * 4),
    payload: place(payloadCapacity),
    total: 0,
  };
  o.total = at;
  return o;
}

export class TailBuffer {
  readonly cols: SegmentColumns;
  readonly capacity: number;
  readonly payloadCapacity: number;
  private readonly header32: Uint32Array;
  private readonly header64: Float64Array;

  private constructor(readonly memory: Uint8Array, capacity: number, payloadCapacity: number) {
    this.capacity = capacity;
    this.payloadCapacity = payloadCapacity;
    const buf = memory.buffer;
    const base = memory.byteOffset;
    const l = layout(capacity, payloadCapacity);
    if (memory.byteLength < l.total) throw new Error(`tail region of ${memory.byteLength} bytes is smaller than the ${l.total} it needs`);
    this.header32 = new Uint32Array(buf, base, HEADER_BYTES / 4);
    this.header64 = new Float64Array(buf, base, HEADER_BYTES / 8);
    this.cols = {
      kind: new Uint8Array(buf, base + l.kind, capacity),
      t: new Float64Array(buf, base + l.t, capacity),
      cause: new Float64Array(buf, base + l.cause, capacity),
      block: new Int16Array(buf, base + l.block, capacity),
      offset: new Float64Array(buf, base + l.offset, capacity),
      a: new Float64Array(buf, base + l.a, capacity),
      b: new Float64Array(buf, base + l.b, capacity),
      payloadEnd: new Uint32Array(buf, base + l.payloadEnd, capacity),
      payload: new Uint8Array(buf, base + l.payload, payloadCapacity),
    };
  }

  /** Formats `memory` as an empty tail starting at `baseSeq`. */
  static create(memory: Uint8Array, capacity: number, payloadCapacity: number, baseSeq: number): TailBuffer {
    if (memory.byteOffset % 8 !== 0) throw new Error('tail region must be 8-byte aligned');
    const tb = new TailBuffer(memory, capacity, payloadCapacity);
    tb.header32[0] = TAIL_MAGIC;
    tb.header32[1] = TAIL_VERSION;
    tb.header32[2] = capacity;
    tb.header32[3] = payloadCapacity;
    tb.reset(baseSeq);
    return tb;
  }

  /** Reads an existing tail region; null when it holds no valid tail (never formatted). */
  static open(memory: Uint8Array): TailBuffer | null {
    if (memory.byteLength < HEADER_BYTES || memory.byteOffset % 8 !== 0) return null;
    const h = new Uint32Array(memory.buffer, memory.byteOffset, HEADER_BYTES / 4);
    if (h[0] !== TAIL_MAGIC || h[1] !== TAIL_VERSION) return null;
    const capacity = h[2]!;
    const payloadCapacity = h[3]!;
    if (memory.byteLength < tailBytes(capacity, payloadCapacity)) return null;
    const tb = new TailBuffer(memory, capacity, payloadCapacity);
    if (!(tb.count <= capacity) || !Number.isSafeInteger(tb.baseSeq) || tb.baseSeq < 0) return null;
    return tb;
  }

  /** Sequence number of the tail's first event. */
  get baseSeq(): number {
    return this.header64[2]!;
  }

  /** Published events. */
  get count(): number {
    return this.header32[6]!;
  }

  /** Publishes `n` events: written last, after every field of event n-1. */
  publish(n: number): void {
    this.header32[6] = n;
  }

  /** Empties the tail; the next event is `baseSeq`. */
  reset(baseSeq: number): void {
    this.header32[6] = 0;
    this.header64[2] = baseSeq;
  }
}
