import { readFileSync, writeFileSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { BackendError } from '../../src/errors.js';
import { loadNative } from '../../src/native/native.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { PlaceOutcome, firstDifference, seededBytes, startPager, uffdTest } from './helpers.js';

const HUGE = 2 << 20;
const PAGE = 4096;

/** AnonHugePages and KernelPageSize (kB) of the mapping that contains `address`. */
function smapsOf(address: number): { anonHugeKb: number; kernelPageKb: number } {
  const lines = readFileSync('/proc/self/smaps', 'utf8').split('\n');
  let inside = false;
  const out = { anonHugeKb: -1, kernelPageKb: -1 };
  for (const line of lines) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (head) {
      inside = parseInt(head[1]!, 16) <= address && address < parseInt(head[2]!, 16);
      continue;
    }
    if (!inside) continue;
    const m = /^(AnonHugePages|KernelPageSize):\s+(\d+) kB/.exec(line);
    if (m) out[m[1] === 'AnonHugePages' ? 'anonHugeKb' : 'kernelPageKb'] = Number(m[2]);
  }
  return out;
}

/** Serves two 2 MiB host pages to two vCPUs and checks every byte. */
async function serveTwoHugePages(t: ExecutionContext, backend: UffdBackend, zeroSecond: boolean): Promise<void> {
  const source = seededBytes(2 * HUGE, 99);
  const pager = startPager(backend, [source], zeroSecond ? new Set([`0:${HUGE}`]) : new Set());
  backend.register(0);
  const run = backend.startVcpus({ pattern: 'sequential-increment', vcpus: 2 });
  await run.done;
  // One fault per host page: placing 2 MiB at once resolves the whole share.
  t.deepEqual([...pager.outcomes.keys()].sort(), ['0:0', `0:${HUGE}`]);
  for (const o of pager.outcomes.values()) t.deepEqual(o, [PlaceOutcome.PLACED]);
  const expected = Uint8Array.from(source);
  if (zeroSecond) expected.fill(0, HUGE);
  for (let p = 0; p < (2 * HUGE) / PAGE; p++) expected[p * PAGE] = (expected[p * PAGE]! + 1) & 0xff;
  t.is(firstDifference(backend.read(0, 0, 2 * HUGE), expected), -1, 'every byte as placed, then incremented');
  // A second placement of a huge page is EEXIST like any other.
  t.is(backend.copy(0, 0, source, 0, HUGE), PlaceOutcome.ALREADY_PRESENT);
}

uffdTest('a 2 MiB block on transparent huge pages (MADV_HUGEPAGE) takes 2 MiB placements', async (t) => {
  const support = loadNative().hugePageSupport();
  t.log(`THP: mode '${support.thp.mode}'${support.thp.ok ? '' : `, ${support.thp.reason}`}`);
  if (!support.thp.ok) {
    const err = t.throws(() => new UffdBackend([{ name: 'thp', length: 2 * HUGE, hostPageSize: HUGE }]), { instanceOf: BackendError });
    t.regex(err!.message, /transparent huge pages/);
    console.log(`[native tests] THP blocks refused by this kernel: ${support.thp.reason}`);
    return;
  }
  // Precopy (plain writes, not registered) lets the kernel back the block with real huge pages.
  const pre = new UffdBackend([{ name: 'thp', length: 2 * HUGE, hostPageSize: HUGE }]);
  try {
    t.is(pre.hostAddress(0) % HUGE, 0, 'the block is 2 MiB aligned');
    pre.copy(0, 0, seededBytes(2 * HUGE, 1), 0, 2 * HUGE);
    const s = smapsOf(pre.hostAddress(0));
    t.log(`after precopy writes: AnonHugePages ${s.anonHugeKb} kB of ${(2 * HUGE) >> 10} kB`);
    console.log(`[native tests] THP block after plain writes: AnonHugePages ${s.anonHugeKb} kB of ${(2 * HUGE) >> 10} kB`);
  } finally {
    pre.close();
  }
  // Postcopy: huge pages off during postcopy, 2 MiB UFFDIO_COPY (512 small pages to the
  // kernel), back on at cleanup as QEMU does.
  const backend = new UffdBackend([{ name: 'thp', length: 2 * HUGE, hostPageSize: HUGE }]);
  try {
    backend.setHugePages(0, false);
    await serveTwoHugePages(t, backend, true);
    backend.unregister(0);
    backend.setHugePages(0, true);
    const s = smapsOf(backend.hostAddress(0));
    t.log(`after postcopy placement: AnonHugePages ${s.anonHugeKb} kB (the kernel places anonymous pages 4 KiB at a time; khugepaged may collapse them later)`);
  } finally {
    backend.close();
  }
});

/** Reserves `pages` more hugetlbfs pages if needed; returns how to undo it, or the reason it failed. */
function reserveHugetlbPages(pages: number): { undo: () => void; reason?: string } {
  const support = loadNative().hugePageSupport();
  if (support.hugetlbfs.free >= pages) return { undo: () => {} };
  const path = '/proc/sys/vm/nr_hugepages';
  const original = Number(readFileSync(path, 'utf8').trim());
  try {
    writeFileSync(path, String(original + pages - Math.max(0, support.hugetlbfs.free)));
  } catch (err) {
    return { undo: () => {}, reason: `cannot write ${path}: ${(err as Error).message}` };
  }
  const undo = () => writeFileSync(path, String(original));
  const after = loadNative().hugePageSupport();
  if (after.hugetlbfs.free < pages) {
    undo();
    return { undo: () => {}, reason: `asked for ${pages} more pages, the kernel has ${after.hugetlbfs.free} free: ${after.hugetlbfs.reason}` };
  }
  return { undo };
}

uffdTest('a 2 MiB hugetlbfs block (MISSING_HUGETLBFS) takes 2 MiB copies and zero pages by copy', async (t) => {
  const reservation = reserveHugetlbPages(2);
  try {
    if (reservation.reason !== undefined) {
      // The kernel does not allow it here: the refusal must say why.
      t.log(`hugetlbfs unavailable: ${reservation.reason}`);
      console.log(`[native tests] hugetlbfs block not possible here: ${reservation.reason}`);
      const err = t.throws(() => new UffdBackend([{ name: 'huge', length: 2 * HUGE, hostPageSize: HUGE, hugetlbfs: true }]), {
        instanceOf: BackendError,
      });
      t.regex(err!.message, /hugetlbfs/);
      return;
    }
    const backend = new UffdBackend([{ name: 'huge', length: 2 * HUGE, hostPageSize: HUGE, hugetlbfs: true }]);
    try {
      t.is(smapsOf(backend.hostAddress(0)).kernelPageKb, HUGE >> 10);
      await serveTwoHugePages(t, backend, true);
      t.true(backend.status().features.includes('MISSING_HUGETLBFS'));
      t.log('hugetlbfs block served with 2 MiB pages');
      // 4 KiB placements into a 2 MiB block are refused before any ioctl.
      t.throws(() => backend.copy(0, 0, new Uint8Array(PAGE), 0, PAGE), { instanceOf: BackendError, message: /host pages/ });
    } finally {
      backend.close();
    }
  } finally {
    reservation.undo();
  }
});

uffdTest('huge-page layouts the kernel cannot back are refused with the reason', (t) => {
  t.throws(() => new UffdBackend([{ name: 'odd', length: HUGE, hostPageSize: 3 * PAGE }]), {
    instanceOf: BackendError,
    message: /power of two/,
  });
  t.throws(() => new UffdBackend([{ name: 'big', length: 1 << 30, hostPageSize: 1 << 30 }]), {
    instanceOf: BackendError,
    message: /need hugetlbfs/,
  });
  t.throws(() => new UffdBackend([{ name: 'short', length: HUGE + PAGE, hostPageSize: HUGE }]), {
    instanceOf: BackendError,
    message: /multiple of its host page size/,
  });
});
