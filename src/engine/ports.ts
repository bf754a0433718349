/**
 * The backend: where guest memory lives and where faults come from. The engine drives
 * it with synchronous calls and cannot tell implementations apart:
 * - `MockBackend` (mockBackend.ts): sparse simulated memory and simulated vCPUs;
 * - `UffdBackend` (uffdBackend.ts): real anonymous memory, a real userfaultfd, real
 *   vCPU threads blocking on real faults (native/ addon);
 * - the replay backend (journal/replay): returns recorded outcomes, performs nothing.
 *
 * Offsets and lengths are bytes within a block; `block` is the block's index in the
 * layout the backend was created with.
 */

/** What the kernel said about a placement (reference section 4). */
export const PlaceOutcome = {
  /** The page was placed and its waiters woken. */
  PLACED: 0,
  /** EEXIST: the page was already present; the waiters were woken. Not a failure. */
  ALREADY_PRESENT: 1,
  /** EAGAIN: the mapping is changing; retry later. */
  RETRY: 2,
} as const;
export type PlaceOutcomeValue = (typeof PlaceOutcome)[keyof typeof PlaceOutcome];

/** One RAM block as the backend must lay it out. */
export interface BlockLayout {
  /** idstr, e.g. 'pc.ram'. */
  name: string;
  /** Used length in bytes; a multiple of hostPageSize. */
  length: number;
  /** Maximum length the block may grow to by resize (defaults to length). */
  maxLength?: number;
  /** 4096, or 2 MiB / 1 GiB for huge-page blocks. */
  hostPageSize: number;
  /** Backed by hugetlbfs: no UFFDIO_ZEROPAGE, needs MISSING_HUGETLBFS. */
  hugetlbfs?: boolean;
}

/** One check of the host support probe (reference section 10). */
export interface SupportCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** The structured outcome of the host support probe: which check failed and why. */
export interface SupportReport {
  ok: boolean;
  checks: SupportCheck[];
  /** The first failed check's detail, when !ok. */
  reason?: string;
}

/**
 * Faults read in one go, oldest first. Columnar so that a batch costs no object per
 * fault. `timesNs` is a monotonic clock taken when the fault was read.
 */
export interface FaultBatch {
  count: number;
  addresses: Float64Array;
  tids: Int32Array;
  timesNs: Float64Array;
}

export type FaultListener = (batch: FaultBatch) => void;

export interface Backend {
  /** Which implementation: ours ('mock', 'uffd', 'replay'), or 'custom' for a VMM's own. */
  readonly kind: 'mock' | 'uffd' | 'replay' | 'custom';
  /** The block layout the backend was created with, in block-index order. */
  readonly blocks: readonly BlockLayout[];
  /**
   * The thread ids the backend's first `count` vCPUs will fault from, when it knows them
   * before they run (the mock backend does), else null. The Destination refuses at
   * construction a `vcpuTids` list naming threads not in it (their faults would silently
   * count as non-vCPU faults). Optional: a backend without it is not checked.
   */
  expectedVcpuTids?(count: number): readonly number[] | null;
  /** Reference section 10. Never throws: a refusal is a report with ok=false. */
  probe(): SupportReport;
  /** Host virtual address of the start of block `block`; fault addresses are in this space. */
  hostAddress(block: number): number;
  /** Opens the userfault fd and starts the fault reader; faults go to `listener`. */
  listen(listener: FaultListener): void;
  /** Registers the block for MISSING faults. */
  register(block: number): void;
  /** Unregisters the block; afterwards missing pages read as zeros. */
  unregister(block: number): void;
  /**
   * The VMM resized the block to `length` bytes (at most its maxLength, which is mapped
   * from the start). Shrinking drops the tail's memory.
   */
  resize(block: number, length: number): void;
  /** Drops the memory of a range: its pages become missing again. */
  discard(block: number, offset: number, length: number): void;
  /** Turns huge pages off (first discard) or back on (cleanup) for a block. */
  setHugePages(block: number, enabled: boolean): void;
  /**
   * Plain write (precopy, before postcopy listens): no atomicity, no waking. Refused
   * while the block is registered, where every insert must be a placement (section 1).
   */
  write(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): void;
  /** Places `length` bytes (one host page) atomically from data[dataOffset..]. */
  copy(block: number, offset: number, data: Uint8Array, dataOffset: number, length: number): PlaceOutcomeValue;
  /** Places a zero host page atomically (UFFDIO_ZEROPAGE, or a copy from a zeroed page). */
  zero(block: number, offset: number, length: number): PlaceOutcomeValue;
  /**
   * Optional: places a run of consecutive host pages at once, from data[dataOffset..] or
   * zeros when `data` is null (one UFFDIO_COPY / UFFDIO_ZEROPAGE for the whole run where
   * the kernel allows), and writes each host page's PlaceOutcome into outcomes[i]. Stops
   * after the first page whose outcome is RETRY (nothing of it placed); returns how many
   * pages have an outcome (≥ 1). A backend without it places page by page (copy/zero).
   */
  placeRun?(block: number, offset: number, data: Uint8Array | null, dataOffset: number, length: number, outcomes: Uint8Array): number;
  /** Wakes threads waiting on a range that is already present. */
  wake(block: number, offset: number, length: number): void;
  /** Reads guest memory for verification; only for present pages or after unregister. */
  read(block: number, offset: number, length: number): Uint8Array;
  /**
   * The end of postcopy (section 6), after the engine unregistered every block: stops the
   * fault reader and closes the userfault fd. Guest memory and the vCPUs carry on (the
   * guest keeps running); a later listen() may start again.
   */
  endPostcopy(): void;
  /**
   * Hands the faults read but not yet delivered to the listener now, synchronously, and
   * returns how many. The io layer calls it between the pages (or the short runs of pages,
   * see Destination.pages) of a long stretch of stream input, so that a fault is decided
   * within a few pages' time of its read (as QEMU's fault thread does) rather than after
   * the whole read. Never call it from inside the listener or an
   * engine input. A backend whose faults are always delivered at once returns 0.
   */
  takeFaults(): number;
  /** Tears everything down (fds, threads, guest memory where the backend owns it); idempotent. */
  close(): void;
}
