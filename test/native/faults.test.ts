import { BackendError } from '../../src/errors.js';
import { UffdBackend, type UffdBackendOptions } from '../../src/io/backends/uffdBackend.js';
import { PAGE, PlaceOutcome, firstDifference, layout, seededBytes, startPager, uffdTest } from './helpers.js';

const readers: [string, UffdBackendOptions][] = [
  ['reader thread', {}],
  ['reader thread, spin-then-poll', { spinUs: 200 }],
  ['event-loop reader', { readerMode: 'loop' }],
  ['event-loop reader, spin-then-poll', { readerMode: 'loop', spinUs: 200 }],
];

for (const [readerName, options] of readers) {
  uffdTest(`faults from real vCPU threads are caught, served, and the threads resume; every page reads back (${readerName})`, async (t) => {
    const pages = 256;
    const source = seededBytes(pages * PAGE, 7);
    const backend = new UffdBackend([layout('pc.ram', pages)], options);
    try {
      const pager = startPager(backend, [source]);
      backend.register(0);
      const before = UffdBackend.now();
      const run = backend.startVcpus({ pattern: 'sequential-increment', vcpus: 2, passes: 3 });
      t.is(run.tids.length, 2);
      const reports = await run.done;
      const after = UffdBackend.now();

      // Every page faulted exactly once and was placed once.
      t.is(pager.outcomes.size, pages);
      for (const outcomes of pager.outcomes.values()) t.deepEqual(outcomes, [PlaceOutcome.PLACED]);
      t.is(pager.faults.length, pages);
      // Faults name the vCPU threads (THREAD_ID) and carry read-time monotonic stamps.
      for (const f of pager.faults) {
        t.true(run.tids.includes(f.tid));
        t.true(f.timeNs >= before && f.timeNs <= after);
      }
      // vCPU 0 owns the first half, vCPU 1 the second.
      const base = backend.hostAddress(0);
      for (const f of pager.faults) {
        const vcpu = f.address - base < (pages / 2) * PAGE ? 0 : 1;
        t.is(f.tid, run.tids[vcpu]);
      }
      for (const r of reports) {
        t.true(r.finished);
        t.is(r.accesses, (pages / 2) * 3);
        t.true(r.faults >= pages / 2, `vCPU ${r.index} took ${r.faults} faults`);
      }
      // Byte for byte: the source, with the first byte of each page incremented 3 times.
      const expected = Uint8Array.from(source);
      for (let p = 0; p < pages; p++) expected[p * PAGE] = (expected[p * PAGE]! + 3) & 0xff;
      t.is(firstDifference(backend.read(0, 0, pages * PAGE), expected), -1);
      t.is(backend.status().mode, options.readerMode ?? 'thread');
    } finally {
      backend.close();
    }
  });
}

uffdTest('zero pages read as zeros (UFFDIO_ZEROPAGE), beside copied pages', async (t) => {
  const pages = 64;
  const source = seededBytes(pages * PAGE, 11);
  const zeros = new Set<string>();
  for (let p = 0; p < pages; p += 2) zeros.add(`0:${p * PAGE}`);
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    const pager = startPager(backend, [source], zeros);
    backend.register(0);
    await backend.startVcpus({ pattern: 'sequential-increment', vcpus: 1 }).done;
    t.is(pager.outcomes.size, pages);
    const mem = backend.read(0, 0, pages * PAGE);
    for (let p = 0; p < pages; p++) {
      const page = mem.subarray(p * PAGE, (p + 1) * PAGE);
      if (p % 2 === 0) {
        t.is(page[0], 1, `zero page ${p} incremented once`);
        t.true(page.subarray(1).every((b) => b === 0), `zero page ${p} is zeros`);
      } else {
        const want = Uint8Array.from(source.subarray(p * PAGE, (p + 1) * PAGE));
        want[0] = (want[0]! + 1) & 0xff;
        t.deepEqual(new Uint8Array(page), want);
      }
    }
  } finally {
    backend.close();
  }
});

uffdTest('a double placement is EEXIST: reported as ALREADY_PRESENT, the first data stays', (t) => {
  const backend = new UffdBackend([layout('pc.ram', 8)]);
  try {
    backend.listen(() => {});
    backend.register(0);
    const a = new Uint8Array(PAGE).fill(0xaa);
    const b = new Uint8Array(PAGE).fill(0xbb);
    t.is(backend.copy(0, PAGE, a, 0, PAGE), PlaceOutcome.PLACED);
    t.is(backend.copy(0, PAGE, b, 0, PAGE), PlaceOutcome.ALREADY_PRESENT);
    t.is(backend.zero(0, PAGE, PAGE), PlaceOutcome.ALREADY_PRESENT);
    t.is(backend.zero(0, 2 * PAGE, PAGE), PlaceOutcome.PLACED);
    t.is(backend.zero(0, 2 * PAGE, PAGE), PlaceOutcome.ALREADY_PRESENT);
    t.deepEqual(new Uint8Array(backend.read(0, PAGE, PAGE)), a);
    t.true(backend.read(0, 2 * PAGE, PAGE).every((x) => x === 0));
    t.is(backend.status().stats.alreadyPresent, 3);
    // A two-page copy over one present and one missing page places the missing one.
    t.is(backend.copy(0, 2 * PAGE, new Uint8Array(2 * PAGE).fill(0xcc), 0, 2 * PAGE), PlaceOutcome.PLACED);
    t.true(backend.read(0, 3 * PAGE, PAGE).every((x) => x === 0xcc));
    t.true(backend.read(0, 2 * PAGE, PAGE).every((x) => x === 0));
  } finally {
    backend.close();
  }
});

uffdTest('read() refuses a missing page of a registered block instead of blocking; unregistered reads see zeros', (t) => {
  const backend = new UffdBackend([layout('pc.ram', 8)]);
  try {
    backend.listen(() => {});
    backend.register(0);
    backend.copy(0, 0, new Uint8Array(PAGE).fill(1), 0, PAGE);
    t.is(backend.read(0, 0, PAGE)[0], 1);
    const err = t.throws(() => backend.read(0, PAGE - 1, 2), { instanceOf: BackendError });
    t.regex(err!.message, /missing and the block is registered/);
    t.regex(err!.message, /0x1000/);
    backend.unregister(0);
    t.true(backend.read(0, PAGE, 4 * PAGE).every((x) => x === 0));
    t.is(backend.read(0, 0, 1)[0], 1);
  } finally {
    backend.close();
  }
});

uffdTest('placement before registration (precopy) is a plain write; after registration the pages do not fault', async (t) => {
  const pages = 32;
  const source = seededBytes(pages * PAGE, 3);
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    for (let p = 0; p < pages / 2; p++) t.is(backend.copy(0, p * PAGE, source, p * PAGE, PAGE), PlaceOutcome.PLACED);
    const pager = startPager(backend, [source]);
    backend.register(0);
    await backend.startVcpus({ pattern: 'sequential-increment' }).done;
    // Only the second half was missing.
    t.is(pager.outcomes.size, pages / 2);
    t.true([...pager.outcomes.keys()].every((k) => Number(k.split(':')[1]) >= (pages / 2) * PAGE));
    const mem = backend.read(0, 0, pages * PAGE);
    for (let p = 0; p < pages; p++) t.is(mem[p * PAGE], (source[p * PAGE]! + 1) & 0xff);
  } finally {
    backend.close();
  }
});

for (const [readerName, options] of readers.filter(([, o]) => o.spinUs === undefined)) {
  uffdTest(`takeFaults() delivers pending faults synchronously, each once and in read order: a busy JavaScript thread serves a whole run without yielding (${readerName})`, async (t) => {
    const pages = 128;
    const source = seededBytes(pages * PAGE, 23);
    const backend = new UffdBackend([layout('pc.ram', pages)], options);
    try {
      const pager = startPager(backend, [source]);
      backend.register(0);
      const run = backend.startVcpus({ pattern: 'sequential-increment', vcpus: 2, passes: 1 });
      // Never yield to the event loop: only takeFaults() can hand faults over here. Between
      // empty calls the thread sleeps 0.1 ms without yielding (Atomics.wait); the bound only
      // keeps a broken takeFaults() from hanging the test.
      const nap = new Int32Array(new SharedArrayBuffer(4));
      let taken = 0;
      for (let calls = 0; pager.faults.length < pages && calls < 200_000; calls++) {
        const n = backend.takeFaults();
        taken += n;
        if (n === 0) Atomics.wait(nap, 0, 0, 0.1);
      }
      t.is(pager.faults.length, pages, 'every page faulted and was served from inside takeFaults()');
      t.is(taken, pages, 'takeFaults() counts what it delivered');
      await run.done;
      // The queued delivery that takeFaults() overtook finds nothing: no fault twice.
      await new Promise((r) => setTimeout(r, 50));
      t.is(pager.faults.length, pages);
      t.is(new Set(pager.faults.map((f) => f.address)).size, pages);
      for (const outcomes of pager.outcomes.values()) t.deepEqual(outcomes, [PlaceOutcome.PLACED]);
      for (let i = 1; i < pager.faults.length; i++) t.true(pager.faults[i]!.timeNs >= pager.faults[i - 1]!.timeNs, `fault ${i} delivered out of read order`);
      const expected = Uint8Array.from(source);
      for (let p = 0; p < pages; p++) expected[p * PAGE] = (expected[p * PAGE]! + 1) & 0xff;
      t.is(firstDifference(backend.read(0, 0, pages * PAGE), expected), -1);
      t.is(backend.takeFaults(), 0, 'nothing pending after the run');
    } finally {
      backend.close();
    }
  });
}
