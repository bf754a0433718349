import { decodeRecvBitmapRequest, encodeRecvBitmapRequest } from './wire.js';
/**
 * The receive-bitmap blob (reference section 8), sent destination -> source once per
 * block during recovery, and the source's reload of it (section 9).
 *
 * Layout: be64 size in bytes, the bitmap as little-endian 64-bit words, be64 end mark
 * 0x0123456789abcdef. size = ceil(bits / 8) rounded UP to a multiple of 8, i.e. whole
 * 64-bit words. (Upstream once computed bits / 8 rounded down, which sent an empty bitmap
 * for a one-page block; this codec never does, in either compatibility mode.)
 */
import { Bitmap } from './bitmap.js';
import { RECV_BITMAP_END_MARK, TARGET_PAGE_SIZE } from './constants.js';
import type { RamBlock } from './ramBlock.js';
import { DecodeError, EncodeError } from '../errors.js';
import { hex64, PayloadReader } from './wire.js';

export const RECV_BITMAP_BLOB_FORMAT = 'RECV_BITMAP blob';

const END_MARK_HI = Number(RECV_BITMAP_END_MARK >> 32n);
const END_MARK_LO = Number(RECV_BITMAP_END_MARK & 0xffff_ffffn);
const TWO_32 = 0x1_0000_0000;
/** The be64 size field and the be64 end mark. */
const FRAMING_BYTES = 16;

/** pure: the size field for a bitmap of `bits` bits: whole 64-bit words, in bytes. */
export function receiveBitmapSizeBytes(bits: number): number {
  return Bitmap.wordsFor(bits) * 4;
}

/**
 * pure: the blob for the first `bits` bits of `bitmap` (all of it by default). The
 * destination's receive bitmap spans the block's max length while the blob covers only
 * its used length, hence `bits`.
 */
export function encodeReceiveBitmap(bitmap: Bitmap, bits: number = bitmap.size): Uint8Array {
  if (!(Number.isInteger(bits) && bits >= 0 && bits <= bitmap.size)) {
    throw new EncodeError(RECV_BITMAP_BLOB_FORMAT, `bit count ${String(bits)} is not an integer in [0, ${bitmap.size}]`);
  }
  const body = bits === bitmap.size ? bitmap : prefixOf(bitmap, bits);
  const sizeBytes = receiveBitmapSizeBytes(bits);
  const out = new Uint8Array(FRAMING_BYTES + sizeBytes);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, Math.floor(sizeBytes / TWO_32));
  dv.setUint32(4, sizeBytes % TWO_32);
  out.set(body.toLE64Bytes(), 8);
  dv.setUint32(8 + sizeBytes, END_MARK_HI);
  dv.setUint32(12 + sizeBytes, END_MARK_LO);
  return out;
}

/** pure: the blob a destination block sends: its receive bits over its used length. */
export function encodeBlockReceiveBitmap(block: RamBlock): Uint8Array {
  return encodeReceiveBitmap(block.received, block.usedLength / TARGET_PAGE_SIZE);
}

/** pure: a bitmap of the first `bits` bits of `bitmap` (bits past `bits` cleared). */
function prefixOf(bitmap: Bitmap, bits: number): Bitmap {
  const words = bitmap.words.slice(0, Bitmap.wordsFor(bits));
  const partial = bits >>> 5;
  if (partial < words.length) {
    const rem = bits & 31;
    words[partial] = rem === 0 ? 0 : words[partial]! & (-1 >>> (32 - rem));
    words.fill(0, partial + 1);
  }
  return new Bitmap(bits, words);
}

/**
 * pure: the bitmap in a blob, checked against the block it is for (`bits` bits, named
 * `blockName` in errors). Rejects truncation, a size field that does not match, set bits
 * past `bits`, a wrong end mark and trailing bytes, each with a DecodeError.
 */
export function decodeReceiveBitmap(bytes: Uint8Array, bits: number, blockName = '?'): Bitmap {
  const r = new PayloadReader(RECV_BITMAP_BLOB_FORMAT, bytes);
  const expected = receiveBitmapSizeBytes(bits);
  const size = r.be64('size');
  if (size !== expected) {
    r.fail(0, `size field says ${size} bytes, block '${blockName}' of ${bits} bits needs ${expected}`);
  }
  const bodyAt = r.offset;
  const body = r.bytesView(size, 'bitmap');
  const bitmap = bitmapFromBody(bits, body, bodyAt);
  const markAt = r.offset;
  const hi = r.be32('end mark');
  const lo = r.be32('end mark');
  if (hi !== END_MARK_HI || lo !== END_MARK_LO) {
    r.fail(markAt, `end mark is 0x${hex64(hi, lo)}, expected 0x${hex64(END_MARK_HI, END_MARK_LO)}`);
  }
  r.finish('end mark');
  return bitmap;
}

/** Bitmap.fromLE64Bytes with its error offsets made relative to the whole blob. */
function bitmapFromBody(bits: number, body: Uint8Array, bodyAt: number): Bitmap {
  try {
    return Bitmap.fromLE64Bytes(bits, body, RECV_BITMAP_BLOB_FORMAT);
  } catch (err) {
    if (err instanceof DecodeError) throw new DecodeError(RECV_BITMAP_BLOB_FORMAT, bodyAt + err.at, err.reason);
    throw err;
  }
}

/** What the source knows of one of its blocks when it reloads a receive bitmap. */
export interface ReloadBlock {
  name: string;
  /** The block's used length in target pages: the bit count the blob must carry. */
  pages: number;
  /** Permanently discarded ranges, [offset, length] in bytes, target-page aligned. */
  discarded: ReadonlyArray<readonly [number, number]>;
}

/**
 * pure: the source's reload of a receive-bitmap blob (reference section 9): the new dirty
 * bitmap is the complement of what the destination received (what it still needs), minus
 * the permanently discarded ranges (never to be sent). Discarded ranges reaching past the
 * used length are clipped to it. Throws DecodeError on a size mismatch, a wrong end mark or
 * any other malformed blob.
 */
export function reloadReceiveBitmap(block: ReloadBlock, blob: Uint8Array): Bitmap {
  const received = decodeReceiveBitmap(blob, block.pages, block.name);
  const dirty = received.complement();
  for (const [offset, length] of block.discarded) {
    const first = Math.floor(offset / TARGET_PAGE_SIZE);
    const end = Math.min(block.pages, Math.ceil((offset + length) / TARGET_PAGE_SIZE));
    if (end > first) dirty.clearRange(first, end - first);
  }
  return dirty;
}

/** pure: the reload view of a RamBlock (used length, permanently discarded ranges). */
export function reloadBlockOf(block: RamBlock): ReloadBlock {
  return { name: block.name, pages: block.usedLength / TARGET_PAGE_SIZE, discarded: block.discarded };
}

/**
 * pure: the return-path RECV_BITMAP message: the block name (byte length, name) as in the
 * RECV_BITMAP request, then the receive-bitmap blob — QEMU sends the name in the message
 * and the blob right after it on the return path.
 */
export function encodeRecvBitmapMessage(blockName: string, blob: Uint8Array): Uint8Array {
  const name = encodeRecvBitmapRequest(blockName);
  const out = new Uint8Array(name.length + blob.length);
  out.set(name, 0);
  out.set(blob, name.length);
  return out;
}

/** pure: the block name and blob of a return-path RECV_BITMAP message (the blob is a view). */
export function decodeRecvBitmapMessage(payload: Uint8Array): { blockName: string; blob: Uint8Array } {
  if (payload.length < 1 || payload.length < 1 + payload[0]!) {
    throw new DecodeError('RECV_BITMAP message', 0, `${payload.length} bytes cannot hold the block name`);
  }
  const end = 1 + payload[0]!;
  return { blockName: decodeRecvBitmapRequest(payload.subarray(0, end)), blob: payload.subarray(end) };
}
