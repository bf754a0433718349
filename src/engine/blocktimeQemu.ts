/**
 * vCPU blocktime exactly as QEMU 7.2 computes it (reference section 5), quirks included,
 * in whole milliseconds. This is the `qemu` compatibility mode: its figures must match
 * what QEMU reports in `query-migrate` (`postcopy-blocktime`, `postcopy-vcpu-blocktime`).
 *
 * The algorithm is exposed as its primitive steps so that two kinds of caller can drive
 * it:
 * - the engine, race-free: `begin()` (all of it) when a fault is read, `end()` after a
 *   host page is placed;
 * - the QEMU trace importer, which must reproduce real interleavings of QEMU's fault
 *   thread and listen thread, e.g. an end that ran between `beginCount`/`beginStore`
 *   and `beginUndo`, or between `beginCount` and `beginStore`.
 *
 * Quirks kept on purpose (the `qemu` mode exists to reproduce them):
 * - `beginUndo` decrements cpus_down even when `beginCount` did not increment it;
 * - `endAt` does not reset the vCPU's fault time;
 * - begin records the raw fault address while end compares with the placed host-page
 *   address, so with huge pages a vCPU faulting off the host page start is never ended.
 *   Callers must pass exactly that: the fault address to begin, the host page to end.
 * - address 0 means "not blocked", as in QEMU: host addresses are never 0.
 */

/** Serialised state, for the journal's engine snapshots. Times and sums in ms. */
export interface QemuBlocktimeSnapshot {
  vcpuCount: number;
  /** The context's creation time, in whole ms of the engine clock. */
  startMs: number;
  faultTimeMs: number[];
  faultAddr: number[];
  blocktimeMs: number[];
  cpusDown: number;
  lastBeginMs: number;
  totalMs: number;
}

const NS_PER_MS = 1e6;

export class QemuBlocktime {
  readonly vcpuCount: number;
  /** Whole ms of the clock when the context was created (QEMU: at ADVISE). */
  private start: number;
  private readonly faultTime: Float64Array;
  private readonly faultAddr: Float64Array;
  private readonly blocktime: Float64Array;
  private cpusDown = 0;
  private lastBegin = 0;
  private total = 0;
  /** vCPUs whose fault address is non-zero: lets `endAt` return at once when none wait. */
  private waiting = 0;

  /**
   * @param vcpuCount number of vCPUs (smp cpus); the "all down" test compares with it.
   * @param startNs engine clock (ns, any origin) when the context is created.
   */
  constructor(vcpuCount: number, startNs: number) {
    if (!Number.isInteger(vcpuCount) || vcpuCount < 1) {
      throw new RangeError(`blocktime: vCPU count must be a positive integer, got ${vcpuCount}`);
    }
    this.vcpuCount = vcpuCount;
    this.start = Math.floor(startNs / NS_PER_MS);
    this.faultTime = new Float64Array(vcpuCount);
    this.faultAddr = new Float64Array(vcpuCount);
    this.blocktime = new Float64Array(vcpuCount);
  }

  /**
   * Pure: QEMU's `now` for an engine time: whole ms of the clock minus the context's
   * start ms (QEMU reads QEMU_CLOCK_REALTIME in ms, i.e. floors, then subtracts), never
   * below 1.
   */
  nowMs(tNs: number): number {
    const ms = Math.floor(tNs / NS_PER_MS) - this.start;
    return ms < 1 ? 1 : ms;
  }

  // -------------------------------------------------------------------------
  // Race-free entry points (the engine)

  /**
   * A fault of vCPU `vcpu` at `addr` (the raw fault address), read at engine time
   * `tNs`. `alreadyReceived`: the page had arrived by the time the fault was handled.
   * Non-vCPU threads (vcpu < 0) are ignored, as QEMU does.
   */
  begin(vcpu: number, addr: number, tNs: number, alreadyReceived: boolean): void {
    if (vcpu < 0) return;
    this.beginCount(vcpu);
    this.beginStore(vcpu, addr, this.nowMs(tNs));
    if (alreadyReceived) this.beginUndo(vcpu);
  }

  /** The host page at `hostAddr` was placed at engine time `tNs`. Returns the vCPUs it unblocked. */
  end(hostAddr: number, tNs: number): number {
    if (this.waiting === 0 && hostAddr !== 0) return 0;
    return this.endAt(hostAddr, this.nowMs(tNs));
  }

  // -------------------------------------------------------------------------
  // Primitive steps (QEMU's order inside begin: count, store, [undo])

  /** Begin step 1: a vCPU that was not blocked adds one to cpus_down. */
  beginCount(vcpu: number): void {
    this.checkVcpu(vcpu);
    if (this.faultAddr[vcpu] === 0) this.cpusDown++;
  }

  /** Begin step 2: last_begin, the vCPU's fault time and fault address take the new values. */
  beginStore(vcpu: number, addr: number, nowMs: number): void {
    this.checkVcpu(vcpu);
    this.lastBegin = nowMs;
    this.faultTime[vcpu] = nowMs;
    if (this.faultAddr[vcpu] === 0 && addr !== 0) this.waiting++;
    else if (this.faultAddr[vcpu] !== 0 && addr === 0) this.waiting--;
    this.faultAddr[vcpu] = addr;
  }

  /**
   * Begin step 3, when the page turned out to be received already: forget the fault and
   * decrement cpus_down (quirk: even when step 1 did not increment it).
   */
  beginUndo(vcpu: number): void {
    this.checkVcpu(vcpu);
    if (this.faultAddr[vcpu] !== 0) this.waiting--;
    this.faultAddr[vcpu] = 0;
    this.faultTime[vcpu] = 0;
    this.cpusDown--;
  }

  /**
   * End at QEMU time `nowMs`: every vCPU blocked on exactly `addr` is unblocked and its
   * interval added to its sum; if all vCPUs were down when one was found, the total
   * grows by now - last_begin. Returns the number of vCPUs unblocked (QEMU's
   * `affected_cpu`). Quirk: the fault time is left as it was.
   */
  endAt(addr: number, nowMs: number): number {
    let affected = 0;
    let allDown = false;
    const n = this.vcpuCount;
    for (let c = 0; c < n; c++) {
      if (this.faultAddr[c] !== addr || this.faultTime[c] === 0) continue;
      this.faultAddr[c] = 0;
      if (addr !== 0) this.waiting--;
      this.blocktime[c] += nowMs - this.faultTime[c]!;
      affected++;
      if (this.cpusDown === n) allDown = true;
    }
    this.cpusDown -= affected;
    if (allDown) this.total += nowMs - this.lastBegin;
    return affected;
  }

  // -------------------------------------------------------------------------
  // Inspection

  /** Pure: how many vCPUs an end at `addr` would unblock now (QEMU's matching rule). */
  countBlockedOn(addr: number): number {
    let k = 0;
    for (let c = 0; c < this.vcpuCount; c++) {
      if (this.faultAddr[c] === addr && this.faultTime[c] !== 0) k++;
    }
    return k;
  }

  /** The address vCPU `vcpu` is recorded as blocked on, 0 when none. */
  faultAddress(vcpu: number): number {
    this.checkVcpu(vcpu);
    return this.faultAddr[vcpu]!;
  }

  /** Whole ms of the engine clock when the context was created (QEMU: at ADVISE). */
  get startMs(): number {
    return this.start;
  }

  /** QEMU's `postcopy-blocktime`: ms during which all vCPUs were blocked at once. */
  get totalMs(): number {
    return this.total;
  }

  /** QEMU's cpus_down counter (it may drift below the truth: see the quirks). */
  get cpusDownCount(): number {
    return this.cpusDown;
  }

  get lastBeginMs(): number {
    return this.lastBegin;
  }

  /** QEMU's `postcopy-vcpu-blocktime`: per vCPU sum of ms blocked. */
  perVcpuMs(): number[] {
    return Array.from(this.blocktime);
  }

  toJSON(): QemuBlocktimeSnapshot {
    return {
      vcpuCount: this.vcpuCount,
      startMs: this.start,
      faultTimeMs: Array.from(this.faultTime),
      faultAddr: Array.from(this.faultAddr),
      blocktimeMs: Array.from(this.blocktime),
      cpusDown: this.cpusDown,
      lastBeginMs: this.lastBegin,
      totalMs: this.total,
    };
  }

  /** Rebuilds a model from `toJSON()` output; throws on a snapshot of the wrong shape. */
  static fromJSON(s: QemuBlocktimeSnapshot): QemuBlocktime {
    const n = s.vcpuCount;
    for (const [name, arr] of [
      ['faultTimeMs', s.faultTimeMs],
      ['faultAddr', s.faultAddr],
      ['blocktimeMs', s.blocktimeMs],
    ] as const) {
      if (!Array.isArray(arr) || arr.length !== n) {
        throw new RangeError(`blocktime snapshot: ${name} must have ${n} entries`);
      }
    }
    const m = new QemuBlocktime(n, 0);
    m.start = s.startMs;
    m.faultTime.set(s.faultTimeMs);
    m.faultAddr.set(s.faultAddr);
    m.blocktime.set(s.blocktimeMs);
    m.cpusDown = s.cpusDown;
    m.lastBegin = s.lastBeginMs;
    m.total = s.totalMs;
    m.waiting = s.faultAddr.filter((a) => a !== 0).length;
    return m;
  }

  private checkVcpu(vcpu: number): void {
    if (!(vcpu >= 0 && vcpu < this.vcpuCount)) {
      throw new RangeError(`blocktime: vCPU ${vcpu} is out of range (0..${this.vcpuCount - 1})`);
    }
  }
}
