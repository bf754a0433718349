/**
 * The part of `analyzeJournal` that only a `postcopy tap` journal needs (analysisTypes.ts
 * TapFindings): its connections, PING/PONG/SHUT, receive bitmaps, and per page when it last
 * crossed the relay in postcopy — what tells a request answered by a page sent after it
 * (served) from one whose page was already on its way (in flight), and which pages crossed
 * the relay before a break but never reached the destination.
 *
 * Memory: one Float64Array per RAM block, a slot per target page (16 MiB per 8 GiB of RAM).
 */
import { unpack } from 'msgpackr';
import { TARGET_PAGE_SIZE } from '../engine/constants.js';
import { EventKind, TAP_ROLE_NAMES } from '../engine/events.js';
import { LatencyHistogram } from '../engine/latencyHistogram.js';
import type { AnsweredRequests, TapFindings } from './analysisTypes.js';
import type { JournalMeta } from '../journal/meta.js';

/** How many requests and lost pages a break lists (the counts are whole). */
const MAX_LISTED = 50;

export class TapTracker {
  private readonly connections = new Map<number, TapFindings['connections'][number] & { ended: [boolean, boolean] }>();
  /** Per block, per target page: when it last crossed the relay in postcopy (NaN: never). */
  private readonly lastCrossed: Float64Array[];
  /** Time of the last break (requests are "in flight" only against pages that crossed after it). */
  private lastBreakT = -Infinity;
  private readonly breaks: TapFindings['breaks'] = [];
  private readonly inFlightLead = new LatencyHistogram();
  requestCount = 0;
  served = 0;
  alreadyInFlight = 0;
  private pings = 0;
  private pongs = 0;
  private shut: TapFindings['shut'] = null;
  private readonly recvBitmaps: TapFindings['recvBitmaps'] = [];
  private resumeAcks = 0;

  constructor(private readonly meta: JournalMeta) {
    this.lastCrossed = meta.blocks.map((b) => new Float64Array(Math.ceil(b.length / TARGET_PAGE_SIZE)).fill(NaN));
  }

  /** A page crossed the relay towards the destination in postcopy. */
  crossed(block: number, offset: number, t: number): void {
    const pages = this.lastCrossed[block];
    if (pages !== undefined) pages[Math.floor(offset / TARGET_PAGE_SIZE)] = t;
  }

  /** When the page at `offset` last crossed since the last break, or null: a request for it then is in flight. */
  inFlightSince(block: number, offset: number): number | null {
    const t = this.lastCrossed[block]?.[Math.floor(offset / TARGET_PAGE_SIZE)];
    return t !== undefined && !Number.isNaN(t) && t > this.lastBreakT ? t : null;
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
    this.breaks.push({
      seq,
      tMs: t / 1e6,
      reason,
      requestsInFlight: unanswered.length,
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
    const bit = (p: number): boolean => (p >> 3 < bitmap.length ? (bitmap[p >> 3]! >> (p & 7)) & 1 : 0) === 1;
    let received = 0;
    for (let p = 0; p < pages.length; p++) if (bit(p)) received++;
    this.recvBitmaps.push({ tMs: t / 1e6, block: blk.name, receivedPages: received, pages: pages.length });
    const last = this.breaks[this.breaks.length - 1];
    if (last === undefined) return;
    const breakT = last.tMs * 1e6;
    let lost = 0;
    for (let p = 0; p < pages.length; p++) {
      const crossedAt = pages[p]!;
      if (Number.isNaN(crossedAt) || crossedAt > breakT || bit(p)) continue;
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
