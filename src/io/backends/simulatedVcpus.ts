import { createAccessPattern, type AccessPattern, type AccessPlan } from './accessPatterns.js';

/**
 * Simulated vCPUs: deterministic, in simulated time, no threads and no timers. Each
 * vCPU replays its access pattern when stepped; an access to a page that is missing in
 * a registered block blocks it and emits one fault (the address of the accessed byte,
 * its thread id), exactly as a real vCPU thread faults once per blocking access. A
 * placement, wake or unregister covering the address resolves it.
 */

/** What the vCPUs need from guest memory. */
export interface VcpuMemory {
  /**
   * Performs one vCPU access (increments the byte at `offset` of `block`) unless the
   * page is missing in a registered block; returns false, changing nothing, when the
   * access faults.
   */
  tryAccess(block: number, offset: number): boolean;
}

/** Receives one fault: host address of the accessed byte, thread id, caller's clock. */
export type FaultSink = (address: number, tid: number, timeNs: number) => void;

/** A read-only view of one vCPU. */
export interface VcpuState {
  index: number;
  tid: number;
  /** Host address of the access it is blocked on, or null when runnable or finished. */
  blockedOn: number | null;
  /** Accesses completed. */
  accessesDone: number;
  /** Faults emitted (one per blocking access, one more per wake that found the page still missing). */
  faults: number;
  finished: boolean;
}

/** One vCPU's mutable state; `pending` is the offset of its next (or blocked) access, -1 when finished. */
class Vcpu {
  pending: number;
  blocked = false;
  /** Woken while its page was still missing: it faults again on its next turn. */
  refault = false;
  accessesDone = 0;
  faults = 0;
  finished: boolean;
  constructor(readonly index: number, readonly tid: number, readonly pattern: AccessPattern) {
    this.pending = pattern.next();
    this.finished = this.pending < 0;
  }
}

export class SimulatedVcpus {
  readonly block: number;
  readonly tids: readonly number[];
  private readonly vcpus: Vcpu[];
  private blocked = 0;

  /**
   * vCPU i gets thread id tids[i] and the access pattern of index i under `plan` over a
   * block of `usedLength` bytes starting at host address `hostBase`.
   */
  constructor(
    private readonly memory: VcpuMemory,
    block: number,
    private readonly hostBase: number,
    usedLength: number,
    plan: AccessPlan,
    tids: readonly number[],
  ) {
    this.block = block;
    this.tids = tids;
    this.vcpus = tids.map((tid, i) => new Vcpu(i, tid, createAccessPattern(plan, i, usedLength)));
  }

  /** Number of vCPUs currently blocked on a missing page. */
  get blockedCount(): number {
    return this.blocked;
  }

  /** True when every vCPU has done all its accesses. */
  allFinished(): boolean {
    for (const v of this.vcpus) if (!v.finished) return false;
    return true;
  }

  /** A snapshot of every vCPU, in index order. */
  states(): VcpuState[] {
    return this.vcpus.map((v) => ({
      index: v.index,
      tid: v.tid,
      blockedOn: v.blocked ? this.hostBase + v.pending : null,
      accessesDone: v.accessesDone,
      faults: v.faults,
      finished: v.finished,
    }));
  }

  /**
   * Advances the vCPUs in rounds: in each round every vCPU that is not blocked (or was
   * woken and must retry) attempts one access, in index order; at most `maxAccesses`
   * rounds, stopping early when no vCPU can move. Faults go to `sink` stamped
   * `timeNs`. Returns the number of accesses completed.
   */
  step(maxAccesses: number, timeNs: number, sink: FaultSink): number {
    let completed = 0;
    for (let round = 0; round < maxAccesses; round++) {
      let moved = false;
      for (const v of this.vcpus) {
        if (v.finished || (v.blocked && !v.refault)) continue;
        moved = true;
        if (this.memory.tryAccess(this.block, v.pending)) {
          this.complete(v);
          completed++;
        } else {
          if (!v.blocked) this.blocked++;
          v.blocked = true;
          v.refault = false;
          v.faults++;
          sink(this.hostBase + v.pending, v.tid, timeNs);
        }
      }
      if (!moved) break;
    }
    return completed;
  }

  /**
   * Wakes the vCPUs blocked on an address in [offset, offset+length) of `block` (after a
   * placement, an EEXIST, a wake or an unregister): each retries its access at once;
   * one whose page is still missing faults again on its next turn, as a woken thread
   * re-executes the faulting instruction.
   */
  wake(block: number, offset: number, length: number): void {
    if (this.blocked === 0 || block !== this.block) return;
    const end = offset + length;
    for (const v of this.vcpus) {
      if (!v.blocked || v.pending < offset || v.pending >= end) continue;
      if (this.memory.tryAccess(this.block, v.pending)) this.complete(v);
      else v.refault = true;
    }
  }

  private complete(v: Vcpu): void {
    if (v.blocked) {
      v.blocked = false;
      v.refault = false;
      this.blocked--;
    }
    v.accessesDone++;
    v.pending = v.pattern.next();
    v.finished = v.pending < 0;
  }
}
