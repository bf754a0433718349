/**
 * Decoder of the return path (destination -> source, the reverse direction of the main
 * socket): be16 type, be16 length, payload; RECV_BITMAP is followed by its blob outside
 * the frame. Page requests always come out with their block: REQ_PAGES means "the block
 * of the last request", which this decoder remembers.
 */
import { RECV_BITMAP_END_MARK, RpMessage } from '../constants.js';
import { decodeRecvBitmapRequest, decodeReqPages, decodeReqPagesId, decodeResumeAck } from '../wire.js';
import { type ReturnPathItem } from './items.js';
import { be16, be32, hex, StreamDecoder } from './streamDecoder.js';

export interface ReturnPathOptions {
  /** The block of the last request on an earlier connection, if REQ_PAGES may refer to it. */
  lastRequestBlock?: string | null;
  /** Largest RECV_BITMAP blob accepted (it is buffered whole); default 256 MiB (8 TiB of RAM). */
  maxBitmapBytes?: number;
}

const END_MARK_HI = Number(RECV_BITMAP_END_MARK >> 32n);
const END_MARK_LO = Number(RECV_BITMAP_END_MARK & 0xffff_ffffn);
const DEFAULT_MAX_BITMAP = 256 * 1024 * 1024;

const MESSAGE_NAMES: Record<number, string> = {
  1: 'SHUT',
  2: 'PONG',
  3: 'REQ_PAGES_ID',
  4: 'REQ_PAGES',
  5: 'RECV_BITMAP',
  6: 'RESUME_ACK',
  7: 'SWITCHOVER_ACK',
};

export class ReturnPathDecoder extends StreamDecoder<ReturnPathItem> {
  protected readonly streamName = 'return path';
  private lastRequestBlock: string | null;
  private readonly maxBitmapBytes: number;

  constructor(options: ReturnPathOptions = {}) {
    super();
    this.lastRequestBlock = options.lastRequestBlock ?? null;
    this.maxBitmapBytes = options.maxBitmapBytes ?? DEFAULT_MAX_BITMAP;
  }

  /** The block the next REQ_PAGES refers to (null before any REQ_PAGES_ID). */
  get requestBlock(): string | null {
    return this.lastRequestBlock;
  }

  protected parseItem(b: Uint8Array, pos: number, end: number): number {
    if (end - pos < 4) return this.needMore(4);
    const type = be16(b, pos);
    const length = be16(b, pos + 2);
    const name = MESSAGE_NAMES[type];
    if (name === undefined) throw this.fail('unsupported', this.at(pos), `unknown return-path message type ${type} (length ${length})`);
    const fixed = type === RpMessage.SHUT || type === RpMessage.PONG || type === RpMessage.RESUME_ACK ? 4 : type === RpMessage.SWITCHOVER_ACK ? 0 : null;
    if (fixed !== null && length !== fixed) throw this.fail('malformed', this.at(pos + 2), `${name} with payload length ${length}, expected ${fixed}`);
    if (end - pos < 4 + length) return this.needMore(4 + length);
    const offset = this.at(pos);
    const payloadAt = pos + 4;
    const payload = b.subarray(payloadAt, payloadAt + length);
    switch (type) {
      case RpMessage.SHUT:
        this.out.push({ kind: 'shut', offset, status: be32(b, payloadAt) });
        break;
      case RpMessage.PONG:
        this.out.push({ kind: 'pong', offset, value: be32(b, payloadAt) });
        break;
      case RpMessage.REQ_PAGES_ID: {
        const request = this.payload(payloadAt, () => decodeReqPagesId(payload));
        this.lastRequestBlock = request.blockName!;
        this.out.push({ kind: 'page-request', offset, block: request.blockName!, named: true, start: request.start, length: request.length });
        break;
      }
      case RpMessage.REQ_PAGES: {
        const request = this.payload(payloadAt, () => decodeReqPages(payload));
        if (this.lastRequestBlock === null) throw this.fail('malformed', offset, 'REQ_PAGES before any REQ_PAGES_ID named a block');
        this.out.push({ kind: 'page-request', offset, block: this.lastRequestBlock, named: false, start: request.start, length: request.length });
        break;
      }
      case RpMessage.RECV_BITMAP:
        return this.parseRecvBitmap(b, pos, end, payload);
      case RpMessage.RESUME_ACK:
        this.out.push({ kind: 'resume-ack', offset, value: this.payload(payloadAt, () => decodeResumeAck(payload)) });
        break;
      case RpMessage.SWITCHOVER_ACK:
        this.out.push({ kind: 'switchover-ack', offset });
        break;
      default:
        throw new Error(`return-path message ${name} has a name but no case`);
    }
    return payloadAt + length;
  }

  /** RECV_BITMAP frame (block name), then be64 N, N bytes of bitmap, be64 end mark. */
  private parseRecvBitmap(b: Uint8Array, pos: number, end: number, payload: Uint8Array): number {
    const blockName = this.payload(pos + 4, () => decodeRecvBitmapRequest(payload));
    const sizeAt = pos + 4 + payload.length;
    const head = sizeAt - pos;
    if (end - sizeAt < 8) return this.needMore(head + 8);
    const size = this.be64(b, sizeAt, `RECV_BITMAP size of block '${blockName}'`);
    if (size % 8 !== 0 || size > this.maxBitmapBytes) {
      throw this.fail('malformed', this.at(sizeAt), `RECV_BITMAP of block '${blockName}' says ${size} bytes: not whole 64-bit words at most ${this.maxBitmapBytes} bytes`);
    }
    const markAt = sizeAt + 8 + size;
    if (end - markAt < 8) return this.needMore(head + 16 + size);
    const hi = be32(b, markAt);
    const lo = be32(b, markAt + 4);
    if (hi !== END_MARK_HI || lo !== END_MARK_LO) {
      throw this.fail('malformed', this.at(markAt), `RECV_BITMAP of block '${blockName}' ends with ${hex(hi, 8)}${lo.toString(16).padStart(8, '0')}, not the end mark 0x0123456789abcdef`);
    }
    this.out.push({ kind: 'recv-bitmap', offset: this.at(pos), blockName, bitmap: b.subarray(sizeAt + 8, markAt) });
    return markAt + 8;
  }

  protected describePartial(bytes: Uint8Array, offset: number): string {
    const name = bytes.length >= 2 ? (MESSAGE_NAMES[be16(bytes, 0)] ?? 'unknown') : 'a';
    return `${name} message that started at byte ${offset} (${bytes.length} of its bytes arrived)`;
  }
}
