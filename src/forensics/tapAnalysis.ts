/**
 * The part of `analyzeJournal` that only a `postcopy tap` journal needs (analysisTypes.ts
 * TapFindings): its connections, PING/PONG/SHUT, receive bitmaps, and per page when it last
 * crossed the relay in postcopy — what tells a request answered by a page sent after it
 * (served) from one whose page was already on its way (in flight), and which pages crossed
 * the relay before a break but never reached the destination.
 *
 * Memory: per RAM block that pages crossed for, a Float64Array with a slot per target page (16 MiB
 * per 8 GiB of RAM), or a map of the pages seen for a block too large for that (a journal's meta
 * may claim any length: nothing is allocated from the claim alone).
 */
import { unpack } from 'msgpackr';
import { TARGET_PAGE_SIZE } from '../engine/constants.js';
import { EventKind, TAP_ROLE_NAMES } from '../engine/events.js';
import { LatencyHistogram } from '../engine/latencyHistogram.js';
import type { AnsweredRequests, TapFindings } from './analysisTypes.js';
import type { JournalMeta } from '../journal/meta.js';

/** How many requests and lost pages a break lists (the counts are whole). */
const MAX_LISTED = 50;
/** Blocks of more target pages than this keep their crossing times in a map (2^24 pages: 64 GiB). */
const MAX_DENSE_PAGES = 1 << 24;

/** When each target page of a block last crossed the relay (NaN: never). */
class PageTimes {
  private dense: Float64Array | null = null;
  private sparse: Map<number, number> | null = null;
  constructor(readonly pages: number) {}
  set(page: number, t: number): void {
    if (!(page >= 0 && page < this.pages)) return;
    if (this.pages <= MAX_DENSE_PAGES) (this.dense ??= new Float64Array(this.pages).fill(NaN))[page] = t;
    else (this.sparse ??= new Map()).set(page, t);
  }
  get(page: number): number {
    if (this.dense !== null) return this.dense[page] ?? NaN;
    return this.sparse?.get(page) ?? NaN;
  }
  /** Every page that crossed, with its time. */
  *crossed(): Generator<[number, number]> {
    if (this.dense !== null) {
      for (let p = 0; p < this.dense.length; p++) if (!Number.isNaN(this.dense[p]!)) yield [p, this.dense[p]!];
    } else if (this.sparse !== null) {
      yield* this.sparse;
    }
  }
}

/** How many of the latest request times a tracker keeps (requests younger than a break's window). */
const RECENT_REQUESTS = 4096;

export class TapTracker {
  private readonly connections = new Map<number, TapFindings['connections'][number] & { ended: [boolean, boolean] }>();
  /** Per block, per target page: when it last crossed the relay in postcopy. */
  private readonly lastCrossed: PageTimes[];
  /** Time of the last break (requests are "in flight" only against pages that crossed after it). */
  private lastBreakT = -Infinity;
  private readonly breaks: TapFindings['breaks'] = [];
  private readonly inFlightLead = new LatencyHistogram();
  requestCount = 0;
  /** When the latest requests crossed (a ring of the last RECENT_REQUESTS), for what may be unread at a break. */
  private readonly recentRequests = new Float64Array(RECENT_REQUESTS);
  /** The slowest served request so far (request → page on the wire), ns. */
  private slowestServedNs = 0;
  served = 0;
  alreadyInFlight = 0;
  private pings = 0;
  private pongs = 0;
  private shut: TapFindings['shut'] = null;
  private readonly recvBitmaps: TapFindings['recvBitmaps'] = [];
  private resumeAcks = 0;

  constructor(private readonly meta: JournalMeta) {
    this.lastCrossed = meta.blocks.map((b) => new PageTimes(Math.ceil(b.length / TARGET_PAGE_SIZE)));
  }

  /** A page crossed the relay towards the destination in postcopy. */
  crossed(block: number, offset: number, t: number): void {
    this.lastCrossed[block]?.set(Math.floor(offset / TARGET_PAGE_SIZE), t);
  }

  /** When the page at `offset` last crossed since the last break, or null: a request for it then is in flight. */
  inFlightSince(block: number, offset: number): number | null {
    const t = this.lastCrossed[block]?.get(Math.floor(offset / TARGET_PAGE_SIZE)) ?? NaN;
    return !Number.isNaN(t) && t > this.lastBreakT ? t : null;
  }

  /** A request crossed the relay towards the source at `t`. */
  requested(t: number): void {
    this.recentRequests[this.requestCount % RECENT_REQUESTS] = t;
    this.requestCount++;
  }

  /** A request answered by a page that crossed `latencyNs` after it. */
  servedIn(latencyNs: number): void {
    this.served++;
    if (latencyNs > this.slowestServedNs) this.slowestServedNs = latencyNs;
  }

  /** A request whose page had crossed `leadNs` before it. */
  inFlight(leadNs: number): void {
    this.alreadyInFlight++;
    this.inFlightLead.record(leadNs);
  }

  /** Postcopy paused: what was requested and unanswered then. */
  broke(seq: number, t: number, reason: string, unanswered: Array<{ block: number; offset: number; t: number }>): void {
    this.lastBreakT = t;
    const sorted = [...unanswered].sort((x, y) => x.t - y.t);
    // In flight: the requests nothing answered, and every request younger than the slowest
    // answer seen so far (at least 10 ms, at most 1 s). A page that crossed after such a request
    // may be the push's, not an answer: the source may never have read it (migrate-pause shuts
    // its return path down), so it may not count it.
    const windowNs = Math.min(1e9, Math.max(10e6, this.slowestServedNs));
    let recent = 0;
    for (let i = 0; i < Math.min(this.requestCount, RECENT_REQUESTS); i++) if (this.recentRequests[i]! >= t - windowNs && this.recentRequests[i]! <= t) recent++;
    const olderUnanswered = unanswered.filter((o) => o.t < t - windowNs).length;
    this.breaks.push({
      seq,
      tMs: t / 1e6,
      reason,
      requestsInFlight: recent + olderUnanswered,
      inFlightWindowMs: windowNs / 1e6,
      requests: sorted.slice(0, MAX_LISTED).map((o) => ({ block: this.meta.blocks[o.block]!.name, offset: o.offset, requestedAtMs: o.t / 1e6, ageMs: (t - o.t) / 1e6 })),
      pagesLost: null,
      lostPages: [],
    });
  }

  /** A TAP_* observation, FX_RECV_BITMAP, FX_RESUME_ACK or a PING command. */
  observe(kind: number, t: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): void {
    switch (kind) {
      case EventKind.TAP_CONN_OPEN: {
        const p = payload === null ? {} : (unpack(payload) as { client?: unknown; upstream?: unknown });
        this.connections.set(a, { id: a, role: 'unknown (no byte)', client: String(p.client ?? ''), upstream: String(p.upstream ?? ''), openedMs: t / 1e6, closedMs: null, bytesToDestination: 0, bytesToSource: 0, error: null, undecoded: [], ended: [false, false] });
        return;
      }
      case EventKind.TAP_CONN_ROLE: {
        const c = this.connections.get(a);
        if (c !== undefined) c.role = TAP_ROLE_NAMES[b as 0] ?? `role ${b}`;
        return;
      }
      case EventKind.TAP_CONN_CLOSE: {
        const c = this.connections.get(a);
        if (c === undefined || (b !== 0 && b !== 1)) return;
        if (b === 0) c.bytesToDestination = offset;
        else c.bytesToSource = offset;
        c.ended[b] = true;
        if (c.ended[0] && c.ended[1]) c.closedMs = t / 1e6;
        return;
      }
      case EventKind.TAP_CONN_ERROR: {
        const c = this.connections.get(a);
        if (c === undefined) return;
        c.error = payload === null ? 'error' : String(unpack(payload));
        c.bytesToDestination = Math.max(c.bytesToDestination, offset);
        c.closedMs = t / 1e6;
        return;
      }
      case EventKind.TAP_UNDECODED: {
        const c = this.connections.get(a);
        if (c !== undefined) c.undecoded.push({ direction: b === 0 ? 'to destination' : 'to source', fromByte: offset, reason: payload === null ? '' : String(unpack(payload)) });
        return;
      }
      case EventKind.TAP_PONG:
        this.pongs++;
        return;
      case EventKind.TAP_SHUT:
        this.shut = { tMs: t / 1e6, status: b };
        return;
      case EventKind.FX_RESUME_ACK:
        this.resumeAcks++;
        return;
      case EventKind.IN_COMMAND:
        this.pings++;
        return;
      case EventKind.FX_RECV_BITMAP:
        this.recvBitmap(t, block, payload);
        return;
    }
  }

  /** The destination's receive bitmap of a block after a break: pages that crossed the relay but are not in it were lost in flight. */
  private recvBitmap(t: number, block: number, payload: Uint8Array | null): void {
    const pages = this.lastCrossed[block];
    const blk = this.meta.blocks[block];
    if (pages === undefined || blk === undefined || payload === null || payload.length < 16) return;
    const bitmap = payload.subarray(8, payload.length - 8);
    const bit = (p: number): boolean => (Math.floor(p / 8) < bitmap.length ? (bitmap[Math.floor(p / 8)]! >> (p % 8)) & 1 : 0) === 1;
    // The bits set, counted a byte at a time (the bitmap's own length bounds the work).
    let received = 0;
    const bits = Math.min(pages.pages, bitmap.length * 8);
    for (let i = 0; i < bitmap.length && i * 8 < bits; i++) {
      let b = bitmap[i]!;
      if ((i + 1) * 8 > bits) b &= (1 << (bits - i * 8)) - 1;
      while (b !== 0) {
        b &= b - 1;
        received++;
      }
    }
    this.recvBitmaps.push({ tMs: t / 1e6, block: blk.name, receivedPages: received, pages: pages.pages });
    const last = this.breaks[this.breaks.length - 1];
    if (last === undefined) return;
    const breakT = last.tMs * 1e6;
    let lost = 0;
    for (const [p, crossedAt] of pages.crossed()) {
      if (crossedAt > breakT || bit(p)) continue;
      lost++;
      if (last.lostPages.length < MAX_LISTED) last.lostPages.push({ block: blk.name, offset: p * TARGET_PAGE_SIZE, crossedAtMs: crossedAt / 1e6 });
    }
    last.pagesLost = (last.pagesLost ?? 0) + lost;
    last.lostPages.sort((x, y) => y.crossedAtMs - x.crossedAtMs);
  }

  findings(unanswered: number): TapFindings {
    const lead = this.inFlightLead.summary();
    const leadFigures: AnsweredRequests = { count: lead.count, p50Ms: lead.p50Ns / 1e6, p99Ms: lead.p99Ns / 1e6, maxMs: lead.maxNs / 1e6 };
    return {
      connections: [...this.connections.values()].map(({ ended: _ended, ...c }) => c),
      requests: { count: this.requestCount, served: this.served, alreadyInFlight: this.alreadyInFlight, inFlightLead: leadFigures, unanswered },
      breaks: this.breaks,
      pings: this.pings,
      pongs: this.pongs,
      shut: this.shut,
      recvBitmaps: this.recvBitmaps,
      resumeAcks: this.resumeAcks,
    };
  }
}
