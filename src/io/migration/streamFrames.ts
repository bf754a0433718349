import { DecodeError } from '../../errors.js';

/**
 * The project's own framing of the migration streams over TCP. Every frame is
 *   u8 kind, u32 length (big-endian), payload
 * and the payloads that QEMU defines travel in QEMU's formats: a COMMAND frame carries a
 * whole QEMU_VM_COMMAND frame (src/engine/wire.ts), a RETURN_PATH frame a return-path
 * message type plus QEMU's payload (REQ_PAGES, REQ_PAGES_ID, RESUME_ACK, and the
 * receive-bitmap blob after the block name, which QEMU's blob does not carry).
 */
export const FrameKind = {
  /** First frame on a connection: u8 channel (0 main, 1 preempt), u8 reconnect (0/1). */
  HELLO: 1,
  /** A QEMU_VM_COMMAND frame. */
  COMMAND: 2,
  /** A target page: u16 block, be48 offset, u8 flags (1 zero), then 4096 bytes unless zero. */
  PAGE: 3,
  /** End of the stream on this channel. */
  EOS: 4,
  /** Destination → source: be16 message type, then the message payload. */
  RETURN_PATH: 5,
  /** Destination → source: be32 pages consumed from this main connection (flow control). */
  ACK: 6,
} as const;

const HEADER = 5;
export const PAGE_HEADER = 9;

/** Frames one payload (pure). */
export function frame(kind: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out[0] = kind;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, HEADER);
  return out;
}

/** A PAGE frame's header (the 4096 data bytes follow unless `zero`); pure. */
export function pageFrameHeader(block: number, offset: number, zero: boolean): Buffer {
  const out = Buffer.allocUnsafe(HEADER + PAGE_HEADER);
  out[0] = FrameKind.PAGE;
  out.writeUInt32BE(PAGE_HEADER + (zero ? 0 : 4096), 1);
  out.writeUInt16BE(block, 5);
  out.writeUIntBE(offset, 7, 6);
  out[13] = zero ? 1 : 0;
  return out;
}

/** A RETURN_PATH frame of one message (pure). */
export function returnPathFrame(type: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + 2 + payload.length);
  out[0] = FrameKind.RETURN_PATH;
  out.writeUInt32BE(2 + payload.length, 1);
  out.writeUInt16BE(type, 5);
  out.set(payload, 7);
  return out;
}

/** A decoded PAGE frame: `data` is a view into the received bytes (valid during the callback). */
export interface PageFrame {
  block: number;
  offset: number;
  zero: boolean;
  data: Uint8Array;
}

/** Decodes a PAGE frame payload (a view, no copy). */
export function decodePage(p: Uint8Array): PageFrame {
  if (p.length !== PAGE_HEADER && p.length !== PAGE_HEADER + 4096) throw new DecodeError('PAGE frame', 0, `length ${p.length} is neither ${PAGE_HEADER} nor ${PAGE_HEADER + 4096}`);
  const b = Buffer.from(p.buffer, p.byteOffset, p.length);
  const zero = b[8] === 1;
  if (zero !== (p.length === PAGE_HEADER)) throw new DecodeError('PAGE frame', 8, 'zero flag does not match the length');
  return { block: b.readUInt16BE(0), offset: b.readUIntBE(2, 6), zero, data: p.subarray(PAGE_HEADER) };
}

/**
 * Splits a byte stream into frames. Chunks may cut frames anywhere; complete frames are
 * delivered in order as views (valid only during the callback), the rest is kept.
 */
export class FrameReader {
  private pending: Buffer | null = null;
  /** Bytes received in total. */
  bytes = 0;

  constructor(
    private readonly onFrame: (kind: number, payload: Uint8Array) => void,
    /** Frames larger than this are a protocol error (a corrupted stream). */
    private readonly maxFrame = 1 << 30,
  ) {}

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let at = 0;
    while (buf.length - at >= HEADER) {
      const len = buf.readUInt32BE(at + 1);
      if (len > this.maxFrame) throw new DecodeError('stream frame', this.bytes - buf.length + at, `frame of ${len} bytes is larger than ${this.maxFrame}`);
      if (buf.length - at < HEADER + len) break;
      this.onFrame(buf[at]!, buf.subarray(at + HEADER, at + HEADER + len));
      at += HEADER + len;
    }
    this.pending = at === buf.length ? null : buf.subarray(at);
    if (this.pending !== null && at > 0) this.pending = Buffer.from(this.pending); // do not pin the whole chunk
    buf = Buffer.alloc(0);
  }
}
