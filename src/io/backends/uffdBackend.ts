/**
 * The real backend: guest RAM in anonymous mappings, a real userfaultfd, a native fault
 * reader thread, and native vCPU threads that block on real faults (native/ addon).
 *
 * Guarantees, on top of the Backend contract:
 * - Every block index, offset and length from JavaScript is checked against the block
 *   layout (bounds, host-page alignment, whole host pages) before any ioctl or memory
 *   access: a bad one throws BackendError and writes nothing. Guest memory sits between
 *   PROT_NONE guard pages.
 * - copy/zero on a registered block use UFFDIO_COPY / UFFDIO_ZEROPAGE (a copy from a
 *   zeroed page on hugetlbfs); EEXIST wakes the waiter and returns ALREADY_PRESENT;
 *   EAGAIN returns RETRY. placeRun does the same for a run of pages in one ioctl, split
 *   only at the pages the kernel stops at (one outcome per page). On a block that is not registered (before LISTEN, after
 *   cleanup) nothing can wait, so they are plain writes.
 * - read() never blocks the JavaScript thread: on a registered block every page of the
 *   range must be resident (mincore), otherwise it throws.
 * - discard() on a registered block leaves the range registered and missing again. A range
 *   the *guest* removes (madvise from another thread: UFFD_EVENT_REMOVE) is instead
 *   unregistered and dropped, as Firecracker and CRIU do; `onRemove` hears of it, its
 *   pages are never requested, and placements into it are dropped (ALREADY_PRESENT).
 * - Faults arrive in batches (FaultBatch) with the THREAD_ID tid and a CLOCK_MONOTONIC
 *   ns timestamp taken when the reader read them; `UffdBackend.now()` is the same clock.
 * - vCPU workers: `startVcpus` returns their tids (index = vCPU index) and a promise of
 *   their reports. A vCPU blocked on a missing page cannot stop until the page is placed
 *   or the block unregistered: `stopVcpus` asks them to stop after the current access and
 *   throws (naming the blocked vCPUs and addresses) if that does not happen in time;
 *   `close()` unregisters every block first, so blocked vCPUs resolve with zero pages
 *   and every thread ends.
 * - listen() keeps the process alive (like a listening socket) until close().
 * - close(): unregister every block, stop and join the vCPUs, stop and join the reader
 *   (quit eventfd), close the userfault fd and the eventfd, unmap guest memory. Idempotent.
 */
import type { Backend, BlockLayout, FaultListener, PlaceOutcomeValue, SupportReport } from '../../engine/ports.js';
import {
  loadNative,
  toBackendError,
  type NativeHost,
  type ReaderOptions,
  type RemovedRange,
  type UffdStatus,
  type VcpuOptions,
  type VcpuReport,
} from '../../native/native.js';

export interface UffdBackendOptions {
  /** Who reads the userfault fd: a native reader thread (default) or the event loop (see ReaderOptions). */
  readerMode?: 'thread' | 'loop';
  /** Fault reader: spin this long on the fd after activity before poll(2) (0: never). */
  spinUs?: number;
  /** Pin the fault reader thread to these CPUs. */
  readerCpus?: number[];
  /** Told of ranges the guest removed (after they were unregistered and dropped). */
  onRemove?: (ranges: RemovedRange[]) => void;
}

/** vCPU threads started by `startVcpus`. */
export interface VcpuRun {
  /** gettid() of each vCPU thread, by vCPU index: what fault batches carry in `tids`. */
  tids: number[];
  /** Resolves with the reports once every vCPU finished its pattern (threads joined). */
  done: Promise<VcpuReport[]>;
}

export class UffdBackend implements Backend {
  readonly kind = 'uffd' as const;
  readonly blocks: readonly BlockLayout[];
  private readonly host: NativeHost;
  private readonly options: UffdBackendOptions;

  /** Maps guest memory for `blocks`; throws BackendError naming a block the host cannot map. */
  constructor(blocks: readonly BlockLayout[], options: UffdBackendOptions = {}) {
    this.blocks = blocks.map((b) => ({ ...b }));
    this.options = options;
    const native = loadNative();
    try {
      this.host = new native.UffdHost(this.blocks);
    } catch (err) {
      throw toBackendError(err);
    }
  }

  /** The host support probe for a layout, without mapping anything. Never throws. */
  static probe(blocks: readonly BlockLayout[]): SupportReport {
    try {
      return loadNative().probe(blocks);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      return { ok: false, checks: [{ name: 'native-addon', ok: false, detail }], reason: `native-addon: ${detail}` };
    }
  }

  /** CLOCK_MONOTONIC in ns, the clock of FaultBatch.timesNs. */
  static now(): number {
    return loadNative().now();
  }

  probe(): SupportReport {
    return UffdBackend.probe(this.blocks);
  }

  hostAddress(block: number): number {
    return this.call(() => this.host.hostAddress(block));
  }

  listen(listener: FaultListener): void {
    const reader: ReaderOptions = {};
    if (this.options.readerMode !== undefined) reader.mode = this.options.readerMode;
    if (this.options.spinUs !== undefined) reader.spinUs = this.options.spinUs;
    if (this.options.readerCpus !== undefined) reader.cpus = this.options.readerCpus;
    this.call(() => this.host.listen(listener, this.options.onRemove, reader));
  }

  register(block: number): void {
    this.call(() => this.host.register(block));
  }

  unregister(block: number): void {
    this.call(() => this.host.unregister(block));
  }

  discard(block: number, offset: number, length: number): void {
    this.call(() => this.host.discard(block, offset, length));
  }

  setHugePages(block: number, enabled: boolean): void {
    this.call(() => this.host.setHugePages(block, enabled));
  }

  write(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): void {
    this.call(() => this.host.write(block, offset, data, dataOffset, length));
  }

  resize(block: number, length: number): void {
    this.call(() => this.host.resize(block, length));
    (this.blocks[block] as BlockLayout).length = length;
  }

  copy(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): PlaceOutcomeValue {
    try {
      return this.host.copy(block, offset, data, dataOffset, length);
    } catch (err) {
      throw toBackendError(err);
    }
  }

  zero(block: number, offset: number, length: number): PlaceOutcomeValue {
    try {
      return this.host.zero(block, offset, length);
    } catch (err) {
      throw toBackendError(err);
    }
  }

  placeRun(block: number, offset: number, data: Uint8Array | null, dataOffset: number, length: number, outcomes: Uint8Array): number {
    try {
      return this.host.placeRun(block, offset, data, dataOffset, length, outcomes);
    } catch (err) {
      throw toBackendError(err);
    }
  }

  wake(block: number, offset: number, length: number): void {
    this.call(() => this.host.wake(block, offset, length));
  }

  read(block: number, offset: number, length: number): Uint8Array {
    return this.call(() => this.host.read(block, offset, length));
  }

  endPostcopy(): void {
    this.call(() => this.host.stopListening());
  }

  takeFaults(): number {
    return this.host.takeFaults();
  }

  close(): void {
    this.host.close();
  }

  // --- beyond the Backend interface ------------------------------------------------

  /** Starts vCPU worker threads over a block (see VcpuOptions). */
  startVcpus(options: VcpuOptions): VcpuRun {
    let resolve!: (r: VcpuReport[]) => void;
    const done = new Promise<VcpuReport[]>((r) => (resolve = r));
    const tids = this.call(() => this.host.startVcpus(options, resolve));
    return { tids, done };
  }

  /**
   * Asks the vCPUs to stop after their current access and joins them. Throws BackendError
   * naming the vCPUs still blocked on missing pages after `timeoutMs` (they keep running).
   */
  stopVcpus(timeoutMs = 1000): VcpuReport[] {
    return this.call(() => this.host.stopVcpus(timeoutMs));
  }

  /** Reports of the running (or last) vCPUs. */
  vcpuReports(): VcpuReport[] {
    return this.host.vcpuReports();
  }

  /** Removes a range as the guest would (madvise from outside the backend), for tests. */
  removeAsGuest(block: number, offset: number, length: number): void {
    this.call(() => this.host.removeAsGuest(block, offset, length));
  }

  /** Places `count` host pages from one source page in a native loop: the raw ioctl rate. */
  copyLoop(block: number, offset: number, count: number, source: Uint8Array): { ns: number; placed: number } {
    return this.call(() => this.host.copyLoop(block, offset, count, source));
  }

  status(): UffdStatus {
    return this.host.status();
  }

  private call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw toBackendError(err);
    }
  }
}

