/**
 * Replays the blocktime lines of a QEMU 7.2 destination trace through both blocktime
 * models, to reproduce QEMU's own figures (`qemu` mode) and to measure the truth
 * (`exact` mode) from the same capture.
 *
 * Inputs, in file order: `mark_postcopy_blocktime_begin` (a vCPU fault: address, QEMU's
 * ms time, vCPU, already_received), `mark_postcopy_blocktime_end` (a placed page, with
 * QEMU's running total and affected-vCPU count), `postcopy_place_page[_zero]` (exact
 * mode's placement), `migrate_set_state` and `postcopy_ram_incoming_cleanup_blocktime`.
 *
 * How QEMU's interleavings are reproduced:
 * 1. Order. Threads take their timestamp after the traced code ran and may be
 *    descheduled before writing the line (inversions of up to 14 ms occur in the
 *    fixtures), so the file order is not the execution order. Lines are replayed in
 *    timestamp order (file order among equal µs) through a reorder buffer that holds
 *    `reorderWindowUs` of trace time: bounded memory, streaming. Pure: the file reading is in
 *    io/qemu/qemuTraceBlocktime.ts. Replaying in plain
 *    file order instead leaves 186 end lines of `plain` whose affected_cpu disagrees.
 *    The lost intervals of begin overwrites (artefact 1) then fall out by themselves.
 * 2. Clock. QEMU's ms for a line without one (end lines, already-received begins) is
 *    floor((timeUs - offset) / 1000), offset being the minimum over the begins of
 *    (timeUs - time·1000): a line is written after its code ran, so every begin bounds
 *    the offset from above. `replayTraceBlocktime` takes it over the whole file in a
 *    first, cheap pass (begin lines only); a caller that can only stream once may
 *    leave `clockOffsetUs` out and get the running minimum over the begins read so far,
 *    which the reorder window gives a head start (with 100 ms it reproduces the
 *    fixtures too, with 20 ms it does not: the minimum settles late).
 * 3. Races, detected where QEMU's end line reports more unblocked vCPUs (affected_cpu)
 *    than the model would compute, and only paired within `raceWindowUs`:
 *    - already-received begin (artefact 2): the begin's store ran before the end's scan
 *      and its undo after; replayed as beginCount+beginStore, endAt, beginUndo.
 *    - end before a begin's store (artefact 3): the end's scan ran between the begin's
 *      cpus_down test and its store, so it counted the old page; replayed as
 *      beginCount, endAt, beginStore.
 *
 * Exact mode: fault = begin line (its vCPU; already_received = not blocked), placement
 * = postcopy_place_page/_zero host address, both at their line's timestamp (µs → ns).
 */
import { ExactBlocktime, type ExactBlocktimeReport } from './blocktimeExact.js';
import { QemuBlocktime, type QemuBlocktimeSnapshot } from './blocktimeQemu.js';
import { UsageError } from '../errors.js';
import { ReorderBuffer } from './reorderBuffer.js';
import type { TraceEvent, TraceEventName } from './qemuTraceEvents.js';

/** The events the replay consumes (pass as `only` to readTrace). */
export const BLOCKTIME_REPLAY_EVENTS: readonly TraceEventName[] = [
  'mark_postcopy_blocktime_begin',
  'mark_postcopy_blocktime_end',
  'postcopy_place_page',
  'postcopy_place_page_zero',
  'migrate_set_state',
  'postcopy_ram_incoming_cleanup_blocktime',
];

export interface BlocktimeReplayOptions {
  vcpuCount: number;
  /** Trace time held for reordering by timestamp, µs (0: plain file order). Default 100 000 (100 ms). */
  reorderWindowUs?: number;
  /** Largest gap between the two sides of a race that the model pairs, µs. Default 2000. */
  raceWindowUs?: number;
  /** Host page size for exact mode's page keys. Default 4096. */
  hostPageSize?: number;
  /** Most records held for reordering, whatever the window. Default 1 000 000. */
  maxBuffered?: number;
  /** The trace-clock offset of QEMU's blocktime clock, µs (see estimateClockOffset). Default: running estimate. */
  clockOffsetUs?: number;
}

/** One end line where the model and QEMU disagree. */
export interface BlocktimeMismatch {
  line: number;
  modelTotalMs: number;
  traceTotalMs: number;
  modelAffected: number;
  traceAffected: number;
}

export interface BlocktimeReplayResult {
  vcpuCount: number;
  qemu: { totalMs: number; perVcpuMs: number[]; state: QemuBlocktimeSnapshot };
  exact: ExactBlocktimeReport & { totalMs: number; perVcpuBlockedMs: number[] };
  /** The last `migrate_set_state` of the trace, e.g. 'completed' or 'postcopy-paused'. */
  status: string | null;
  /** QEMU's final figure (`postcopy_ram_incoming_cleanup_blocktime`), when the run got there. */
  reportedTotalMs: number | null;
  /** The running total printed on the last end line. */
  lastEndTotalMs: number | null;
  beginLines: number;
  endLines: number;
  placements: number;
  /** End lines whose `time:` total differs from the model's running total. */
  totalMismatches: number;
  /** End lines whose affected_cpu differs from the model's count. */
  affectedMismatches: number;
  /** The first 20 end lines that disagree in either way. */
  mismatches: BlocktimeMismatch[];
  races: { alreadyReceivedBegin: number; endBeforeBeginStore: number };
  /** The estimated offset between the trace clock and QEMU's blocktime clock, µs. */
  clockOffsetUs: number | null;
}

const BEGIN = 0;
const END = 1;
const PLACE = 2;

/** Begin annotations set by race pairing. */
const NORMAL = 0;
/** count+store already applied early (an end needed it): only the undo remains. */
const UNDO_ONLY = 1;
/** count+store applied; the undo runs right after the end it raced with. */
const UNDO_AFTER_END = 2;
/** count applied; the store runs right after the end it raced with. */
const STORE_AFTER_END = 3;

interface Rec {
  type: number;
  us: number;
  line: number;
  addr: number;
  cpu: number;
  /** Begin: QEMU's ms (0 when already received). End: QEMU's running total. */
  ms: number;
  /** Begin: already_received. End: affected_cpu. */
  flag: number;
  mode: number;
  /** Begins whose deferred step runs right after this end. */
  deferred: Rec[] | null;
  /** For STORE_AFTER_END: QEMU's ms of the store. */
  storeMs: number;
}

/** Feeds trace events (in file order) to both blocktime models. */
export class TraceBlocktimeReplay {
  readonly qemu: QemuBlocktime;
  readonly exact: ExactBlocktime;
  private readonly reorderWindowUs: number;
  private readonly raceWindowUs: number;
  private readonly hostPageSize: number;
  private readonly maxBuffered: number;
  private readonly reorder: ReorderBuffer<Rec>;
  private offsetUs = Infinity;
  private readonly offsetFixed: boolean;
  private originUs = NaN;
  private status: string | null = null;
  private reportedTotal: number | null = null;
  private lastEndTotal: number | null = null;
  private beginLines = 0;
  private endLines = 0;
  private placements = 0;
  private totalMismatches = 0;
  private affectedMismatches = 0;
  private readonly mismatches: BlocktimeMismatch[] = [];
  private readonly races = { alreadyReceivedBegin: 0, endBeforeBeginStore: 0 };

  constructor(opts: BlocktimeReplayOptions) {
    this.qemu = new QemuBlocktime(opts.vcpuCount, 0);
    this.exact = new ExactBlocktime(opts.vcpuCount);
    this.reorderWindowUs = opts.reorderWindowUs ?? 100_000;
    this.raceWindowUs = opts.raceWindowUs ?? 2000;
    this.hostPageSize = opts.hostPageSize ?? 4096;
    this.maxBuffered = opts.maxBuffered ?? 1_000_000;
    this.reorder = new ReorderBuffer<Rec>((r) => r.us, this.reorderWindowUs, this.maxBuffered, (r) => this.process(r));
    this.offsetFixed = opts.clockOffsetUs !== undefined;
    if (opts.clockOffsetUs !== undefined) this.offsetUs = opts.clockOffsetUs;
  }

  /** Takes the next event of the trace, in file order. Events it does not use are ignored. */
  push(e: TraceEvent): void {
    switch (e.kind) {
      case 'mark_postcopy_blocktime_begin':
        this.begin(timedUs(e), e.line, e.addr, e.cpu, e.time, e.alreadyReceived);
        break;
      case 'mark_postcopy_blocktime_end':
        this.end(timedUs(e), e.line, e.addr, e.time, e.affectedCpu);
        break;
      case 'postcopy_place_page':
      case 'postcopy_place_page_zero':
        this.placed(timedUs(e), e.line, e.host);
        break;
      case 'migrate_set_state':
        this.status = e.state;
        break;
      case 'postcopy_ram_incoming_cleanup_blocktime':
        this.reportedTotal = e.total;
        break;
      default:
        break;
    }
  }

  // The same inputs without a parsed trace line: a journal's TR_BLOCKTIME_* events feed
  // these (analysis.ts), the trace file feeds them through `push`. `us` is trace time in
  // µs from any origin (the clock offset must use the same one); `line` only labels
  // mismatches; calls come in file order.

  /** QEMU's mark_postcopy_blocktime_begin: vCPU `cpu` faulted at `addr`; `ms` is the line's `time:` (0 when already received). */
  begin(us: number, line: number, addr: number, cpu: number, ms: number, alreadyReceived: number): void {
    this.beginLines++;
    if (alreadyReceived === 0 && !this.offsetFixed) this.offsetUs = Math.min(this.offsetUs, offsetBound({ timeUs: us, time: ms }));
    this.enqueue(BEGIN, us, line, addr, cpu, ms, alreadyReceived);
  }

  /** QEMU's mark_postcopy_blocktime_end for the placed host page `addr`, with the line's running total and affected_cpu. */
  end(us: number, line: number, addr: number, totalMs: number, affected: number): void {
    this.endLines++;
    this.enqueue(END, us, line, addr, -1, totalMs, affected);
  }

  /** A placement (postcopy_place_page[_zero]) at host address `host`: exact mode only. */
  placed(us: number, line: number, host: number): void {
    this.placements++;
    this.enqueue(PLACE, us, line, host, -1, 0, 0);
  }

  /** The migration status the trace reached (its last migrate_set_state). */
  setStatus(status: string): void {
    this.status = status;
  }

  /** QEMU's own final figure (postcopy_ram_incoming_cleanup_blocktime). */
  setReportedTotal(ms: number): void {
    this.reportedTotal = ms;
  }

  /** Replays what is still buffered and reports. */
  finish(): BlocktimeReplayResult {
    this.reorder.drain();
    const exact = this.exact.report();
    return {
      vcpuCount: this.qemu.vcpuCount,
      qemu: { totalMs: this.qemu.totalMs, perVcpuMs: this.qemu.perVcpuMs(), state: this.qemu.toJSON() },
      exact: { ...exact, totalMs: exact.totalNs / 1e6, perVcpuBlockedMs: exact.perVcpuBlockedNs.map((ns) => ns / 1e6) },
      status: this.status,
      reportedTotalMs: this.reportedTotal,
      lastEndTotalMs: this.lastEndTotal,
      beginLines: this.beginLines,
      endLines: this.endLines,
      placements: this.placements,
      totalMismatches: this.totalMismatches,
      affectedMismatches: this.affectedMismatches,
      mismatches: this.mismatches,
      races: { ...this.races },
      clockOffsetUs: Number.isFinite(this.offsetUs) ? this.offsetUs : null,
    };
  }

  private enqueue(type: number, us: number, line: number, addr: number, cpu: number, ms: number, flag: number): void {
    if (Number.isNaN(this.originUs)) this.originUs = us;
    const rec: Rec = { type, us, line, addr, cpu, ms, flag, mode: NORMAL, deferred: null, storeMs: 0 };
    this.reorder.push(rec);
  }

  /** Pure: QEMU's ms at trace time `us`, from the estimated clock offset. */
  private qemuMs(us: number): number {
    const ms = Math.floor((us - this.offsetUs) / 1000);
    return ms < 1 ? 1 : ms;
  }

  private ns(us: number): number {
    return (us - this.originUs) * 1000;
  }

  private process(r: Rec): void {
    if (r.type === BEGIN) this.processBegin(r);
    else if (r.type === END) this.processEnd(r);
    else this.exact.placed(this.pageKey(r.addr), this.ns(r.us));
  }

  private pageKey(addr: number): number {
    return addr - (addr % this.hostPageSize);
  }

  private processBegin(b: Rec): void {
    const received = b.flag !== 0;
    this.exact.fault(b.cpu, this.pageKey(b.addr), b.addr, this.ns(b.us), received);
    const q = this.qemu;
    if (b.mode === UNDO_ONLY) {
      q.beginUndo(b.cpu);
      return;
    }
    const nowMs = received ? this.qemuMs(b.us) : b.ms;
    if (received) {
      const end = this.findEnd(b, b.addr, q.countBlockedOn(b.addr));
      q.beginCount(b.cpu);
      q.beginStore(b.cpu, b.addr, nowMs);
      if (end === null) {
        q.beginUndo(b.cpu);
      } else {
        b.mode = UNDO_AFTER_END;
        (end.deferred ??= []).push(b);
        this.races.alreadyReceivedBegin++;
      }
      return;
    }
    const previous = q.faultAddress(b.cpu);
    const end = previous === 0 ? null : this.findEnd(b, previous, q.countBlockedOn(previous) - 1);
    q.beginCount(b.cpu);
    if (end === null) {
      q.beginStore(b.cpu, b.addr, nowMs);
    } else {
      b.mode = STORE_AFTER_END;
      b.storeMs = nowMs;
      (end.deferred ??= []).push(b);
      this.races.endBeforeBeginStore++;
    }
  }

  /**
   * The first end of `addr` within the race window after `from` whose affected_cpu
   * exceeds `othersBlocked` (the vCPUs it would count without `from`), or null.
   */
  private findEnd(from: Rec, addr: number, othersBlocked: number): Rec | null {
    const limit = from.us + this.raceWindowUs;
    for (let i = 0; i < this.reorder.heldCount; i++) {
      const r = this.reorder.held(i);
      if (r.us > limit) break;
      if (r.type === END && r.addr === addr) return r.flag > othersBlocked ? r : null;
    }
    return null;
  }

  private processEnd(e: Rec): void {
    const q = this.qemu;
    const nowMs = this.qemuMs(e.us);
    if (e.flag > q.countBlockedOn(e.addr)) this.pairAlreadyReceivedBegin(e);
    const affected = q.endAt(e.addr, nowMs);
    if (e.deferred !== null) {
      for (const b of e.deferred) {
        if (b.mode === UNDO_AFTER_END) q.beginUndo(b.cpu);
        else q.beginStore(b.cpu, b.addr, b.storeMs);
      }
    }
    this.lastEndTotal = e.ms;
    const totalOff = q.totalMs !== e.ms;
    const affectedOff = affected !== e.flag;
    if (totalOff) this.totalMismatches++;
    if (affectedOff) this.affectedMismatches++;
    if ((totalOff || affectedOff) && this.mismatches.length < 20) {
      this.mismatches.push({ line: e.line, modelTotalMs: q.totalMs, traceTotalMs: e.ms, modelAffected: affected, traceAffected: e.flag });
    }
  }

  /** An end counted a vCPU the model has not blocked: an already-received begin still to come whose store ran first. */
  private pairAlreadyReceivedBegin(e: Rec): void {
    const limit = e.us + this.raceWindowUs;
    for (let i = 0; i < this.reorder.heldCount; i++) {
      const b = this.reorder.held(i);
      if (b.us > limit) return;
      if (b.type !== BEGIN || b.flag === 0 || b.addr !== e.addr || b.mode !== NORMAL) continue;
      if (this.qemu.faultAddress(b.cpu) === e.addr) continue;
      this.qemu.beginCount(b.cpu);
      this.qemu.beginStore(b.cpu, b.addr, this.qemuMs(b.us));
      b.mode = UNDO_ONLY;
      this.races.alreadyReceivedBegin++;
      return;
    }
  }
}

/** The line's time in µs; a line without one cannot be replayed (its order and QEMU's clock are unknown). */
function timedUs(e: { timeUs: number; line: number }): number {
  if (e.timeUs < 0) throw new UsageError(`line ${e.line}: the blocktime replay needs timestamps (QEMU's -msg timestamp=on)`);
  return e.timeUs;
}

/** Pure: the upper bound on the clock offset that one begin line (not already received) gives, µs. */
export function offsetBound(e: { timeUs: number; time: number }): number {
  return e.timeUs - e.time * 1000;
}

