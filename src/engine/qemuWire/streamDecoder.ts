/**
 * The machinery every QEMU stream decoder shares: bytes in any chunking in, whole items
 * out, byte offsets counted over the whole stream, and the RAM record reader that the
 * main stream and the preempt channel both use.
 *
 * How chunking is handled without copying the stream: a subclass parses one item at a time
 * straight out of the pushed chunk (`parseItem`). When an item does not fit in what is
 * left of a chunk, only its bytes are copied into a fresh side buffer, and the next chunks
 * are fed into that buffer just up to the byte count the parser asked for, until the item
 * completes; parsing then goes on in the chunk itself. So a byte is copied at most once,
 * and only when its item spans chunks (a 4 KiB page then comes out of the side buffer: the
 * "one copy" of PageItem.data). The side buffer is never reused after an item came out of
 * it, so views into it stay valid.
 */
import { DecodeError, WireError, type WireErrorReason } from '../../errors.js';
import { TARGET_PAGE_SIZE } from '../constants.js';
import { RAM_FLAG_MASK, RamFlag, type PageItem, type RamBlockInfo, type ZeroPageItem } from './items.js';

/** parseItem's answer when the item is not complete in the bytes given. */
export const NEED_MORE = -1;
/** parseRamPage's answer when the record is not a PAGE or ZERO record. */
export const NOT_A_PAGE = -2;

const TWO_32 = 0x1_0000_0000;
/** A be64 whose high half reaches this is at or above 2^53 and cannot be a number. */
const HIGH_HALF_LIMIT = 0x20_0000;
const EMPTY = new Uint8Array(0);
/** A fresh side buffer holds at least a page record with a long name. */
const MIN_SIDE_BUFFER = TARGET_PAGE_SIZE + 512;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function be16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

export function be32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

export function hex(value: number, digits = 2): string {
  return '0x' + value.toString(16).padStart(digits, '0');
}

export abstract class StreamDecoder<Item> {
  /** 'main stream', 'preempt channel', 'return path': starts every error message. */
  protected abstract readonly streamName: string;

  /** Absolute offset of buf[0] while parseItem runs (for offsets in items and errors). */
  protected bufBase = 0;
  /** Set by parseItem before answering NEED_MORE: bytes the item needs from its start (a lower bound). */
  protected needTotal = 0;
  /** Items of the push() under way. */
  protected out: Item[] = [];

  /** Absolute offset just past the last complete item. */
  private consumed = 0;
  private side: Uint8Array = EMPTY;
  private sideLength = 0;
  private failure: WireError | null = null;
  private ended = false;

  // RAM records (main stream sections and preempt channel)
  /** The block of the last PAGE/ZERO record: what CONTINUE means. */
  protected lastBlock: RamBlockInfo | null = null;
  /** Blocks from MEM_SIZE (or given): named records must use one, pages must lie inside it. */
  protected readonly blocks = new Map<string, RamBlockInfo>();

  /**
   * Parses one item (or a fixed group of items, e.g. a PACKAGED) at `pos`; returns the
   * position after it, or NEED_MORE (setting needTotal) without having emitted anything or
   * changed any state. Throws WireError for bytes that cannot be right.
   */
  protected abstract parseItem(buf: Uint8Array, pos: number, end: number): number;

  /** What the incomplete item in `bytes` (starting at absolute `offset`) is, for the cut error. */
  protected abstract describePartial(bytes: Uint8Array, offset: number): string;

  /** Called by end() when no item is incomplete: a stream that must end with EOF checks it here. */
  protected checkCleanEnd(): void {}

  /** End offset of the last complete item: where a recovery picks up. */
  get lastItemEnd(): number {
    return this.consumed;
  }

  /** Bytes pushed so far. */
  get bytesReceived(): number {
    return this.consumed + this.sideLength;
  }

  /**
   * Decodes `chunk` (any size, any boundary); returns the items it completed, in order.
   * Views in the items point into `chunk` (see PageItem.data). After a WireError every
   * further push() throws the same error.
   */
  push(chunk: Uint8Array): Item[] {
    if (this.failure !== null) throw this.failure;
    if (this.ended) {
      throw this.fail('malformed', this.bytesReceived, 'bytes pushed after end()');
    }
    const out: Item[] = [];
    this.out = out;
    try {
      let pos = 0;
      const end = chunk.length;
      if (this.sideLength > 0) {
        pos = this.feedSideBuffer(chunk);
        if (pos === NEED_MORE) return out;
      }
      this.bufBase = this.consumed - pos;
      while (pos < end) {
        const next = this.parseItem(chunk, pos, end);
        if (next === NEED_MORE) break;
        pos = next;
        this.consumed = this.bufBase + pos;
      }
      if (pos < end) this.keep(chunk, pos, end);
    } catch (e) {
      if (e instanceof WireError) this.failure = e;
      throw e;
    }
    return out;
  }

  /**
   * The stream is over. Throws a 'cut' WireError when it stopped inside an item (offset:
   * the byte where it stopped; lastItemEnd: where the last complete item ended).
   */
  end(): void {
    if (this.failure !== null) throw this.failure;
    this.ended = true;
    if (this.sideLength > 0) {
      const partial = this.side.subarray(0, this.sideLength);
      this.failure = this.fail('cut', this.bytesReceived, this.describePartial(partial, this.consumed));
      throw this.failure;
    }
    try {
      this.checkCleanEnd();
    } catch (e) {
      if (e instanceof WireError) this.failure = e;
      throw e;
    }
  }

  /** A WireError of this stream (returned, for `throw this.fail(...)`). */
  /** Runs a payload codec of wire.ts, turning its DecodeError into a WireError at the stream offset. */
  protected payload<T>(payloadAt: number, decode: () => T): T {
    try {
      return decode();
    } catch (e) {
      if (e instanceof DecodeError) throw this.fail('malformed', this.at(payloadAt + e.at), e.message);
      throw e;
    }
  }

  protected fail(reason: WireErrorReason, offset: number, detail: string): WireError {
    return new WireError(this.streamName, reason, offset, detail, this.consumed);
  }

  /** Absolute offset of buf[p] during parseItem. */
  protected at(p: number): number {
    return this.bufBase + p;
  }

  protected needMore(total: number): number {
    this.needTotal = total;
    return NEED_MORE;
  }

  // -------------------------------------------------------------------------
  // Side buffer

  /** Feeds chunk bytes to the incomplete item; returns how many it used, or NEED_MORE when all. */
  private feedSideBuffer(chunk: Uint8Array): number {
    let taken = 0;
    for (;;) {
      const take = Math.min(Math.max(this.needTotal - this.sideLength, 1), chunk.length - taken);
      if (take === 0) return NEED_MORE;
      this.appendToSide(chunk, taken, take);
      taken += take;
      // Parse again even when the item cannot be complete yet: its checks then see every
      // byte as soon as it arrives, so an error comes at the same push however the
      // stream is chunked (e.g. a bad magic byte, a PACKAGED that does not start with LISTEN).
      this.bufBase = this.consumed;
      const next = this.parseItem(this.side, 0, this.sideLength);
      if (next === NEED_MORE) continue;
      const usedFromChunk = next - (this.sideLength - taken);
      if (usedFromChunk <= 0) throw new Error(`${this.streamName}: decoder bug, item ended before the new chunk`);
      this.consumed += next;
      // Items may hold views into the side buffer: start a new one next time.
      this.side = EMPTY;
      this.sideLength = 0;
      return usedFromChunk;
    }
  }

  private keep(chunk: Uint8Array, pos: number, end: number): void {
    const length = end - pos;
    this.side = new Uint8Array(Math.max(MIN_SIDE_BUFFER, this.needTotal, length));
    this.side.set(chunk.subarray(pos, end));
    this.sideLength = length;
  }

  private appendToSide(chunk: Uint8Array, from: number, count: number): void {
    const needed = this.sideLength + count;
    if (needed > this.side.length) {
      const grown = new Uint8Array(Math.max(needed, this.needTotal, this.side.length * 2));
      grown.set(this.side.subarray(0, this.sideLength));
      this.side = grown;
    }
    this.side.set(chunk.subarray(from, from + count), this.sideLength);
    this.sideLength = needed;
  }

  // -------------------------------------------------------------------------
  // Shared readers

  /** A be64 below 2^53 at buf[p]; `what` names it in the error. */
  protected be64(b: Uint8Array, p: number, what: string): number {
    const hi = be32(b, p);
    if (hi >= HIGH_HALF_LIMIT) throw this.fail('malformed', this.at(p), `${what} ${hex(hi, 8)}${be32(b, p + 4).toString(16).padStart(8, '0')} is not below 2^53`);
    return hi * TWO_32 + be32(b, p + 4);
  }

  /** `n` bytes of an idstr or block name at buf[p] (NUL-free UTF-8, as QEMU reads it as a C string). */
  protected name(b: Uint8Array, p: number, n: number, what: string): string {
    let ascii = true;
    for (let i = p; i < p + n; i++) {
      const c = b[i]!;
      if (c === 0) throw this.fail('malformed', this.at(i), `${what} contains a NUL byte`);
      if (c >= 0x80) ascii = false;
    }
    if (ascii) return String.fromCharCode.apply(null, b.subarray(p, p + n) as unknown as number[]);
    try {
      return utf8.decode(b.subarray(p, p + n));
    } catch {
      throw this.fail('malformed', this.at(p), `${what} is not valid UTF-8`);
    }
  }

  /** True when buf[p, p+n) spells the name of `block` (saves decoding the name of every record). */
  private static sameName(b: Uint8Array, p: number, n: number, block: RamBlockInfo | null): boolean {
    if (block === null || block.name.length !== n) return false;
    const name = block.name;
    for (let i = 0; i < n; i++) if (b[p + i] !== name.charCodeAt(i)) return false;
    return true;
  }

  /**
   * A PAGE or ZERO record at buf[pos] (the hot path): returns the position after it,
   * NEED_MORE, or NOT_A_PAGE (nothing consumed) for any other flags. Only the main stream
   * and preempt channel decoders call it, and both item unions hold PageItem and
   * ZeroPageItem: hence the casts of `out` below.
   */
  protected parseRamPage(b: Uint8Array, pos: number, end: number): number {
    if (end - pos < 8) return this.needMore(8);
    const hi = be32(b, pos);
    const lo = be32(b, pos + 4);
    const flags = lo & RAM_FLAG_MASK;
    const type = flags & ~RamFlag.CONTINUE;
    if (type !== RamFlag.PAGE && type !== RamFlag.ZERO) return NOT_A_PAGE;
    const continued = (flags & RamFlag.CONTINUE) !== 0;
    let p = pos + 8;
    let block: RamBlockInfo | null;
    if (continued) {
      block = this.lastBlock;
      if (block === null) throw this.fail('malformed', this.at(pos), `${type === RamFlag.PAGE ? 'PAGE' : 'ZERO'} record with CONTINUE but no previous block`);
    } else {
      if (end - p < 1) return this.needMore(9);
      const n = b[p]!;
      if (n === 0) throw this.fail('malformed', this.at(p), 'RAM record block name of length 0');
      if (end - p < 1 + n) return this.needMore(9 + n);
      if (StreamDecoder.sameName(b, p + 1, n, this.lastBlock)) {
        block = this.lastBlock;
      } else {
        const name = this.name(b, p + 1, n, 'RAM record block name');
        block = this.blocks.get(name) ?? null;
        if (block === null) {
          if (this.blocks.size > 0) throw this.fail('malformed', this.at(p), `RAM record names unknown block '${name}'`);
          block = { name, usedLength: Number.MAX_SAFE_INTEGER };
        }
      }
      p += 1 + n;
    }
    if (hi >= HIGH_HALF_LIMIT) throw this.fail('malformed', this.at(pos), `RAM record offset ${hex(hi, 8)}... is not below 2^53`);
    const pageOffset = hi * TWO_32 + (lo - flags);
    if (pageOffset + TARGET_PAGE_SIZE > block!.usedLength) {
      throw this.fail('malformed', this.at(pos), `page at ${hex(pageOffset)} lies outside block '${block!.name}' of ${block!.usedLength} bytes`);
    }
    if (type === RamFlag.PAGE) {
      if (end - p < TARGET_PAGE_SIZE) return this.needMore(p - pos + TARGET_PAGE_SIZE);
      const item: PageItem = {
        kind: 'page',
        offset: this.at(pos),
        block: block!.name,
        pageOffset,
        continued,
        data: b.subarray(p, p + TARGET_PAGE_SIZE),
      };
      this.lastBlock = block;
      (this.out as unknown as PageItem[]).push(item);
      return p + TARGET_PAGE_SIZE;
    }
    if (end - p < 1) return this.needMore(p - pos + 1);
    const fill = b[p]!;
    // postcopy.md section 4: a zero page with a nonzero fill byte is refused.
    if (fill !== 0) throw this.fail('malformed', this.at(p), `ZERO record fill byte is ${hex(fill)}, only 0 is valid`);
    const item: ZeroPageItem = { kind: 'zero-page', offset: this.at(pos), block: block!.name, pageOffset, continued, fill };
    this.lastBlock = block;
    (this.out as unknown as ZeroPageItem[]).push(item);
    return p + 1;
  }

  /** The error for RAM record flags that are not PAGE/ZERO nor allowed here. */
  protected ramFlagsError(b: Uint8Array, pos: number, where: string): WireError {
    const flags = be32(b, pos + 4) & RAM_FLAG_MASK;
    const unsupported: Array<[number, string]> = [
      [RamFlag.XBZRLE, 'XBZRLE'],
      [RamFlag.COMPRESS_PAGE, 'COMPRESS_PAGE'],
      [RamFlag.MULTIFD_FLUSH, 'MULTIFD_FLUSH'],
    ];
    for (const [flag, name] of unsupported) {
      if (flags & flag) {
        return this.fail('unsupported', this.at(pos), `${name} RAM record (flags ${hex(flags, 3)}): not supported (capability not used in postcopy)`);
      }
    }
    return this.fail('malformed', this.at(pos), `RAM record flags ${hex(flags, 3)} are not valid ${where}`);
  }

  /** Describes an incomplete RAM record for a cut error. */
  protected describePartialRecord(bytes: Uint8Array, offset: number): string {
    if (bytes.length < 8) return `a RAM record header that started at byte ${offset}`;
    const flags = be32(bytes, 4) & RAM_FLAG_MASK;
    const type = flags & ~RamFlag.CONTINUE;
    const what = type === RamFlag.PAGE ? 'a PAGE record' : type === RamFlag.ZERO ? 'a ZERO record' : type === RamFlag.MEM_SIZE ? 'a MEM_SIZE record' : `a RAM record (flags ${hex(flags, 3)})`;
    let where = '';
    if (type === RamFlag.PAGE || type === RamFlag.ZERO) {
      // Name the block when the bytes that arrived say which (a recovery re-requests that page).
      let block: string | undefined;
      if (flags & RamFlag.CONTINUE) block = this.lastBlock?.name;
      else if (bytes.length >= 9 + bytes[8]!) block = String.fromCharCode(...bytes.subarray(9, 9 + bytes[8]!));
      const pageOffset = be32(bytes, 0) * TWO_32 + (be32(bytes, 4) - flags);
      where = `${block === undefined ? '' : ` of '${block}'`} at page offset ${hex(pageOffset)}`;
    }
    return `${what}${where} that started at byte ${offset} (${bytes.length} of its bytes arrived)`;
  }
}
