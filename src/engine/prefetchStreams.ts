/** A run of page requests moving forward through one block. */
interface Stream {
  block: number;
  /** Target page of the stream's latest request (host-page aligned). */
  last: number;
  /** First target page after everything the stream has covered so far. */
  end: number;
  /** Target pages prefetched after the latest request. */
  window: number;
}

/** Target pages of the first window a stream gets (then doubled per request, up to the cap). */
const FIRST_WINDOW = 4;

/**
 * Which pages the source sends ahead of the vCPUs after a page request, the way CRIU's
 * lazy-pages daemon grows its transfer after each fault: a request that continues a recent
 * stream (at or after the stream's latest request, within its reach) doubles that stream's
 * window up to `maxPages`; a request anywhere else starts a new stream with no window, so
 * scattered faults add nothing to the urgent channel. Several streams are followed at once
 * (one per vCPU walking its memory). Only whole host pages are prefetched: a block whose
 * host page is larger than `maxPages` gets none.
 *
 * Pure bookkeeping: sends nothing; the caller sends the pages it names that are still dirty.
 */
export class PrefetchStreams {
  /** Most recently used first. */
  private readonly streams: Stream[] = [];

  constructor(readonly maxPages: number, readonly maxStreams = 8) {}

  /** Records a request for target page `page`; returns the pages to send ahead, or null. */
  onRequest(block: number, page: number, pagesPerHostPage: number): { first: number; pages: number } | null {
    if (this.maxPages < pagesPerHostPage) return null;
    const hostFirst = page - (page % pagesPerHostPage);
    const hostEnd = hostFirst + pagesPerHostPage;
    const i = this.streams.findIndex((s) => s.block === block && hostFirst >= s.last && hostFirst <= s.end + Math.max(s.window, pagesPerHostPage));
    if (i < 0) {
      this.streams.unshift({ block, last: hostFirst, end: hostEnd, window: 0 });
      if (this.streams.length > this.maxStreams) this.streams.pop();
      return null;
    }
    const s = this.streams[i]!;
    this.streams.splice(i, 1);
    this.streams.unshift(s);
    const grown = s.window === 0 ? FIRST_WINDOW : s.window * 2;
    s.window = Math.max(pagesPerHostPage, Math.floor(Math.min(grown, this.maxPages) / pagesPerHostPage) * pagesPerHostPage);
    const first = Math.max(hostEnd, s.end);
    const end = hostEnd + s.window;
    s.last = hostFirst;
    if (end <= first) return null;
    s.end = end;
    return { first, pages: end - first };
  }

  /** Forgets every stream (after a recovery the source starts over from the receive bitmaps). */
  reset(): void {
    this.streams.length = 0;
  }
}
