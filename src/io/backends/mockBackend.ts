import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { BackendError } from '../../errors.js';
import { validateAccessPlan, type AccessPlan } from './accessPatterns.js';
import {
  PlaceOutcome,
  type Backend,
  type BlockLayout,
  type FaultListener,
  type PlaceOutcomeValue,
  type SupportReport,
} from '../../engine/ports.js';
import { probeSimulatedHost } from './mockProbe.js';
import { SimulatedVcpus, type VcpuState } from './simulatedVcpus.js';
import { ChunkPool, SparseMemory } from './sparseMemory.js';

/** Where the first block is mapped: the kind of address QEMU's guest RAM gets on x86-64. */
export const DEFAULT_BASE_ADDRESS = 0x7f0000000000;
/** Blocks are mapped 1 GiB apart at least, so every huge page size stays aligned. */
const BLOCK_ALIGNMENT = 2 ** 30;
/** Thread id of the first simulated vCPU; later ones count up. */
export const FIRST_VCPU_TID = 73001;
/** Faults held before the listener is called in the middle of a step. */
const FAULT_QUEUE_CAPACITY = 1024;

export interface MockBackendOptions {
  /** false, or a refusal reason, makes the probe fail and listen() refuse (default true). */
  supported?: boolean | string;
  /** Host address of block 0 (default 0x7f0000000000); a multiple of 1 GiB. */
  baseAddress?: number;
  /**
   * Whether the simulated kernel offers UFFDIO_ZEROPAGE (default true). Without it the
   * probe's test-page check fails; zero() still works, by a copy from a zeroed page.
   */
  zeroPlace?: boolean;
  /**
   * Thread ids of the simulated vCPUs, index = vCPU index (default: counting up from
   * FIRST_VCPU_TID = 73001 across startVcpus calls). Given, every startVcpus uses them
   * from the first, and the engine checks its vcpuTids against them.
   */
  vcpuTids?: readonly number[];
  /**
   * Where the blocks' 2 MiB chunks come from (default: a pool of this backend's own). A pool
   * shared by backends that run one after another (a fleet build) reuses chunks already
   * touched, see releaseMemory().
   */
  chunkPool?: ChunkPool;
}

/** Which vCPUs to start: an access plan over one block. */
export interface StartVcpusOptions extends AccessPlan {
  block: number;
}

/** Counters of what the backend did; cheap to keep, handy for tests and benchmarks. */
export interface MockBackendStats {
  copies: number;
  zeroPlacements: number;
  /** Zero placements done as a copy from a zeroed page (hugetlbfs, or no ZEROPAGE). */
  zeroCopies: number;
  alreadyPresent: number;
  retries: number;
  wakes: number;
  faults: number;
  discards: number;
  writes: number;
}

/** One recorded setHugePages call. */
export interface HugePageCall {
  block: number;
  enabled: boolean;
}

/** One block's mutable state. */
interface BlockState {
  readonly index: number;
  readonly layout: BlockLayout;
  readonly name: string;
  readonly hostPageSize: number;
  usedLength: number;
  readonly maxLength: number;
  readonly hostAddress: number;
  readonly memory: SparseMemory;
  registered: boolean;
  hugePages: boolean;
}

/** A pending fault injection: the next `remaining` placements overlapping the range return RETRY. */
interface RetryInjection {
  block: number;
  start: number;
  end: number;
  remaining: number;
}

/**
 * The simulated backend: sparse guest memory, simulated vCPUs and the kernel's
 * userfaultfd rules (reference sections 3, 4 and 10):
 * - a registered block's missing pages fault when a vCPU touches them, and the vCPU
 *   blocks until a placement, a wake (if by then present) or an unregister;
 * - copy and zero place one whole host page atomically; onto a present page they return
 *   ALREADY_PRESENT (EEXIST) and wake the waiters; a placement into an unregistered block
 *   fails (ENOENT), as does any fd operation before listen() or after close() (EBADF);
 * - read() of a missing page of a registered block is refused (a real VMM would hang);
 *   once unregistered, missing pages read as zeros;
 * - write() (plain precopy write) is refused while the block is registered.
 * Every bad argument throws BackendError before anything changes.
 */
export class MockBackend implements Backend {
  readonly kind = 'mock' as const;
  readonly blocks: readonly BlockLayout[];
  readonly stats: MockBackendStats = {
    copies: 0,
    zeroPlacements: 0,
    zeroCopies: 0,
    alreadyPresent: 0,
    retries: 0,
    wakes: 0,
    faults: 0,
    discards: 0,
    writes: 0,
  };
  /** Every setHugePages call, in order. */
  readonly hugePageCalls: HugePageCall[] = [];

  private readonly state: BlockState[];
  private readonly pool: ChunkPool;
  private readonly supported: boolean | string;
  private readonly zeroPlace: boolean;
  private listener: FaultListener | null = null;
  private closed = false;
  private injections: RetryInjection[] = [];
  private vcpus: SimulatedVcpus | null = null;
  private nextTid = FIRST_VCPU_TID;
  private readonly fixedTids: readonly number[] | null;
  private readonly faultAddresses = new Float64Array(FAULT_QUEUE_CAPACITY);
  private readonly faultTids = new Int32Array(FAULT_QUEUE_CAPACITY);
  private readonly faultTimes = new Float64Array(FAULT_QUEUE_CAPACITY);
  private faultCount = 0;

  constructor(blocks: BlockLayout[], options: MockBackendOptions = {}) {
    const base = options.baseAddress ?? DEFAULT_BASE_ADDRESS;
    if (!Number.isSafeInteger(base) || base < 0 || base % BLOCK_ALIGNMENT !== 0) {
      throw new BackendError('create', 'EINVAL', `base address ${base} is not a non-negative multiple of 1 GiB`);
    }
    this.pool = options.chunkPool ?? new ChunkPool();
    this.supported = options.supported ?? true;
    this.zeroPlace = options.zeroPlace ?? true;
    this.fixedTids = options.vcpuTids ? [...options.vcpuTids] : null;
    this.blocks = blocks.map((b) => ({ ...b }));
    this.state = [];
    let address = base;
    for (const [index, layout] of this.blocks.entries()) {
      checkLayout(layout, index);
      const maxLength = Math.max(layout.length, layout.maxLength ?? layout.length);
      this.state.push({
        index,
        layout,
        name: layout.name,
        hostPageSize: layout.hostPageSize,
        usedLength: layout.length,
        maxLength,
        hostAddress: address,
        memory: new SparseMemory(maxLength, this.pool),
        registered: false,
        hugePages: true,
      });
      address += Math.ceil(maxLength / BLOCK_ALIGNMENT) * BLOCK_ALIGNMENT;
      if (!Number.isSafeInteger(address)) {
        throw new BackendError('create', 'EINVAL', `block '${layout.name}' ends past 2^53: the layout does not fit in a double`);
      }
    }
  }

  /**
   * Gives every block's chunks back to the pool (the blocks read as dropped: not present,
   * zero). For a backend whose run is over, so that the next backend on the same pool
   * takes chunks whose pages are already touched.
   */
  releaseMemory(): void {
    for (const b of this.state) b.memory.drop(0, b.maxLength);
  }

  // -------------------------------------------------------------------------
  // Backend interface

  /** Reference section 10 against the simulated host; never throws. */
  probe(): SupportReport {
    return probeSimulatedHost(this.blocks, { supported: this.supported, zeroPlace: this.zeroPlace });
  }

  hostAddress(block: number): number {
    return this.blockAt(block, 'hostAddress').hostAddress;
  }

  /** Opens the simulated userfault fd: faults from now on go to `listener`. */
  listen(listener: FaultListener): void {
    if (this.closed) throw new BackendError('listen', 'EBADF', 'the backend is closed');
    if (this.listener !== null) throw new BackendError('listen', 'EBUSY', 'the fault reader is already running');
    if (this.supported !== true) {
      throw new BackendError('listen', 'ENOSYS', `cannot open the userfault fd: ${this.probe().reason ?? 'refused'}`);
    }
    this.listener = listener;
  }

  register(block: number): void {
    const b = this.blockAt(block, 'register');
    this.requireOpenFd('register', b);
    if (b.usedLength % b.hostPageSize !== 0) {
      throw new BackendError(
        'register',
        'EINVAL',
        `block '${b.name}' (${block}): length ${b.usedLength} is not a multiple of its page size ${b.hostPageSize}`,
      );
    }
    b.registered = true;
  }

  /** Unregisters; the vCPUs blocked in the block are woken and complete on zero pages. */
  unregister(block: number): void {
    const b = this.blockAt(block, 'unregister');
    this.requireOpenFd('unregister', b);
    if (!b.registered) return;
    b.registered = false;
    this.vcpus?.wake(block, 0, b.usedLength);
  }

  discard(block: number, offset: number, length: number): void {
    const b = this.blockAt(block, 'discard');
    const align = b.layout.hugetlbfs === true ? b.hostPageSize : TARGET_PAGE_SIZE;
    this.checkRange('discard', b, offset, length, align);
    b.memory.drop(offset, length);
    this.stats.discards++;
  }

  resize(block: number, length: number): void {
    const b = this.blockAt(block, 'resize');
    if (!Number.isSafeInteger(length) || length <= 0 || length % b.hostPageSize !== 0 || length > b.maxLength) {
      throw new BackendError('resize', 'EINVAL', `block '${b.name}' (${block}): length ${length} is not a multiple of ${b.hostPageSize} within max length ${b.maxLength}`);
    }
    if (length < b.usedLength) b.memory.drop(length, b.usedLength - length);
    b.usedLength = length;
  }

  setHugePages(block: number, enabled: boolean): void {
    const b = this.blockAt(block, 'setHugePages');
    b.hugePages = enabled;
    this.hugePageCalls.push({ block, enabled });
  }

  write(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): void {
    const b = this.blockAt(block, 'write');
    this.checkRange('write', b, offset, length, 1);
    checkData('write', data, dataOffset, length);
    if (b.registered) {
      throw new BackendError(
        'write',
        '',
        `block '${b.name}' (${block}) is registered with the userfault fd: while postcopy listens every insert must be an atomic placement (copy or zero), not a plain write`,
      );
    }
    b.memory.write(offset, data, dataOffset, length);
    this.stats.writes++;
  }

  copy(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): PlaceOutcomeValue {
    const b = this.placementTarget('copy', block, offset, length);
    checkData('copy', data, dataOffset, length);
    if (this.injections.length > 0 && this.consumeInjection(block, offset, length)) return PlaceOutcome.RETRY;
    if (b.memory.anyPresent(offset, length)) return this.alreadyPresent(block, offset, length);
    b.memory.write(offset, data, dataOffset, length);
    this.stats.copies++;
    if (this.vcpus !== null) this.vcpus.wake(block, offset, length);
    return PlaceOutcome.PLACED;
  }

  /** Zero placement: missing pages are already zero (SparseMemory's invariant), so only presence changes. */
  zero(block: number, offset: number, length: number): PlaceOutcomeValue {
    const b = this.placementTarget('zero', block, offset, length);
    if (this.injections.length > 0 && this.consumeInjection(block, offset, length)) return PlaceOutcome.RETRY;
    if (b.memory.anyPresent(offset, length)) return this.alreadyPresent(block, offset, length);
    b.memory.markPresent(offset, length);
    this.stats.zeroPlacements++;
    if (!this.zeroPlace || b.layout.hugetlbfs === true) this.stats.zeroCopies++;
    if (this.vcpus !== null) this.vcpus.wake(block, offset, length);
    return PlaceOutcome.PLACED;
  }

  /** Wakes the vCPUs blocked in the range; those whose page is still missing fault again. */
  wake(block: number, offset: number, length: number): void {
    const b = this.blockAt(block, 'wake');
    this.requireOpenFd('wake', b);
    this.checkRange('wake', b, offset, length, b.hostPageSize);
    this.stats.wakes++;
    if (this.vcpus !== null) this.vcpus.wake(block, offset, length);
  }

  read(block: number, offset: number, length: number): Uint8Array {
    const b = this.blockAt(block, 'read');
    this.checkRange('read', b, offset, length, 1);
    if (b.registered && length > 0 && !b.memory.allPresent(offset, length)) {
      const missing = this.firstMissing(b, offset, length);
      throw new BackendError(
        'read',
        '',
        `block '${b.name}' (${block}): page at offset 0x${missing.toString(16)} is missing and the block is registered; a real VMM reading it would block forever (read only placed pages, or unregister first)`,
      );
    }
    return b.memory.read(offset, length);
  }

  /** Closes the simulated fd: no more faults; every block is unregistered and its blocked vCPUs woken. Idempotent. */
  endPostcopy(): void {
    // Faults can no longer be read; memory, registrations already dropped by the engine, and vCPUs stay.
    this.listener = null;
    this.faultCount = 0;
  }

  /** Faults queued by a step that has not flushed them yet, delivered now (normally none: a step flushes). */
  takeFaults(): number {
    const count = this.faultCount;
    this.flushFaults();
    return count;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener = null;
    this.faultCount = 0;
    for (const b of this.state) {
      if (!b.registered) continue;
      b.registered = false;
      this.vcpus?.wake(b.index, 0, b.usedLength);
    }
  }

  // -------------------------------------------------------------------------
  // Inspection and fault injection (mock only)

  /** True while the block is registered for MISSING faults. */
  isRegistered(block: number): boolean {
    return this.blockAt(block, 'isRegistered').registered;
  }

  /** True when the 4 KiB page holding byte `offset` of the block is present. */
  isPresent(block: number, offset: number): boolean {
    const b = this.blockAt(block, 'isPresent');
    this.checkRange('isPresent', b, offset, 1, 1);
    return b.memory.isPresent(offset);
  }

  /** Number of present 4 KiB pages in the block. */
  presentPageCount(block: number): number {
    return this.blockAt(block, 'presentPageCount').memory.present.count();
  }

  /** Whether huge pages are on for the block (the last setHugePages call; initially on). */
  hugePagesEnabled(block: number): boolean {
    return this.blockAt(block, 'hugePagesEnabled').hugePages;
  }

  /** Bytes of page contents held for the block (its sparse chunks, bitmap excluded). */
  allocatedBytes(block: number): number {
    return this.blockAt(block, 'allocatedBytes').memory.allocatedBytes;
  }

  /** Bytes of dropped chunks kept for reuse by any block (already touched memory is cheap to reuse). */
  get pooledBytes(): number {
    return this.pool.pooledBytes;
  }

  /**
   * Pre-touches `bytes` of page memory into the pool, so that later placements skip the
   * first-touch page faults of fresh memory (about 10 µs per 4 KiB on a nested-virtualisation
   * host, ten times the cost of a placement). For benchmarks; changes no guest state.
   */
  reserveMemory(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new BackendError('reserveMemory', 'EINVAL', `${bytes} is not a byte count`);
    this.pool.reserve(bytes);
  }

  /** True once listen() succeeded and until close(). */
  get listening(): boolean {
    return this.listener !== null;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Fault injection: the next `times` placements (copy or zero) that overlap
   * [offset, offset+length) of `block` return RETRY (EAGAIN) and change nothing.
   */
  injectRetry(block: number, offset: number, length: number, times: number): void {
    const b = this.blockAt(block, 'injectRetry');
    this.checkRange('injectRetry', b, offset, length, 1);
    if (!Number.isSafeInteger(times) || times < 0) throw new BackendError('injectRetry', 'EINVAL', `times ${times} is not a non-negative integer`);
    if (times > 0 && length > 0) this.injections.push({ block, start: offset, end: offset + length, remaining: times });
  }

  // -------------------------------------------------------------------------
  // Simulated vCPUs

  /** The thread ids the next startVcpus of `count` vCPUs will give (see Backend.expectedVcpuTids). */
  expectedVcpuTids(count: number): readonly number[] {
    return this.fixedTids !== null ? this.fixedTids.slice(0, count) : Array.from({ length: count }, (_, i) => this.nextTid + i);
  }

  /**
   * Starts simulated vCPUs over one block (replacing finished ones); returns their thread
   * ids, index = vCPU index, so faults can be mapped to vCPUs.
   */
  startVcpus(options: StartVcpusOptions): readonly number[] {
    const b = this.blockAt(options.block, 'startVcpus');
    if (this.vcpus !== null && !this.vcpus.allFinished()) {
      throw new BackendError('startVcpus', 'EBUSY', 'vCPUs are already running; they must all finish first');
    }
    validateAccessPlan(options, b.usedLength);
    if (this.fixedTids !== null && options.vcpus > this.fixedTids.length) {
      throw new BackendError('startVcpus', 'EINVAL', `${options.vcpus} vCPUs asked for, but only ${this.fixedTids.length} thread ids were given (vcpuTids)`);
    }
    const tids = this.fixedTids !== null ? this.fixedTids.slice(0, options.vcpus) : Array.from({ length: options.vcpus }, () => this.nextTid++);
    const memory = { tryAccess: (block: number, offset: number): boolean => this.vcpuAccess(block, offset) };
    this.vcpus = new SimulatedVcpus(memory, b.index, b.hostAddress, b.usedLength, options, tids);
    return tids;
  }

  /**
   * Advances the vCPUs by up to `maxAccesses` accesses each (see SimulatedVcpus.step);
   * the faults they take are delivered to the listener as one batch stamped `timeNs`
   * (or several, when more than 1024 pile up). Returns the accesses completed.
   */
  stepVcpus(maxAccesses: number, timeNs = 0): number {
    if (this.vcpus === null) throw new BackendError('stepVcpus', '', 'no vCPUs were started (call startVcpus first)');
    if (!Number.isSafeInteger(maxAccesses) || maxAccesses < 0) {
      throw new BackendError('stepVcpus', 'EINVAL', `maxAccesses ${maxAccesses} is not a non-negative integer`);
    }
    const done = this.vcpus.step(maxAccesses, timeNs, this.queueFault);
    this.flushFaults();
    return done;
  }

  /** Thread ids of the current vCPUs, index = vCPU index (empty before startVcpus). */
  vcpuTids(): readonly number[] {
    return this.vcpus?.tids ?? [];
  }

  /** A snapshot of every vCPU (empty before startVcpus). */
  vcpuStates(): VcpuState[] {
    return this.vcpus?.states() ?? [];
  }

  /** True when every started vCPU has done all its accesses (vacuously true before startVcpus). */
  allVcpusFinished(): boolean {
    return this.vcpus?.allFinished() ?? true;
  }

  // -------------------------------------------------------------------------
  // Internals

  /** One vCPU access: faults on a missing page of a registered block, else increments the byte. */
  private vcpuAccess(block: number, offset: number): boolean {
    const b = this.state[block]!;
    if (b.registered && !b.memory.isPresent(offset)) return false;
    // Unregistered and missing: the kernel maps a zero page, which the write then dirties.
    b.memory.incrementByte(offset);
    return true;
  }

  private readonly queueFault = (address: number, tid: number, timeNs: number): void => {
    if (this.listener === null) return;
    const i = this.faultCount++;
    this.faultAddresses[i] = address;
    this.faultTids[i] = tid;
    this.faultTimes[i] = timeNs;
    this.stats.faults++;
    if (this.faultCount === FAULT_QUEUE_CAPACITY) this.flushFaults();
  };

  /** Hands the queued faults to the listener as one batch of fresh arrays (it may keep them). */
  private flushFaults(): void {
    const count = this.faultCount;
    if (count === 0) return;
    this.faultCount = 0;
    const listener = this.listener;
    if (listener === null) return;
    listener({
      count,
      addresses: this.faultAddresses.slice(0, count),
      tids: this.faultTids.slice(0, count),
      timesNs: this.faultTimes.slice(0, count),
    });
  }

  private blockAt(block: number, operation: string): BlockState {
    const b = this.state[block];
    if (b === undefined || !Number.isInteger(block)) {
      throw new BackendError(operation, 'EINVAL', `no block ${block} (the layout has ${this.state.length} blocks)`);
    }
    return b;
  }

  private requireOpenFd(operation: string, b: BlockState): void {
    if (this.listener !== null) return;
    const why = this.closed ? 'the userfault fd is closed' : 'the userfault fd is not open (call listen first)';
    throw new BackendError(operation, 'EBADF', `block '${b.name}' (${b.index}): ${why}`);
  }

  /**
   * Checks that [offset, offset+length) lies inside the block's used length and that
   * offset and length are multiples of `align`; throws BackendError otherwise.
   */
  private checkRange(operation: string, b: BlockState, offset: number, length: number, align: number): void {
    const where = `block '${b.name}' (${b.index})`;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new BackendError(operation, 'EINVAL', `${where}: offset ${offset} length ${length} is not a byte range`);
    }
    if (offset % align !== 0 || length % align !== 0) {
      throw new BackendError(
        operation,
        'EINVAL',
        `${where}: range 0x${offset.toString(16)}+0x${length.toString(16)} is not aligned to 0x${align.toString(16)}`,
      );
    }
    if (offset + length > b.usedLength) {
      throw new BackendError(
        operation,
        'EINVAL',
        `${where}: range 0x${offset.toString(16)}+0x${length.toString(16)} is past the used length 0x${b.usedLength.toString(16)}`,
      );
    }
  }

  /** Checks a placement: open fd, one whole host page inside the used length, registered block. */
  private placementTarget(operation: string, block: number, offset: number, length: number): BlockState {
    const b = this.blockAt(block, operation);
    if (length !== b.hostPageSize) {
      throw new BackendError(
        operation,
        'EINVAL',
        `block '${b.name}' (${block}): a placement is one whole host page of 0x${b.hostPageSize.toString(16)} bytes, not 0x${Number(length).toString(16)}`,
      );
    }
    this.checkRange(operation, b, offset, length, b.hostPageSize);
    this.requireOpenFd(operation, b);
    if (!b.registered) {
      throw new BackendError(operation, 'ENOENT', `block '${b.name}' (${block}) is not registered with the userfault fd`);
    }
    return b;
  }

  private alreadyPresent(block: number, offset: number, length: number): PlaceOutcomeValue {
    this.stats.alreadyPresent++;
    if (this.vcpus !== null) this.vcpus.wake(block, offset, length);
    return PlaceOutcome.ALREADY_PRESENT;
  }

  /** Consumes one injected RETRY overlapping the range, if any; true when one applied. */
  private consumeInjection(block: number, offset: number, length: number): boolean {
    const end = offset + length;
    const list = this.injections;
    for (let i = 0; i < list.length; i++) {
      const inj = list[i]!;
      if (inj.block !== block || inj.end <= offset || inj.start >= end) continue;
      inj.remaining--;
      if (inj.remaining === 0) list.splice(i, 1);
      this.stats.retries++;
      return true;
    }
    return false;
  }

  private firstMissing(b: BlockState, offset: number, length: number): number {
    const page = b.memory.present.findNextZero(Math.floor(offset / TARGET_PAGE_SIZE));
    return Math.min(page * TARGET_PAGE_SIZE, offset + length - 1);
  }
}

/** Throws BackendError when a layout cannot be simulated at all (bad lengths are the probe's job). */
function checkLayout(layout: BlockLayout, index: number): void {
  const bad = (what: string): never => {
    throw new BackendError('create', 'EINVAL', `block ${index} ('${String(layout.name)}'): ${what}`);
  };
  if (typeof layout.name !== 'string' || layout.name.length === 0) bad('the name must be a non-empty string');
  const ps = layout.hostPageSize;
  if (!Number.isSafeInteger(ps) || ps < TARGET_PAGE_SIZE || ps % TARGET_PAGE_SIZE !== 0 || ps > BLOCK_ALIGNMENT) {
    bad(`host page size ${ps} is not a multiple of ${TARGET_PAGE_SIZE} up to 1 GiB`);
  }
  if (!Number.isSafeInteger(layout.length) || layout.length <= 0) bad(`length ${layout.length} is not a positive integer`);
  const max = layout.maxLength;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < layout.length)) bad(`max length ${max} is below the length ${layout.length}`);
}

/** Throws BackendError unless data[dataOffset, dataOffset+length) exists. */
function checkData(operation: string, data: Uint8Array, dataOffset: number, length: number): void {
  if (!(data instanceof Uint8Array) || !Number.isSafeInteger(dataOffset) || dataOffset < 0 || dataOffset + length > data.length) {
    throw new BackendError(
      operation,
      'EINVAL',
      `source bytes ${dataOffset}..${dataOffset + length} are outside the ${data?.length ?? 0}-byte buffer`,
    );
  }
}
