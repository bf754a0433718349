/**
 * The simulated equivalents of the native bootblock patterns (accessPatterns.ts, run by the
 * mock backend for `migrate --backend mock` and `simulate`): the same pages as guest/README.md.
 */
import test from 'ava';
import { bootblockShare, expectedMemory, forEachPlannedAccess } from '../../../src/io/backends/accessPatterns.js';
import { BackendError } from '../../../src/errors.js';
import { MockBackend } from '../../../src/io/backends/mockBackend.js';
import { firstTouches, GUEST_HALVES, GUEST_PAGES, lcgByte0, lcgNext, lcgPages } from '../../guestWalks.js';
import { faultsOf, listeningBackend, PAGE } from './helpers.js';

test('the tests\' LCG reference gives the first steps computed apart (Python, arbitrary precision)', (t) => {
  // x_(k+1) = (x_k * 1103515245 + 12345) mod 2^32 from x_0 = 1 and 2; pages (x >> 8) mod 30464 / 30720.
  t.deepEqual(lcgPages(1, 30464, 5), [15230, 22960, 30180, 16795, 9183]);
  t.deepEqual(lcgPages(2, 30720, 5), [19661, 4427, 12193, 21018, 11559]);
  t.is(lcgNext(lcgNext(1)), 2524885223);
  t.is(lcgNext(2), 2207042835);
});

test('bootblockShare gives the guest\'s halves for 256 MiB and 2 vCPUs, and 1/256 .. 240/256 cut evenly otherwise', (t) => {
  t.deepEqual([0, 1].map((i) => bootblockShare(GUEST_PAGES, 2, i)), GUEST_HALVES.map(({ first, count }) => ({ first, count })));
  // 1 GiB, 4 vCPUs: [1024, 61440), [61440, 122880), [122880, 184320), [184320, 245760).
  t.deepEqual([0, 1, 2, 3].map((i) => bootblockShare(262144, 4, i)), [
    { first: 1024, count: 60416 },
    { first: 61440, count: 61440 },
    { first: 122880, count: 61440 },
    { first: 184320, count: 61440 },
  ]);
  t.deepEqual(bootblockShare(GUEST_PAGES, 1, 0), { first: 256, count: 61184 });
  t.deepEqual(bootblockShare(4, 4, 0), { first: 0, count: 0 });
});

test('bootblock walks byte 0 of each page of its share in order, `passes` times', (t) => {
  const pages: number[][] = [[], []];
  forEachPlannedAccess({ pattern: 'bootblock', vcpus: 2, seed: 1, passes: 2 }, GUEST_PAGES * PAGE, (offset, vcpu) => {
    if (offset % PAGE !== 0) throw new Error(`offset ${offset} is not byte 0 of a page`);
    pages[vcpu]!.push(offset / PAGE);
  });
  GUEST_HALVES.forEach((h, i) => {
    const once = Array.from({ length: h.count }, (_, k) => h.first + k);
    t.deepEqual(pages[i], [...once, ...once]);
  });
});

test('bootblock-random makes the guest\'s LCG accesses, one per page of the half by default', (t) => {
  const pages: number[][] = [[], []];
  forEachPlannedAccess({ pattern: 'bootblock-random', vcpus: 2, seed: 77 }, GUEST_PAGES * PAGE, (offset, vcpu) => {
    if (offset % PAGE !== 0) throw new Error(`offset ${offset} is not byte 0 of a page`);
    pages[vcpu]!.push(offset / PAGE);
  });
  GUEST_HALVES.forEach((h, i) => t.deepEqual(pages[i], lcgPages(h.seed, h.count, h.count).map((p) => h.first + p)));
});

test('expectedMemory of bootblock-random is the reference histogram on byte 0', (t) => {
  const n = 5000;
  const out = expectedMemory(new Uint8Array(GUEST_PAGES * PAGE), { pattern: 'bootblock-random', vcpus: 2, seed: 1, accessesPerVcpu: n });
  const expected = new Uint8Array(GUEST_PAGES);
  for (const h of GUEST_HALVES) expected.set(lcgByte0(h.seed, h.count, n), h.first);
  const byte0 = new Uint8Array(GUEST_PAGES);
  for (let p = 0; p < GUEST_PAGES; p++) byte0[p] = out[p * PAGE]!;
  t.deepEqual(byte0, expected);
});

test('the mock backend\'s vCPUs fault on the LCG\'s pages in first-touch order', (t) => {
  // 1024 pages: shares [4, 480) and [480, 960).
  const { be, batches } = listeningBackend([{ name: 'pc.ram', length: 1024 * PAGE, hostPageSize: PAGE }]);
  const n = 300;
  const tids = be.startVcpus({ block: 0, vcpus: 2, pattern: 'bootblock-random', seed: 1, accessesPerVcpu: n });
  const zero = new Uint8Array(PAGE);
  for (let guard = 0; !be.allVcpusFinished() && guard < 10_000; guard++) {
    be.stepVcpus(64);
    for (const s of be.vcpuStates()) {
      if (s.blockedOn !== null) be.copy(0, Math.floor((s.blockedOn - be.hostAddress(0)) / PAGE) * PAGE, zero, 0, PAGE);
    }
  }
  t.true(be.allVcpusFinished());
  const faults = faultsOf(batches);
  const halves = [{ first: 4, count: 476, seed: 1 }, { first: 480, count: 480, seed: 2 }];
  halves.forEach((h, i) => {
    const got = faults.filter((f) => f.tid === tids[i]).map((f) => (f.address - be.hostAddress(0)) / PAGE);
    t.deepEqual(got, firstTouches(lcgPages(h.seed, h.count, n)).map((p) => h.first + p));
  });
});

test('a block too small for the bootblock shares is refused naming the vCPU', (t) => {
  const be = new MockBackend([{ name: 'tiny', length: 4 * PAGE, hostPageSize: PAGE }]);
  for (const pattern of ['bootblock', 'bootblock-random'] as const) {
    t.throws(() => be.startVcpus({ block: 0, vcpus: 4, pattern, seed: 1 }), { instanceOf: BackendError, message: /vCPU 0 no page of \[1\/256, 240\/256\)/ });
  }
});
