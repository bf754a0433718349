/**
 * Imports a QEMU 7.2 destination trace (log backend, `.log` or `.log.gz`) into a journal
 * of the format the engine writes, so that `inspect` (analysis.ts) explains QEMU's runs
 * and ours with the same code.
 *
 * Two streaming passes over the trace, bounded memory whatever its size:
 * 1. a survey, parsing only a few events: the RAM blocks (`postcopy_init_range`, or
 *    the faults' `rb=` and offsets when the trace began later), the capabilities, the
 *    vCPU of each faulting thread (`pid=` paired with the next blocktime begin's `cpu:`)
 *    and QEMU's blocktime clock offset (as qemuTraceBlocktime.ts estimates it). All of
 *    it goes into the journal's meta, which is written when the journal is created;
 * 2. the import proper: every line in file order, mapped to the engine's event kinds
 *    (see `TraceImporter`). With a source trace, its lines are merged in by timestamp
 *    as TR_NOTEs (side 'src'); the destination's lines keep their file order, on which
 *    QEMU's own accounting depends.
 *
 * Unknown events are counted by name, malformed lines reported with their line numbers,
 * and the import goes on; a file that is not a trace at all is refused (NotATraceError).
 */
import { existsSync, rmSync } from 'node:fs';
import { assertRegularFile } from '../../regularFile.js';
import { dirname, join } from 'node:path';
import { pack } from 'msgpackr';
import { MigCommand, RpMessage, TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { EVENT_KIND_NAMES, EventKind, FaultDisposition, MachineId, RequestFlag, type EventKindValue } from '../../engine/events.js';
import { encodeReqPages, encodeReqPagesId, encodeResumeAck } from '../../engine/wire.js';
import { JournalError } from '../../errors.js';
import type { JournalBlock, JournalMeta } from '../../journal/meta.js';
import { JournalWriter } from '../../journal/journalWriter.js';
import { readTrace, traceEventBatches, type LineProblem, type TraceProgress, type TraceReadSummary } from './qemuTrace.js';
import { NO_TIME, type TraceEvent, type TraceEventName, type TraceEventOf } from '../../engine/qemuTraceEvents.js';
import { formatTraceArgs } from './qemuTraceFormat.js';
import { offsetBound } from '../../engine/traceBlocktimeReplay.js';
import { loadThreadsJson, vcpuCountOf, vcpuIndexByTid } from './qemuThreads.js';

export interface ImportQemuOptions {
  /** The destination's trace: what the journal describes. */
  dstTrace: string;
  /** The source's trace, merged in by time as notes. */
  srcTrace?: string;
  /** threads.json (TID → thread name). Undefined: the one beside the trace, if any; null: none. */
  threadsPath?: string | null;
  /** The journal to write. */
  out: string;
  /** Replace an existing journal at `out`. */
  overwrite?: boolean;
  onProgress?: (p: ImportProgress) => void;
  /** How many malformed lines each trace summary keeps (the count is always complete). Default 100. */
  keepProblems?: number;
}

export interface ImportProgress {
  /** 1: survey, 2: import. */
  pass: 1 | 2;
  bytesRead: number;
  totalBytes: number;
  lines: number;
}

/** What one trace file held. */
export interface TraceFileSummary {
  file: string;
  lines: number;
  events: number;
  /** Lines of events not in the 7.2 catalogue, by name. */
  unknown: Record<string, number>;
  malformedCount: number;
  /** The first malformed lines, with their line numbers. */
  malformed: Array<{ line: number; name: string; text: string }>;
  timed: boolean;
  truncated: string | null;
}

export interface ImportSummary {
  journal: string;
  dst: TraceFileSummary;
  src: TraceFileSummary | null;
  eventsWritten: number;
  /** Journal events written, by kind name. */
  byKind: Record<string, number>;
  blocks: Array<{ name: string; hostAddress: number; length: number }>;
  vcpus: {
    count: number;
    tids: number[];
    /** Where the TID → vCPU mapping came from. */
    source: 'threads.json' | 'inferred' | 'none';
    detail: string;
  };
  capabilities: string[];
  /** QEMU's blocktime clock offset, µs after the journal's t = 0 (null: no blocktime lines); analysis.ts derives it again from the journal. */
  blocktimeClockOffsetUs: number | null;
  /**
   * Faults whose page the stream placed between the fault and QEMU's request: QEMU sent
   * no request (FX_FAULT_SEEN says REQUESTED, no FX_REQUEST follows). Common when a vCPU
   * walks memory in the order the source sends it.
   */
  faultsServedBeforeRequest: number;
  /** Things a reader of the analysis should know (missing timestamps, guessed vCPUs...). */
  warnings: string[];
}

/** Engine version written into imported journals' meta. */
const IMPORTER_VERSION = '0.1.0';

// RAM_SAVE_FLAGs of ram_load_postcopy_loop.
const FLAG_ZERO = 0x2;
const FLAG_PAGE = 0x8;
// 0x10 is EOS (end of a RAM section, addr 0): kept as a note like any line that carries no page.
const FLAG_CONTINUE = 0x20;

/** Target pages held while their block is unknown (a page without CONTINUE): a 2 MiB host page's worth. */
const MAX_PENDING_PAGES = 512;

// ---------------------------------------------------------------------------
// Pass 1: the survey

const SURVEY_EVENTS: readonly TraceEventName[] = [
  'qmp_enter_migrate_set_capabilities',
  'postcopy_init_range',
  'postcopy_ram_fault_thread_request',
  'mark_postcopy_blocktime_begin',
  'postcopy_preempt_thread_entry',
  'postcopy_preempt_new_channel',
  'loadvm_postcopy_handle_listen',
];

interface SurveyBlock {
  name: string;
  hostAddress: number;
  length: number;
  /** Known from postcopy_init_range (else guessed from faults). */
  declared: boolean;
}

/** Thrown by the survey to stop reading once it knows enough. */
class SurveyDone extends Error {}

/**
 * What pass 1 learns. Bounded: blocks and threads, not lines. It stops at the end of
 * LISTEN (the blocks, declared at ADVISE, and the capabilities are known by then)
 * unless it must read on: the vCPUs are to be inferred from the faults, or no block
 * was declared and the faults must show them.
 */
class TraceSurvey {
  readonly blocks = new Map<string, SurveyBlock>();
  readonly capabilities = new Set<string>();
  /** Faulting thread (pid=) → vCPU index, from begin lines. */
  readonly cpuOfPid = new Map<number, number>();
  /** Faulting threads in order of first fault. */
  readonly pidOrder: number[] = [];
  cpuConflicts = 0;
  private readonly lastPidOfTid = new Map<number, number>();

  constructor(private readonly needFaults: boolean) {}

  push(e: TraceEvent): void {
    switch (e.kind) {
      case 'postcopy_init_range':
        if (e.block !== null && !this.blocks.get(e.block)?.declared) {
          this.blocks.set(e.block, { name: e.block, hostAddress: e.host, length: e.length, declared: true });
        }
        break;
      case 'loadvm_postcopy_handle_listen':
        if (e.stage === 'return' && !this.needFaults && this.blocks.size > 0) throw new SurveyDone();
        break;
      case 'postcopy_ram_fault_thread_request': {
        this.lastPidOfTid.set(e.tid, e.pid);
        if (!this.pidOrder.includes(e.pid) && this.pidOrder.length < 4096) this.pidOrder.push(e.pid);
        if (e.block === null) break;
        const known = this.blocks.get(e.block);
        const end = e.offset - (e.offset % TARGET_PAGE_SIZE) + TARGET_PAGE_SIZE;
        if (known === undefined) this.blocks.set(e.block, { name: e.block, hostAddress: e.hva - e.offset, length: end, declared: false });
        else if (!known.declared && end > known.length) known.length = end;
        break;
      }
      case 'mark_postcopy_blocktime_begin': {
        const pid = this.lastPidOfTid.get(e.tid);
        if (pid === undefined || e.cpu < 0) break;
        const had = this.cpuOfPid.get(pid);
        if (had === undefined) this.cpuOfPid.set(pid, e.cpu);
        else if (had !== e.cpu) this.cpuConflicts++;
        break;
      }
      case 'qmp_enter_migrate_set_capabilities':
        for (const cap of enabledCapabilities(e.args)) this.capabilities.add(cap);
        break;
      case 'postcopy_preempt_thread_entry':
      case 'postcopy_preempt_new_channel':
        this.capabilities.add('postcopy-preempt');
        break;
      default:
        break;
    }
  }
}

/** Pure: the capabilities a migrate-set-capabilities QMP argument turns on (none when it does not parse). */
export function enabledCapabilities(args: string | null): string[] {
  if (args === null) return [];
  try {
    const doc = JSON.parse(args) as { capabilities?: Array<{ capability?: unknown; state?: unknown }> };
    return (doc.capabilities ?? []).filter((c) => c.state === true && typeof c.capability === 'string').map((c) => c.capability as string);
  } catch {
    return [];
  }
}

interface VcpuMapping {
  tids: number[];
  source: ImportSummary['vcpus']['source'];
  detail: string;
}

/** The vCPU threads: from threads.json when there is one, else from the faults. */
async function resolveVcpus(survey: TraceSurvey, threadsPath: string | null, warnings: string[]): Promise<VcpuMapping> {
  if (threadsPath !== null) {
    const threads = await loadThreadsJson(threadsPath);
    const byTid = vcpuIndexByTid(threads.dst);
    const tids = new Array<number>(vcpuCountOf(threads.dst)).fill(0);
    for (const [tid, idx] of byTid) tids[idx] = tid;
    let disagree = 0;
    for (const [pid, cpu] of survey.cpuOfPid) if (byTid.get(pid) !== cpu) disagree++;
    if (disagree > 0) warnings.push(`${disagree} faulting thread(s) have a vCPU in the blocktime lines that threads.json does not give them`);
    if (tids.length === 0) warnings.push(`${threadsPath} names no destination vCPU thread ('CPU n/KVM'): blocktime cannot be attributed`);
    return { tids, source: 'threads.json', detail: threadsPath };
  }
  if (survey.cpuOfPid.size > 0) {
    const count = Math.max(...survey.cpuOfPid.values()) + 1;
    const tids = new Array<number>(count).fill(0);
    for (const [pid, cpu] of survey.cpuOfPid) tids[cpu] = pid;
    const missing = tids.filter((tid) => tid === 0).length;
    if (missing > 0) warnings.push(`${missing} vCPU(s) never faulted: their thread is unknown`);
    warnings.push(`no threads.json: ${count} vCPU(s) inferred from the faults (pid= paired with the blocktime line's cpu:); a vCPU that never faulted is not counted, which changes QEMU's all-vCPUs-blocked total`);
    if (survey.cpuConflicts > 0) warnings.push(`${survey.cpuConflicts} blocktime line(s) gave a faulting thread another vCPU than before`);
    return { tids, source: 'inferred', detail: 'fault pid= paired with the next blocktime begin cpu:' };
  }
  if (survey.pidOrder.length > 0) {
    warnings.push(`no threads.json and no blocktime lines: ${survey.pidOrder.length} vCPU(s) inferred from the faulting threads in order of first fault (QEMU's own numbering is unknown)`);
    return { tids: [...survey.pidOrder], source: 'inferred', detail: 'faulting threads in order of first fault' };
  }
  warnings.push('no threads.json and no faults: the vCPUs are unknown');
  return { tids: [], source: 'none', detail: '' };
}

// ---------------------------------------------------------------------------
// Pass 2: the mapping

interface FaultCtx {
  /** Sequence number of the IN_FAULT. */
  seq: number;
  t: number;
  block: number;
  hostOffset: number;
  pid: number;
  /** FX_FAULT_SEEN written, with this disposition. */
  seen: boolean;
  disposition: number;
  /** QEMU added the page to its requested set (postcopy_page_req_add). */
  added: boolean;
  addT: number;
  /** FX_REQUEST written. */
  requested: boolean;
}

interface PendingPage {
  t: number;
  offset: number;
  zero: boolean;
}

interface ChannelState {
  /** Block of the page being loaded (-1: unknown until its placement shows it). */
  block: number;
  /** Pages whose block is not known yet. */
  pending: PendingPage[];
  /** Sequence number of the channel's last IN_PAGE (the cause of its placements). */
  lastPageSeq: number;
}

/** A page request being re-sent after a recovery (postcopy_page_req_sync), waiting for its return-path message. */
interface SyncCtx {
  block: number;
  hostOffset: number;
  t: number;
}

const MACHINE_INITIAL = ['NONE', 'setup', 'notStarted', 'NONE.idle'];

/**
 * Maps destination trace events, in file order, to journal events (docs/journal.md):
 *
 * - faults: `postcopy_ram_fault_thread_request` → IN_FAULT (offset = HVA, a = pid);
 *   FX_FAULT_SEEN (block, host page, vCPU from the begin line, disposition: already
 *   received from the begin line, re-sent when the page is already requested, else
 *   requested) at t = the fault's; `migrate_send_rp_message 3|4` after it → FX_REQUEST
 *   with the REQ_PAGES(_ID) payload, at t = the page_req_add's (QEMU 7.2 sends nothing
 *   for a page already requested);
 * - pages: `ram_load_postcopy_loop` → IN_PAGE (channel from chan=, zero from flag 0x2;
 *   the block is the channel's previous one with CONTINUE, else the one its placement
 *   shows); `postcopy_place_page[_zero]` → FX_COPY / FX_ZERO at the host page;
 * - blocktime: `mark_postcopy_blocktime_begin/end` → TR_BLOCKTIME_BEGIN (payload: QEMU's
 *   `time:` ms) / TR_BLOCKTIME_END; cleanup's total → FX_BLOCKTIME (a = QEMU's total);
 * - lifecycle: commands → IN_COMMAND; `loadvm_postcopy_handle_*`, cleanup and
 *   `migrate_set_state` lines → FX_STATE of the postcopy, migration, fault-thread and
 *   preempt-thread machines (state names as the engine's machines spell them);
 *   discards → FX_DISCARD; `postcopy_nhp_range` / cleanup ranges → FX_HUGEPAGES;
 *   enable_notify → FX_REGISTER; pauses → IN_STREAM_ERROR, recoveries →
 *   IN_CHANNEL_CONNECTED, FX_RECV_BITMAP, FX_RESUME_ACK, FX_REQUEST (SYNC);
 * - every other line → TR_NOTE { event, line, tid, text }.
 * Effects are caused by the emitting thread's last input (traces do not say more).
 */
class TraceImporter {
  readonly byKind = new Uint32Array(256);
  /** REQUESTED faults whose page arrived before QEMU sent the request. */
  requestsOvertaken = 0;
  /** Running estimate of QEMU's blocktime clock offset, µs after t = 0. */
  clockOffsetUs = Infinity;
  pagesWithoutBlock = 0;
  placementsOutsideBlocks = 0;
  private readonly state = [...MACHINE_INITIAL];
  private readonly blockIndex = new Map<string, number>();
  /** Blocks by host address, for placements and requested pages. */
  private readonly byAddress: Array<{ index: number; start: number; end: number }>;
  private readonly vcpuOfTid = new Map<number, number>();
  private readonly faults = new Map<number, FaultCtx>();
  private readonly syncs = new Map<number, SyncCtx>();
  private readonly channels: ChannelState[] = [0, 1].map(() => ({ block: -1, pending: [], lastPageSeq: -1 }));
  private readonly channelOfTid = new Map<number, number>();
  /** QEMU's requested set: host page addresses (page_req_add / _del). */
  private readonly outstanding = new Set<number>();
  private readonly lastInputOfTid = new Map<number, number>();
  private lastCommand = -1;
  private preemptConnected = false;
  private connectedThisPause = false;
  private lastAddressHit = 0;

  constructor(
    private readonly writer: JournalWriter,
    private readonly blocks: readonly JournalBlock[],
    vcpuTids: readonly number[],
    private readonly originUs: number,
  ) {
    blocks.forEach((b, i) => this.blockIndex.set(b.name, i));
    this.byAddress = blocks.map((b, i) => ({ index: i, start: b.hostAddress, end: b.hostAddress + b.length })).sort((x, y) => x.start - y.start);
    vcpuTids.forEach((tid, i) => {
      if (tid > 0) this.vcpuOfTid.set(tid, i);
    });
  }

  /** One destination event, in file order. Hot path for pages, placements and blocktime ends. */
  dst(e: TraceEvent): void {
    const t = this.tOf(e.timeUs);
    switch (e.kind) {
      case 'ram_load_postcopy_loop':
        return this.loadPage(e, t);
      case 'postcopy_place_page':
      case 'postcopy_place_page_zero':
        return this.place(e, t);
      case 'mark_postcopy_blocktime_end':
        this.emit(EventKind.TR_BLOCKTIME_END, t, this.channels[this.channelOf(e.tid)]!.lastPageSeq, -1, e.addr, e.affectedCpu, e.time, null);
        return;
      case 'postcopy_ram_fault_thread_request':
        return this.fault(e, t);
      case 'mark_postcopy_blocktime_begin':
        return this.blocktimeBegin(e, t);
      case 'postcopy_page_req_add':
        return this.requestAdded(e.tid, e.host, t);
      case 'postcopy_page_req_del':
        this.outstanding.delete(e.host);
        return;
      case 'migrate_send_rp_message':
        return this.returnPathMessage(e, t);
      case 'postcopy_page_req_sync':
        return this.requestSync(e, t);
      default:
        return this.lifecycle(e, t);
    }
  }

  /** One source event: kept as a note, in time order among the destination's. */
  src(e: TraceEvent): void {
    this.note(e, this.tOf(e.timeUs), 'src');
  }

  /** Writes what is still held (pages whose block never showed, a last fault). */
  finish(): void {
    for (const [tid] of this.faults) this.resolveFault(tid, 'end');
    for (let c = 0; c < this.channels.length; c++) this.flushPending(c, -1);
  }

  // -------------------------------------------------------------------------
  // Faults and requests

  private fault(e: TraceEventOf<'postcopy_ram_fault_thread_request'>, t: number): void {
    this.resolveFault(e.tid, 'next');
    const seq = this.input(e.tid, EventKind.IN_FAULT, t, -1, e.hva, e.pid, 0, null);
    const block = e.block === null ? -1 : (this.blockIndex.get(e.block) ?? -1);
    const hps = block >= 0 ? this.hostPageSize(block) : TARGET_PAGE_SIZE;
    this.faults.set(e.tid, {
      seq,
      t,
      block,
      hostOffset: e.offset - (e.offset % hps),
      pid: e.pid,
      seen: false,
      disposition: -1,
      added: false,
      addT: t,
      requested: false,
    });
  }

  private blocktimeBegin(e: TraceEventOf<'mark_postcopy_blocktime_begin'>, t: number): void {
    const f = this.faults.get(e.tid);
    this.emit(EventKind.TR_BLOCKTIME_BEGIN, t, f?.seq ?? -1, -1, e.addr, e.cpu, e.alreadyReceived, pack(e.time));
    if (e.alreadyReceived === 0 && e.timeUs !== NO_TIME) this.clockOffsetUs = Math.min(this.clockOffsetUs, offsetBound({ timeUs: t / 1000, time: e.time }));
    if (f === undefined || f.seen) return;
    let disposition: number;
    if (e.alreadyReceived !== 0) disposition = FaultDisposition.ALREADY_RECEIVED;
    else if (this.isOutstanding(f)) disposition = FaultDisposition.RESENT;
    else if (this.state[MachineId.FAULT_THREAD]!.startsWith('paused')) disposition = FaultDisposition.HELD;
    else disposition = FaultDisposition.REQUESTED;
    this.faultSeen(f, e.cpu, disposition);
  }

  private requestAdded(tid: number, host: number, t: number): void {
    this.outstanding.add(host);
    const f = this.faults.get(tid);
    if (f === undefined) return;
    f.added = true;
    f.addT = t;
    if (!f.seen) this.faultSeen(f, this.vcpuOfTid.get(f.pid) ?? -1, FaultDisposition.REQUESTED);
  }

  private returnPathMessage(e: TraceEventOf<'migrate_send_rp_message'>, t: number): void {
    const type = e.msgType;
    if (type === RpMessage.REQ_PAGES || type === RpMessage.REQ_PAGES_ID) {
      const f = this.faults.get(e.tid);
      if (f !== undefined && !f.requested && f.block >= 0) {
        if (!f.seen) this.resolveFault(e.tid, 'request');
        f.requested = true;
        this.request(f.block, f.hostOffset, type, (f.added ? 0 : RequestFlag.RESEND), f.added ? f.addT : f.t, f.seq);
        return;
      }
      const s = this.syncs.get(e.tid);
      if (s !== undefined) {
        this.syncs.delete(e.tid);
        this.request(s.block, s.hostOffset, type, RequestFlag.SYNC, s.t, this.causeFor(e.tid));
        return;
      }
    } else if (type === RpMessage.RESUME_ACK) {
      this.emit(EventKind.FX_RESUME_ACK, t, this.causeFor(e.tid), -1, 0, 0, 0, encodeResumeAck());
      return;
    } else if (type === RpMessage.RECV_BITMAP) {
      return; // its migrate_send_rp_recv_bitmap line wrote FX_RECV_BITMAP
    }
    this.note(e, t);
  }

  private requestSync(e: TraceEventOf<'postcopy_page_req_sync'>, t: number): void {
    const where = this.locate(e.host);
    if (where === null) return this.note(e, t);
    this.syncs.set(e.tid, { block: where.block, hostOffset: where.offset, t });
  }

  /** FX_REQUEST with the payload QEMU sent (REQ_PAGES_ID names the block). */
  private request(block: number, hostOffset: number, type: number, flags: number, t: number, cause: number): void {
    const b = this.blocks[block]!;
    const len = this.hostPageSize(block);
    const withId = type === RpMessage.REQ_PAGES_ID;
    const payload = withId ? encodeReqPagesId(b.name, hostOffset, len) : encodeReqPages(hostOffset, len);
    this.emit(EventKind.FX_REQUEST, t, cause, block, hostOffset, len, flags | (withId ? RequestFlag.WITH_ID : 0), payload);
  }

  /**
   * Writes FX_FAULT_SEEN for a fault that had no begin line (not a vCPU, or no blocktime
   * capability), from what followed it on its thread; forgets the fault unless a request
   * may still follow.
   */
  private resolveFault(tid: number, why: 'next' | 'request' | 'end'): void {
    const f = this.faults.get(tid);
    if (f === undefined) return;
    if (!f.seen) {
      const disposition = f.added ? FaultDisposition.REQUESTED : this.isOutstanding(f) || why === 'request' ? FaultDisposition.RESENT : FaultDisposition.ALREADY_RECEIVED;
      this.faultSeen(f, this.vcpuOfTid.get(f.pid) ?? -1, disposition);
    }
    if (why !== 'request') {
      if (f.disposition === FaultDisposition.REQUESTED && !f.added) this.requestsOvertaken++;
      this.faults.delete(tid);
    }
  }

  private faultSeen(f: FaultCtx, vcpu: number, disposition: number): void {
    f.seen = true;
    f.disposition = disposition;
    this.emit(EventKind.FX_FAULT_SEEN, f.t, f.seq, f.block, f.hostOffset, vcpu, disposition, null);
  }

  private isOutstanding(f: FaultCtx): boolean {
    return f.block >= 0 && this.outstanding.has(this.blocks[f.block]!.hostAddress + f.hostOffset);
  }

  // -------------------------------------------------------------------------
  // Pages

  private loadPage(e: TraceEventOf<'ram_load_postcopy_loop'>, t: number): void {
    const flags = e.flags;
    if ((flags & (FLAG_ZERO | FLAG_PAGE)) === 0 || (e.channel !== 0 && e.channel !== 1)) return this.note(e, t);
    this.channelOfTid.set(e.tid, e.channel);
    const ch = this.channels[e.channel]!;
    const zero = (flags & FLAG_ZERO) !== 0;
    if ((flags & FLAG_CONTINUE) === 0) ch.block = -1;
    if (ch.block < 0) {
      // The block name is in the stream, not the trace: the placement will show it.
      if (ch.pending.length >= MAX_PENDING_PAGES) this.flushPending(e.channel, -1);
      ch.pending.push({ t, offset: e.addr, zero });
      this.lastInputOfTid.set(e.tid, -1);
      return;
    }
    ch.lastPageSeq = this.input(e.tid, EventKind.IN_PAGE, t, ch.block, e.addr, e.channel, zero ? 1 : 0, null);
  }

  /** Writes the held pages of a channel as IN_PAGE of `block` (-1 when it never became known). */
  private flushPending(channel: number, block: number): void {
    const ch = this.channels[channel]!;
    if (ch.pending.length === 0) return;
    if (block < 0) this.pagesWithoutBlock += ch.pending.length;
    for (const p of ch.pending) ch.lastPageSeq = this.emit(EventKind.IN_PAGE, p.t, -1, block, p.offset, channel, p.zero ? 1 : 0, null);
    ch.pending.length = 0;
  }

  private place(e: TraceEventOf<'postcopy_place_page'> | TraceEventOf<'postcopy_place_page_zero'>, t: number): void {
    const where = this.locate(e.host);
    if (where === null) {
      this.placementsOutsideBlocks++;
      return this.note(e, t);
    }
    let cause: number;
    const fault = this.faults.get(e.tid);
    if (fault !== undefined) {
      cause = fault.seq; // the fault thread zero-places pages of discarded ranges itself
    } else {
      const channel = this.channelOf(e.tid);
      const ch = this.channels[channel]!;
      if (ch.pending.length > 0) this.flushPending(channel, where.block);
      ch.block = where.block;
      cause = ch.lastPageSeq;
    }
    const kind = e.kind === 'postcopy_place_page' ? EventKind.FX_COPY : EventKind.FX_ZERO;
    this.emit(kind, t, cause, where.block, where.offset, this.hostPageSize(where.block), 0, null);
  }

  // -------------------------------------------------------------------------
  // Lifecycle

  private lifecycle(e: TraceEvent, t: number): void {
    switch (e.kind) {
      case 'loadvm_process_command': {
        // Own keys only: a corrupt line could name "toString".
        const command = e.com !== null && Object.hasOwn(MigCommand, e.com) ? (MigCommand as Record<string, number>)[e.com] : undefined;
        if (command === undefined) return this.note(e, t);
        this.lastCommand = this.input(e.tid, EventKind.IN_COMMAND, t, -1, 0, command, 0, null);
        return;
      }
      case 'loadvm_postcopy_handle_advise':
        return this.setState(e.tid, MachineId.POSTCOPY, 'ADVISE', e, t);
      case 'ram_discard_range': {
        const block = e.block === null ? -1 : (this.blockIndex.get(e.block) ?? -1);
        if (block < 0) return this.note(e, t);
        this.emit(EventKind.FX_DISCARD, t, this.causeFor(e.tid), block, e.start, e.length, 0, null);
        return;
      }
      case 'loadvm_postcopy_ram_handle_discard':
        if (this.state[MachineId.POSTCOPY] === 'ADVISE') this.setState(e.tid, MachineId.POSTCOPY, 'DISCARD', e, t);
        return this.note(e, t);
      case 'postcopy_nhp_range':
      case 'postcopy_cleanup_range': {
        const block = e.block === null ? -1 : (this.blockIndex.get(e.block) ?? -1);
        if (block < 0) return this.note(e, t);
        const cause = this.causeFor(e.tid);
        if (e.kind === 'postcopy_cleanup_range') this.emit(EventKind.FX_UNREGISTER, t, cause, block, 0, e.length, 0, null);
        this.emit(EventKind.FX_HUGEPAGES, t, cause, block, 0, e.kind === 'postcopy_nhp_range' ? 0 : 1, 0, null);
        return;
      }
      case 'loadvm_postcopy_handle_listen':
        if (e.stage === 'enter') return this.setState(e.tid, MachineId.POSTCOPY, 'LISTENING', e, t);
        return this.note(e, t);
      case 'postcopy_ram_fault_thread_entry':
        return this.setState(e.tid, MachineId.FAULT_THREAD, 'running', e, t);
      case 'postcopy_ram_enable_notify': {
        const cause = this.causeFor(e.tid);
        this.blocks.forEach((b, i) => this.emit(EventKind.FX_REGISTER, t, cause, i, 0, b.length, 0, null));
        return;
      }
      case 'loadvm_postcopy_handle_run':
        return this.setState(e.tid, MachineId.POSTCOPY, 'RUNNING', e, t);
      case 'migrate_set_state':
        if (e.state === null) return this.note(e, t);
        if (e.state === 'postcopy-paused') this.connectedThisPause = false;
        return this.setState(e.tid, MachineId.MIGRATION, e.state, e, t);
      case 'process_incoming_migration_co_end':
        if (e.ret < 0) {
          this.input(e.tid, EventKind.IN_STREAM_ERROR, t, -1, 0, 0, 0, pack(`load of migration failed (ret ${e.ret}, postcopy state ${e.postcopyState})`));
          return;
        }
        return this.note(e, t);
      case 'postcopy_ram_listen_thread_exit':
        this.input(e.tid, EventKind.IN_EOS, t, -1, 0, 0, 0, null);
        return;
      case 'postcopy_ram_incoming_cleanup_closeuf':
        return this.setState(e.tid, MachineId.POSTCOPY, 'END', e, t);
      case 'postcopy_ram_fault_thread_quit':
        this.resolveFault(e.tid, 'next');
        return this.setState(e.tid, MachineId.FAULT_THREAD, 'quitting', e, t);
      case 'postcopy_ram_fault_thread_exit':
        return this.setState(e.tid, MachineId.FAULT_THREAD, 'exited', e, t);
      case 'postcopy_ram_incoming_cleanup_blocktime':
        this.emit(EventKind.FX_BLOCKTIME, t, this.causeFor(e.tid), -1, 0, e.total, -1, pack({ qemu: { totalMs: e.total }, source: 'qemu-trace' }));
        return;
      case 'postcopy_ram_incoming_cleanup_exit':
        if (this.state[MachineId.PREEMPT_THREAD] === 'QUIT') this.setState(e.tid, MachineId.PREEMPT_THREAD, 'NONE.idle', e, t);
        return this.note(e, t);
      case 'postcopy_pause_incoming':
        this.input(e.tid, EventKind.IN_STREAM_ERROR, t, -1, 0, 0, 0, pack('the incoming stream failed: QEMU paused postcopy (postcopy_pause_incoming)'));
        return;
      case 'postcopy_pause_fast_load':
        this.input(e.tid, EventKind.IN_STREAM_ERROR, t, -1, 0, 1, 0, pack('the preempt channel failed: QEMU paused its loading (postcopy_pause_fast_load)'));
        return this.setState(e.tid, MachineId.PREEMPT_THREAD, 'CREATED.paused', e, t);
      case 'postcopy_pause_fast_load_continued':
        return this.setState(e.tid, MachineId.PREEMPT_THREAD, 'CREATED.loading', e, t);
      case 'postcopy_pause_fault_thread':
        this.resolveFault(e.tid, 'next');
        return this.setState(e.tid, MachineId.FAULT_THREAD, 'paused.returnPathLost', e, t);
      case 'postcopy_pause_fault_thread_continued':
        return this.setState(e.tid, MachineId.FAULT_THREAD, 'running', e, t);
      case 'migration_socket_incoming_accepted':
        if (this.state[MachineId.MIGRATION] === 'postcopy-paused' && !this.connectedThisPause) {
          this.connectedThisPause = true;
          this.input(e.tid, EventKind.IN_CHANNEL_CONNECTED, t, -1, 0, 0, 0, null);
          return;
        }
        return this.note(e, t);
      case 'postcopy_preempt_new_channel':
        this.preemptConnected = true;
        this.input(e.tid, EventKind.IN_CHANNEL_CONNECTED, t, -1, 0, 1, 0, null);
        if (this.state[MachineId.PREEMPT_THREAD] === 'NONE.idle') return this.setState(e.tid, MachineId.PREEMPT_THREAD, 'NONE.channelReady', e, t);
        if (this.state[MachineId.PREEMPT_THREAD] === 'CREATED.waitingForChannel') return this.setState(e.tid, MachineId.PREEMPT_THREAD, 'CREATED.loading', e, t);
        return;
      case 'postcopy_preempt_thread_entry':
        return this.setState(e.tid, MachineId.PREEMPT_THREAD, this.preemptConnected ? 'CREATED.loading' : 'CREATED.waitingForChannel', e, t);
      case 'postcopy_preempt_thread_exit':
        this.input(e.tid, EventKind.IN_EOS, t, -1, 0, 1, 0, null);
        return this.setState(e.tid, MachineId.PREEMPT_THREAD, 'QUIT', e, t);
      case 'migrate_send_rp_recv_bitmap': {
        const block = e.block === null ? -1 : (this.blockIndex.get(e.block) ?? -1);
        if (block < 0) return this.note(e, t);
        this.emit(EventKind.FX_RECV_BITMAP, t, this.causeFor(e.tid), block, 0, e.size, 0, null);
        return;
      }
      case 'ram_block_discard_range':
        if (e.ret < 0) return this.error(e, t, 'QEMU_DISCARD_FAILED', `discarding ${e.length} bytes of '${e.block}' failed (ret ${e.ret})`);
        return this.note(e, t);
      case 'migrate_fd_error':
        return this.error(e, t, 'QEMU_MIGRATE_ERROR', e.error ?? '(no message)');
      case 'postcopy_init_range':
        return; // the block is in the meta
      default:
        return this.note(e, t);
    }
  }

  private setState(tid: number, machine: number, to: string, e: TraceEvent, t: number): void {
    const from = this.state[machine]!;
    if (from === to) return this.note(e, t);
    this.state[machine] = to;
    this.emit(EventKind.FX_STATE, t, this.causeFor(tid), -1, 0, machine, 0, pack({ from, to, event: e.kind }));
  }

  private error(e: TraceEvent, t: number, code: string, message: string): void {
    this.emit(EventKind.FX_ERROR, t, this.causeFor(e.tid), -1, 0, 0, 0, pack({ code, message: `${message} (trace line ${e.line})` }));
  }

  // -------------------------------------------------------------------------
  // Helpers

  private note(e: TraceEvent, t: number, side?: 'src'): void {
    const note: Record<string, unknown> = { event: e.kind, line: e.line, tid: e.tid, text: formatTraceArgs(e) };
    if (side !== undefined) note.side = side;
    this.emit(EventKind.TR_NOTE, t, -1, -1, 0, 0, 0, pack(note));
  }

  /** Writes an input and makes it the cause of its thread's next effects. */
  private input(tid: number, kind: EventKindValue, t: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): number {
    const seq = this.emit(kind, t, -1, block, offset, a, b, payload);
    this.lastInputOfTid.set(tid, seq);
    return seq;
  }

  private causeFor(tid: number): number {
    const seq = this.lastInputOfTid.get(tid);
    return seq === undefined || seq < 0 ? this.lastCommand : seq;
  }

  private emit(kind: EventKindValue, t: number, cause: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): number {
    this.byKind[kind]!++;
    return this.writer.append(kind, t, cause, block, offset, a, b, payload);
  }

  private tOf(timeUs: number): number {
    return timeUs === NO_TIME ? 0 : (timeUs - this.originUs) * 1000;
  }

  private channelOf(tid: number): number {
    return this.channelOfTid.get(tid) ?? 0;
  }

  private hostPageSize(block: number): number {
    return this.blocks[block]!.hostPageSize ?? TARGET_PAGE_SIZE;
  }

  /** The block and host-page offset of a host address, or null outside every block. */
  private locate(address: number): { block: number; offset: number } | null {
    const list = this.byAddress;
    let hit: { index: number; start: number; end: number } | undefined = list[this.lastAddressHit];
    if (hit === undefined || address < hit.start || address >= hit.end) {
      hit = undefined;
      for (let i = 0; i < list.length; i++) {
        const r = list[i]!;
        if (address >= r.start && address < r.end) {
          hit = r;
          this.lastAddressHit = i;
          break;
        }
      }
      if (hit === undefined) return null;
    }
    const offset = address - hit.start;
    return { block: hit.index, offset: offset - (offset % this.hostPageSize(hit.index)) };
  }

  /** Journal events written by kind name. */
  kindCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    this.byKind.forEach((n, k) => {
      if (n > 0) out[EVENT_KIND_NAMES[k as EventKindValue] ?? `kind ${k}`] = n;
    });
    return out;
  }
}

// ---------------------------------------------------------------------------
// The import

/** Pure: a trace reader's summary as the import reports it. */
function fileSummary(s: TraceReadSummary): TraceFileSummary {
  return {
    file: s.file,
    lines: s.lines,
    events: s.events,
    unknown: s.unknown,
    malformedCount: s.malformedCount,
    malformed: s.malformed.map((p: LineProblem) => ({ line: p.line, name: p.name, text: p.text })),
    timed: s.timed,
    truncated: s.truncated,
  };
}

/** threads.json to use: the option, else the one beside the trace when it exists. */
function threadsFileFor(opts: ImportQemuOptions): string | null {
  if (opts.threadsPath !== undefined) return opts.threadsPath;
  const beside = join(dirname(opts.dstTrace), 'threads.json');
  return existsSync(beside) ? beside : null;
}

/** Pure: the blocks for the meta, in order of appearance. */
function journalBlocks(survey: TraceSurvey, warnings: string[]): JournalBlock[] {
  const out: JournalBlock[] = [];
  for (const b of survey.blocks.values()) {
    if (!b.declared) warnings.push(`block '${b.name}' has no postcopy_init_range line: its address comes from a fault, its length (${b.length}) is a lower bound`);
    const length = Math.max(TARGET_PAGE_SIZE, b.length - (b.length % TARGET_PAGE_SIZE));
    out.push({ name: b.name, length, maxLength: length, hostPageSize: TARGET_PAGE_SIZE, hostAddress: b.hostAddress });
  }
  return out;
}

/**
 * Imports a destination trace (and optionally its source's) into a new journal at
 * `opts.out`. Throws NotATraceError for a file that is not a trace, JournalError when
 * the journal cannot be written; everything else (unknown events, malformed lines) is
 * counted in the summary and the import goes on.
 */
export async function importQemuTrace(opts: ImportQemuOptions): Promise<ImportSummary> {
  if (existsSync(opts.out) && !opts.overwrite) {
    throw new JournalError(opts.out, -1, 'a journal already exists at this path (choose another path or overwrite it)');
  }
  const keepProblems = opts.keepProblems ?? 100;
  const warnings: string[] = [];
  const progress = (pass: 1 | 2) => (p: TraceProgress) => opts.onProgress?.({ pass, ...p });

  // Inputs that are not regular files (a FIFO, /dev/zero, a directory) are refused at once.
  const threadsPath = threadsFileFor(opts);
  for (const input of [opts.dstTrace, opts.srcTrace, threadsPath]) if (input !== undefined && input !== null) assertRegularFile(input);

  // Pass 1: the survey.
  const survey = new TraceSurvey(threadsPath === null);
  try {
    await readTrace(opts.dstTrace, (e) => survey.push(e), { only: SURVEY_EVENTS, onProgress: progress(1), keepProblems: 0 });
  } catch (err) {
    if (!(err instanceof SurveyDone)) throw err;
  }
  const vcpus = await resolveVcpus(survey, threadsPath, warnings);
  const blocks = journalBlocks(survey, warnings);
  if (blocks.length === 0) warnings.push('no RAM block found (no postcopy_init_range and no fault): pages and faults cannot be placed in a block');
  const capabilities = [...survey.capabilities].filter((c) => c === 'postcopy-preempt').map(() => 'preempt');

  // Pass 2: the import, the source's lines merged in by time.
  const dst = traceEventBatches(opts.dstTrace, { onProgress: progress(2), keepProblems });
  const src = opts.srcTrace === undefined ? null : traceEventBatches(opts.srcTrace, { keepProblems });
  let writer: JournalWriter | null = null;
  let importer: TraceImporter | null = null;
  let dstSummary: TraceReadSummary | null = null;
  let srcSummary: TraceReadSummary | null = null;
  let originUs = 0;
  try {
    let dBatch: TraceEvent[] = [];
    let di = 0;
    let sBatch: TraceEvent[] = [];
    let si = 0;
    for (;;) {
      if (di === dBatch.length && dstSummary === null) {
        const r = await dst.next();
        if (r.done === true) dstSummary = r.value;
        else [dBatch, di] = [r.value, 0];
        continue;
      }
      if (src !== null && si === sBatch.length && srcSummary === null) {
        const r = await src.next();
        if (r.done === true) srcSummary = r.value;
        else [sBatch, si] = [r.value, 0];
        continue;
      }
      if (importer === null) {
        originUs = dBatch.find((e) => e.timeUs !== NO_TIME)?.timeUs ?? sBatch.find((e) => e.timeUs !== NO_TIME)?.timeUs ?? 0;
        writer = JournalWriter.create(opts.out, importMeta(opts, blocks, vcpus, capabilities, originUs, threadsPath), {
          overwrite: opts.overwrite ?? false,
          crashSafe: false,
        });
        importer = new TraceImporter(writer, blocks, vcpus.tids, originUs);
      }
      if (di === dBatch.length && si === sBatch.length) break;
      if (si === sBatch.length) {
        // Only destination events until this batch ends: the hot loop.
        for (; di < dBatch.length; di++) importer.dst(dBatch[di]!);
        continue;
      }
      if (di < dBatch.length && !(sBatch[si]!.timeUs < dBatch[di]!.timeUs)) importer.dst(dBatch[di++]!);
      else importer.src(sBatch[si++]!);
    }
    importer!.finish();
  } catch (err) {
    await dst.return(undefined as never);
    await src?.return(undefined as never);
    if (writer !== null) {
      // A journal cut short by an error would pass for the whole run: remove it.
      try {
        writer.close();
      } catch {
        // the error being thrown says more than this one
      }
      for (const suffix of ['', '-wal', '-shm']) rmSync(opts.out + suffix, { force: true });
    }
    throw err;
  }
  const eventsWritten = writer!.nextSeq;
  writer!.close();
  const imp = importer!;
  if (!dstSummary!.timed) warnings.push('the trace has no timestamps (QEMU ran without -msg timestamp=on): every event is at t = 0, so blocktime and latencies cannot be derived');
  if (dstSummary!.truncated !== null) warnings.push(`the trace is truncated: ${dstSummary!.truncated}`);
  if (imp.pagesWithoutBlock > 0) warnings.push(`${imp.pagesWithoutBlock} page(s) whose block never showed were written with block -1`);
  if (imp.placementsOutsideBlocks > 0) warnings.push(`${imp.placementsOutsideBlocks} placement(s) outside every known block were kept as notes`);
  return {
    journal: opts.out,
    dst: fileSummary(dstSummary!),
    src: srcSummary === null ? null : fileSummary(srcSummary),
    eventsWritten,
    byKind: imp.kindCounts(),
    blocks: blocks.map((b) => ({ name: b.name, hostAddress: b.hostAddress, length: b.length })),
    vcpus: { count: vcpus.tids.length, tids: vcpus.tids, source: vcpus.source, detail: vcpus.detail },
    capabilities,
    blocktimeClockOffsetUs: Number.isFinite(imp.clockOffsetUs) ? imp.clockOffsetUs : null,
    faultsServedBeforeRequest: imp.requestsOvertaken,
    warnings,
  };
}

/** Pure: the meta of an imported journal. */
function importMeta(
  opts: ImportQemuOptions,
  blocks: JournalBlock[],
  vcpus: VcpuMapping,
  capabilities: string[],
  originUs: number,
  threadsPath: string | null,
): JournalMeta {
  const usec = originUs % 1e6;
  return {
    engineVersion: IMPORTER_VERSION,
    source: 'qemu-trace',
    created: new Date().toISOString(),
    timeOriginNs: originUs * 1000,
    blocks,
    vcpuTids: vcpus.tids,
    capabilities,
    blocktimeMode: 'qemu',
    run: {
      kind: 'qemu-trace-import',
      qemuVersion: '7.2',
      trace: opts.dstTrace,
      srcTrace: opts.srcTrace ?? null,
      threads: threadsPath,
      vcpuSource: vcpus.source,
      vcpuDetail: vcpus.detail,
      // timeOriginNs loses precision beyond 2^53 ns; this is the first line's exact timestamp.
      firstTimestamp: `${(originUs - usec) / 1e6}.${String(usec).padStart(6, '0')}`,
    },
  };
}
