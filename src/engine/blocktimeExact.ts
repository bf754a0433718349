/**
 * Race-free vCPU blocktime in nanoseconds: the `exact` mode. Each vCPU is blocked from
 * its fault until the host page containing the faulting address is placed. The total is
 * the time during which every vCPU is blocked at once. Also kept: per-vCPU fault counts,
 * per-vCPU blocked time and the fault→placement latency distribution (LatencyHistogram,
 * bounded memory).
 *
 * Fed by the same fault/placement events as the `qemu` mode, but keyed by host page
 * (the caller passes a number identifying the host page, e.g. block base + host page
 * offset), so huge pages and racy orderings do not lose intervals.
 *
 * Rules beyond "fault to placement":
 * - a fault on a page already received counts as a fault but blocks nothing;
 * - a vCPU that faults again on the same host page while blocked stays blocked since its
 *   first fault; one that faults on another page has evidently run, so its previous
 *   interval closes at the new fault (counted in `closedByRefault`, latency recorded);
 * - faults from non-vCPU threads (vcpu < 0) are only counted (`nonVcpuFaults`).
 *
 * Cost: `placed()` for a page nobody waits on is one comparison when no vCPU is blocked
 * and one Map lookup otherwise; nothing is allocated on that path.
 */
import { LatencyHistogram, type LatencyHistogramSnapshot, type LatencySummary } from './latencyHistogram.js';

/** Serialised state, for the journal's engine snapshots. */
export interface ExactBlocktimeSnapshot {
  vcpuCount: number;
  totalNs: number;
  allBlockedSinceNs: number;
  blockedNs: number[];
  faults: number[];
  /** Per vCPU: the host-page key it waits on, or null. */
  waitKey: Array<number | null>;
  /** Per vCPU: when its wait began (0 when not blocked). */
  waitSinceNs: number[];
  nonVcpuFaults: number;
  closedByRefault: number;
  latency: LatencyHistogramSnapshot;
}

export interface ExactBlocktimeReport {
  totalNs: number;
  perVcpuBlockedNs: number[];
  perVcpuFaults: number[];
  nonVcpuFaults: number;
  closedByRefault: number;
  /** vCPUs still blocked (their open intervals are not in the sums). */
  blockedNow: number;
  latency: LatencySummary;
}

const NONE = -1;

export class ExactBlocktime {
  readonly vcpuCount: number;
  private total = 0;
  private allBlockedSince = 0;
  private blockedCount = 0;
  private readonly blocked: Float64Array;
  private readonly faults: Float64Array;
  private readonly isWaiting: Uint8Array;
  private readonly waitKey: Float64Array;
  private readonly waitSince: Float64Array;
  /** Intrusive singly-linked lists of the vCPUs waiting on one key: head in `heads`. */
  private readonly nextWaiter: Int32Array;
  private readonly heads = new Map<number, number>();
  private nonVcpu = 0;
  private refaultCloses = 0;
  private hist = new LatencyHistogram();

  constructor(vcpuCount: number) {
    if (!Number.isInteger(vcpuCount) || vcpuCount < 1) {
      throw new RangeError(`blocktime: vCPU count must be a positive integer, got ${vcpuCount}`);
    }
    this.vcpuCount = vcpuCount;
    this.blocked = new Float64Array(vcpuCount);
    this.faults = new Float64Array(vcpuCount);
    this.isWaiting = new Uint8Array(vcpuCount);
    this.waitKey = new Float64Array(vcpuCount);
    this.waitSince = new Float64Array(vcpuCount);
    this.nextWaiter = new Int32Array(vcpuCount).fill(NONE);
  }

  /**
   * vCPU `vcpu` faulted at `address`, in host page `hostPageKey`, at `tNs`.
   * `alreadyReceived`: the page was present when the fault was handled (not blocked).
   * Only the key matters here (the raw address is taken for symmetry with the qemu
   * mode, whose begin needs it).
   */
  fault(vcpu: number, hostPageKey: number, _address: number, tNs: number, alreadyReceived = false): void {
    if (vcpu < 0) {
      this.nonVcpu++;
      return;
    }
    if (vcpu >= this.vcpuCount) {
      throw new RangeError(`blocktime: vCPU ${vcpu} is out of range (0..${this.vcpuCount - 1})`);
    }
    this.faults[vcpu]++;
    if (this.isWaiting[vcpu] === 1) {
      if (!alreadyReceived && this.waitKey[vcpu] === hostPageKey) return;
      this.unlink(vcpu);
      this.refaultCloses++;
      if (!alreadyReceived) {
        // Close and reopen at the same instant: the all-blocked period is unbroken.
        this.closeInterval(vcpu, tNs);
        this.open(vcpu, hostPageKey, tNs);
        return;
      }
      this.release(vcpu, tNs);
      return;
    }
    if (alreadyReceived) return;
    this.open(vcpu, hostPageKey, tNs);
    this.blockedCount++;
    if (this.blockedCount === this.vcpuCount) this.allBlockedSince = tNs;
  }

  /** The host page `hostPageKey` was placed at `tNs`. Returns the vCPUs it unblocked. */
  placed(hostPageKey: number, tNs: number): number {
    if (this.blockedCount === 0) return 0;
    const head = this.heads.get(hostPageKey);
    if (head === undefined) return 0;
    this.heads.delete(hostPageKey);
    if (this.blockedCount === this.vcpuCount) this.total += tNs - this.allBlockedSince;
    let released = 0;
    for (let v = head; v !== NONE; ) {
      const next = this.nextWaiter[v]!;
      this.nextWaiter[v] = NONE;
      this.isWaiting[v] = 0;
      this.closeInterval(v, tNs);
      released++;
      v = next;
    }
    this.blockedCount -= released;
    return released;
  }

  /** Fault→placement latencies (and fault→re-fault, see the rules above). */
  get latency(): LatencyHistogram {
    return this.hist;
  }

  /** Is vCPU `vcpu` blocked now? */
  isBlocked(vcpu: number): boolean {
    return this.isWaiting[vcpu] === 1;
  }

  /** Time during which every vCPU was blocked at once (closed periods only), ns. */
  get totalNs(): number {
    return this.total;
  }

  perVcpuBlockedNs(): number[] {
    return Array.from(this.blocked);
  }

  perVcpuFaults(): number[] {
    return Array.from(this.faults);
  }

  get nonVcpuFaults(): number {
    return this.nonVcpu;
  }

  get closedByRefault(): number {
    return this.refaultCloses;
  }

  report(): ExactBlocktimeReport {
    return {
      totalNs: this.total,
      perVcpuBlockedNs: this.perVcpuBlockedNs(),
      perVcpuFaults: this.perVcpuFaults(),
      nonVcpuFaults: this.nonVcpu,
      closedByRefault: this.refaultCloses,
      blockedNow: this.blockedCount,
      latency: this.hist.summary(),
    };
  }

  toJSON(): ExactBlocktimeSnapshot {
    const waitKey: Array<number | null> = [];
    const waitSinceNs: number[] = [];
    for (let v = 0; v < this.vcpuCount; v++) {
      const waiting = this.isWaiting[v] === 1;
      waitKey.push(waiting ? this.waitKey[v]! : null);
      waitSinceNs.push(waiting ? this.waitSince[v]! : 0);
    }
    return {
      vcpuCount: this.vcpuCount,
      totalNs: this.total,
      allBlockedSinceNs: this.allBlockedSince,
      blockedNs: Array.from(this.blocked),
      faults: Array.from(this.faults),
      waitKey,
      waitSinceNs,
      nonVcpuFaults: this.nonVcpu,
      closedByRefault: this.refaultCloses,
      latency: this.hist.toJSON(),
    };
  }

  /** Rebuilds a model from `toJSON()` output; throws on a snapshot of the wrong shape. */
  static fromJSON(s: ExactBlocktimeSnapshot): ExactBlocktime {
    const n = s.vcpuCount;
    for (const [name, arr] of [
      ['blockedNs', s.blockedNs],
      ['faults', s.faults],
      ['waitKey', s.waitKey],
      ['waitSinceNs', s.waitSinceNs],
    ] as const) {
      if (!Array.isArray(arr) || arr.length !== n) {
        throw new RangeError(`blocktime snapshot: ${name} must have ${n} entries`);
      }
    }
    const m = new ExactBlocktime(n);
    m.total = s.totalNs;
    m.allBlockedSince = s.allBlockedSinceNs;
    m.blocked.set(s.blockedNs);
    m.faults.set(s.faults);
    m.nonVcpu = s.nonVcpuFaults;
    m.refaultCloses = s.closedByRefault;
    for (let v = 0; v < n; v++) {
      const key = s.waitKey[v];
      if (key === null || key === undefined) continue;
      m.open(v, key, s.waitSinceNs[v]!);
      m.blockedCount++;
    }
    m.hist = LatencyHistogram.fromJSON(s.latency);
    return m;
  }

  /** Starts vCPU `v`'s wait on `key` at `tNs` (blockedCount is the caller's business). */
  private open(v: number, key: number, tNs: number): void {
    this.isWaiting[v] = 1;
    this.waitKey[v] = key;
    this.waitSince[v] = tNs;
    const head = this.heads.get(key);
    this.nextWaiter[v] = head === undefined ? NONE : head;
    this.heads.set(key, v);
  }

  /** Adds vCPU `v`'s interval up to `tNs` to its sum and to the latencies. */
  private closeInterval(v: number, tNs: number): void {
    const d = tNs - this.waitSince[v]!;
    this.blocked[v] += d;
    this.hist.record(d);
  }

  /** vCPU `v` (already unlinked) stops being blocked at `tNs`. */
  private release(v: number, tNs: number): void {
    if (this.blockedCount === this.vcpuCount) this.total += tNs - this.allBlockedSince;
    this.isWaiting[v] = 0;
    this.closeInterval(v, tNs);
    this.blockedCount--;
  }

  /** Removes vCPU `v` from the waiter list of its key (lists are a few vCPUs long). */
  private unlink(v: number): void {
    const key = this.waitKey[v]!;
    const head = this.heads.get(key)!;
    if (head === v) {
      const next = this.nextWaiter[v]!;
      if (next === NONE) this.heads.delete(key);
      else this.heads.set(key, next);
    } else {
      let p = head;
      while (this.nextWaiter[p] !== v) p = this.nextWaiter[p]!;
      this.nextWaiter[p] = this.nextWaiter[v]!;
    }
    this.nextWaiter[v] = NONE;
  }
}
