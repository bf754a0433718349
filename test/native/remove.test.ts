import { BackendError } from '../../src/errors.js';
import type { RemovedRange } from '../../src/native/native.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { PAGE, PlaceOutcome, layout, seededBytes, startPager, uffdTest } from './helpers.js';

uffdTest('a range the guest removes (EVENT_REMOVE) is unregistered and dropped, never requested', async (t) => {
  const pages = 64;
  const source = seededBytes(pages * PAGE, 21);
  const removedRanges: RemovedRange[] = [];
  let heard!: () => void;
  const removal = new Promise<void>((r) => (heard = r));
  const backend = new UffdBackend([layout('pc.ram', pages)], {
    onRemove: (ranges) => {
      removedRanges.push(...ranges);
      heard();
    },
  });
  try {
    const pager = startPager(backend, [source]);
    backend.register(0);
    t.true(backend.status().features.includes('EVENT_REMOVE'));
    for (let p = 0; p < pages; p++) backend.copy(0, p * PAGE, source, p * PAGE, PAGE);

    backend.removeAsGuest(0, 16 * PAGE, 16 * PAGE);
    // The removal is settled when removeAsGuest returns: unregistered and recorded.
    const status = backend.status();
    t.deepEqual(status.removed[0], [[16 * PAGE, 16 * PAGE]]);
    t.is(status.stats.guestRemoves, 1);
    await removal;
    t.deepEqual(removedRanges, [{ address: backend.hostAddress(0) + 16 * PAGE, length: 16 * PAGE }]);

    // Its pages read as zeros (no blocking: the range is no longer registered).
    t.true(backend.read(0, 16 * PAGE, 16 * PAGE).every((x) => x === 0));
    // A late placement into it is dropped, not written.
    t.is(backend.copy(0, 20 * PAGE, source, 20 * PAGE, PAGE), PlaceOutcome.ALREADY_PRESENT);
    t.true(backend.read(0, 20 * PAGE, PAGE).every((x) => x === 0));
    t.is(backend.status().stats.dropped, 1);

    // A vCPU walking the whole block takes no userfault: the rest is present, the removed
    // range is plain anonymous memory again.
    await backend.startVcpus({ pattern: 'sequential-increment' }).done;
    t.is(pager.faults.length, 0);
    const mem = backend.read(0, 0, pages * PAGE);
    for (let p = 0; p < pages; p++) {
      const want = p >= 16 && p < 32 ? 1 : (source[p * PAGE]! + 1) & 0xff;
      t.is(mem[p * PAGE], want, `page ${p}`);
    }
  } finally {
    backend.close();
  }
});

uffdTest('discard() of a registered range keeps it registered: its pages are missing again and fault again', async (t) => {
  const pages = 32;
  const source = seededBytes(pages * PAGE, 22);
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    const pager = startPager(backend, [source]);
    backend.register(0);
    for (let p = 0; p < pages; p++) backend.copy(0, p * PAGE, source, p * PAGE, PAGE);
    backend.copy(0, 8 * PAGE, new Uint8Array(PAGE).fill(0x55), 0, PAGE); // EEXIST: stays source
    backend.discard(0, 8 * PAGE, 2 * PAGE);
    const status = backend.status();
    t.deepEqual(status.removed[0], []);
    t.deepEqual(status.registered, [true]);
    t.true(status.stats.ownRemoves >= 1);
    t.throws(() => backend.read(0, 8 * PAGE, PAGE), { instanceOf: BackendError, message: /missing/ });

    await backend.startVcpus({ pattern: 'sequential-increment' }).done;
    t.deepEqual(
      pager.faults.map((f) => f.address - backend.hostAddress(0)),
      [8 * PAGE, 9 * PAGE],
    );
    const mem = backend.read(0, 0, pages * PAGE);
    for (let p = 0; p < pages; p++) t.is(mem[p * PAGE], (source[p * PAGE]! + 1) & 0xff, `page ${p}`);
  } finally {
    backend.close();
  }
});

uffdTest('discard() of an unregistered block drops its pages: they read as zeros', (t) => {
  const backend = new UffdBackend([layout('pc.ram', 8)]);
  try {
    backend.copy(0, 0, new Uint8Array(8 * PAGE).fill(9), 0, 8 * PAGE);
    backend.discard(0, 2 * PAGE, 3 * PAGE);
    const mem = backend.read(0, 0, 8 * PAGE);
    for (let p = 0; p < 8; p++) t.is(mem[p * PAGE], p >= 2 && p < 5 ? 0 : 9, `page ${p}`);
  } finally {
    backend.close();
  }
});

uffdTest('event-loop reader: discard() of a registered range makes its pages missing again without waiting on itself', async (t) => {
  const pages = 16;
  const source = seededBytes(pages * PAGE, 23);
  const backend = new UffdBackend([layout('pc.ram', pages)], { readerMode: 'loop' });
  try {
    const pager = startPager(backend, [source]);
    backend.register(0);
    for (let p = 0; p < pages; p++) backend.copy(0, p * PAGE, source, p * PAGE, PAGE);
    backend.discard(0, 4 * PAGE, PAGE);
    t.deepEqual(backend.status().registered, [true]);
    t.throws(() => backend.read(0, 4 * PAGE, PAGE), { instanceOf: BackendError, message: /missing/ });
    t.throws(() => backend.removeAsGuest(0, 0, PAGE), { instanceOf: BackendError, message: /reader thread/ });
    await backend.startVcpus({ pattern: 'sequential-increment' }).done;
    t.deepEqual(pager.faults.map((f) => f.address - backend.hostAddress(0)), [4 * PAGE]);
    const mem = backend.read(0, 0, pages * PAGE);
    for (let p = 0; p < pages; p++) t.is(mem[p * PAGE], (source[p * PAGE]! + 1) & 0xff, `page ${p}`);
  } finally {
    backend.close();
  }
});
