import { Bitmap } from './bitmap.js';
import { TARGET_PAGE_SIZE } from './constants.js';
import { BadRangeError, RamBlockError } from '../errors.js';

/** What a RAM block is made of, as given by the VMM (or read from a journal's meta). */
export interface RamBlockConfig {
  /** idstr, e.g. 'pc.ram'. At most 255 bytes of UTF-8 (it travels in a byte-length field). */
  name: string;
  /** Used length in bytes. */
  length: number;
  /** Largest length a resize may reach; defaults to `length`. */
  maxLength?: number;
  /** Host page size in bytes: 4096, or a huge page size (a power-of-two multiple of 4 KiB). */
  hostPageSize?: number;
  /** Backed by hugetlbfs: cannot zero-place (copy from a zeroed page instead). */
  hugetlbfs?: boolean;
  /** Ranges the VMM marked permanently discarded (e.g. unplugged memory): [offset, length] in bytes. */
  discarded?: ReadonlyArray<readonly [number, number]>;
}

/**
 * One RAM block on the destination: its geometry, its receive bitmap (one bit per target
 * page, set only by placement) and its permanently discarded ranges.
 */
export class RamBlock {
  readonly name: string;
  readonly index: number;
  /**
   * Global byte offset of this block among all blocks (like QEMU's ram_addr_t): host
   * pages of different blocks get distinct keys `base + offset`.
   */
  readonly base: number;
  readonly maxLength: number;
  readonly hostPageSize: number;
  readonly hugetlbfs: boolean;
  /** Target pages per host page. */
  readonly pagesPerHostPage: number;
  usedLength: number;
  /** Bytes that postcopy covers: set to usedLength at ADVISE and on resize in ADVISE. */
  postcopyLength: number;
  /** Receive bitmap over maxLength (bits past usedLength stay clear). */
  readonly received: Bitmap;
  /** Permanently discarded ranges, sorted and disjoint: [offset, length] in bytes. */
  readonly discarded: ReadonlyArray<readonly [number, number]>;
  /** Huge pages are turned off from the first discard until cleanup. */
  hugePagesEnabled = true;

  constructor(config: RamBlockConfig, index: number, base: number) {
    const name = config.name;
    const hps = config.hostPageSize ?? TARGET_PAGE_SIZE;
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > 255) {
      throw new RamBlockError(String(name), `RAM block name '${String(name)}' must be 1 to 255 bytes`);
    }
    if (!Number.isInteger(hps) || hps < TARGET_PAGE_SIZE || hps % TARGET_PAGE_SIZE !== 0 || (hps & (hps - 1)) !== 0) {
      throw new RamBlockError(name, `RAM block '${name}': host page size ${hps} is not a power-of-two multiple of ${TARGET_PAGE_SIZE}`);
    }
    const maxLength = config.maxLength ?? config.length;
    for (const [what, len] of [['length', config.length], ['max length', maxLength]] as const) {
      if (!Number.isSafeInteger(len) || len <= 0 || len % hps !== 0) {
        throw new RamBlockError(
          name,
          `RAM block '${name}': ${what} ${len} is not a positive multiple of its page size ${hps}`,
        );
      }
    }
    if (maxLength < config.length) {
      throw new RamBlockError(name, `RAM block '${name}': max length ${maxLength} is below its length ${config.length}`);
    }
    this.name = name;
    this.index = index;
    this.base = base;
    this.usedLength = config.length;
    this.postcopyLength = config.length;
    this.maxLength = maxLength;
    this.hostPageSize = hps;
    this.hugetlbfs = config.hugetlbfs ?? false;
    this.pagesPerHostPage = hps / TARGET_PAGE_SIZE;
    this.received = new Bitmap(maxLength / TARGET_PAGE_SIZE);
    this.discarded = normaliseRanges(name, config.discarded ?? [], maxLength);
  }

  /** Whether zero placement (UFFDIO_ZEROPAGE) is possible: not on hugetlbfs. */
  get canZeroPlace(): boolean {
    return !this.hugetlbfs;
  }

  /** The offset rounded down to its host page (pure). */
  hostPageOffset(offset: number): number {
    return offset - (offset % this.hostPageSize);
  }

  /** True when the target page at `offset` has been received. */
  isReceived(offset: number): boolean {
    return this.received.test(Math.floor(offset / TARGET_PAGE_SIZE));
  }

  /** Sets the receive bits of the whole host page starting at `hostOffset`. */
  markHostPageReceived(hostOffset: number): void {
    this.received.setRange(hostOffset / TARGET_PAGE_SIZE, this.pagesPerHostPage);
  }

  /** True when `offset` lies in a permanently discarded range. */
  isPermanentlyDiscarded(offset: number): boolean {
    const d = this.discarded;
    // Few ranges in practice; binary search keeps it cheap regardless.
    let lo = 0;
    let hi = d.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [s, l] = d[mid]!;
      if (offset < s) hi = mid - 1;
      else if (offset >= s + l) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** Checks that [start, start+length) is target-page aligned and inside `limit` bytes. */
  checkRange(start: number, length: number, limit: number, context: string): void {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0) {
      throw new BadRangeError(this.name, start, length, `${context}: RAM block '${this.name}': range start ${start} length ${length} is not a valid byte range`);
    }
    if (start % TARGET_PAGE_SIZE !== 0 || length % TARGET_PAGE_SIZE !== 0) {
      throw new BadRangeError(
        this.name,
        start,
        length,
        `${context}: RAM block '${this.name}': range 0x${start.toString(16)}+0x${length.toString(16)} is not aligned to the target page size ${TARGET_PAGE_SIZE}`,
      );
    }
    if (start + length > limit) {
      throw new BadRangeError(
        this.name,
        start,
        length,
        `${context}: RAM block '${this.name}': range 0x${start.toString(16)}+0x${length.toString(16)} is past the block's end 0x${limit.toString(16)}`,
      );
    }
  }
}

/** Sorts, validates and merges permanently discarded ranges (pure). */
function normaliseRanges(
  name: string,
  ranges: ReadonlyArray<readonly [number, number]>,
  limit: number,
): Array<readonly [number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [s, l] of sorted) {
    if (!Number.isSafeInteger(s) || !Number.isSafeInteger(l) || s < 0 || l <= 0 || s + l > limit || s % TARGET_PAGE_SIZE !== 0 || l % TARGET_PAGE_SIZE !== 0) {
      throw new RamBlockError(name, `RAM block '${name}': permanently discarded range ${s}+${l} is not a page-aligned range inside the block`);
    }
    const prev = out[out.length - 1];
    if (prev && s <= prev[0] + prev[1]) prev[1] = Math.max(prev[1], s + l - prev[0]);
    else out.push([s, l]);
  }
  return out;
}

/** Builds the blocks of a configuration, in order, with their global bases. */
export function createRamBlocks(configs: readonly RamBlockConfig[]): RamBlock[] {
  const blocks: RamBlock[] = [];
  const names = new Set<string>();
  let base = 0;
  for (const c of configs) {
    const b = new RamBlock(c, blocks.length, base);
    if (names.has(b.name)) throw new RamBlockError(b.name, `RAM block '${b.name}' is defined twice`);
    names.add(b.name);
    blocks.push(b);
    base += b.maxLength;
  }
  return blocks;
}
