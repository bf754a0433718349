import { pack } from 'msgpackr';
import {
  BackendError,
  ConfigMismatchError,
  FaultOutsideRamError,
  HostSupportError,
  PageError,
  PostcopyError,
  ResizeDuringPostcopyError,
  UnknownBlockError,
  WrongStateError,
} from '../errors.js';
import { PlaceOutcome, type Backend, type FaultBatch, type PlaceOutcomeValue } from './ports.js';
import { Bitmap } from './bitmap.js';
import { Blocktime, type BlocktimeSnapshot } from './blocktime.js';
import { LatencyHistogram, type LatencyHistogramSnapshot } from './latencyHistogram.js';
import { Channel, MigCommand, PostcopyState, RpMessage, TARGET_PAGE_SIZE } from './constants.js';
import { clearReceived, planDiscard, type DiscardRange } from './discard.js';
import {
  EventKind,
  FaultDisposition,
  MachineId,
  RequestFlag,
  type EventKindValue,
  type MachineIdValue,
  type RecordSink,
} from './events.js';
import {
  Lifecycle,
  type EffectParams,
  type EventOf,
  type LifecycleEffect,
  type LifecycleSnapshot,
} from './lifecycle.js';
import type { CleanupReason } from '../../machines/index.js';
import { createRamBlocks, type RamBlock, type RamBlockConfig } from './ramBlock.js';
import { encodeBlockReceiveBitmap, encodeRecvBitmapMessage } from './receiveBitmap.js';
import { RequestedSet } from './requestedSet.js';
import {
  decodeAdvise,
  decodeRamDiscard,
  decodeRecvBitmapRequest,
  encodeReqPages,
  encodeReqPagesId,
  encodeResumeAck,
  hostPageSizeSummary,
} from './wire.js';

/** Where the engine's return-path messages go (the io layer frames and sends them). */
export interface ReturnPath {
  /** Sends one message; false when the path is broken and nothing was sent. */
  send(type: number, payload: Uint8Array): boolean;
}

/**
 * One target page as an object: the readable form of `Destination.page` (see `pageInput`).
 * `offsetBytes` is within block `block`; `tNs` is the input's time in ns.
 */
export interface PageInput {
  /** 0: main (precopy/postcopy) channel, 1: preempt channel. */
  channel: number;
  block: number;
  offsetBytes: number;
  tNs: number;
  /** A zero page (QEMU's RAM_SAVE_FLAG_ZERO): no data; `zeroByte` is its fill byte and must be 0. */
  zero?: boolean;
  zeroByte?: number;
  /** The page's 4 KiB, at data[dataOffsetBytes..] (not needed for a zero page). */
  data?: Uint8Array;
  dataOffsetBytes?: number;
}

const EMPTY_PAGE = new Uint8Array(0);

/** `engine.page(...)` with named fields; the positional `page` stays the hot path. */
export function pageInput(engine: Destination, p: PageInput): void {
  engine.page(p.channel, p.block, p.offsetBytes, p.zero ?? false, p.data ?? EMPTY_PAGE, p.dataOffsetBytes ?? 0, p.tNs, p.zeroByte ?? 0);
}

/**
 * Refuses an engine whose blocks differ from the backend's layout (count, names, lengths,
 * page sizes) or whose vCPU thread ids are not the backend's (when it knows them).
 */
function checkAgainstBackend(blocks: readonly RamBlock[], vcpuTids: readonly number[], backend: Backend): void {
  const layout = backend.blocks;
  const describe = (b: { name: string; length: number; hostPageSize: number }): string => `${b.name} (${b.length} bytes, ${b.hostPageSize}-byte pages)`;
  if (layout.length !== blocks.length) {
    throw new ConfigMismatchError('blocks', `the engine has ${blocks.length} blocks, the ${backend.kind} backend ${layout.length}: ${blocks.map((b) => b.name).join(', ')} vs ${layout.map((b) => b.name).join(', ')}`);
  }
  for (const [i, b] of blocks.entries()) {
    const l = layout[i]!;
    if (l.name !== b.name || l.length !== b.usedLength || l.hostPageSize !== b.hostPageSize || (l.maxLength ?? l.length) !== b.maxLength) {
      throw new ConfigMismatchError('blocks', `block ${i}: the engine has ${describe({ name: b.name, length: b.usedLength, hostPageSize: b.hostPageSize })}, the ${backend.kind} backend ${describe(l)}`);
    }
  }
  const known = backend.expectedVcpuTids?.(vcpuTids.length) ?? null;
  if (known !== null) {
    const unknown = vcpuTids.filter((tid) => !known.includes(tid));
    if (unknown.length > 0) {
      throw new ConfigMismatchError('vcpuTids', `vCPU thread ids ${unknown.join(', ')} are not the ${backend.kind} backend's (its vCPUs will be ${known.join(', ')}): their faults would not count as vCPU faults`);
    }
  }
}

/** A destination's fixed configuration: it is also what a journal's meta records. */
export interface DestinationConfig {
  blocks: RamBlockConfig[];
  /** Thread id of vCPU i (faults from other threads are not vCPU faults); see attachVcpus. */
  vcpuTids: number[];
  /** Number of vCPUs, when their thread ids are attached later (defaults to vcpuTids.length). */
  vcpus?: number;
  /** The postcopy-preempt capability: a second channel for urgent pages. */
  preempt: boolean;
  /**
   * When postcopy may end with preempt on (default 'channel-eos').
   * - 'channel-eos': after the preempt channel's own EOS and no request outstanding. This
   *   project's source sends unrequested (prefetched) pages there, which must be read before
   *   the blocks are unregistered.
   * - 'main-eos': QEMU's cleanup. At the main stream's end the preempt thread is told to QUIT
   *   and stops once no request is outstanding, whether its channel ended or not. Right for
   *   QEMU sources, which send only requested pages there; QEMU 10.0 never ends that channel.
   */
  preemptEnd?: PreemptEnd;
}

export type PreemptEnd = 'channel-eos' | 'main-eos';

/** Counters for progress displays and summaries; derived from records, kept for speed. */
export interface EngineStats {
  targetPagesIn: number;
  precopyPages: number;
  hostPagesPlaced: number;
  zeroPlaced: number;
  alreadyPresent: number;
  placedByChannel: [number, number];
  faults: number;
  requests: number;
  resends: number;
  errors: number;
}

/** A host page being assembled from target pages on one channel (section 4). */
interface TempPage {
  block: RamBlock | null;
  hostOffset: number;
  filled: number;
  allZero: boolean;
  buf: Uint8Array;
}

/** Everything needed to continue a Destination from a point: the journal's snapshots. */
export interface DestinationSnapshot {
  lifecycle: LifecycleSnapshot;
  blocks: Array<{ usedLength: number; postcopyLength: number; hugePagesEnabled: boolean; received: Uint8Array }>;
  requested: ReturnType<RequestedSet['toJSON']>;
  lastRequestedBlock: number;
  temp: Array<{ block: number; hostOffset: number; filled: number; allZero: boolean }>;
  blocktime: BlocktimeSnapshot;
  requestLatency: LatencyHistogramSnapshot;
  stats: EngineStats;
  /** The main stream ended while the preempt channel still delivered (absent in older journals). */
  mainStreamEnded?: boolean;
  /** A preempt connection is open and its stream has not ended (absent in older journals). */
  preemptStreamOpen?: boolean;
}

const MAX_PLACE_RETRIES = 1000;
const CHANNELS = 2;

/**
 * How the engine carries out each effect the machines ask for: one handler per effect
 * type of every machine, so a machine that gains an effect fails to compile until the
 * engine handles it. Handlers get the effect's typed params and the input's time.
 */
export type EffectHandlers = { readonly [K in LifecycleEffect['type']]: (params: EffectParams[K], t: number) => void };

/** Pure dispatch: the handler of this effect type, with that type's params (typed together, no cast). */
function runEffect<K extends LifecycleEffect['type']>(handlers: EffectHandlers, type: K, params: EffectParams[K], t: number): void {
  handlers[type](params, t);
}

const NO_RANGES: readonly DiscardRange[] = [];

/**
 * The destination side of a postcopy migration as a deterministic state machine over
 * inputs. Every input is journaled, then applied; every effect (backend call, return-path
 * message, state change) is journaled with the input that caused it. No clock reads, no
 * randomness, no unordered iteration: the same inputs give the same records.
 *
 * Lifecycle inputs go through the XState machines (Lifecycle); per-page inputs (target
 * pages, faults, placements) never do, because they must run a million times a second.
 *
 * A refused input throws a typed error after journaling FX_ERROR; it changes nothing else.
 */
export class Destination {
  readonly config: DestinationConfig;
  readonly blocks: RamBlock[];
  readonly stats: EngineStats;
  readonly requested: RequestedSet;
  readonly blocktime: Blocktime;
  /** Page request → placement of that page (what QEMU's page_req add→del measures). */
  requestLatency = new LatencyHistogram();
  private readonly byName = new Map<string, RamBlock>();
  /** Host address of each block, sorted lookup for faults. */
  private readonly hostAddr: number[];
  private readonly byAddress: RamBlock[];
  private readonly vcpuOfTid = new Map<number, number>();
  private readonly life: Lifecycle;
  private readonly temp: TempPage[] = [];
  private readonly zeroHostPage: Uint8Array;
  private lastRequestedBlock: RamBlock | null = null;
  /** The preempt thread waits for outstanding requests before it may exit. */
  private preemptDraining = false;
  /**
   * The main stream reached its end while the preempt channel was still delivering: the
   * end of postcopy waits for the preempt thread to stop (section 2: cleanup joins it).
   */
  private mainStreamEnded = false;
  /**
   * A preempt connection is there and its stream has not ended. Tracked apart from the
   * preempt thread: after a break while it drained, the thread has quit, yet a recovery
   * brings a new preempt connection whose pages must all be read before postcopy ends.
   */
  private preemptStreamOpen = false;
  /** Sequence number of the input being applied: the cause of every effect. */
  private cause = -1;
  /** The RAM_DISCARD being applied, validated: its event carries no payload, so discardRanges reads the ranges here. */
  private commandRanges: readonly DiscardRange[] = NO_RANGES;
  /** The backend's fault listener: a refused fault is journaled; it must not throw into the backend. */
  private readonly onFaults = (batch: FaultBatch): void => {
    const origin = this.faultTimeOriginNs;
    for (let i = 0; i < batch.count; i++) {
      try {
        this.fault(batch.addresses[i]!, batch.tids[i]!, batch.timesNs[i]! - origin);
      } catch (err) {
        if (!(err instanceof PostcopyError)) throw err;
      }
    }
  };
  /** Subtracted from backend fault timestamps so they share the inputs' time origin. */
  faultTimeOriginNs = 0;

  /**
   * Every effect of every machine, carried out (see EffectHandlers). Only `run` calls
   * them, in the order the transition lists them: the machines decide what happens, this
   * table only says how. Several are no-ops because what they name has no counterpart in
   * this engine or happens elsewhere; each says why.
   */
  readonly effects: EffectHandlers = {
    // ---- postcopy
    emptyAllBlocks: (_, t) => {
      for (const rb of this.blocks) {
        rb.postcopyLength = rb.usedLength;
        rb.received.clearAll();
        this.backend.discard(rb.index, 0, rb.usedLength);
        this.emit(EventKind.FX_DISCARD, t, this.cause, rb.index, 0, rb.usedLength, 0, null);
      }
    },
    failNoHostSupport: ({ reason }, t) => {
      this.perform(MachineId.MIGRATION, { type: 'FAIL', reason: `no host support: ${reason}` }, t);
      // The refusal is the report: guard() journals it as FX_ERROR.
      throw new HostSupportError(reason);
    },
    // The first discard, or LISTEN straight from ADVISE: huge pages off on every block (section 1).
    prepareFirstDiscard: (_, t) => {
      for (const rb of this.blocks) {
        rb.hugePagesEnabled = false;
        this.backend.setHugePages(rb.index, false);
        this.emit(EventKind.FX_HUGEPAGES, t, this.cause, rb.index, 0, 0, 0, null);
      }
    },
    discardRanges: (_, t) => {
      clearReceived(this.blocks, this.commandRanges);
      for (const r of this.commandRanges) {
        this.backend.discard(r.block, r.start, r.length);
        this.emit(EventKind.FX_DISCARD, t, this.cause, r.block, r.start, r.length, 0, null);
      }
    },
    // The backend opens the userfault fd and starts its fault reader in one call.
    openUserfault: () => this.backend.listen(this.onFaults),
    startFaultThread: (_, t) => this.perform(MachineId.FAULT_THREAD, { type: 'START' }, t),
    registerBlocks: (_, t) => {
      for (const rb of this.blocks) {
        this.backend.register(rb.index);
        this.emit(EventKind.FX_REGISTER, t, this.cause, rb.index, 0, rb.usedLength, 0, null);
      }
    },
    // Nothing to do: the temp host pages and the zero page exist from the constructor on, so placing never allocates.
    allocateTempPages: () => {},
    startPreemptThread: (_, t) => this.perform(MachineId.PREEMPT_THREAD, { type: 'START' }, t),
    // Nothing to do: the vCPUs belong to whoever embeds the engine; FX_STATE (LISTENING -> RUNNING) records it.
    startVcpus: () => {},
    cleanup: ({ reason }, t) => this.cleanup(reason, t),

    // ---- migration status
    // Nothing more to do: the interrupted channel's half-built host page is dropped as it
    // breaks, the threads pause on their own machines' events (interrupt()), and the
    // requested set is kept as it is for the re-send at resume.
    pauseIncoming: () => {},
    // One receive bitmap per block: the source rebuilds its dirty bitmap from them.
    sendReceivedBitmaps: (_, t) => {
      for (const rb of this.blocks) this.sendReceiveBitmap(rb, t);
    },
    sendResumeAck: (_, t) => {
      const ack = encodeResumeAck();
      this.returnPath.send(RpMessage.RESUME_ACK, ack);
      this.emit(EventKind.FX_RESUME_ACK, t, this.cause, -1, 0, 0, 0, ack);
    },
    resendRequestedPages: (_, t) => {
      this.lastRequestedBlock = null; // the source forgot it too: the next request names its block
      for (const [key] of this.requested.entries()) {
        const rb = this.blockOfKey(key);
        this.sendRequest(rb, key - rb.base, RequestFlag.SYNC, t);
      }
    },
    resumeThreads: (_, t) => {
      this.performIfAccepted(MachineId.FAULT_THREAD, { type: 'RESUME' }, t);
      this.performIfAccepted(MachineId.PREEMPT_THREAD, { type: 'RESUME' }, t);
    },
    // Nothing to do: whoever sent FAIL journaled or threw the cause, and FX_STATE records the status.
    reportFailure: () => {},

    // ---- fault thread
    forgetLastBlock: () => {
      this.lastRequestedBlock = null;
    },
    // Nothing to do: the failed request is still in the requested set, and resendRequestedPages sends it with the rest.
    retryRequest: () => {},
    // Nothing to do: the backend delivers page faults only.
    logNonFaultMessage: () => {},
    reportFaultOutsideRam: ({ address }) => {
      // The refusal is the report: guard() journals it as FX_ERROR.
      throw new FaultOutsideRamError(address);
    },
    // Nothing to do for the quit flag and the join: backend.endPostcopy() (cleanup) stops and joins the fault reader.
    signalFaultThreadQuit: () => {},
    joinFaultThread: (_, t) => this.perform(MachineId.FAULT_THREAD, { type: 'EXITED' }, t),

    // ---- preempt thread
    // Nothing to do: the preempt channel's pages arrive through page() like any other;
    // the machine's state is the thread's whole state here.
    signalPreemptQuit: () => {},
    shutdownPreemptChannel: () => {},
    joinPreemptThread: () => {},
  };

  constructor(
    config: DestinationConfig,
    readonly backend: Backend,
    readonly returnPath: ReturnPath,
    readonly sink: RecordSink,
  ) {
    this.config = config;
    this.blocks = createRamBlocks(config.blocks);
    checkAgainstBackend(this.blocks, config.vcpuTids, backend);
    for (const b of this.blocks) this.byName.set(b.name, b);
    this.hostAddr = this.blocks.map((b) => backend.hostAddress(b.index));
    this.byAddress = [...this.blocks].sort((x, y) => this.hostAddr[x.index]! - this.hostAddr[y.index]!);
    config.vcpuTids.forEach((tid, i) => this.vcpuOfTid.set(tid, i));
    const maxHostPage = Math.max(TARGET_PAGE_SIZE, ...this.blocks.map((b) => b.hostPageSize));
    for (let c = 0; c < CHANNELS; c++) {
      this.temp.push({ block: null, hostOffset: 0, filled: 0, allZero: true, buf: new Uint8Array(maxHostPage) });
    }
    this.zeroHostPage = new Uint8Array(maxHostPage);
    this.requested = new RequestedSet();
    this.blocktime = new Blocktime(config.vcpus ?? config.vcpuTids.length);
    this.life = new Lifecycle((machine, from, to, event, t) => {
      this.emit(EventKind.FX_STATE, t, this.cause, -1, 0, machine, 0, pack({ from, to, event }));
    }, config.preempt);
    this.stats = {
      targetPagesIn: 0,
      precopyPages: 0,
      hostPagesPlaced: 0,
      zeroPlaced: 0,
      alreadyPresent: 0,
      placedByChannel: [0, 0],
      faults: 0,
      requests: 0,
      resends: 0,
      errors: 0,
    };
  }

  // -------------------------------------------------------------------------
  // Queries

  /** The main stream has ended and postcopy waits for the preempt channel's last pages (its EOS, then no request outstanding). */
  get waitingForPreemptChannel(): boolean {
    return this.mainStreamEnded;
  }

  /** Whether a preempt connection is open and its stream has not ended. */
  get preemptChannelOpen(): boolean {
    return this.preemptStreamOpen;
  }

  /** The numeric PostcopyState (0..5). */
  get postcopyState(): number {
    return this.life.postcopyState();
  }

  /** Current state name of a machine (e.g. 'postcopy-paused', 'LISTENING'). */
  stateOf(machine: number): string {
    return this.life.stateName(machine);
  }

  /** The block with this name, or a typed error naming the context. */
  blockByName(name: string, context: string): RamBlock {
    const b = this.byName.get(name);
    if (!b) throw new UnknownBlockError(name, context);
    return b;
  }

  /**
   * Names the vCPU threads when they only exist once the guest starts (before the first
   * fault). The journal's meta must record the same list for replay.
   */
  attachVcpus(tids: readonly number[]): void {
    if (this.stats.faults > 0) throw new PostcopyError('VCPUS_LATE', 'vCPU threads must be attached before the first fault');
    this.vcpuOfTid.clear();
    tids.forEach((tid, i) => this.vcpuOfTid.set(tid, i));
    this.config.vcpuTids = [...tids];
  }

  /** vCPU index of a thread, or -1. */
  vcpuOf(tid: number): number {
    return this.vcpuOfTid.get(tid) ?? -1;
  }

  /** Host address of a block's first byte. */
  hostAddressOf(block: number): number {
    return this.hostAddr[block]!;
  }

  /** True when every page of every block's postcopy length has been received. */
  allReceived(): boolean {
    return this.blocks.every((b) => b.received.findNextZero(0) >= b.postcopyLength / TARGET_PAGE_SIZE);
  }

  // -------------------------------------------------------------------------
  // Inputs

  /**
   * A command from the main stream (section 1). `t`, here and in every input, is the input's
   * time in ns (monotonic; the journal's `timeOriginNs` is its wall-clock origin).
   */
  command(command: number, payload: Uint8Array, t: number): void {
    this.cause = this.emit(EventKind.IN_COMMAND, t, -1, -1, 0, command, 0, payload.length ? payload.slice() : null);
    this.guard(t, () => this.applyCommand(command, payload, t));
  }

  /**
   * One target page from `channel`. `zero` pages carry one byte that must be 0
   * (`zeroByte`); data pages carry 4 KiB at data[dataOffset..]; `offset` is in bytes, `t` in
   * ns. Hot path: `pageInput(engine, { ... })` is the same call with named fields.
   */
  page(
    channel: number,
    block: number,
    offset: number,
    zero: boolean,
    data: Uint8Array,
    dataOffset: number,
    t: number,
    zeroByte = 0,
  ): void {
    this.cause = this.emit(
      EventKind.IN_PAGE,
      t,
      -1,
      block,
      offset,
      channel,
      zero ? 1 : 0,
      zero && zeroByte !== 0 ? Uint8Array.of(zeroByte) : null,
    );
    this.stats.targetPagesIn++;
    const rb = this.blocks[block];
    if (rb === undefined || !(channel === 0 || channel === 1)) {
      this.refuse(t, rb === undefined ? new UnknownBlockError(`#${block}`, 'page') : new PageError('BAD_CHANNEL', rb.name, offset, channel, `no such channel ${channel}`));
      return;
    }
    const state = this.life.postcopyState();
    if (!(offset >= 0 && offset % TARGET_PAGE_SIZE === 0 && offset < (state >= PostcopyState.ADVISE ? rb.postcopyLength : rb.usedLength))) {
      this.refuse(t, new PageError('ILLEGAL_OFFSET', rb.name, offset, channel, `Illegal RAM offset 0x${offset.toString(16)}`));
      return;
    }
    if (zero && zeroByte !== 0) {
      this.refuse(t, new PageError('NONZERO_ZERO_PAGE', rb.name, offset, channel, `Found a zero page with value ${zeroByte}`));
      return;
    }
    if (state < PostcopyState.LISTENING) {
      if (this.life.isDone(MachineId.MIGRATION)) {
        this.refuse(t, new WrongStateError('migration', 'page', this.life.stateName(MachineId.MIGRATION)));
        return;
      }
      this.precopyPage(rb, offset, zero, data, dataOffset, t);
      return;
    }
    if (state >= PostcopyState.END) {
      this.refuse(t, new WrongStateError('postcopy', 'page', 'END'));
      return;
    }
    if (rb.pagesPerHostPage === 1) {
      this.place(rb, offset, zero, data, dataOffset, channel, t);
      return;
    }
    this.assemble(rb, offset, zero, data, dataOffset, channel, t);
  }

  /**
   * `count` consecutive target pages of one block from `channel`, all data (4 KiB each,
   * contiguous at data[dataOffset..]) or all zero pages, with one time `t`: the same
   * inputs as `count` calls of `page` and the same records, in the same order, with the
   * outcomes the backend gave. The difference is how they are carried out: in postcopy
   * a run is placed with one `backend.placeRun` (one UFFDIO_COPY / UFFDIO_ZEROPAGE where
   * the kernel allows) and in precopy a data run is one write, before the run's records
   * are appended; each page's IN_PAGE is still followed by its own effects, so a replay
   * (which feeds the IN_PAGE inputs one by one to `page`) gives the same records. Where a
   * run could not be carried out as one (a refused page, a host page of several target
   * pages, the preempt thread draining, whose end may come between two pages), it is
   * `page` for each page. A refused page is journaled and the run goes on; the first
   * refusal is thrown at the end.
   */
  pages(channel: number, block: number, offset: number, count: number, zero: boolean, data: Uint8Array, dataOffset: number, t: number): void {
    const rb = this.blocks[block];
    const state = this.life.postcopyState();
    const inRange =
      rb !== undefined &&
      (channel === 0 || channel === 1) &&
      count > 0 &&
      offset >= 0 &&
      offset % TARGET_PAGE_SIZE === 0 &&
      offset + count * TARGET_PAGE_SIZE <= (state >= PostcopyState.ADVISE ? rb.postcopyLength : rb.usedLength);
    if (inRange && state < PostcopyState.LISTENING && !zero && !this.life.isDone(MachineId.MIGRATION)) {
      this.precopyRun(rb, offset, count, data, dataOffset, channel, t);
      return;
    }
    if (inRange && state >= PostcopyState.LISTENING && state < PostcopyState.END && rb.pagesPerHostPage === 1 && !this.preemptDraining) {
      this.placeRun(rb, offset, count, zero, data, dataOffset, channel, t);
      return;
    }
    let first: PostcopyError | null = null;
    for (let i = 0; i < count; i++) {
      try {
        this.page(channel, block, offset + i * TARGET_PAGE_SIZE, zero, data, dataOffset + i * TARGET_PAGE_SIZE, t);
      } catch (err) {
        if (!(err instanceof PostcopyError)) throw err;
        first ??= err;
      }
    }
    if (first !== null) throw first;
  }

  /** One userfault at host address `address` from thread `tid` (section 3). Hot path. */
  fault(address: number, tid: number, t: number): void {
    this.cause = this.emit(EventKind.IN_FAULT, t, -1, -1, address, tid, 0, null);
    this.stats.faults++;
    const paused = this.life.isIn(MachineId.FAULT_THREAD, 'paused');
    if (!paused && !this.life.is(MachineId.FAULT_THREAD, 'running')) {
      this.refuse(t, new WrongStateError('faultThread', 'FAULT', this.life.stateName(MachineId.FAULT_THREAD)));
      return;
    }
    const rb = this.blockOfAddress(address);
    if (rb === null) {
      // The thread exits and reportFaultOutsideRam refuses the fault.
      this.guard(t, () => this.perform(MachineId.FAULT_THREAD, { type: 'FAULT_OUTSIDE_RAM', address }, t));
      return;
    }
    const offset = address - this.hostAddr[rb.index]!;
    const hostOffset = offset - (offset % rb.hostPageSize);
    const key = rb.base + hostOffset;
    const vcpu = this.vcpuOfTid.get(tid) ?? -1;
    const received = rb.received.test(hostOffset / TARGET_PAGE_SIZE);
    this.blocktime.begin(address, key, vcpu, t, received);
    let disposition: number;
    if (received) {
      disposition = FaultDisposition.ALREADY_RECEIVED;
    } else if (rb.isPermanentlyDiscarded(offset)) {
      disposition = FaultDisposition.DISCARDED_ZERO;
    } else {
      const isNew = this.requested.add(key, t);
      if (paused) disposition = FaultDisposition.HELD;
      else disposition = isNew ? FaultDisposition.REQUESTED : FaultDisposition.RESENT;
    }
    this.emit(EventKind.FX_FAULT_SEEN, t, this.cause, rb.index, hostOffset, vcpu, disposition, null);
    if (disposition === FaultDisposition.DISCARDED_ZERO || disposition === FaultDisposition.ALREADY_RECEIVED) {
      // Received yet faulting: either placed meanwhile (EEXIST then wakes the thread) or a
      // precopy zero page not written since, over empty memory (a zero page fills it).
      this.place(rb, hostOffset, true, this.zeroHostPage, 0, -1, t);
    } else if (disposition === FaultDisposition.REQUESTED || disposition === FaultDisposition.RESENT) {
      this.sendRequest(rb, hostOffset, disposition === FaultDisposition.RESENT ? RequestFlag.RESEND : 0, t);
    }
  }

  /** A channel broke (section 9): pause during postcopy, fail before it. */
  channelBroken(channel: number, reason: string, t: number): void {
    this.cause = this.emit(EventKind.IN_CHANNEL_BROKEN, t, -1, -1, 0, channel, 0, pack(reason));
    this.guard(t, () => this.interrupt(channel, reason, 'broken', t));
  }

  /** A stream error other than a broken channel: same rule, any error pauses postcopy. */
  streamError(channel: number, reason: string, t: number): void {
    this.cause = this.emit(EventKind.IN_STREAM_ERROR, t, -1, -1, 0, channel, 0, pack(reason));
    this.guard(t, () => this.interrupt(channel, reason, 'error', t));
  }

  /** A channel (re)connected: the preempt channel at setup, or any channel during a pause. */
  channelConnected(channel: number, t: number): void {
    this.cause = this.emit(EventKind.IN_CHANNEL_CONNECTED, t, -1, -1, 0, channel, 0, null);
    this.guard(t, () => {
      // A new main channel during a pause starts the recovery (the machine sends the receive bitmaps).
      if (channel === Channel.PRECOPY && this.performIfAccepted(MachineId.MIGRATION, { type: 'RECOVER' }, t)) {
        // The source resends what the bitmaps lack, and the new main stream ends again.
        this.mainStreamEnded = false;
      } else if (channel === Channel.POSTCOPY && this.config.preempt) {
        // At setup the preempt thread starts loading; during a recovery it resumes with RESUME.
        if (!this.performIfAccepted(MachineId.PREEMPT_THREAD, { type: 'CHANNEL_CONNECTED' }, t) && !this.recovering()) {
          throw new WrongStateError('preemptThread', 'CHANNEL_CONNECTED', this.life.stateName(MachineId.PREEMPT_THREAD));
        }
        this.preemptStreamOpen = true;
      } else {
        throw new WrongStateError('migration', `CHANNEL_CONNECTED(${channel})`, this.life.stateName(MachineId.MIGRATION));
      }
    });
  }

  /** The loader reached the end of the stream on `channel`. */
  endOfStream(channel: number, t: number): void {
    this.cause = this.emit(EventKind.IN_EOS, t, -1, -1, 0, channel, 0, null);
    this.guard(t, () => {
      if (channel === Channel.POSTCOPY) {
        // The preempt channel may end after the main one already cleaned the thread up, or
        // (a recovery's new channel) after the thread quit on a break while it drained.
        const eos = { type: 'EOS', outstanding: this.requested.size } as const;
        const accepted = this.life.accepts(MachineId.PREEMPT_THREAD, eos);
        if (!accepted && (this.life.postcopyState() === PostcopyState.END || this.life.is(MachineId.PREEMPT_THREAD, 'QUIT'))) {
          this.preemptStreamOpen = false;
          return;
        }
        this.perform(MachineId.PREEMPT_THREAD, eos, t);
        this.preemptStreamOpen = false;
        this.preemptDraining = this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
        return;
      }
      if (this.recovering()) throw new WrongStateError('migration', 'EOS', this.life.stateName(MachineId.MIGRATION));
      const state = this.life.postcopyState();
      if (this.config.preempt && this.config.preemptEnd === 'main-eos' && state >= PostcopyState.LISTENING && state < PostcopyState.END) {
        // QEMU's cleanup: the preempt thread quits once no request is outstanding.
        this.performIfAccepted(MachineId.PREEMPT_THREAD, { type: 'QUIT', outstanding: this.requested.size }, t);
        this.preemptDraining = this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
      }
      if (this.config.preempt && state >= PostcopyState.LISTENING && state < PostcopyState.END && this.preemptStillDelivering()) {
        // Pages sent on the preempt channel before its own EOS may not have been read yet:
        // unregistering now would lose them (the vCPUs would read zeros). Postcopy ends
        // once the preempt thread stops (its EOS, then no request outstanding).
        this.mainStreamEnded = true;
        return;
      }
      this.complete(t);
    });
    if (channel === Channel.POSTCOPY) this.completeIfPreemptStopped(t);
  }

  /** Whether pages may still come on the preempt channel: its stream has not ended, or the thread drains requests. */
  private preemptStillDelivering(): boolean {
    // 'main-eos': the thread was told to QUIT at the main stream's end; only its drain is awaited.
    if (this.config.preemptEnd === 'main-eos') return this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
    if (this.preemptStreamOpen) return true;
    return this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.loading') || this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
  }

  /** Postcopy is paused or recovering from a pause: the channels come and go. */
  private recovering(): boolean {
    return this.life.is(MachineId.MIGRATION, 'postcopy-paused') || this.life.is(MachineId.MIGRATION, 'postcopy-recover');
  }

  /** The main stream ended earlier and the preempt thread has now stopped: postcopy ends. */
  private completeIfPreemptStopped(t: number): void {
    if (!this.mainStreamEnded || this.preemptStillDelivering()) return;
    this.guard(t, () => this.complete(t));
  }

  /** The end of postcopy after the whole stream was loaded: END, cleanup, completed. */
  private complete(t: number): void {
    this.mainStreamEnded = false;
    this.perform(MachineId.POSTCOPY, { type: 'EOS' }, t);
    this.perform(MachineId.MIGRATION, { type: 'COMPLETE' }, t);
  }

  /** A RAM block resized (section 1): handled by state. */
  resize(block: number, newLength: number, t: number): void {
    this.cause = this.emit(EventKind.IN_RESIZE, t, -1, block, newLength, 0, 0, null);
    this.guard(t, () => {
      const rb = this.blocks[block];
      if (!rb) throw new UnknownBlockError(`#${block}`, 'resize');
      const state = this.life.postcopyState();
      if (state === PostcopyState.DISCARD || state === PostcopyState.LISTENING) {
        const err = new ResizeDuringPostcopyError(rb.name, state);
        this.fail(t, err.message);
        throw err;
      }
      if (!Number.isSafeInteger(newLength) || newLength <= 0 || newLength % rb.hostPageSize !== 0 || newLength > rb.maxLength) {
        throw new PageError('BAD_RESIZE', rb.name, newLength, -1, `resize to ${newLength} is not a page multiple within max length ${rb.maxLength}`);
      }
      const oldLength = rb.usedLength;
      this.backend.resize(rb.index, newLength);
      rb.usedLength = newLength;
      if (newLength < oldLength) rb.received.clearRange(newLength / TARGET_PAGE_SIZE, (oldLength - newLength) / TARGET_PAGE_SIZE);
      // Postcopy itself ignores resizes in NONE (ADVISE will take the new length), RUNNING and END.
      if (state === PostcopyState.NONE) rb.postcopyLength = newLength;
      if (state !== PostcopyState.ADVISE) return;
      if (newLength > oldLength) {
        const tail = newLength - oldLength;
        this.backend.discard(rb.index, oldLength, tail);
        this.emit(EventKind.FX_DISCARD, t, this.cause, rb.index, oldLength, tail, 0, null);
        rb.received.clearRange(oldLength / TARGET_PAGE_SIZE, tail / TARGET_PAGE_SIZE);
      }
      rb.postcopyLength = newLength;
    });
  }

  // -------------------------------------------------------------------------
  // Commands

  private applyCommand(command: number, payload: Uint8Array, t: number): void {
    this.refuseWhenOver(commandName(command));
    // The migration status leaves 'setup' at the first command of the stream.
    this.performIfAccepted(MachineId.MIGRATION, { type: 'START' }, t);
    switch (command) {
      case MigCommand.OPEN_RETURN_PATH:
      case MigCommand.PACKAGED:
      case MigCommand.ENABLE_COLO:
        return;
      case MigCommand.PING:
        this.returnPath.send(RpMessage.PONG, payload);
        return;
      case MigCommand.POSTCOPY_ADVISE:
        return this.advise(payload, t);
      case MigCommand.POSTCOPY_RAM_DISCARD:
        return this.ramDiscard(payload, t);
      case MigCommand.POSTCOPY_LISTEN:
        return this.listen(t);
      case MigCommand.POSTCOPY_RUN:
        this.perform(MachineId.POSTCOPY, { type: 'RUN' }, t);
        return;
      case MigCommand.POSTCOPY_RESUME:
        return this.resume(t);
      case MigCommand.RECV_BITMAP: {
        if (!this.life.is(MachineId.MIGRATION, 'postcopy-recover')) {
          throw new WrongStateError('migration', 'RECV_BITMAP', this.life.stateName(MachineId.MIGRATION));
        }
        const rb = this.blockByName(decodeRecvBitmapRequest(payload), 'RECV_BITMAP');
        this.sendReceiveBitmap(rb, t);
        return;
      }
      default:
        throw new PostcopyError('UNKNOWN_COMMAND', `unknown command ${command} in postcopy state ${this.life.stateName(MachineId.POSTCOPY)}`);
    }
  }

  /** A migration that has failed or completed takes no further command. */
  private refuseWhenOver(what: string): void {
    if (this.life.isDone(MachineId.MIGRATION)) throw new WrongStateError('migration', what, this.life.stateName(MachineId.MIGRATION));
  }

  private advise(payload: Uint8Array, t: number): void {
    this.life.check(MachineId.POSTCOPY, { type: 'ADVISE', supported: true });
    const advise = decodeAdvise(payload);
    const ours = hostPageSizeSummary(this.blocks.map((b) => b.hostPageSize));
    if (advise.targetPageSize !== TARGET_PAGE_SIZE || advise.hostPageSizeSummary !== ours) {
      throw new PostcopyError(
        'PAGE_SIZE_MISMATCH',
        `Postcopy needs matching RAM page sizes (s=0x${advise.hostPageSizeSummary.toString(16)} d=0x${ours.toString(16)}, target page ${advise.targetPageSize} vs ${TARGET_PAGE_SIZE})`,
      );
    }
    const report = this.backend.probe();
    this.emit(EventKind.FX_PROBE, t, this.cause, -1, 0, report.ok ? 1 : 0, 0, pack(report));
    if (!report.ok) {
      // failNoHostSupport fails the migration and throws HostSupportError.
      this.perform(MachineId.POSTCOPY, { type: 'ADVISE', supported: false, reason: report.reason ?? 'the probe failed' }, t);
      return;
    }
    this.perform(MachineId.POSTCOPY, { type: 'ADVISE', supported: true }, t);
    this.blocktime.start(t);
  }

  private ramDiscard(payload: Uint8Array, t: number): void {
    const from = this.life.postcopyState();
    this.life.check(MachineId.POSTCOPY, { type: 'RAM_DISCARD' });
    const discard = decodeRamDiscard(payload);
    // Validates the whole command first; whether huge pages go off first is the machine's call.
    this.commandRanges = planDiscard(from, this.blocks, discard).ranges;
    try {
      this.perform(MachineId.POSTCOPY, { type: 'RAM_DISCARD' }, t);
    } finally {
      this.commandRanges = NO_RANGES;
    }
  }

  private listen(t: number): void {
    this.perform(MachineId.POSTCOPY, { type: 'LISTEN' }, t);
    this.perform(MachineId.MIGRATION, { type: 'POSTCOPY_START' }, t);
  }

  /**
   * POSTCOPY_RESUME. The machine asks for [sendResumeAck, resendRequestedPages,
   * resumeThreads]; the journal has always had another order, which the replay fixtures
   * pin: the ack before the status change, and the threads resumed before the requests
   * go out again (a fault thread still paused could not pause again when a re-send fails).
   * So the same effects run in that order: the ack ahead of the step (planned purely),
   * resumeThreads ahead of the rest.
   */
  private resume(t: number): void {
    if (!this.life.is(MachineId.MIGRATION, 'postcopy-recover')) {
      throw new WrongStateError('migration', 'POSTCOPY_RESUME', this.life.stateName(MachineId.MIGRATION));
    }
    const resumed = { type: 'RESUMED' } as const;
    const isAck = (effect: LifecycleEffect): boolean => effect.type === 'sendResumeAck';
    const isResume = (effect: LifecycleEffect): boolean => effect.type === 'resumeThreads';
    this.run(this.life.plan(MachineId.MIGRATION, resumed).filter(isAck), t);
    const effects = this.life.send(MachineId.MIGRATION, resumed, t);
    this.run(effects.filter(isResume), t);
    this.run(effects.filter((effect) => !isAck(effect) && !isResume(effect)), t);
  }

  /** Break or stream error: postcopy pauses (never fails); earlier phases fail. */
  private interrupt(channel: number, reason: string, kind: 'broken' | 'error', t: number): void {
    if (channel === Channel.POSTCOPY) this.preemptStreamOpen = false; // a recovery connects a new one
    const state = this.life.postcopyState();
    if (state >= PostcopyState.LISTENING && state < PostcopyState.END) {
      const tp = this.temp[channel];
      if (tp) tp.block = null; // a half-assembled host page is sent again after recovery
      this.perform(MachineId.MIGRATION, kind === 'broken' ? { type: 'CHANNEL_BROKEN' } : { type: 'STREAM_ERROR', error: reason }, t);
      this.performIfAccepted(MachineId.FAULT_THREAD, { type: 'RETURN_PATH_LOST' }, t);
      if (this.config.preempt && this.performIfAccepted(MachineId.PREEMPT_THREAD, { type: 'LOAD_ERROR' }, t)) {
        // A draining thread quits on the error: nothing may tell it about the count any more.
        this.preemptDraining = this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
      }
      return;
    }
    this.fail(t, reason);
  }

  /** The migration fails: cleanup if postcopy had started listening. */
  private fail(t: number, reason: string): void {
    // Once postcopy listens, its FAIL cleans up (the cleanup effect) before the migration fails.
    const state = this.life.postcopyState();
    if (state >= PostcopyState.LISTENING && state < PostcopyState.END) this.perform(MachineId.POSTCOPY, { type: 'FAIL', reason }, t);
    this.perform(MachineId.MIGRATION, { type: 'FAIL', reason }, t);
  }

  /** The cleanup effect, section 6: threads quit, blocks unregistered, huge pages back, fds closed, blocktime reported. */
  private cleanup(reason: CleanupReason, t: number): void {
    if (this.config.preempt) {
      // A completed migration has no outstanding requests; a failed one will never get them.
      const stop: EventOf<typeof MachineId.PREEMPT_THREAD> =
        reason === 'end' ? { type: 'QUIT', outstanding: this.requested.size } : { type: 'ABORT' };
      this.performIfAccepted(MachineId.PREEMPT_THREAD, stop, t);
      this.performIfAccepted(MachineId.PREEMPT_THREAD, { type: 'CLEANUP' }, t);
      this.preemptDraining = false;
    }
    // joinFaultThread then takes it from quitting to exited; a thread that exited on its own is left alone.
    this.performIfAccepted(MachineId.FAULT_THREAD, { type: 'QUIT' }, t);
    for (const rb of this.blocks) {
      this.backend.unregister(rb.index);
      this.emit(EventKind.FX_UNREGISTER, t, this.cause, rb.index, 0, rb.usedLength, 0, null);
      if (!rb.hugePagesEnabled) {
        rb.hugePagesEnabled = true;
        this.backend.setHugePages(rb.index, true);
        this.emit(EventKind.FX_HUGEPAGES, t, this.cause, rb.index, 0, 1, 0, null);
      }
    }
    this.backend.endPostcopy();
    const bt = this.blocktime.report();
    this.emit(EventKind.FX_BLOCKTIME, t, this.cause, -1, 0, bt.qemu.totalMs, bt.exact.totalNs, pack(bt));
  }

  // -------------------------------------------------------------------------
  // Pages

  private precopyPage(rb: RamBlock, offset: number, zero: boolean, data: Uint8Array, dataOffset: number, t: number): void {
    const bit = offset / TARGET_PAGE_SIZE;
    // Memory is empty after ADVISE, so a zero page needs a write only over earlier data —
    // except in a block whose host page spans several target pages: a received host page
    // must be wholly present, or a fault on its unwritten part could never be served by
    // placing the host page (EEXIST on the written part).
    if (!zero || rb.received.test(bit) || rb.pagesPerHostPage > 1) {
      if (zero) this.backend.write(rb.index, offset, this.zeroHostPage, 0, TARGET_PAGE_SIZE);
      else this.backend.write(rb.index, offset, data, dataOffset, TARGET_PAGE_SIZE);
      this.emit(EventKind.FX_WRITE, t, this.cause, rb.index, offset, TARGET_PAGE_SIZE, zero ? 1 : 0, null);
    }
    rb.received.set(bit);
    this.stats.precopyPages++;
  }

  /** A run of precopy data pages: one write, then each page's records as precopyPage would make them. */
  private precopyRun(rb: RamBlock, offset: number, count: number, data: Uint8Array, dataOffset: number, channel: number, t: number): void {
    this.backend.write(rb.index, offset, data, dataOffset, count * TARGET_PAGE_SIZE);
    for (let i = 0; i < count; i++) {
      const pageOffset = offset + i * TARGET_PAGE_SIZE;
      this.cause = this.emit(EventKind.IN_PAGE, t, -1, rb.index, pageOffset, channel, 0, null);
      this.stats.targetPagesIn++;
      this.emit(EventKind.FX_WRITE, t, this.cause, rb.index, pageOffset, TARGET_PAGE_SIZE, 0, null);
      rb.received.set(pageOffset / TARGET_PAGE_SIZE);
      this.stats.precopyPages++;
    }
  }

  /** Outcomes of the run being placed (see Backend.placeRun); grown when a longer run comes. */
  private runOutcomes = new Uint8Array(256);

  /**
   * A run of postcopy pages of a block whose host page is one target page: placed with as
   * few backend calls as it allows, then each page's records and bookkeeping as place()
   * makes them. A page the backend answered RETRY for goes on with place()'s retries.
   */
  private placeRun(rb: RamBlock, offset: number, count: number, zero: boolean, data: Uint8Array, dataOffset: number, channel: number, t: number): void {
    if (this.runOutcomes.length < count) this.runOutcomes = new Uint8Array(count);
    const outcomes = this.runOutcomes;
    const kind = zero && rb.canZeroPlace ? EventKind.FX_ZERO : EventKind.FX_COPY;
    const len = TARGET_PAGE_SIZE;
    let first: PostcopyError | null = null;
    let i = 0;
    while (i < count) {
      const at = offset + i * len;
      const from = dataOffset + i * len;
      let n: number;
      if (this.backend.placeRun !== undefined) {
        n = this.backend.placeRun(rb.index, at, zero ? null : data, zero ? 0 : from, (count - i) * len, outcomes);
      } else {
        outcomes[0] = kind === EventKind.FX_ZERO ? this.backend.zero(rb.index, at, len) : this.backend.copy(rb.index, at, zero ? this.zeroHostPage : data, zero ? 0 : from, len);
        n = 1;
      }
      for (let k = 0; k < n; k++) {
        const pageOffset = at + k * len;
        this.cause = this.emit(EventKind.IN_PAGE, t, -1, rb.index, pageOffset, channel, zero ? 1 : 0, null);
        this.stats.targetPagesIn++;
        const outcome = outcomes[k]! as PlaceOutcomeValue;
        this.emit(kind, t, this.cause, rb.index, pageOffset, len, outcome, null);
        if (outcome !== PlaceOutcome.RETRY) {
          this.placed(rb, pageOffset, zero, outcome, channel, t);
          continue;
        }
        try {
          this.placeAttempts(rb, pageOffset, zero, data, from + k * len, channel, t, 1);
        } catch (err) {
          if (!(err instanceof PostcopyError)) throw err;
          first ??= err;
        }
      }
      i += n;
    }
    if (first !== null) throw first;
  }

  /** Accumulates a target page into the channel's temp host page; places it when complete. */
  private assemble(rb: RamBlock, offset: number, zero: boolean, data: Uint8Array, dataOffset: number, channel: number, t: number): void {
    const tp = this.temp[channel]!;
    const hostOffset = offset - (offset % rb.hostPageSize);
    if (tp.block === null) {
      tp.block = rb;
      tp.hostOffset = hostOffset;
      tp.filled = 0;
      tp.allZero = true;
    } else if (tp.block !== rb || tp.hostOffset !== hostOffset) {
      this.refuse(t, new PageError('NON_SAME_HOST_PAGE', rb.name, offset, channel, `Non-same host page detected (assembling 0x${tp.hostOffset.toString(16)} of '${tp.block.name}')`));
      return;
    }
    const within = offset - hostOffset;
    if (within !== tp.filled * TARGET_PAGE_SIZE) {
      this.refuse(t, new PageError('OUT_OF_ORDER', rb.name, offset, channel, `target page out of order in its host page (expected offset 0x${(hostOffset + tp.filled * TARGET_PAGE_SIZE).toString(16)})`));
      return;
    }
    if (!zero) {
      if (tp.allZero && tp.filled > 0) tp.buf.fill(0, 0, within); // earlier zero parts become real zeros
      tp.allZero = false;
      tp.buf.set(data.subarray(dataOffset, dataOffset + TARGET_PAGE_SIZE), within);
    } else if (!tp.allZero) {
      tp.buf.fill(0, within, within + TARGET_PAGE_SIZE);
    }
    tp.filled++;
    if (tp.filled === rb.pagesPerHostPage) {
      tp.block = null;
      this.place(rb, hostOffset, tp.allZero, tp.buf, 0, channel, t);
    }
  }

  /**
   * Places a complete host page atomically (section 4) and does the bookkeeping:
   * receive bits, requested set, blocktime end. Hot path: no allocation.
   */
  private place(rb: RamBlock, hostOffset: number, zero: boolean, data: Uint8Array, dataOffset: number, channel: number, t: number): void {
    this.placeAttempts(rb, hostOffset, zero, data, dataOffset, channel, t, 0);
  }

  /** place() from attempt `firstAttempt` on (a run's page the backend answered RETRY for has had attempt 0). */
  private placeAttempts(rb: RamBlock, hostOffset: number, zero: boolean, data: Uint8Array, dataOffset: number, channel: number, t: number, firstAttempt: number): void {
    const len = rb.hostPageSize;
    let outcome: PlaceOutcomeValue = PlaceOutcome.RETRY;
    for (let attempt = firstAttempt; attempt <= MAX_PLACE_RETRIES; attempt++) {
      let kind: EventKindValue;
      if (zero && rb.canZeroPlace) {
        outcome = this.backend.zero(rb.index, hostOffset, len);
        kind = EventKind.FX_ZERO;
      } else {
        outcome = this.backend.copy(rb.index, hostOffset, zero ? this.zeroHostPage : data, zero ? 0 : dataOffset, len);
        kind = EventKind.FX_COPY;
      }
      this.emit(kind, t, this.cause, rb.index, hostOffset, len, outcome, null);
      if (outcome !== PlaceOutcome.RETRY) break;
    }
    if (outcome === PlaceOutcome.RETRY) {
      this.refuse(t, new BackendError('place', 'EAGAIN', `block '${rb.name}' offset 0x${hostOffset.toString(16)}: still EAGAIN after ${MAX_PLACE_RETRIES} retries`));
      return;
    }
    this.placed(rb, hostOffset, zero, outcome, channel, t);
  }

  /** The bookkeeping of a host page placed (or found present): receive bits, requested set, blocktime end, stats. */
  private placed(rb: RamBlock, hostOffset: number, zero: boolean, outcome: PlaceOutcomeValue, channel: number, t: number): void {
    rb.received.setRange(hostOffset / TARGET_PAGE_SIZE, rb.pagesPerHostPage);
    const key = rb.base + hostOffset;
    const requestedAt = this.requested.remove(key);
    if (requestedAt >= 0) this.requestLatency.record(t - requestedAt);
    this.blocktime.end(this.hostAddr[rb.index]! + hostOffset, key, t);
    const s = this.stats;
    s.hostPagesPlaced++;
    if (zero) s.zeroPlaced++;
    if (outcome === PlaceOutcome.ALREADY_PRESENT) s.alreadyPresent++;
    if (channel >= 0) s.placedByChannel[channel as 0 | 1]++;
    if (requestedAt >= 0 && this.preemptDraining) this.outstandingChangedWhileDraining(t);
  }

  /** A requested page came while the preempt thread drains: it may stop, and a postcopy end that waited for it happen. Off the hot path. */
  private outstandingChangedWhileDraining(t: number): void {
    this.perform(MachineId.PREEMPT_THREAD, { type: 'OUTSTANDING_CHANGED', outstanding: this.requested.size }, t);
    this.preemptDraining = this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
    if (!this.preemptDraining) this.completeIfPreemptStopped(t);
  }

  // -------------------------------------------------------------------------
  // Return path

  /** REQ_PAGES, or REQ_PAGES_ID when the block differs from the last one named (section 3). */
  private sendRequest(rb: RamBlock, hostOffset: number, flags: number, t: number): void {
    // wire.requestPageMessage states the same rule; inlined here because its result object
    // and name comparison cost a third of engine.fault's throughput (bench, 1.7 M → 1.2 M/s).
    const withId = this.lastRequestedBlock !== rb;
    const payload = withId ? encodeReqPagesId(rb.name, hostOffset, rb.hostPageSize) : encodeReqPages(hostOffset, rb.hostPageSize);
    const sent = this.returnPath.send(withId ? RpMessage.REQ_PAGES_ID : RpMessage.REQ_PAGES, payload);
    if (sent) this.lastRequestedBlock = rb;
    if (withId) flags |= RequestFlag.WITH_ID;
    if (!sent) flags |= RequestFlag.NOT_SENT;
    if (flags & (RequestFlag.RESEND | RequestFlag.SYNC)) this.stats.resends++;
    else this.stats.requests++;
    this.emit(EventKind.FX_REQUEST, t, this.cause, rb.index, hostOffset, rb.hostPageSize, flags, payload);
    if (!sent) this.performIfAccepted(MachineId.FAULT_THREAD, { type: 'REQUEST_FAILED' }, t);
  }

  private sendReceiveBitmap(rb: RamBlock, t: number): void {
    const blob = encodeBlockReceiveBitmap(rb);
    this.returnPath.send(RpMessage.RECV_BITMAP, encodeRecvBitmapMessage(rb.name, blob));
    this.emit(EventKind.FX_RECV_BITMAP, t, this.cause, rb.index, 0, blob.length, 0, blob);
  }

  // -------------------------------------------------------------------------
  // Lifecycle: the machines decide, the effects table carries out

  /** Steps `machine` (WrongStateError when refused, nothing changed) and carries out the effects it asks for. */
  private perform<Id extends MachineIdValue>(machine: Id, event: EventOf<Id>, t: number): void {
    this.run(this.life.send(machine, event, t), t);
  }

  /** As perform, when `machine` takes `event` now; otherwise nothing happens. Returns whether it was taken. */
  private performIfAccepted<Id extends MachineIdValue>(machine: Id, event: EventOf<Id>, t: number): boolean {
    if (!this.life.accepts(machine, event)) return false;
    this.perform(machine, event, t);
    return true;
  }

  /** The one place effects are carried out: each by its handler, in the order given. */
  private run(effects: readonly LifecycleEffect[], t: number): void {
    for (const effect of effects) runEffect(this.effects, effect.type, effect.params, t);
  }

  // -------------------------------------------------------------------------
  // Helpers

  private blockOfAddress(address: number): RamBlock | null {
    const list = this.byAddress;
    for (let i = list.length - 1; i >= 0; i--) {
      const b = list[i]!;
      const start = this.hostAddr[b.index]!;
      if (address >= start) return address < start + b.usedLength ? b : null;
    }
    return null;
  }

  private blockOfKey(key: number): RamBlock {
    for (let i = this.blocks.length - 1; i >= 0; i--) if (key >= this.blocks[i]!.base) return this.blocks[i]!;
    throw new Error(`host page key ${key} below every block`);
  }

  private emit(kind: EventKindValue, t: number, cause: number, block: number, offset: number, a: number, b: number, payload: Uint8Array | null): number {
    return this.sink.append(kind, t, cause, block, offset, a, b, payload);
  }

  /** Runs a lifecycle step; a typed error is journaled as FX_ERROR and rethrown. */
  private guard(t: number, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (err instanceof PostcopyError) {
        this.refuse(t, err);
        return;
      }
      throw err;
    }
  }

  /** Journals a refusal and throws it: the caller learns what was wrong, the journal keeps why. */
  private refuse(t: number, err: PostcopyError): never {
    this.stats.errors++;
    this.emit(EventKind.FX_ERROR, t, this.cause, -1, 0, 0, 0, pack({ code: err.code, message: err.message }));
    throw err;
  }

  // -------------------------------------------------------------------------
  // Snapshots

  /** Plain data from which `restore` rebuilds an identical engine (pure). */
  snapshot(): DestinationSnapshot {
    return {
      lifecycle: this.life.snapshot(),
      blocks: this.blocks.map((b) => ({
        usedLength: b.usedLength,
        postcopyLength: b.postcopyLength,
        hugePagesEnabled: b.hugePagesEnabled,
        received: b.received.toLE64Bytes(),
      })),
      requested: this.requested.toJSON(),
      lastRequestedBlock: this.lastRequestedBlock?.index ?? -1,
      temp: this.temp.map((tp) => ({ block: tp.block?.index ?? -1, hostOffset: tp.hostOffset, filled: tp.filled, allZero: tp.allZero })),
      blocktime: this.blocktime.snapshot(),
      requestLatency: this.requestLatency.toJSON(),
      stats: structuredClone(this.stats),
      mainStreamEnded: this.mainStreamEnded,
      preemptStreamOpen: this.preemptStreamOpen,
    };
  }

  /** Continues from a snapshot (temp page contents are not journaled: only their shape). */
  restore(s: DestinationSnapshot): void {
    this.life.restore(s.lifecycle);
    s.blocks.forEach((bs, i) => {
      const b = this.blocks[i]!;
      b.usedLength = bs.usedLength;
      b.postcopyLength = bs.postcopyLength;
      b.hugePagesEnabled = bs.hugePagesEnabled;
      b.received.words.set(Bitmap.fromLE64Bytes(b.received.size, new Uint8Array(bs.received), 'snapshot receive bitmap').words);
    });
    this.requested.load(s.requested);
    this.lastRequestedBlock = s.lastRequestedBlock >= 0 ? this.blocks[s.lastRequestedBlock]! : null;
    s.temp.forEach((ts, c) => {
      const tp = this.temp[c]!;
      tp.block = ts.block >= 0 ? this.blocks[ts.block]! : null;
      tp.hostOffset = ts.hostOffset;
      tp.filled = ts.filled;
      tp.allZero = ts.allZero;
    });
    this.blocktime.restore(s.blocktime);
    this.requestLatency = LatencyHistogram.fromJSON(s.requestLatency);
    this.preemptDraining = this.life.is(MachineId.PREEMPT_THREAD, 'CREATED.draining');
    this.mainStreamEnded = s.mainStreamEnded ?? false;
    this.preemptStreamOpen = s.preemptStreamOpen ?? false;
    Object.assign(this.stats, structuredClone(s.stats));
  }
}

const COMMAND_NAMES: Record<number, string> = Object.fromEntries(Object.entries(MigCommand).map(([k, v]) => [v, k]));

/** QEMU's name of a command number, for messages (pure). */
function commandName(command: number): string {
  return COMMAND_NAMES[command] ?? `command ${command}`;
}
