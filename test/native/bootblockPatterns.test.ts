/**
 * The native vCPU patterns that play the guests of guest/: `bootblock` and
 * `bootblock-random` touch exactly the pages guest/README.md says, in its order, with real
 * threads (and real userfaults where the order of first touches is observed).
 */
import { BackendError } from '../../src/errors.js';
import type { VcpuOptions, VcpuReport } from '../../src/native/native.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { firstTouches, GUEST_HALVES, GUEST_PAGES, lcgByte0, lcgPages } from '../guestWalks.js';
import { PAGE, layout, seededBytes, startPager, uffdTest } from './helpers.js';

/** Byte 0 of every page of block 0, and whether every other byte is still zero. */
function byte0s(backend: UffdBackend, pages: number): { byte0: Uint8Array; restZero: boolean } {
  const byte0 = new Uint8Array(pages);
  let restZero = true;
  const chunkPages = 4096;
  for (let p0 = 0; p0 < pages; p0 += chunkPages) {
    const n = Math.min(chunkPages, pages - p0);
    const mem = backend.read(0, p0 * PAGE, n * PAGE);
    // Word by word (little-endian): byte 0 is the low byte of each page's first word.
    const words = new Uint32Array(mem.buffer, mem.byteOffset, mem.byteLength / 4);
    const wordsPerPage = PAGE / 4;
    for (let k = 0; k < n; k++) {
      const w0 = k * wordsPerPage;
      byte0[p0 + k] = mem[k * PAGE]!;
      if ((words[w0]! & 0xffffff00) !== 0) restZero = false;
      for (let i = w0 + 1; restZero && i < w0 + wordsPerPage; i++) if (words[i] !== 0) restZero = false;
    }
  }
  return { byte0, restZero };
}

/** Runs a pattern over plain (unregistered, zero-filled) memory: no faults, any size. */
async function runPlain(pages: number, options: VcpuOptions): Promise<{ byte0: Uint8Array; restZero: boolean; reports: VcpuReport[] }> {
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    const reports = await backend.startVcpus(options).done;
    return { ...byte0s(backend, pages), reports };
  } finally {
    backend.close();
  }
}

/** Runs a pattern over registered memory served with zero pages; each vCPU's faulting pages in order. */
async function runFaulting(pages: number, options: VcpuOptions): Promise<{ byte0: Uint8Array; faultedPages: number[][] }> {
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    const zeros = new Set<string>();
    for (let p = 0; p < pages; p++) zeros.add(`0:${p * PAGE}`);
    const pager = startPager(backend, [new Uint8Array(0)], zeros);
    backend.register(0);
    const run = backend.startVcpus(options);
    await run.done;
    backend.unregister(0);
    const base = backend.hostAddress(0);
    const faultedPages = run.tids.map((tid) => pager.faults.filter((f) => f.tid === tid).map((f) => Math.floor((f.address - base) / PAGE)));
    return { byte0: byte0s(backend, pages).byte0, faultedPages };
  } finally {
    backend.close();
  }
}

const range = (first: number, count: number): number[] => Array.from({ length: count }, (_, k) => first + k);

uffdTest('bootblock on a 256 MiB block increments byte 0 of each page of the guest\'s halves once per pass, and nothing else', async (t) => {
  const r = await runPlain(GUEST_PAGES, { pattern: 'bootblock', vcpus: 2, passes: 3 });
  const expected = new Uint8Array(GUEST_PAGES);
  for (const h of GUEST_HALVES) expected.fill(3, h.first, h.first + h.count);
  t.deepEqual(r.byte0, expected);
  t.true(r.restZero, 'only byte 0 of a page is ever written');
  t.deepEqual(r.reports.map((x) => x.accesses), GUEST_HALVES.map((h) => 3 * h.count));
});

uffdTest('bootblock-random on a 256 MiB block increments exactly the pages of the guest\'s LCG, vCPU 0 seeded 1 and vCPU 1 seeded 2', async (t) => {
  const n = 100_000;
  const r = await runPlain(GUEST_PAGES, { pattern: 'bootblock-random', vcpus: 2, iterations: n, seed: 99 });
  const expected = new Uint8Array(GUEST_PAGES);
  for (const h of GUEST_HALVES) expected.set(lcgByte0(h.seed, h.count, n), h.first);
  t.deepEqual(r.byte0, expected, 'the seed option does not change the walk: it is the guest\'s');
  t.true(r.restZero);
  t.deepEqual(r.reports.map((x) => x.accesses), [n, n]);
});

uffdTest('bootblock faults its pages in order, each vCPU on its part of [1/256, 240/256) of a smaller block', async (t) => {
  // 1024 pages: boundaries floor(1024/256) = 4, 1024*240*1/512 = 480, 1024*240/256 = 960.
  const r = await runFaulting(1024, { pattern: 'bootblock', vcpus: 2 });
  t.deepEqual(r.faultedPages, [range(4, 476), range(480, 480)]);
  const expected = new Uint8Array(1024);
  expected.fill(1, 4, 960);
  t.deepEqual(r.byte0, expected);
});

uffdTest('bootblock-random faults the pages of the LCG in the order the reference first touches them', async (t) => {
  const n = 400;
  const r = await runFaulting(1024, { pattern: 'bootblock-random', vcpus: 2, iterations: n });
  const halves = [{ first: 4, count: 476, seed: 1 }, { first: 480, count: 480, seed: 2 }];
  t.deepEqual(r.faultedPages, halves.map((h) => firstTouches(lcgPages(h.seed, h.count, n)).map((p) => h.first + p)));
  const expected = new Uint8Array(1024);
  for (const h of halves) expected.set(lcgByte0(h.seed, h.count, n), h.first);
  t.deepEqual(r.byte0, expected);
});

uffdTest('read-bootblock and read-bootblock-random fault the same pages in the same order and leave memory as placed', async (t) => {
  const pages = 1024;
  const source = seededBytes(pages * PAGE, 5);
  const halves = [{ first: 4, count: 476, seed: 1 }, { first: 480, count: 480, seed: 2 }];
  const n = 300;
  const expectations: [VcpuOptions, number[][]][] = [
    [{ pattern: 'read-bootblock', vcpus: 2 }, halves.map((h) => range(h.first, h.count))],
    [{ pattern: 'read-bootblock-random', vcpus: 2, iterations: n }, halves.map((h) => firstTouches(lcgPages(h.seed, h.count, n)).map((p) => h.first + p))],
  ];
  for (const [options, expected] of expectations) {
    const backend = new UffdBackend([layout('pc.ram', pages)]);
    try {
      const pager = startPager(backend, [source]);
      backend.register(0);
      const run = backend.startVcpus(options);
      await run.done;
      const base = backend.hostAddress(0);
      t.deepEqual(run.tids.map((tid) => pager.faults.filter((f) => f.tid === tid).map((f) => Math.floor((f.address - base) / PAGE))), expected, options.pattern);
      for (const p of expected.flat()) {
        if (!Buffer.from(backend.read(0, p * PAGE, PAGE)).equals(Buffer.from(source.subarray(p * PAGE, (p + 1) * PAGE)))) {
          t.fail(`${options.pattern}: page ${p} is not what was placed`);
        }
      }
    } finally {
      backend.close();
    }
  }
});

uffdTest('with durationMs both patterns run until then and end by themselves, bootblock cutting its last pass short', async (t) => {
  const pages = 1024;
  const seq = await runPlain(pages, { pattern: 'bootblock', vcpus: 2, durationMs: 20, passes: 1 });
  const halves = [{ first: 4, count: 476, seed: 1 }, { first: 480, count: 480, seed: 2 }];
  const expected = new Uint8Array(pages);
  halves.forEach((h, i) => {
    const a = seq.reports[i]!.accesses;
    for (let k = 0; k < h.count; k++) expected[h.first + k] = (Math.floor(a / h.count) + (k < a % h.count ? 1 : 0)) & 0xff;
  });
  t.true(seq.reports.every((x, i) => x.finished && x.accesses > halves[i]!.count), 'more than one pass: the duration, not passes, decides');
  t.deepEqual(seq.byte0, expected);

  const rnd = await runPlain(pages, { pattern: 'bootblock-random', vcpus: 2, durationMs: 20 });
  const expectedRandom = new Uint8Array(pages);
  halves.forEach((h, i) => expectedRandom.set(lcgByte0(h.seed, h.count, rnd.reports[i]!.accesses), h.first));
  t.true(rnd.reports.every((x) => x.finished && x.accesses > 0));
  t.deepEqual(rnd.byte0, expectedRandom);
});

uffdTest('a block too small to give every vCPU a page of [1/256, 240/256) is refused', (t) => {
  const backend = new UffdBackend([layout('pc.ram', 4)]);
  try {
    // 4 pages, 4 vCPUs: boundaries 0, 0, 1, 2, 3: vCPU 0 has none.
    t.throws(() => backend.startVcpus({ pattern: 'bootblock', vcpus: 4 }), { instanceOf: BackendError, message: /vCPU 0 no page of \[1\/256, 240\/256\)/ });
    t.throws(() => backend.startVcpus({ pattern: 'bootblock-random', vcpus: 4 }), { instanceOf: BackendError, message: /bootblock patterns/ });
    t.false(backend.status().vcpusActive);
  } finally {
    backend.close();
  }
});
