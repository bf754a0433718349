import { BitmapBoundsError, DecodeError } from '../errors.js';
import { wasmWords } from './bitmapScan.js';

/**
 * A fixed-size bitmap, one bit per target page, over an Int32Array (signed, so V8 keeps every loaded word an untagged int32).
 *
 * Bit i lives in word i >>> 5 at position i & 31 (least significant first), so on a
 * little-endian host the words' bytes are exactly QEMU's little-endian 64-bit layout.
 * Storage is rounded up to whole 64-bit words; bits past `size` are always zero (every
 * method keeps that invariant), which lets scans and counts ignore the tail.
 *
 * 2^28 bits (a 1 TiB guest of 4 KiB pages) take 32 MiB. No per-bit objects anywhere.
 * Scans are where the time goes: a bitmap of at least `Bitmap.simdMinBits` bits keeps its
 * words in its own WebAssembly memory and scans them with SIMD (bitmapScan.ts); smaller
 * ones skip empty or full words eight at a time in JS. Both give the same answers.
 */
export class Bitmap {
  /**
   * Bitmaps of at least this many bits scan with wasm SIMD. Below it the wasm setup
   * (a memory and an instance, tens of µs) costs more than it saves. Read at construction;
   * tests lower it to run the SIMD path at every size.
   */
  static simdMinBits = 2 ** 16;

  readonly size: number;
  /** The bits, 32 per word; callers may read and write them (keeping bits past `size` zero). */
  readonly words: Int32Array;
  /** The wasm scanners over `words`, or null on the plain JS path. */
  private readonly simdNextSet: ((from: number, byteLength: number) => number) | null;
  private readonly simdNextZero: ((from: number, byteLength: number) => number) | null;
  /** words.byteLength, kept as a plain field for the scanners' calls. */
  private readonly simdBytes: number;

  /** A bitmap of `size` clear bits, or a copy of `words` (exactly wordsFor(size) words). */
  constructor(size: number, words?: Int32Array) {
    if (!Number.isInteger(size) || size < 0 || size > 2 ** 32) {
      throw new BitmapBoundsError(size, 2 ** 32);
    }
    this.size = size;
    const nwords = Bitmap.wordsFor(size);
    if (words !== undefined && words.length !== nwords) {
      throw new BitmapBoundsError(words.length * 32, nwords * 32);
    }
    const simd = size > 0 && size >= Bitmap.simdMinBits ? wasmWords(nwords) : undefined;
    this.words = simd?.words ?? new Int32Array(nwords);
    this.simdNextSet = simd?.nextSet ?? null;
    this.simdNextZero = simd?.nextZero ?? null;
    this.simdBytes = nwords * 4;
    // Copied, not adopted, so that every bitmap's storage can live in wasm memory.
    if (words !== undefined) this.words.set(words);
  }

  /** Whether this bitmap scans with wasm SIMD (decided at construction by size). */
  get usesSimd(): boolean {
    return this.simdNextSet !== null;
  }

  /** 32-bit words needed for `bits` bits, rounded up to whole 64-bit words (pure). */
  static wordsFor(bits: number): number {
    return Math.ceil(bits / 64) * 2;
  }

  private check(i: number): void {
    if (!(i >= 0 && i < this.size && Number.isInteger(i))) throw new BitmapBoundsError(i, this.size);
  }

  private checkRange(start: number, count: number): void {
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= this.size)) {
      throw new BitmapBoundsError(start + count, this.size);
    }
  }

  test(i: number): boolean {
    this.check(i);
    return (this.words[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  set(i: number): void {
    this.check(i);
    this.words[i >>> 5]! |= 1 << (i & 31);
  }

  clear(i: number): void {
    this.check(i);
    this.words[i >>> 5]! &= ~(1 << (i & 31));
  }

  /** Sets bits [start, start+count). */
  setRange(start: number, count: number): void {
    this.checkRange(start, count);
    this.fillRange(start, count, true);
  }

  /** Clears bits [start, start+count). */
  clearRange(start: number, count: number): void {
    this.checkRange(start, count);
    this.fillRange(start, count, false);
  }

  private fillRange(start: number, count: number, value: boolean): void {
    if (count === 0) return;
    const w = this.words;
    const end = start + count; // exclusive
    const first = start >>> 5;
    const last = (end - 1) >>> 5;
    const headMask = -1 << (start & 31);
    const tailMask = -1 >>> (31 - ((end - 1) & 31));
    if (first === last) {
      const m = headMask & tailMask;
      w[first] = value ? w[first]! | m : w[first]! & ~m;
      return;
    }
    w[first] = value ? w[first]! | headMask : w[first]! & ~headMask;
    if (last > first + 1) w.fill(value ? -1 : 0, first + 1, last);
    w[last] = value ? w[last]! | tailMask : w[last]! & ~tailMask;
  }

  /** True when every bit of [start, start+count) is set (an empty range is all set). */
  testRangeAllSet(start: number, count: number): boolean {
    this.checkRange(start, count);
    return count === 0 || this.findNextZero(start) >= start + count;
  }

  /** True when no bit of [start, start+count) is set. */
  testRangeAllClear(start: number, count: number): boolean {
    this.checkRange(start, count);
    return count === 0 || this.findNextSet(start) >= start + count;
  }

  /** Index of the first set bit at or after `from`, or `size` when there is none. */
  findNextSet(from: number): number {
    const size = this.size;
    if (from >= size) return size;
    if (from < 0) from = 0;
    const simd = this.simdNextSet;
    if (simd !== null) {
      const r = simd(from, this.simdBytes);
      return r < size ? r : size;
    }
    const w = this.words;
    const n = w.length;
    let i = from >>> 5;
    let word = w[i]! & (-1 << (from & 31));
    if (word === 0) {
      i++;
      // Sparse bitmaps spend their time here: test eight words per branch.
      while (i + 7 < n && (w[i]! | w[i + 1]! | w[i + 2]! | w[i + 3]! | w[i + 4]! | w[i + 5]! | w[i + 6]! | w[i + 7]!) === 0) i += 8;
      while (i < n && w[i] === 0) i++;
      if (i >= n) return size;
      word = w[i]!;
    }
    const r = (i << 5) + (31 - Math.clz32(word & -word));
    return r < size ? r : size;
  }

  /** Index of the first clear bit at or after `from`, or `size` when there is none. */
  findNextZero(from: number): number {
    const size = this.size;
    if (from >= size) return size;
    if (from < 0) from = 0;
    const simd = this.simdNextZero;
    if (simd !== null) {
      const r = simd(from, this.simdBytes);
      return r < size ? r : size;
    }
    const w = this.words;
    const n = w.length;
    let i = from >>> 5;
    let word = ~w[i]! & (-1 << (from & 31));
    if (word === 0) {
      i++;
      // Long runs spend their time here: eight all-ones words per branch.
      while (i + 7 < n && (w[i]! & w[i + 1]! & w[i + 2]! & w[i + 3]! & w[i + 4]! & w[i + 5]! & w[i + 6]! & w[i + 7]!) === -1) i += 8;
      while (i < n && w[i] === -1) i++;
      if (i >= n) return size;
      word = ~w[i]!;
    }
    const r = (i << 5) + (31 - Math.clz32(word & -word));
    return r < size ? r : size;
  }

  /**
   * Calls `fn(start, length)` for every maximal run of set bits, in ascending order.
   * Stops early when `fn` returns false. Allocation-free.
   */
  forEachRun(fn: (start: number, length: number) => boolean | void): void {
    const size = this.size;
    let pos = this.findNextSet(0);
    while (pos < size) {
      const end = this.findNextZero(pos);
      if (fn(pos, end - pos) === false) return;
      pos = this.findNextSet(end);
    }
  }

  /** Runs of set bits as [start, length] pairs (convenience; forEachRun is allocation-free). */
  runs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    this.forEachRun((s, l) => {
      out.push([s, l]);
    });
    return out;
  }

  /** Number of set bits. */
  count(): number {
    const w = this.words;
    let c = 0;
    for (let i = 0; i < w.length; i++) {
      let v = w[i]!;
      if (v === 0) continue;
      v = v - ((v >>> 1) & 0x55555555);
      v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
      c += (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return c;
  }

  /** Number of set bits in [start, start+count). */
  countRange(start: number, count: number): number {
    this.checkRange(start, count);
    let c = 0;
    const end = start + count;
    let pos = this.findNextSet(start);
    while (pos < end) {
      const runEnd = Math.min(this.findNextZero(pos), end);
      c += runEnd - pos;
      pos = runEnd < end ? this.findNextSet(runEnd) : end;
    }
    return c;
  }

  /** A new bitmap with every bit flipped (bits past `size` stay zero). Pure. */
  complement(): Bitmap {
    const out = new Bitmap(this.size);
    const src = this.words;
    const dst = out.words;
    for (let i = 0; i < src.length; i++) dst[i] = ~src[i]!;
    out.maskTail();
    return out;
  }

  /** A copy of this bitmap. Pure. */
  clone(): Bitmap {
    return new Bitmap(this.size, this.words);
  }

  /** True when both bitmaps have the same size and bits. */
  equals(other: Bitmap): boolean {
    if (other.size !== this.size) return false;
    const a = this.words;
    const b = other.words;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /** Clears every bit. */
  clearAll(): void {
    this.words.fill(0);
  }

  /** Sets every bit. */
  setAll(): void {
    this.words.fill(-1);
    this.maskTail();
  }

  private maskTail(): void {
    const size = this.size;
    const w = this.words;
    const full = size >>> 5;
    if (full < w.length) {
      const rem = size & 31;
      w[full] = rem === 0 ? 0 : w[full]! & (-1 >>> (32 - rem));
      for (let i = full + 1; i < w.length; i++) w[i] = 0;
    }
  }

  /**
   * The bits as little-endian 64-bit words: ceil(size / 64) * 8 bytes, exactly the
   * layout of QEMU's receive bitmap body (section 8). Pure.
   */
  toLE64Bytes(): Uint8Array {
    const out = new Uint8Array(this.words.length * 4);
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(this.words.buffer, this.words.byteOffset, this.words.byteLength));
    } else {
      const dv = new DataView(out.buffer);
      for (let i = 0; i < this.words.length; i++) dv.setInt32(i * 4, this.words[i]!, true);
    }
    return out;
  }

  /**
   * A bitmap of `size` bits from little-endian 64-bit words. Exactly
   * ceil(size / 64) * 8 bytes are read; bits past `size` must be zero.
   */
  static fromLE64Bytes(size: number, bytes: Uint8Array, format = 'bitmap'): Bitmap {
    const nwords = Bitmap.wordsFor(size);
    if (bytes.length < nwords * 4) {
      throw new DecodeError(format, bytes.length, `need ${nwords * 4} bytes for ${size} bits, have ${bytes.length}`);
    }
    const bm = new Bitmap(size);
    const words = bm.words;
    if (LITTLE_ENDIAN) {
      new Uint8Array(words.buffer, words.byteOffset, nwords * 4).set(bytes.subarray(0, nwords * 4));
    } else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, nwords * 4);
      for (let i = 0; i < nwords; i++) words[i] = dv.getInt32(i * 4, true);
    }
    const tailStart = size;
    if (tailStart < nwords * 32 && bm.findNextSetRaw(tailStart) < nwords * 32) {
      throw new DecodeError(format, Math.floor(tailStart / 8), `bits past the end (${size} bits) are set`);
    }
    return bm;
  }

  /** findNextSet ignoring `size`: used only to validate decoded tails. */
  private findNextSetRaw(from: number): number {
    const w = this.words;
    for (let i = from; i < w.length * 32; i++) if ((w[i >>> 5]! & (1 << (i & 31))) !== 0) return i;
    return w.length * 32;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
