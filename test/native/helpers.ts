/**
 * Shared pieces of the native backend tests: the userfaultfd gate (a test may skip only
 * when the probe says userfaultfd is refused, and then it says why), a seeded source
 * image, and a pager that serves faults from it as the engine would.
 */
import test from 'ava';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { BlockLayout, FaultBatch } from '../../src/engine/ports.js';
import { PlaceOutcome } from '../../src/engine/ports.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';

export const PAGE = 4096;

/** The probe's report for a small 4 KiB layout, taken once per test file. */
export const uffdReport = UffdBackend.probe([{ name: 'probe', length: 16 * PAGE, hostPageSize: PAGE }]);
if (!uffdReport.ok) {
  console.log(`[native tests] userfaultfd refused on this host, real-fault tests are skipped: ${uffdReport.reason}`);
  console.log(JSON.stringify(uffdReport, null, 2));
}

/** `test.serial` where userfaultfd works, a visible skip (with the reason printed above) where refused. */
export const uffdTest = uffdReport.ok ? test.serial : test.serial.skip;

/** pure: `bytes` pseudo-random bytes from a seed (xorshift32). */
export function seededBytes(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export interface Pager {
  /** Every fault seen, in order. */
  faults: { address: number; tid: number; timeNs: number }[];
  /** Placement outcomes by host-page offset key `${block}:${offset}`. */
  outcomes: Map<string, number[]>;
  /** When false, faults are recorded but not served (vCPUs stay blocked). */
  serving: boolean;
}

/**
 * Serves faults on `backend` from `source[block]` (host page granularity), placing a
 * zero page for pages listed in `zeroPages` (by block, host-page offsets).
 */
export function startPager(
  backend: UffdBackend,
  source: Uint8Array[],
  zeroPages: Set<string> = new Set(),
): Pager {
  const pager: Pager = { faults: [], outcomes: new Map(), serving: true };
  const bases = backend.blocks.map((_, i) => backend.hostAddress(i));
  backend.listen((batch: FaultBatch) => {
    for (let i = 0; i < batch.count; i++) {
      const address = batch.addresses[i]!;
      pager.faults.push({ address, tid: batch.tids[i]!, timeNs: batch.timesNs[i]! });
      if (!pager.serving) continue;
      const block = bases.findIndex((b, k) => address >= b && address < b + backend.blocks[k]!.length);
      if (block < 0) throw new Error(`fault outside guest memory at ${address.toString(16)}`);
      const hps = backend.blocks[block]!.hostPageSize;
      const offset = Math.floor((address - bases[block]!) / hps) * hps;
      const key = `${block}:${offset}`;
      const outcome = zeroPages.has(key)
        ? backend.zero(block, offset, hps)
        : backend.copy(block, offset, source[block]!, offset, hps);
      const list = pager.outcomes.get(key) ?? [];
      list.push(outcome);
      pager.outcomes.set(key, list);
    }
  });
  return pager;
}

export function layout(name: string, pages: number, hostPageSize = PAGE, extra: Partial<BlockLayout> = {}): BlockLayout {
  return { name, length: pages * PAGE, hostPageSize, ...extra };
}

/** Targets of this process's fds that are anonymous inodes of a kind, e.g. '[userfaultfd]'. */
export function anonFds(kind: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `anon_inode:${kind}`) out.push(Number(fd));
    } catch {
      // the fd of the directory listing itself is gone by now
    }
  }
  return out;
}

/** Thread ids of this process whose name starts with `prefix` ('uffd-reader', 'vcpu-'). */
export function threadsNamed(prefix: string): number[] {
  const out: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').startsWith(prefix)) out.push(Number(tid));
    } catch {
      // the thread ended while we looked
    }
  }
  return out;
}

/** Start addresses of this process's mappings registered with a userfaultfd (VmFlags 'um'). */
export function uffdRegisteredMappings(): string[] {
  const out: string[] = [];
  let current = '';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-[0-9a-f]+ /.exec(line);
    if (head) current = head[1]!;
    else if (line.startsWith('VmFlags:') && / um( |$)/.test(line)) out.push(current);
  }
  return out;
}

export { PlaceOutcome };

/**
 * pure: index of the first byte where `a` and `b` differ, or -1 when equal (lengths
 * included). Much cheaper than a structural deepEqual on megabytes.
 */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.compare(a, b) === 0) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
