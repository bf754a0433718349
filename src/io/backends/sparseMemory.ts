import { Bitmap } from '../../engine/bitmap.js';
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';

/** Bytes per lazily allocated chunk: one 2 MiB huge page, so a huge page is one chunk. */
export const CHUNK_SIZE = 2 * 1024 * 1024;

/**
 * Chunks freed by dropped ranges, kept for reuse. Fresh memory costs a page fault per
 * 4 KiB on first touch (about 10 µs each on a nested-virtualisation host), far more than
 * the copy itself; a chunk that was touched before costs one 2 MiB fill instead. Shared
 * by the blocks of one backend; it never holds more than was allocated before.
 */
export class ChunkPool {
  private readonly free: Uint8Array[] = [];

  /** A zeroed chunk: a reused one when available, else a new one. */
  take(): Uint8Array {
    const chunk = this.free.pop();
    if (chunk === undefined) return new Uint8Array(CHUNK_SIZE);
    // Zeroed on reuse rather than on release: a chunk never reused is never filled.
    chunk.fill(0);
    return chunk;
  }

  /** Keeps a chunk that is no longer used (its contents do not matter). */
  give(chunk: Uint8Array): void {
    this.free.push(chunk);
  }

  /** Allocates and touches chunks for at least `bytes` bytes, adding them to the pool. */
  reserve(bytes: number): void {
    for (let held = 0; held < bytes; held += CHUNK_SIZE) {
      const chunk = new Uint8Array(CHUNK_SIZE);
      // Writing every page takes the first-touch page faults now rather than during placements.
      chunk.fill(1);
      this.free.push(chunk);
    }
  }

  /** Bytes held for reuse. */
  get pooledBytes(): number {
    return this.free.length * CHUNK_SIZE;
  }
}

/**
 * The memory of one RAM block, sparse: 2 MiB chunks allocated on first write, plus a
 * presence bitmap with one bit per 4 KiB page (a page is present once populated). A
 * 1 TiB block costs its 32 MiB bitmap until pages are written. No object per page.
 *
 * Invariant: every byte of a page that is not present is zero. Hence placing a zero page
 * only sets presence bits, unallocated chunks read as zeros, and dropping a page zeroes
 * it (or frees its whole chunk).
 *
 * Callers check ranges; methods here assume [offset, offset+length) lies in the block.
 */
export class SparseMemory {
  readonly length: number;
  readonly present: Bitmap;
  private readonly chunks = new Map<number, Uint8Array>();

  constructor(length: number, private readonly pool: ChunkPool = new ChunkPool()) {
    this.length = length;
    this.present = new Bitmap(Math.ceil(length / TARGET_PAGE_SIZE));
  }

  /** Number of bytes held in chunks (the memory this block really uses besides its bitmap). */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK_SIZE;
  }

  /** True when the 4 KiB page holding byte `offset` is present. */
  isPresent(offset: number): boolean {
    return this.present.test(Math.floor(offset / TARGET_PAGE_SIZE));
  }

  /** True when any page touching [offset, offset+length) is present. */
  anyPresent(offset: number, length: number): boolean {
    const first = firstPage(offset);
    const count = pageCount(offset, length);
    if (count === 1) return this.present.test(first);
    return !this.present.testRangeAllClear(first, count);
  }

  /** True when every page touching [offset, offset+length) is present. */
  allPresent(offset: number, length: number): boolean {
    return this.present.testRangeAllSet(firstPage(offset), pageCount(offset, length));
  }

  /** Marks the pages touching [offset, offset+length) present. */
  markPresent(offset: number, length: number): void {
    const first = firstPage(offset);
    const count = pageCount(offset, length);
    if (count === 1) this.present.set(first);
    else this.present.setRange(first, count);
  }

  /**
   * Copies data[dataOffset, dataOffset+length) to [offset, ...) and marks the pages it
   * touches present. Allocation-free once the chunk exists when `data` is exactly the
   * bytes to copy (a page buffer), the usual case for placements.
   */
  write(offset: number, data: Uint8Array, dataOffset: number, length: number): void {
    if (length === 0) return;
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / CHUNK_SIZE);
      const within = at - index * CHUNK_SIZE;
      const n = Math.min(length - done, CHUNK_SIZE - within);
      const chunk = this.chunk(index);
      const from = dataOffset + done;
      if (from === 0 && n === data.length) chunk.set(data, within);
      else chunk.set(data.subarray(from, from + n), within);
      done += n;
    }
    this.markPresent(offset, length);
  }

  /** Increments the byte at `offset` (wrapping at 256) and marks its page present. */
  incrementByte(offset: number): void {
    const index = Math.floor(offset / CHUNK_SIZE);
    const chunk = this.chunk(index);
    const within = offset - index * CHUNK_SIZE;
    chunk[within] = (chunk[within]! + 1) & 0xff;
    this.present.set(Math.floor(offset / TARGET_PAGE_SIZE));
  }

  /** A copy of [offset, offset+length); bytes of unallocated chunks read as zeros. */
  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / CHUNK_SIZE);
      const within = at - index * CHUNK_SIZE;
      const n = Math.min(length - done, CHUNK_SIZE - within);
      const chunk = this.chunks.get(index);
      if (chunk !== undefined) out.set(chunk.subarray(within, within + n), done);
      done += n;
    }
    return out;
  }

  /**
   * Drops the pages of [offset, offset+length) (whole pages: callers pass page-aligned
   * ranges): they become not present and zero; chunks wholly inside go back to the pool.
   */
  drop(offset: number, length: number): void {
    if (length === 0) return;
    this.present.clearRange(firstPage(offset), pageCount(offset, length));
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / CHUNK_SIZE);
      const within = at - index * CHUNK_SIZE;
      const n = Math.min(length - done, CHUNK_SIZE - within);
      const chunk = this.chunks.get(index);
      if (chunk !== undefined) {
        if (n === CHUNK_SIZE) {
          this.chunks.delete(index);
          this.pool.give(chunk);
        } else chunk.fill(0, within, within + n);
      }
      done += n;
    }
  }

  private chunk(index: number): Uint8Array {
    let chunk = this.chunks.get(index);
    if (chunk === undefined) {
      chunk = this.pool.take();
      this.chunks.set(index, chunk);
    }
    return chunk;
  }
}

/** Pure: the page holding byte `offset`. */
function firstPage(offset: number): number {
  return Math.floor(offset / TARGET_PAGE_SIZE);
}

/** Pure: how many pages [offset, offset+length) touches (0 for an empty range). */
function pageCount(offset: number, length: number): number {
  if (length <= 0) return 0;
  return Math.floor((offset + length - 1) / TARGET_PAGE_SIZE) - firstPage(offset) + 1;
}
