import { Bitmap } from './bitmap.js';
import { MigCommand, TARGET_PAGE_SIZE } from './constants.js';
import { reloadReceiveBitmap } from './receiveBitmap.js';
import { PrefetchStreams } from './prefetchStreams.js';
import { discardBlock } from './sourceDiscard.js';
import { encodeAdvise, encodeRamDiscard, hostPageSizeSummary, type PageRequest } from './wire.js';
import { UnknownBlockError, BadRangeError } from '../errors.js';

/** One block of the source's guest RAM: its layout and its memory. */
export interface SourceBlock {
  name: string;
  hostPageSize: number;
  memory: Uint8Array;
  /** Permanently discarded ranges (never sent): [offset, length] bytes. */
  discarded?: ReadonlyArray<readonly [number, number]>;
}

/** Where the source's stream goes: the main channel, or the preempt channel for urgent pages. */
export interface SourceOutput {
  command(command: number, payload: Uint8Array): void;
  /** One target page; `zero` pages carry no data. */
  page(channel: number, block: number, offset: number, zero: boolean, data: Uint8Array, dataOffset: number): void;
  endOfStream(channel: number): void;
}

/** What the switch to postcopy sent (section 7 counters). */
export interface PostcopyStartReport {
  dirtyPages: number;
  newlyDirtiedByCanonicalisation: number;
  rangesSent: number;
  commandsSent: number;
}

export interface SourceCounters {
  precopyPages: number;
  postcopyPages: number;
  urgentPages: number;
  /** Pages sent ahead of the vCPUs after a request (prefetch), on the urgent pages' channel. */
  prefetchPages: number;
  zeroPages: number;
  requests: number;
}

/**
 * The source side of a postcopy migration over a guest RAM image: precopy rounds over a
 * dirty bitmap, the switch to postcopy (ADVISE, final sync, discard commands, LISTEN,
 * RUN), then a background push of the remaining pages with requested pages first (and the
 * pages ahead of a vCPU that faults its way forward: prefetchStreams.ts), and the reload of
 * receive bitmaps after a recovery. Deterministic: the caller drives it.
 */
export class Source {
  readonly blocks: SourceBlock[];
  /** Per block: 1 = the page must (still) be sent. */
  readonly dirty: Bitmap[];
  readonly counters: SourceCounters = { precopyPages: 0, postcopyPages: 0, urgentPages: 0, prefetchPages: 0, zeroPages: 0, requests: 0 };
  private readonly byName = new Map<string, number>();
  private readonly urgent: Array<[number, number]> = [];
  /** Host pages to send after the urgent ones: [block, first target page, target pages to scan]. */
  private readonly ahead: Array<[number, number, number]> = [];
  private readonly streams: PrefetchStreams;
  /** Background push position per block (target page index). */
  private readonly cursor: number[];
  private pushBlock = 0;
  private lastRequestBlock = -1;
  postcopy = false;

  /**
   * `prefetchMaxPages`: the largest prefetch window in target pages (0: no prefetch). A
   * window only counts whole host pages, so blocks whose host page is larger get none.
   */
  constructor(blocks: SourceBlock[], private readonly out: SourceOutput, private readonly preempt = false, prefetchMaxPages = 0) {
    this.blocks = blocks;
    this.streams = new PrefetchStreams(prefetchMaxPages);
    this.dirty = blocks.map((b) => {
      const bm = new Bitmap(b.memory.length / TARGET_PAGE_SIZE);
      bm.setAll();
      for (const [s, l] of b.discarded ?? []) bm.clearRange(s / TARGET_PAGE_SIZE, l / TARGET_PAGE_SIZE);
      return bm;
    });
    blocks.forEach((b, i) => this.byName.set(b.name, i));
    this.cursor = blocks.map(() => 0);
  }

  /** ADVISE, sent early (QEMU sends it before the first RAM section). */
  advise(): void {
    this.out.command(MigCommand.OPEN_RETURN_PATH, new Uint8Array(0));
    this.out.command(
      MigCommand.POSTCOPY_ADVISE,
      encodeAdvise({ hostPageSizeSummary: hostPageSizeSummary(this.blocks.map((b) => b.hostPageSize)), targetPageSize: TARGET_PAGE_SIZE }),
    );
  }

  /** The guest wrote to a page: it must be sent (again). */
  markDirty(block: number, offset: number): void {
    this.dirty[block]!.set(Math.floor(offset / TARGET_PAGE_SIZE));
  }

  /** Pages still to send. */
  remaining(): number {
    let n = 0;
    for (const d of this.dirty) n += d.count();
    return n;
  }

  /** Sends up to `maxPages` dirty target pages on the main channel (precopy); returns how many. */
  precopyStep(maxPages: number): number {
    let sent = 0;
    for (let b = 0; b < this.blocks.length && sent < maxPages; b++) {
      const d = this.dirty[b]!;
      let p = d.findNextSet(this.cursor[b]!);
      while (p < d.size && sent < maxPages) {
        d.clear(p);
        this.sendTargetPage(0, b, p);
        this.counters.precopyPages++;
        sent++;
        p = d.findNextSet(p + 1);
      }
      this.cursor[b] = p >= d.size ? 0 : p;
    }
    return sent;
  }

  /**
   * The switch to postcopy (section 7): the dirty bitmap is the final sync; canonicalise it
   * per host page, send it as discard commands, then LISTEN and RUN.
   */
  startPostcopy(): PostcopyStartReport {
    const report: PostcopyStartReport = { dirtyPages: 0, newlyDirtiedByCanonicalisation: 0, rangesSent: 0, commandsSent: 0 };
    this.blocks.forEach((blk, b) => {
      const pass = discardBlock({ name: blk.name, pagesPerHostPage: blk.hostPageSize / TARGET_PAGE_SIZE }, this.dirty[b]!);
      for (const c of pass.commands) this.out.command(MigCommand.POSTCOPY_RAM_DISCARD, encodeRamDiscard(c));
      report.newlyDirtiedByCanonicalisation += pass.newlyDirtied;
      report.dirtyPages += this.dirty[b]!.count();
      report.rangesSent += pass.rangesSent;
      report.commandsSent += pass.commandsSent;
      this.cursor[b] = 0;
    });
    this.out.command(MigCommand.POSTCOPY_LISTEN, new Uint8Array(0));
    this.out.command(MigCommand.POSTCOPY_RUN, new Uint8Array(0));
    this.postcopy = true;
    return report;
  }

  /** A page request from the return path (REQ_PAGES or REQ_PAGES_ID): queued as urgent. */
  request(req: PageRequest): void {
    let b: number;
    if (req.blockName !== null) {
      const i = this.byName.get(req.blockName);
      if (i === undefined) throw new UnknownBlockError(req.blockName, 'REQ_PAGES_ID');
      b = i;
      this.lastRequestBlock = i;
    } else {
      if (this.lastRequestBlock < 0) throw new UnknownBlockError('(none named yet)', 'REQ_PAGES');
      b = this.lastRequestBlock;
    }
    const blk = this.blocks[b]!;
    if (req.start % TARGET_PAGE_SIZE !== 0 || req.length <= 0 || req.start + req.length > blk.memory.length) {
      throw new BadRangeError(blk.name, req.start, req.length, `page request 0x${req.start.toString(16)}+0x${req.length.toString(16)} is outside block '${blk.name}'`);
    }
    this.counters.requests++;
    this.urgent.push([b, req.start]);
    const page = req.start / TARGET_PAGE_SIZE;
    const perHost = blk.hostPageSize / TARGET_PAGE_SIZE;
    const span = this.streams.onRequest(b, page, perHost);
    const blockPages = blk.memory.length / TARGET_PAGE_SIZE;
    if (span !== null && span.first < blockPages) this.ahead.push([b, span.first, Math.min(span.pages, blockPages - span.first)]);
  }

  /** Forget the last block named: after a recovery the destination names it again. */
  forgetLastRequestBlock(): void {
    this.lastRequestBlock = -1;
  }

  /**
   * Sends urgent pages first (on the preempt channel when enabled), then up to
   * `maxHostPages` host pages of background push on the main channel. Returns host pages sent.
   */
  postcopyStep(maxHostPages: number): number {
    const sent = this.serveUrgent(maxHostPages);
    return sent + this.pushBackground(maxHostPages - sent);
  }

  /**
   * Sends up to `maxHostPages` requested pages, then up to `maxPrefetchHostPages` of the pages
   * prefetched after them (within `maxHostPages` in all), on the preempt channel when enabled;
   * returns host pages sent. A caller that holds prefetch back while its channel is busy keeps
   * later requested pages from queueing behind earlier prefetch windows.
   */
  serveUrgent(maxHostPages: number, maxPrefetchHostPages = Number.MAX_SAFE_INTEGER): number {
    let sent = 0;
    const channel = this.preempt ? 1 : 0;
    while (this.urgent.length > 0 && sent < maxHostPages) {
      const [b, start] = this.urgent.shift()!;
      if (this.sendHostPageIfDirty(b, start, channel, 'urgent')) sent++;
    }
    // Prefetch only once every request has been answered: a request never waits behind it.
    const prefetchLimit = Math.min(maxHostPages, sent + maxPrefetchHostPages);
    while (this.urgent.length === 0 && this.ahead.length > 0 && sent < prefetchLimit) {
      const next = this.ahead[0]!;
      const [b, first, pages] = next;
      const perHost = this.blocks[b]!.hostPageSize / TARGET_PAGE_SIZE;
      if (this.sendHostPageIfDirty(b, first * TARGET_PAGE_SIZE, channel, 'prefetch')) sent++;
      next[1] = first + perHost;
      next[2] = pages - perHost;
      if (next[2] <= 0) this.ahead.shift(); // request() clamped the span to the block
    }
    return sent;
  }

  /** Sends up to `maxHostPages` host pages of background push on the main channel. */
  pushBackground(maxHostPages: number): number {
    let sent = 0;
    while (sent < maxHostPages && this.pushBlock < this.blocks.length) {
      const b = this.pushBlock;
      const d = this.dirty[b]!;
      const p = d.findNextSet(this.cursor[b]!);
      if (p >= d.size) {
        this.pushBlock++;
        continue;
      }
      this.cursor[b] = p;
      if (this.sendHostPageIfDirty(b, p * TARGET_PAGE_SIZE, 0, 'background')) sent++;
    }
    return sent;
  }

  /** Whether every page has been sent and no request waits. */
  finished(): boolean {
    return this.urgent.length === 0 && this.remaining() === 0;
  }

  /** Pending urgent requests. */
  get urgentQueued(): number {
    return this.urgent.length;
  }

  /**
   * Recovery: the destination's receive bitmap for a block becomes the new dirty bitmap
   * (its complement, minus permanently discarded ranges). Returns pages to (re)send.
   */
  reloadReceiveBitmap(blockName: string, blob: Uint8Array): number {
    const b = this.byName.get(blockName);
    if (b === undefined) throw new UnknownBlockError(blockName, 'RECV_BITMAP');
    const blk = this.blocks[b]!;
    const dirty = reloadReceiveBitmap({ name: blk.name, pages: blk.memory.length / TARGET_PAGE_SIZE, discarded: blk.discarded ?? [] }, blob);
    this.dirty[b]!.words.set(dirty.words);
    this.cursor[b] = 0;
    this.pushBlock = 0;
    this.urgent.length = 0;
    this.ahead.length = 0;
    this.streams.reset();
    return dirty.count();
  }

  /** Ends the stream on the main channel (and the preempt channel). */
  finish(): void {
    if (this.preempt) this.out.endOfStream(1);
    this.out.endOfStream(0);
  }

  private sendHostPageIfDirty(b: number, start: number, channel: number, why: 'background' | 'urgent' | 'prefetch'): boolean {
    const urgent = why !== 'background';
    const blk = this.blocks[b]!;
    const hostStart = start - (start % blk.hostPageSize);
    const first = hostStart / TARGET_PAGE_SIZE;
    const pages = blk.hostPageSize / TARGET_PAGE_SIZE;
    const d = this.dirty[b]!;
    if (d.testRangeAllClear(first, pages)) {
      if (!urgent) this.cursor[b] = first + pages;
      return false; // already sent: the request crossed the page in flight
    }
    d.clearRange(first, pages);
    for (let i = 0; i < pages; i++) this.sendTargetPage(channel, b, first + i);
    if (why === 'urgent') this.counters.urgentPages += pages;
    else if (why === 'prefetch') this.counters.prefetchPages += pages;
    else this.counters.postcopyPages += pages;
    if (!urgent) this.cursor[b] = first + pages;
    return true;
  }

  private sendTargetPage(channel: number, b: number, page: number): void {
    const mem = this.blocks[b]!.memory;
    const off = page * TARGET_PAGE_SIZE;
    const zero = isZeroPage(mem, off);
    if (zero) this.counters.zeroPages++;
    this.out.page(channel, b, off, zero, mem, off);
  }
}

/** Whether the 4 KiB at mem[off..] are all zero (pure; reads 32-bit words where aligned). */
export function isZeroPage(mem: Uint8Array, off: number): boolean {
  if ((mem.byteOffset + off) % 4 === 0) {
    const w = new Int32Array(mem.buffer, mem.byteOffset + off, TARGET_PAGE_SIZE / 4);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
    return true;
  }
  for (let i = off; i < off + TARGET_PAGE_SIZE; i++) if (mem[i] !== 0) return false;
  return true;
}
