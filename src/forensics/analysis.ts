/**
 * `analyzeJournal`: what happened in a migration, from its journal alone — an engine run
 * or an imported QEMU trace (io/qemuImport.ts writes the same event kinds). The data
 * behind `postcopy inspect` and `postcopy report` (analysisTypes.ts).
 *
 * One streaming pass over the segments (plus, for an imported trace, a first pass over
 * its blocktime begins for QEMU's clock offset), in bounded memory: histograms, capped
 * and downsampled series, a capped slowest list; the maps of waiting faults and
 * outstanding requests hold only what is outstanding.
 *
 * Where the figures come from:
 * - status, PostcopyState, timeline, pauses: FX_STATE;
 * - blocktime, `qemu` mode: an engine journal's faults (FX_FAULT_SEEN, with the IN_FAULT
 *   address) and placements (FX_COPY/FX_ZERO) through QemuBlocktime, as the engine
 *   feeds it; an imported trace's TR_BLOCKTIME_* through the same replay that
 *   reproduces QEMU's figures from a trace file (io/qemuTraceBlocktime.ts);
 * - blocktime, `exact` mode, fault latencies, outstanding requests, page counts: faults
 *   and placements, for both sources;
 * - a `postcopy tap` journal (no faults, no placements): requests against the pages that
 *   crossed the relay after them (tapAnalysis.ts), its connections and breaks. An imported trace's lines were written in file
 *   order, which is not quite time order (threads write their lines late), so its events
 *   are taken in time order through a reorder window first.
 */
import { unpack } from 'msgpackr';
import { ExactBlocktime } from '../engine/blocktimeExact.js';
import { QemuBlocktime } from '../engine/blocktimeQemu.js';
import { MigCommand, POSTCOPY_STATE_NAMES, TARGET_PAGE_SIZE } from '../engine/constants.js';
import { EVENT_KIND_NAMES, EventKind, FaultDisposition, MACHINE_NAMES, MachineId, RequestFlag, type EventKindValue, type EventRecord } from '../engine/events.js';
import { LatencyHistogram } from '../engine/latencyHistogram.js';
import { JournalError } from '../errors.js';
import { ReorderBuffer } from '../engine/reorderBuffer.js';
import { TraceBlocktimeReplay, offsetBound } from '../engine/traceBlocktimeReplay.js';
import type { Analysis, AnsweredRequests } from './analysisTypes.js';
import type { JournalReader } from '../journal/journalReader.js';
import type { JournalMeta } from '../journal/meta.js';
import { payloadOf, type Segment } from '../journal/segment.js';
import { TapTracker } from './tapAnalysis.js';

export interface AnalyzeOptions {
  /** How many of the slowest faults to list. Default 20. */
  slowest?: number;
  /** Called after each segment: events read so far, events in the journal. */
  onProgress?: (events: number, total: number) => void;
}

/** Trace time an imported journal's events are held to put them in time order, ns (as the blocktime replay's window). */
const REORDER_WINDOW_NS = 100e6;
const MAX_REORDER = 1_000_000;
const MAX_TIMELINE = 10_000;
const MAX_ERRORS = 1000;
const MAX_STDERR = 200;
const MAX_ANOMALIES = 100;
const KNOWN_COMMANDS = new Set<number>(Object.values(MigCommand));
const MAX_SERIES_POINTS = 1000;
const MAX_INTERVALS = 1000;
const MAX_CDF_POINTS = 200;
/** Edges of the latency histogram, ms: 1-2-5 steps from 10 µs. */
const HISTOGRAM_EDGES_MS = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000];


/** A fault waiting for its page. */
interface Waiter {
  seq: number;
  t: number;
  vcpu: number;
}

/** A requested host page not placed yet. */
interface Outstanding {
  block: number;
  offset: number;
  t: number;
  seq: number;
  /** Opened by a page request (not by a fault held during a pause). */
  requested: boolean;
}

/** Reads the whole journal (bounded memory) and explains it. JournalErrors past the start are reported in the result, not thrown. */
export function analyzeJournal(reader: JournalReader, opts: AnalyzeOptions = {}): Analysis {
  const a = startAnalysis(reader, opts);
  const total = reader.eventCount();
  let unreadable: JournalError | null = null;
  try {
    for (const seg of reader.segments()) {
      a.segment(seg);
      opts.onProgress?.(seg.firstSeq + seg.count, total);
    }
  } catch (err) {
    if (!(err instanceof JournalError)) throw err;
    unreadable = err;
  }
  return a.finish(unreadable);
}

/** The analysis fed one segment at a time (analyzeJournal's loop, for a reader of the segments that does more with each). */
export interface IncrementalAnalysis {
  /** Takes the journal's next segment, in order. */
  segment(seg: Segment): void;
  /** The analysis of the segments taken; `unreadable`: the error that stopped reading, if any. */
  finish(unreadable: JournalError | null): Analysis;
  /**
   * Request → placement over every answered request, whatever the channel (the Analysis
   * has it per channel only, and percentiles do not merge): the fleet's served-request
   * latency. Valid after finish.
   */
  served(): AnsweredRequests;
}

/**
 * Starts an analysis whose caller walks `reader.segments()` itself and hands each segment
 * over (e.g. the Parquet export, which writes every event once in the same pass):
 * the same figures as analyzeJournal. An imported trace's first pass (QEMU's clock
 * offset) runs here.
 */
export function startAnalysis(reader: JournalReader, opts: Pick<AnalyzeOptions, 'slowest'> = {}): IncrementalAnalysis {
  const imported = reader.meta.source === 'qemu-trace';
  const clockOffsetUs = imported ? qemuClockOffsetUs(reader) : null;
  return new JournalAnalyzer(reader.path, reader.meta, imported, clockOffsetUs, opts.slowest ?? 20);
}

/**
 * QEMU's blocktime clock in an imported journal: the offset, µs after t = 0, below
 * which no begin's `time:` can have been taken (qemuTraceBlocktime.ts explains the
 * bound); null when there is no begin. A pass over the begins only.
 */
export function qemuClockOffsetUs(reader: JournalReader): number | null {
  if (reader.countOfKind(EventKind.TR_BLOCKTIME_BEGIN) === 0) return null;
  let best = Infinity;
  try {
    for (const seg of reader.segments()) {
      for (let i = 0; i < seg.count; i++) {
        if (seg.kind[i] !== EventKind.TR_BLOCKTIME_BEGIN || seg.b[i] !== 0) continue;
        const ms = beginMs(seg, i);
        if (ms !== null) best = Math.min(best, offsetBound({ timeUs: seg.t[i]! / 1000, time: ms }));
      }
    }
  } catch (err) {
    if (!(err instanceof JournalError)) throw err; // the main pass reports it
  }
  return Number.isFinite(best) ? best : null;
}

/** QEMU's `time:` of a TR_BLOCKTIME_BEGIN (its payload), or null. */
function beginMs(seg: Segment, i: number): number | null {
  const p = payloadOf(seg, i);
  if (p === null) return null;
  let v: unknown;
  try {
    v = unpack(p);
  } catch {
    return null; // the main pass reports it as an anomaly
  }
  return typeof v === 'number' ? v : null;
}

class JournalAnalyzer {
  private readonly vcpus: number;
  private readonly blockBase: number[] = [];
  // Reordering (imported traces).
  /** Imported events put back in time order before they are applied. */
  private readonly reorder = new ReorderBuffer<EventRecord>((e) => e.t, REORDER_WINDOW_NS, MAX_REORDER, (e) => this.applyEv(e));
  // Totals.
  private events = 0;
  private minT = Infinity;
  private maxT = -Infinity;
  // Lifecycle.
  private readonly states = ['NONE', 'setup', 'notStarted', 'NONE.idle'];
  private readonly timeline: Analysis['timeline'] = [];
  private readonly pauses: Analysis['pauses'] = [];
  private readonly errors: Analysis['errors'] = [];
  /** The source trace's last line so far (imported with --src). */
  private sourceLast: Analysis['sourceLast'] = null;
  private readonly stderr: Analysis['stderr'] = [];
  /** Events that decode but cannot have been written (Analysis['anomalies']). */
  private readonly anomalies: Analysis['anomalies']['first'] = [];
  private anomalyCount = 0;
  private lastCommand = { seq: -1, command: 0 };
  private lastInput = { seq: -1, kind: 0, a: 0 };
  /** The last broken channel or stream error: why the next pause or failure happened. */
  private lastInterrupt = { seq: -1, text: '' };
  /** Per channel (main, preempt): the EOS of its current connection, if read. */
  private readonly streamEnds: Array<{ seq: number; t: number } | null> = [null, null];
  // Blocktime.
  private qemu: QemuBlocktime | null = null;
  private readonly replay: TraceBlocktimeReplay | null;
  private unknownVcpuBegins = 0;
  private readonly exact: ExactBlocktime;
  private readonly blockedSince: Float64Array;
  private readonly intervals: Array<Array<[number, number]>>;
  private lastFault = { seq: -1, t: 0, address: 0 };
  private faults = 0;
  // Latency.
  private readonly latency = new LatencyHistogram();
  /** Request → placement, by the channel that brought the page: [unknown, main, preempt]. */
  private readonly answered = [new LatencyHistogram(), new LatencyHistogram(), new LatencyHistogram()];
  /** Request → placement, every channel together. */
  private readonly answeredAll = new LatencyHistogram();
  private readonly histogram = new Float64Array(HISTOGRAM_EDGES_MS.length);
  private readonly slowest: Analysis['faults']['slowest'] = [];
  private readonly waiting = new Map<number, Waiter[]>();
  // Requests and pages.
  private readonly outstanding = new Map<number, Outstanding>();
  private requests = 0;
  private resent = 0;
  private placed = 0;
  private zero = 0;
  private precopy = 0;
  private precopySeq = -1;
  private readonly byChannel = [0, 0];
  private readonly lastPageSeq = [-1, -1];
  private readonly allZero = [true, true];
  private discardedRanges = 0;
  /** FX_BLOCKTIME's qemu total (an import: QEMU's own cleanup figure). */
  private reportedBlocktime: number | null = null;
  private receivedTargetPages = 0;
  private readonly received: Array<[number, number]> = [];
  private receivedStride = 1;
  private receivedNext = 1;
  private receivedLastT = 0;
  /** A tap journal's own findings (null for other journals). */
  private readonly tap: TapTracker | null;

  constructor(
    private readonly path: string,
    private readonly meta: JournalMeta,
    private readonly imported: boolean,
    clockOffsetUs: number | null,
    private readonly slowestCount: number,
  ) {
    this.vcpus = meta.vcpuTids.length;
    let base = 0;
    for (const b of meta.blocks) {
      this.blockBase.push(base);
      base += b.maxLength ?? b.length;
    }
    const n = Math.max(1, this.vcpus);
    this.exact = new ExactBlocktime(n);
    this.blockedSince = new Float64Array(n).fill(NaN);
    this.intervals = Array.from({ length: n }, () => []);
    this.replay = imported ? new TraceBlocktimeReplay(clockOffsetUs === null ? { vcpuCount: n } : { vcpuCount: n, clockOffsetUs }) : null;
    this.tap = meta.source === 'tap' ? new TapTracker(meta) : null;
  }

  /** Takes a segment's events in journal order; an impossible event is recorded as an anomaly and skipped. */
  segment(seg: Segment): void {
    for (let i = 0; i < seg.count; i++) {
      const kind = seg.kind[i]!;
      const t = seg.t[i]!;
      const seq = seg.firstSeq + i;
      this.events++;
      const wrong = this.impossible(seg, i, seq);
      if (wrong !== null) {
        this.anomaly(seq, wrong);
        continue;
      }
      if (t < this.minT) this.minT = t;
      if (t > this.maxT) this.maxT = t;
      try {
        if (kind === EventKind.TR_BLOCKTIME_BEGIN || kind === EventKind.TR_BLOCKTIME_END) {
          this.blocktimeLine(seg, i); // in file order: the replay reorders them itself
          continue;
        }
        if (kind === EventKind.TR_NOTE) {
          // Notes of the other side (the source's trace, QEMU's stderr) say what happened there; the destination's own notes are not read.
          const p = this.imported ? payloadOf(seg, i) : null;
          const note = p === null ? null : (unpack(p) as { side?: unknown });
          if (note !== null && (note.side === 'src' || note.side === 'stderr')) this.enqueue({ kind: kind as EventKindValue, t, seq, cause: -1, block: -1, offset: 0, a: 0, b: 0, payload: p });
          continue;
        }
        if (!this.imported) {
          this.apply(kind, t, seq, seg.cause[i]!, seg.block[i]!, seg.offset[i]!, seg.a[i]!, seg.b[i]!, needsPayload(kind) ? payloadOf(seg, i) : null);
          continue;
        }
      } catch (err) {
        this.anomaly(seq, `the event cannot be taken: ${(err as Error).message}`);
        continue;
      }
      const p = needsPayload(kind) ? payloadOf(seg, i) : null;
      this.enqueue({ kind: kind as EventKindValue, t, seq, cause: seg.cause[i]!, block: seg.block[i]!, offset: seg.offset[i]!, a: seg.a[i]!, b: seg.b[i]!, payload: p });
    }
  }

  /**
   * Why event `i` cannot have been written by the engine or the importer, though it decodes
   * (a time that is not finite, a block or offset outside the blocks, a command that does
   * not exist, a cause after the event), or null. Pure.
   */
  private impossible(seg: Segment, i: number, seq: number): string | null {
    const t = seg.t[i]!;
    if (!Number.isFinite(t)) return `time ${t} is not finite`;
    const cause = seg.cause[i]!;
    if (!(Number.isInteger(cause) && cause >= -1 && cause < seq)) return `cause ${cause} is not an earlier sequence number`;
    const a = seg.a[i]!;
    const b = seg.b[i]!;
    if (!Number.isFinite(a) || !Number.isFinite(b)) return `field a=${a} or b=${b} is not finite`;
    const block = seg.block[i]!;
    if (block < -1 || block >= this.meta.blocks.length) return `block ${block} is not one of the journal's ${this.meta.blocks.length} block(s)`;
    if (block >= 0) {
      const blk = this.meta.blocks[block]!;
      const limit = blk.maxLength ?? blk.length;
      const offset = seg.offset[i]!;
      const kind = seg.kind[i]!;
      const okOffset = kind === EventKind.IN_RESIZE ? offset >= 0 && offset <= limit : offset >= 0 && offset < Math.max(limit, 1);
      if (!(Number.isFinite(offset) && okOffset)) return `offset 0x${offset.toString(16)} is outside block '${blk.name}' (0x${limit.toString(16)} bytes)`;
    }
    if (seg.kind[i] === EventKind.IN_COMMAND && !KNOWN_COMMANDS.has(a)) return `command ${a} is not a migration command`;
    return null;
  }

  private anomaly(seq: number, reason: string): void {
    this.anomalyCount++;
    if (this.anomalies.length < MAX_ANOMALIES) this.anomalies.push({ seq, reason });
  }

  // -------------------------------------------------------------------------
  // Reordering: stable by time, then journal order.

  private enqueue(e: EventRecord): void {
    this.reorder.push(e);
  }

  private drain(): void {
    this.reorder.drain();
  }

  private applyEv(e: EventRecord): void {
    try {
      this.apply(e.kind, e.t, e.seq, e.cause, e.block, e.offset, e.a, e.b, e.payload);
    } catch (err) {
      this.anomaly(e.seq, `the event cannot be taken: ${(err as Error).message}`);
    }
  }

  // -------------------------------------------------------------------------
  // Events

  private apply(kind: number, t: number, seq: number, cause: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): void {
    if (this.tap !== null) {
      switch (kind) {
        case EventKind.IN_PAGE:
          this.page(t, seq, block, offset, a, b);
          return this.tapPage(t, block, offset, a, b);
        case EventKind.FX_REQUEST:
          return this.tapRequest(t, seq, block, offset, a);
        case EventKind.FX_RECV_BITMAP:
        case EventKind.FX_RESUME_ACK:
        case EventKind.TAP_CONN_OPEN:
        case EventKind.TAP_CONN_ROLE:
        case EventKind.TAP_CONN_CLOSE:
        case EventKind.TAP_CONN_ERROR:
        case EventKind.TAP_UNDECODED:
        case EventKind.TAP_PONG:
        case EventKind.TAP_SHUT:
          return this.tap.observe(kind, t, block, offset, a, b, payload);
        case EventKind.IN_COMMAND:
          if (a === MigCommand.PING) this.tap.observe(kind, t, block, offset, a, b, payload);
          break;
      }
    }
    switch (kind) {
      case EventKind.IN_PAGE:
        return this.page(t, seq, block, offset, a, b);
      case EventKind.FX_COPY:
      case EventKind.FX_ZERO:
        return this.placement(kind, t, cause, block, offset, b);
      case EventKind.IN_FAULT:
        this.faults++;
        this.lastFault = { seq, t, address: offset };
        this.lastInput = { seq, kind, a };
        return;
      case EventKind.FX_FAULT_SEEN:
        return this.faultSeen(t, cause, block, offset, a, b);
      case EventKind.FX_REQUEST:
        if ((b & (RequestFlag.RESEND | RequestFlag.SYNC)) !== 0) this.resent++;
        else this.requests++;
        if (block >= 0 && !this.outstanding.has(this.key(block, offset))) this.outstanding.set(this.key(block, offset), { block, offset, t, seq, requested: true });
        return;
      case EventKind.FX_STATE:
        return this.state(t, seq, cause, a, payload);
      case EventKind.TR_NOTE:
        return this.note(t, seq, payload);
      case EventKind.FX_ERROR:
        return this.error(t, seq, cause, payload);
      case EventKind.FX_BLOCKTIME:
        this.reportedBlocktime = a;
        return;
      case EventKind.FX_DISCARD:
        if (cause === this.lastCommand.seq && this.lastCommand.command === MigCommand.POSTCOPY_RAM_DISCARD) this.discardedRanges++;
        return;
      case EventKind.IN_COMMAND:
        this.lastCommand = { seq, command: a };
        this.lastInput = { seq, kind, a };
        return;
      case EventKind.IN_EOS:
      case EventKind.IN_CHANNEL_CONNECTED:
        this.lastInput = { seq, kind, a };
        // A new connection starts a new stream on its channel.
        if (a === 0 || a === 1) this.streamEnds[a] = kind === EventKind.IN_EOS ? { seq, t } : null;
        return;
      case EventKind.IN_CHANNEL_BROKEN:
      case EventKind.IN_STREAM_ERROR: {
        this.lastInput = { seq, kind, a };
        const reason = payload === null ? '' : String(unpack(payload));
        this.lastInterrupt = { seq, text: `${describeInput(kind, a)}${reason ? `: ${reason}` : ''}` };
        return;
      }
      default:
        if (kind < 32) this.lastInput = { seq, kind, a };
        return;
    }
  }

  private page(t: number, seq: number, block: number, offset: number, channel: number, zero: number): void {
    this.lastInput = { seq, kind: EventKind.IN_PAGE, a: channel };
    if (channel === 0 || channel === 1) {
      this.lastPageSeq[channel] = seq;
      const hps = this.meta.blocks[block]?.hostPageSize ?? TARGET_PAGE_SIZE;
      if (offset % hps === 0) this.allZero[channel] = true;
      this.allZero[channel] = this.allZero[channel]! && zero === 1;
    }
    if (POSTCOPY_STATE_NAMES.indexOf(this.states[MachineId.POSTCOPY] as never) < 3) {
      // Precopy: the page is written in place (an error right after it means it was refused).
      this.precopy++;
      this.precopySeq = seq;
      this.countReceived(t, 1);
    }
  }

  /** Tap journal: a page crossed the relay; in postcopy it answers the request outstanding for it. */
  private tapPage(t: number, block: number, offset: number, channel: number, zero: number): void {
    if (block < 0 || POSTCOPY_STATE_NAMES.indexOf(this.states[MachineId.POSTCOPY] as never) < 3) return;
    const hps = this.meta.blocks[block]!.hostPageSize ?? TARGET_PAGE_SIZE;
    const hostOffset = offset - (offset % hps);
    this.tap!.crossed(block, offset, t);
    this.placed++;
    if (zero === 1) this.zero++;
    if (channel === 0 || channel === 1) this.byChannel[channel]!++;
    this.countReceived(t, 1);
    const key = this.key(block, hostOffset);
    const request = this.outstanding.get(key);
    if (request?.requested !== true) return;
    this.answered[channel === 0 || channel === 1 ? channel + 1 : 0]!.record(t - request.t);
    this.answeredAll.record(t - request.t);
    this.tap!.servedIn(t - request.t);
    this.outstanding.delete(key);
  }

  /** Tap journal: a request seen on the return path; its page may have crossed the relay already (in flight). */
  private tapRequest(t: number, seq: number, block: number, offset: number, length: number): void {
    this.requests++;
    this.tap!.requested(t);
    if (block < 0) return;
    const hps = this.meta.blocks[block]!.hostPageSize ?? TARGET_PAGE_SIZE;
    const end = offset + Math.max(length, 1);
    for (let at = offset - (offset % hps); at < end; at += hps) {
      const crossedAt = this.tap!.inFlightSince(block, at);
      if (crossedAt !== null) {
        this.tap!.inFlight(t - crossedAt);
        continue;
      }
      const key = this.key(block, at);
      if (!this.outstanding.has(key)) this.outstanding.set(key, { block, offset: at, t, seq, requested: true });
    }
  }

  private faultSeen(t: number, cause: number, block: number, offset: number, vcpu: number, disposition: number): void {
    if (block < 0 || block >= this.meta.blocks.length) return;
    const v = vcpu >= 0 && vcpu < this.vcpus ? vcpu : -1;
    const received = disposition === FaultDisposition.ALREADY_RECEIVED;
    const key = this.key(block, offset);
    const faultT = this.lastFault.seq === cause ? this.lastFault.t : t;
    if (this.qemu !== null) {
      const address = this.lastFault.seq === cause ? this.lastFault.address : this.meta.blocks[block]!.hostAddress + offset;
      this.qemu.begin(v, address, faultT, received);
    }
    this.exactFault(v, key, faultT, received);
    if (received) return;
    const list = this.waiting.get(key);
    const w = { seq: cause, t: faultT, vcpu: v };
    if (list === undefined) this.waiting.set(key, [w]);
    else list.push(w);
    if (disposition === FaultDisposition.HELD && !this.outstanding.has(key)) this.outstanding.set(key, { block, offset, t: faultT, seq: cause, requested: false });
  }

  private placement(kind: number, t: number, cause: number, block: number, offset: number, outcome: number): void {
    if (outcome === 2 || block < 0 || block >= this.meta.blocks.length) return; // EAGAIN: tried again
    const b = this.meta.blocks[block]!;
    const channel = cause >= 0 && cause === this.lastPageSeq[0] ? 0 : cause >= 0 && cause === this.lastPageSeq[1] ? 1 : -1;
    const zero = kind === EventKind.FX_ZERO || (b.hugetlbfs === true && (channel < 0 ? cause === this.lastFault.seq : this.allZero[channel]!));
    this.placed++;
    if (zero) this.zero++;
    if (channel >= 0) this.byChannel[channel]!++;
    this.countReceived(t, (b.hostPageSize ?? TARGET_PAGE_SIZE) / TARGET_PAGE_SIZE);
    const key = this.key(block, offset);
    if (this.qemu !== null) this.qemu.end(b.hostAddress + offset, t);
    this.exactPlaced(key, t);
    const request = this.outstanding.get(key);
    if (request?.requested === true) {
      this.answered[channel + 1]!.record(t - request.t);
      this.answeredAll.record(t - request.t);
    }
    this.outstanding.delete(key);
    const list = this.waiting.get(key);
    if (list === undefined) return;
    this.waiting.delete(key);
    for (const w of list) this.recordLatency(w, t, block, offset);
  }

  private state(t: number, seq: number, cause: number, machine: number, payload: Uint8Array | null): void {
    if (payload === null) return;
    const p = unpack(payload) as { from?: unknown; to?: unknown; event?: unknown };
    const from = String(p.from);
    const to = String(p.to);
    if (machine >= 0 && machine < this.states.length) this.states[machine] = to;
    if (this.timeline.length < MAX_TIMELINE) {
      this.timeline.push({ seq, tMs: t / 1e6, machine: MACHINE_NAMES[machine] ?? `machine ${machine}`, from, to, event: String(p.event) });
    }
    if (machine === MachineId.POSTCOPY && to === 'ADVISE' && !this.imported) {
      // The engine creates QEMU's blocktime context while handling ADVISE.
      this.qemu = new QemuBlocktime(Math.max(1, this.vcpus), t);
    }
    if (machine !== MachineId.MIGRATION) return;
    const open = this.pauses.length > 0 && this.pauses[this.pauses.length - 1]!.endMs === null ? this.pauses[this.pauses.length - 1]! : null;
    const why = this.lastInterrupt.seq >= 0 ? this.lastInterrupt : null;
    if (to === 'postcopy-paused' && open === null) {
      const pause: Analysis['pauses'][number] = { startSeq: seq, startMs: t / 1e6, endMs: null, durationMs: null };
      if (why !== null) Object.assign(pause, { causeSeq: why.seq, reason: why.text });
      if (this.tap !== null) this.tap.broke(seq, t, why?.text ?? '', [...this.outstanding.values()].filter((o) => o.requested));
      if (this.sourceLast !== null) pause.sourceLast = { ...this.sourceLast };
      this.pauses.push(pause);
    } else if (to === 'failed' && this.errors.length < MAX_ERRORS) {
      const entry: Analysis['errors'][number] = { seq, tMs: t / 1e6, code: 'MIGRATION_FAILED', message: `migration failed (from ${from}, on ${String(p.event)})` };
      if (cause >= 0) entry.causeSeq = cause;
      if (why !== null) entry.message += `: ${why.text}`;
      this.errors.push(entry);
    } else if (to === 'postcopy-active' && open !== null) {
      open.endMs = t / 1e6;
      open.durationMs = open.endMs - open.startMs;
    }
    if (to === 'postcopy-active' || to === 'completed') this.lastInterrupt = { seq: -1, text: '' };
  }

  private note(t: number, seq: number, payload: Uint8Array | null): void {
    if (payload === null) return;
    const n = unpack(payload) as { side?: unknown; event?: unknown; text?: unknown };
    const text = String(n.text ?? '');
    if (n.side === 'src') this.sourceLast = { seq, tMs: t / 1e6, event: String(n.event ?? ''), text };
    else if (n.side === 'stderr' && this.stderr.length < MAX_STDERR) this.stderr.push({ seq, tMs: t / 1e6, text });
  }

  private error(t: number, seq: number, cause: number, payload: Uint8Array | null): void {
    if (cause >= 0 && cause === this.precopySeq) {
      this.precopy--;
      this.countReceived(t, -1);
    }
    if (this.errors.length >= MAX_ERRORS) return;
    const p = payload === null ? {} : (unpack(payload) as { code?: unknown; message?: unknown });
    const entry: Analysis['errors'][number] = { seq, tMs: t / 1e6, code: String(p.code ?? 'UNKNOWN'), message: String(p.message ?? '') };
    if (cause >= 0) {
      entry.causeSeq = cause;
      if (cause === this.lastInput.seq) entry.input = describeInput(this.lastInput.kind, this.lastInput.a);
    }
    this.errors.push(entry);
  }

  private blocktimeLine(seg: Segment, i: number): void {
    const r = this.replay;
    if (r === null) return;
    const us = seg.t[i]! / 1000;
    const seq = seg.firstSeq + i;
    if (seg.kind[i] === EventKind.TR_BLOCKTIME_END) {
      r.end(us, seq, seg.offset[i]!, seg.b[i]!, seg.a[i]!);
      return;
    }
    const cpu = seg.a[i]!;
    if (!(cpu >= 0 && cpu < Math.max(1, this.vcpus))) {
      this.unknownVcpuBegins++; // a vCPU the meta does not know (vCPUs inferred from incomplete faults)
      return;
    }
    r.begin(us, seq, seg.offset[i]!, cpu, beginMs(seg, i) ?? 0, seg.b[i]!);
  }

  // -------------------------------------------------------------------------
  // Exact blocktime with each vCPU's blocked intervals

  private exactFault(v: number, key: number, t: number, received: boolean): void {
    if (v < 0) {
      this.exact.fault(v, key, key, t, received);
      return;
    }
    const before = this.exact.isBlocked(v);
    const refaults = this.exact.closedByRefault;
    this.exact.fault(v, key, key, t, received);
    const after = this.exact.isBlocked(v);
    if (!before && after) this.blockedSince[v] = t;
    else if (before && !after) this.closeInterval(v, t);
    else if (before && after && this.exact.closedByRefault !== refaults) {
      // A new fault of a vCPU still blocked: its wait closed here, a new one opens.
      this.closeInterval(v, t);
      this.blockedSince[v] = t;
    }
  }

  private exactPlaced(key: number, t: number): void {
    if (this.exact.placed(key, t) === 0) return;
    for (let v = 0; v < this.blockedSince.length; v++) {
      if (!Number.isNaN(this.blockedSince[v]!) && !this.exact.isBlocked(v)) this.closeInterval(v, t);
    }
  }

  private closeInterval(v: number, t: number): void {
    const list = this.intervals[v]!;
    list.push([this.blockedSince[v]! / 1e6, t / 1e6]);
    this.blockedSince[v] = NaN;
    if (list.length >= 2 * MAX_INTERVALS) {
      // Downsample: neighbours merge, so a plot shows coarser blocked stretches.
      for (let i = 0; i < MAX_INTERVALS; i++) list[i] = [list[2 * i]![0], list[2 * i + 1]![1]];
      list.length = MAX_INTERVALS;
    }
  }

  // -------------------------------------------------------------------------
  // Latency and series

  /** The block an address key falls in. */
  private blockOfKey(key: number): number {
    let b = 0;
    while (b + 1 < this.blockBase.length && this.blockBase[b + 1]! <= key) b++;
    return b;
  }

  private recordLatency(w: Waiter, t: number, block: number, offset: number, unanswered = false): void {
    const ns = t - w.t;
    this.latency.record(ns);
    const ms = ns / 1e6;
    let k = 0;
    while (k + 1 < HISTOGRAM_EDGES_MS.length && ms >= HISTOGRAM_EDGES_MS[k + 1]!) k++;
    this.histogram[k]!++;
    const s = this.slowest;
    if (s.length === this.slowestCount && (this.slowestCount === 0 || ms <= s[s.length - 1]!.latencyMs)) return;
    const entry: Analysis['faults']['slowest'][number] = { seq: w.seq, tMs: w.t / 1e6, block: this.meta.blocks[block]!.name, offset, vcpu: w.vcpu, latencyMs: ms };
    if (unanswered) entry.unanswered = true;
    let i = s.length;
    s.push(entry);
    while (i > 0 && s[i - 1]!.latencyMs < ms) {
      s[i] = s[i - 1]!;
      i--;
    }
    s[i] = entry;
    if (s.length > this.slowestCount) s.length = this.slowestCount;
  }

  private countReceived(t: number, targetPages: number): void {
    this.receivedTargetPages += targetPages;
    this.receivedLastT = t;
    if (targetPages <= 0 || this.receivedTargetPages < this.receivedNext) return;
    this.received.push([t / 1e6, this.receivedTargetPages]);
    this.receivedNext = this.receivedTargetPages + this.receivedStride;
    if (this.received.length >= 2 * MAX_SERIES_POINTS) {
      for (let i = 0; i < MAX_SERIES_POINTS; i++) this.received[i] = this.received[2 * i + 1]!;
      this.received.length = MAX_SERIES_POINTS;
      this.receivedStride *= 2;
    }
  }

  private key(block: number, offset: number): number {
    return this.blockBase[block]! + offset;
  }

  // -------------------------------------------------------------------------
  // The result

  finish(unreadable: JournalError | null): Analysis {
    this.drain();
    const endT = Number.isFinite(this.maxT) ? Math.max(0, this.maxT) : 0;
    const m = this.meta;
    const qemu = this.qemuFigures();
    const exact = this.exact.report();
    // A vCPU still blocked at the end of the journal: its open wait runs to the end.
    const stillBlocked: Analysis['blocktime']['exact']['stillBlocked'] = [];
    const perVcpuNs = exact.perVcpuBlockedNs.slice(0, this.vcpus);
    let allSince = -Infinity;
    for (let v = 0; v < this.vcpus; v++) {
      const since = this.blockedSince[v]!;
      if (Number.isNaN(since)) {
        allSince = NaN;
        continue;
      }
      stillBlocked.push({ vcpu: v, sinceMs: since / 1e6 });
      perVcpuNs[v] = (perVcpuNs[v] ?? 0) + (endT - since);
      allSince = Math.max(allSince, since);
      this.intervals[v]!.push([since / 1e6, endT / 1e6]);
    }
    const exactTotalNs = exact.totalNs + (this.vcpus > 0 && Number.isFinite(allSince) ? endT - allSince : 0);
    // A fault still waiting at the end counts in the latencies at its age (a lower bound).
    let unanswered = 0;
    for (const [key, list] of this.waiting) {
      const o = this.outstanding.get(key);
      for (const w of list) {
        unanswered++;
        this.recordLatency(w, endT, o?.block ?? this.blockOfKey(key), o?.offset ?? key - this.blockBase[this.blockOfKey(key)]!, true);
      }
    }
    const summary = this.latency.summary();
    if (this.received.length === 0 || this.received[this.received.length - 1]![1] !== this.receivedTargetPages) {
      if (this.receivedTargetPages > 0) this.received.push([this.receivedLastT / 1e6, this.receivedTargetPages]);
    }
    const outstanding = [...this.outstanding.values()]
      .sort((x, y) => x.t - y.t || x.seq - y.seq)
      .map((o) => ({
        block: m.blocks[o.block]!.name,
        offset: o.offset,
        // A relay sees no host addresses (a tap journal's are made up for replay's engine).
        address: this.tap === null && Number.isFinite(m.blocks[o.block]!.hostAddress) ? m.blocks[o.block]!.hostAddress + o.offset : null,
        requestedAtMs: o.t / 1e6,
        ageMs: (endT - o.t) / 1e6,
        seq: o.seq,
      }));
    return {
      journal: {
        path: this.path,
        source: m.source,
        events: this.events,
        created: m.created,
        engineVersion: m.engineVersion,
        blocks: m.blocks.map((b) => ({ name: b.name, length: b.length, hostPageSize: b.hostPageSize ?? TARGET_PAGE_SIZE })),
        capabilities: m.capabilities,
        unreadableFrom: unreadable === null ? null : unreadable.seq,
        unreadableReason: unreadable === null ? null : unreadable.message,
      },
      status: this.states[MachineId.MIGRATION]!,
      postcopyState: this.states[MachineId.POSTCOPY]!,
      streamEnds: this.streamEnds.map((e) => (e === null ? null : { seq: e.seq, tMs: e.t / 1e6 })) as Analysis['streamEnds'],
      vcpus: this.vcpus,
      firstEventMs: this.events === 0 ? 0 : Math.max(0, this.minT) / 1e6,
      durationMs: endT / 1e6,
      timeline: this.timeline,
      pauses: this.pauses,
      blocktime: {
        qemu,
        exact: {
          totalMs: exactTotalNs / 1e6,
          perVcpuMs: perVcpuNs.map((ns) => ns / 1e6),
          perVcpuFaults: exact.perVcpuFaults.slice(0, this.vcpus),
          stillBlocked,
        },
      },
      faults: {
        count: this.faults,
        timed: this.latency.count,
        unanswered,
        p50Ms: summary.p50Ns / 1e6,
        p90Ms: summary.p90Ns / 1e6,
        p99Ms: summary.p99Ns / 1e6,
        maxMs: summary.maxNs / 1e6,
        histogram: this.histogramBuckets(),
        slowest: this.slowest,
      },
      requests: {
        count: this.requests,
        resent: this.resent,
        outstanding,
        answeredBy: { main: answeredSummary(this.answered[1]!), preempt: answeredSummary(this.answered[2]!), unknown: answeredSummary(this.answered[0]!) },
        answered: answeredSummary(this.answeredAll),
      },
      pages: {
        placed: this.placed,
        zero: this.zero,
        precopy: this.precopy,
        byChannel: { '0': this.byChannel[0]!, '1': this.byChannel[1]! },
        discardedRanges: this.discardedRanges,
      },
      ...(this.tap === null ? {} : { tap: this.tap.findings(outstanding.length) }),
      errors: this.errors,
      sourceLast: this.sourceLast,
      stderr: this.stderr,
      anomalies: { count: this.anomalyCount, first: this.anomalies },
      series: {
        received: this.received,
        vcpuBlocked: this.intervals.slice(0, this.vcpus).map((intervals, vcpu) => ({ vcpu, intervals })),
        latencyCdf: this.latencyCdf(),
      },
    };
  }

  served(): AnsweredRequests {
    return answeredSummary(this.answeredAll);
  }

  private qemuFigures(): Analysis['blocktime']['qemu'] {
    if (this.replay !== null) {
      const r = this.replay.finish();
      const q = this.meta.run?.queryMigrate as { file: string; blocktimeMs: number | null; perVcpuBlocktimeMs: number[] | null } | null | undefined;
      return {
        ...(q ? { reported: { file: q.file, totalMs: q.blocktimeMs, perVcpuMs: q.perVcpuBlocktimeMs } } : {}),
        totalMs: r.qemu.totalMs,
        perVcpuMs: r.qemu.perVcpuMs.slice(0, this.vcpus),
        check: {
          endLines: r.endLines,
          totalMismatches: r.totalMismatches,
          affectedMismatches: r.affectedMismatches,
          reportedTotalMs: this.reportedBlocktime,
          lastEndTotalMs: r.lastEndTotalMs,
          races: r.races,
          unknownVcpuBegins: this.unknownVcpuBegins,
        },
      };
    }
    return {
      totalMs: this.qemu?.totalMs ?? 0,
      perVcpuMs: this.qemu?.perVcpuMs().slice(0, this.vcpus) ?? new Array<number>(this.vcpus).fill(0),
    };
  }

  private histogramBuckets(): Analysis['faults']['histogram'] {
    const out: Analysis['faults']['histogram'] = [];
    const h = this.histogram;
    const first = h.findIndex((c) => c > 0);
    if (first < 0) return out;
    let last = h.length - 1;
    while (h[last] === 0) last--;
    for (let k = first; k <= last; k++) {
      const toMs = k + 1 < HISTOGRAM_EDGES_MS.length ? HISTOGRAM_EDGES_MS[k + 1]! : Math.max(this.latency.summary().maxNs / 1e6, HISTOGRAM_EDGES_MS[k]!);
      out.push({ fromMs: HISTOGRAM_EDGES_MS[k]!, toMs, count: h[k]! });
    }
    return out;
  }

  private latencyCdf(): Array<[number, number]> {
    const buckets = this.latency.buckets();
    const n = this.latency.count;
    if (n === 0) return [];
    const points: Array<[number, number]> = [];
    let seen = 0;
    for (const [, high, count] of buckets) {
      seen += count;
      points.push([Math.min(high, this.latency.summary().maxNs) / 1e6, seen / n]);
    }
    if (points.length <= MAX_CDF_POINTS) return points;
    const out: Array<[number, number]> = [];
    const step = points.length / MAX_CDF_POINTS;
    for (let i = 0; i < MAX_CDF_POINTS - 1; i++) out.push(points[Math.floor(i * step)]!);
    out.push(points[points.length - 1]!);
    return out;
  }
}

/** Whether the analysis reads this kind's payload (others are never decoded). */
function needsPayload(kind: number): boolean {
  return (
    kind === EventKind.FX_STATE ||
    kind === EventKind.FX_ERROR ||
    kind === EventKind.IN_CHANNEL_BROKEN ||
    kind === EventKind.IN_STREAM_ERROR ||
    kind === EventKind.FX_RECV_BITMAP ||
    kind === EventKind.TAP_CONN_OPEN ||
    kind === EventKind.TAP_CONN_ERROR ||
    kind === EventKind.TAP_UNDECODED
  );
}

/** Pure: an input as a person names it, e.g. 'IN_COMMAND POSTCOPY_LISTEN'. */
function describeInput(kind: number, a: number): string {
  const name = EVENT_KIND_NAMES[kind as EventKindValue] ?? `kind ${kind}`;
  if (kind === EventKind.IN_COMMAND) {
    const command = Object.entries(MigCommand).find(([, v]) => v === a)?.[0];
    return `${name} ${command ?? a}`;
  }
  if (kind === EventKind.IN_PAGE || kind === EventKind.IN_CHANNEL_BROKEN || kind === EventKind.IN_CHANNEL_CONNECTED || kind === EventKind.IN_EOS || kind === EventKind.IN_STREAM_ERROR) {
    return `${name} (channel ${a})`;
  }
  return name;
}

/** Request → placement figures of one channel's answers, in ms. */
function answeredSummary(h: LatencyHistogram): AnsweredRequests {
  const x = h.summary();
  return { count: x.count, p50Ms: x.p50Ns / 1e6, p99Ms: x.p99Ns / 1e6, maxMs: x.maxNs / 1e6 };
}
