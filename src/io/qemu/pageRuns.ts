/**
 * Runs of consecutive pages from one decoded read of QEMU's main stream. QEMU pushes in
 * address order, so the pages of one socket read are mostly consecutive pages of one
 * block; gathered into one contiguous staging buffer, a run is placed by the engine with
 * one backend call (`Destination.pages`: one UFFDIO_COPY for the run in postcopy, one
 * write in precopy) instead of one per page.
 */
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import type { PageItem, ZeroPageItem } from '../../engine/qemuWire/index.js';

/**
 * The longest run gathered (128 KiB). Faults are read between runs, so this also bounds how
 * many pages are placed before a fault raised meanwhile is read and decided (a vCPU woken by
 * a placement before its fault was read leaves its wait out of exact blocktime).
 */
export const MAX_RUN_PAGES = 32;

/** What a run is handed on as: `count` pages of `block` from byte `offset`, data pages contiguous in `data` from 0 (unused for zero pages). */
export type RunSink = (block: string, offset: number, count: number, zero: boolean, data: Uint8Array) => void;

/**
 * Gathers pages into runs: a page that does not continue the run (another block, not the
 * next offset, data after zero pages or the reverse, or a full run) hands the run on first.
 * The caller calls `flush()` before anything that is not a page and at the end of each
 * read, so runs never reorder the stream.
 */
export class PageRuns {
  private readonly staging = new Uint8Array(MAX_RUN_PAGES * TARGET_PAGE_SIZE);
  private block = '';
  private first = 0;
  private count = 0;
  private zero = false;

  constructor(private readonly sink: RunSink) {}

  /** Pages gathered and not handed on yet. */
  get pending(): number {
    return this.count;
  }

  add(item: PageItem | ZeroPageItem): void {
    const zero = item.kind === 'zero-page';
    if (this.count > 0 && (item.block !== this.block || zero !== this.zero || item.pageOffset !== this.first + this.count * TARGET_PAGE_SIZE || this.count === MAX_RUN_PAGES)) {
      this.flush();
    }
    if (this.count === 0) {
      this.block = item.block;
      this.first = item.pageOffset;
      this.zero = zero;
    }
    // The item's data is a view into the read: copied now, the read may be reused after it.
    if (item.kind === 'page') this.staging.set(item.data, this.count * TARGET_PAGE_SIZE);
    this.count++;
  }

  /** Hands on the run gathered, if any (emptied first: a sink that throws leaves no run behind). */
  flush(): void {
    const count = this.count;
    if (count === 0) return;
    this.count = 0;
    this.sink(this.block, this.first, count, this.zero, this.staging);
  }
}
