/**
 * The source's discard bitmap at the switch to postcopy (reference section 7): per block,
 * canonicalise the dirty bitmap to whole host pages, then send every run of dirty pages as
 * a byte range in POSTCOPY_RAM_DISCARD commands of at most 12 ranges.
 */
import type { Bitmap } from './bitmap.js';
import { MAX_DISCARD_RANGES_PER_COMMAND, TARGET_PAGE_SIZE } from './constants.js';
import type { RamDiscard } from './wire.js';
import { RamBlockError } from '../errors.js';

/** What the discard pass needs to know of a source block (a RamBlock fits). */
export interface DiscardBlock {
  name: string;
  /** Target pages per host page: 1, or e.g. 512 for 2 MiB huge pages. */
  pagesPerHostPage: number;
}

/** Section 7's counters. */
export interface DiscardCounters {
  /** Ranges sent (QEMU's "mask words sent"). */
  rangesSent: number;
  commandsSent: number;
}

/** One block's discard pass: what to send and what it counted. */
export interface BlockDiscard extends DiscardCounters {
  blockName: string;
  /** Dirty bits set by host-page canonicalisation. */
  newlyDirtied: number;
  /** The RAM_DISCARD commands, in order; encode each with wire.encodeRamDiscard. */
  commands: RamDiscard[];
}

/**
 * Host-page canonicalisation: every host page that has at least one dirty target page
 * becomes wholly dirty. Mutates `dirty` (the source keeps sending from it); returns the
 * number of bits it newly set. A no-op returning 0 when a host page is one target page.
 * A host page cut short by the end of the bitmap is filled up to the end only.
 */
export function canonicaliseHostPages(dirty: Bitmap, pagesPerHostPage: number): number {
  if (pagesPerHostPage === 1) return 0;
  const size = dirty.size;
  let newlySet = 0;
  let pos = dirty.findNextSet(0);
  while (pos < size) {
    const hostStart = pos - (pos % pagesPerHostPage);
    const runEnd = dirty.findNextZero(pos);
    const hostEnd = Math.min(size, Math.ceil(runEnd / pagesPerHostPage) * pagesPerHostPage);
    // Bits before `pos` in this host page are clear (pos is the first set bit since the
    // previous host end), so only the run's tail host page can hold other set bits.
    newlySet += hostEnd - hostStart - dirty.countRange(hostStart, hostEnd - hostStart);
    dirty.setRange(hostStart, hostEnd - hostStart);
    pos = dirty.findNextSet(hostEnd);
  }
  return newlySet;
}

/**
 * pure: every maximal run of set bits as a byte range [start, length], ascending,
 * disjoint and never empty (a run has at least one bit).
 */
export function discardRanges(dirty: Bitmap): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  dirty.forEachRun((first, count) => {
    ranges.push([first * TARGET_PAGE_SIZE, count * TARGET_PAGE_SIZE]);
  });
  return ranges;
}

/**
 * pure: the ranges batched into commands of at most 12 ranges each, the remainder
 * flushed as a last, shorter command. No ranges, no command.
 */
export function batchDiscardCommands(blockName: string, ranges: ReadonlyArray<[number, number]>): RamDiscard[] {
  const commands: RamDiscard[] = [];
  for (let i = 0; i < ranges.length; i += MAX_DISCARD_RANGES_PER_COMMAND) {
    commands.push({ blockName, ranges: ranges.slice(i, i + MAX_DISCARD_RANGES_PER_COMMAND) });
  }
  return commands;
}

/**
 * One block's whole discard pass: canonicalise `dirty` in place when the host page is
 * larger than a target page, then turn its runs into commands and count them.
 */
export function discardBlock(block: DiscardBlock, dirty: Bitmap): BlockDiscard {
  const pp = block.pagesPerHostPage;
  if (!(Number.isInteger(pp) && pp >= 1)) {
    throw new RamBlockError(block.name, `RAM block '${block.name}': ${String(pp)} target pages per host page is not a positive integer`);
  }
  const newlyDirtied = canonicaliseHostPages(dirty, pp);
  const ranges = discardRanges(dirty);
  const commands = batchDiscardCommands(block.name, ranges);
  return { blockName: block.name, newlyDirtied, commands, rangesSent: ranges.length, commandsSent: commands.length };
}

/** pure: counters summed over blocks. */
export function sumDiscardCounters(passes: Iterable<DiscardCounters>): DiscardCounters {
  const total: DiscardCounters = { rangesSent: 0, commandsSent: 0 };
  for (const p of passes) {
    total.rangesSent += p.rangesSent;
    total.commandsSent += p.commandsSent;
  }
  return total;
}
