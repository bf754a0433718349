/**
 * What the two destinations that read QEMU's wire share: `postcopy receive` (a QEMU source,
 * qemuReceiver.ts) and the destination process of our own `postcopy migrate`
 * (migration/migrationDestination.ts). Both decode with src/engine/qemuWire and feed the
 * same `Destination` engine; this file is the feeding (which main-stream item is which
 * engine command) and the return path as QEMU reads it (frames, and RECV_BITMAP answered
 * only when the source asks for the block).
 */
import type { Socket } from 'node:net';
import { MigCommand, RpMessage } from '../../engine/constants.js';
import type { ReturnPath } from '../../engine/destination.js';
import type { MainItem } from '../../engine/qemuWire/index.js';
import { decodeRecvBitmapMessage } from '../../engine/receiveBitmap.js';
import { encodeAdvise, encodeRamDiscard } from '../../engine/wire.js';

const EMPTY = new Uint8Array(0);

/** The first byte of a resumed main connection: a COMMAND (RECV_BITMAP), where a first connection has "QEVM". */
export const RESUMED_MAIN_FIRST_BYTE = 0x08;

export function be32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}

/** An engine command: what `Destination.command` takes. */
export interface EngineCommand {
  command: number;
  payload: Uint8Array;
}

/**
 * The engine command a main-stream item stands for, or null for the items that are not
 * commands to the engine: framing (header, sections, footers, EOS), configuration,
 * MEM_SIZE, pages, the device state, RECV_BITMAP requests (answered from what the engine
 * decided at the reconnection, see ReturnPathSender) and EOF.
 */
export function engineCommandOf(item: MainItem): EngineCommand | null {
  switch (item.kind) {
    case 'open-return-path':
      return { command: MigCommand.OPEN_RETURN_PATH, payload: EMPTY };
    case 'ping':
      return { command: MigCommand.PING, payload: be32Bytes(item.value) };
    case 'advise':
      return { command: MigCommand.POSTCOPY_ADVISE, payload: encodeAdvise(item.advise) };
    case 'ram-discard':
      return { command: MigCommand.POSTCOPY_RAM_DISCARD, payload: encodeRamDiscard(item.discard) };
    case 'packaged':
      return { command: MigCommand.PACKAGED, payload: be32Bytes(item.length) };
    case 'listen':
      return { command: MigCommand.POSTCOPY_LISTEN, payload: EMPTY };
    case 'run':
      return { command: MigCommand.POSTCOPY_RUN, payload: EMPTY };
    case 'postcopy-resume':
      return { command: MigCommand.POSTCOPY_RESUME, payload: EMPTY };
    case 'header':
    case 'configuration':
    case 'section-start':
    case 'section-full':
    case 'section-part':
    case 'section-end':
    case 'section-footer':
    case 'mem-size':
    case 'page':
    case 'zero-page':
    case 'eos':
    case 'device-state':
    case 'recv-bitmap-request':
    case 'switchover-start':
    case 'eof':
      return null;
  }
}

/** A return-path frame as QEMU reads it: be16 type, be16 length, payload. */
export function returnPathFrame(type: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt16BE(type, 0);
  out.writeUInt16BE(payload.length, 2);
  out.set(payload, 4);
  return out;
}

/**
 * RECV_BITMAP from the engine's message (block name, then blob): the frame holds the block
 * name only, the blob (be64 N, bitmap, end mark) follows it outside the frame.
 */
export function recvBitmapFrame(message: Uint8Array): Buffer {
  const { blob } = decodeRecvBitmapMessage(message);
  const nameBytes = message.length - blob.length;
  const out = Buffer.allocUnsafe(4 + message.length);
  out.writeUInt16BE(RpMessage.RECV_BITMAP, 0);
  out.writeUInt16BE(nameBytes, 2);
  out.set(message, 4);
  return out;
}

/**
 * The engine's return path onto the current main connection, in QEMU's format. The
 * receive bitmaps the engine decides when a resumed main connection arrives are kept and
 * each goes out when the source asks for its block (RECV_BITMAP command), once.
 */
export class ReturnPathSender implements ReturnPath {
  /** REQ_PAGES / REQ_PAGES_ID written (re-sends after a resume included). */
  requests = 0;
  private readonly bitmaps = new Map<string, Buffer>();

  /** `socket()`: the current main connection, or null when there is none. */
  constructor(private readonly socket: () => Socket | null | undefined) {}

  send(type: number, payload: Uint8Array): boolean {
    if (type === RpMessage.RECV_BITMAP) {
      this.bitmaps.set(decodeRecvBitmapMessage(payload).blockName, recvBitmapFrame(payload));
      return true;
    }
    const sock = this.socket();
    if (!sock || sock.destroyed || !sock.writable) return false;
    sock.write(returnPathFrame(type, payload));
    if (type === RpMessage.REQ_PAGES || type === RpMessage.REQ_PAGES_ID) this.requests++;
    return true;
  }

  /** Receive bitmaps decided and not asked for yet. */
  get bitmapsReady(): number {
    return this.bitmaps.size;
  }

  /** A new resumed connection: the bitmaps of an earlier one are stale. */
  clearBitmaps(): void {
    this.bitmaps.clear();
  }

  /** Answers the source's RECV_BITMAP for `blockName`; false when there is none to send (unknown block, asked twice). */
  answerBitmapRequest(blockName: string): boolean {
    const frame = this.bitmaps.get(blockName);
    this.bitmaps.delete(blockName);
    const sock = this.socket();
    if (frame === undefined || !sock || sock.destroyed) return false;
    sock.write(frame);
    return true;
  }

  /** SHUT (0: fine): the destination is done; the caller ends the connection after it. */
  shut(status: number): boolean {
    const sock = this.socket();
    if (!sock || sock.destroyed || !sock.writable) return false;
    sock.write(returnPathFrame(RpMessage.SHUT, be32Bytes(status)));
    return true;
  }
}
