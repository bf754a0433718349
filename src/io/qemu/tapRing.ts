/**
 * How `postcopy tap`'s forwarding threads hand what they forwarded to its recorder thread: a
 * ring of shared memory with one consumer. The writer is native (native/src/relay.cc, TapRing:
 * the relay's threads and this process's control records, serialized by a mutex, publish with
 * an atomic store of the write position). A read costs a forwarding thread one copy into the
 * ring and that store — no message, no allocation, no answer to wait for. The ring's size
 * bounds how far the recorder may fall behind: a record that does not fit is refused, and the
 * relay then stops handing over that direction (TAP_UNDECODED) while forwarding goes on.
 *
 * Layout: control words (write and read positions, counting bytes since the start modulo
 * 2^32; the ring's size is a power of two), then the ring. A record: a 32-byte header
 * (type, connection id, direction, payload length, time as f64, a number as f64), then its
 * payload, padded to 8 bytes; a record may wrap around the end of the ring.
 */
import type { DirectionValue } from './tapRecorder.js';

/** Control words (Int32Array indexes). */
const WRITE = 0;
const READ = 1;
const CONTROL_BYTES = 64;
const HEADER = 32;

export const RecordType = { OPEN: 1, DATA: 2, GAP: 3, CLOSE: 4, ERROR: 5, FINISH: 6 } as const;
export type RecordTypeValue = (typeof RecordType)[keyof typeof RecordType];

export interface RingRecord {
  type: RecordTypeValue;
  id: number;
  dir: DirectionValue;
  t: number;
  /** CLOSE: bytes that way; GAP: the byte from which nothing is handed over. */
  value: number;
  /** DATA: the bytes, valid until `consumed()`; OPEN/ERROR/GAP: UTF-8 text. */
  payload: Uint8Array;
}

const fromUtf8 = new TextDecoder();

/** The shared memory of a ring of `bytes` (rounded up to a power of two). */
export function createRing(bytes: number): SharedArrayBuffer {
  let size = 1 << 16;
  while (size < bytes) size *= 2;
  return new SharedArrayBuffer(CONTROL_BYTES + size);
}

abstract class RingSide {
  protected readonly control: Int32Array;
  protected readonly data: Uint8Array;
  protected readonly view: DataView;
  protected readonly size: number;
  constructor(sab: SharedArrayBuffer) {
    this.control = new Int32Array(sab, 0, CONTROL_BYTES / 4);
    this.size = sab.byteLength - CONTROL_BYTES;
    this.data = new Uint8Array(sab, CONTROL_BYTES, this.size);
    this.view = new DataView(sab, CONTROL_BYTES, this.size);
  }
}

/** The recorder thread's side. */
export class RingReader extends RingSide {
  private pos = 0;

  /** Waits (at most `timeoutMs`) until there is something to read. */
  wait(timeoutMs: number): void {
    const w = Atomics.load(this.control, WRITE);
    if ((w >>> 0) !== this.pos >>> 0) return;
    Atomics.wait(this.control, WRITE, w, timeoutMs);
  }

  /** Reads every record written so far, in order; each record's payload is valid during `take` only. */
  drain(take: (r: RingRecord) => void): number {
    const end = Atomics.load(this.control, WRITE) >>> 0;
    let n = 0;
    while (this.pos >>> 0 !== end) {
      const at = this.pos & (this.size - 1);
      const header = this.read(at, HEADER, true);
      const hv = new DataView(header.buffer, header.byteOffset, HEADER);
      const length = hv.getUint32(12, true);
      const payload = this.read((at + HEADER) & (this.size - 1), length, false);
      take({ type: hv.getUint32(0, true) as RecordTypeValue, id: hv.getUint32(4, true), dir: hv.getUint32(8, true) as DirectionValue, t: hv.getFloat64(16, true), value: hv.getFloat64(24, true), payload });
      this.pos = (this.pos + HEADER + ((length + 7) & ~7)) | 0;
      // The writer may use the space as soon as each record is done with.
      Atomics.store(this.control, READ, this.pos);
      n++;
    }
    return n;
  }

  /** `length` bytes at `at`: a view when they lie in one piece, else a copy. */
  private read(at: number, length: number, copyAlways: boolean): Uint8Array {
    if (at + length <= this.size && !copyAlways) return this.data.subarray(at, at + length);
    const out = new Uint8Array(length);
    const first = Math.min(length, this.size - at);
    out.set(this.data.subarray(at, at + first));
    if (first < length) out.set(this.data.subarray(0, length - first), first);
    return out;
  }
}

/** Pure: the text payload of an OPEN, ERROR or GAP record. */
export function textOf(payload: Uint8Array): string {
  return fromUtf8.decode(payload);
}
