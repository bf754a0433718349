import test from 'ava';
import { BackendError } from '../../../src/errors.js';
import { PlaceOutcome } from '../../../src/engine/ports.js';
import { DEFAULT_BASE_ADDRESS, MockBackend } from '../../../src/io/backends/mockBackend.js';
import { listeningBackend, MiB, PAGE, sourceImage } from './helpers.js';

const RAM = { name: 'pc.ram', length: 16 * PAGE, hostPageSize: PAGE };
const HUGE = { name: 'huge.ram', length: 4 * MiB, hostPageSize: 2 * MiB, hugetlbfs: true };

function filled(byte: number, length = PAGE): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

/** Expects a BackendError whose errno is `errno` (when given). */
function throwsBackend(t: import('ava').ExecutionContext, fn: () => unknown, errno?: string): BackendError {
  const err = t.throws(fn, { instanceOf: BackendError })!;
  t.is(err.code, 'BACKEND');
  if (errno !== undefined) t.is(err.errno, errno);
  return err;
}

test('a second copy onto a present page is ALREADY_PRESENT (EEXIST) and keeps the first content', (t) => {
  const { be } = listeningBackend([RAM]);
  t.is(be.copy(0, 3 * PAGE, filled(0xaa), 0, PAGE), PlaceOutcome.PLACED);
  t.is(be.copy(0, 3 * PAGE, filled(0xbb), 0, PAGE), PlaceOutcome.ALREADY_PRESENT);
  t.is(be.zero(0, 3 * PAGE, PAGE), PlaceOutcome.ALREADY_PRESENT);
  t.deepEqual(be.read(0, 3 * PAGE, PAGE), filled(0xaa));
  t.is(be.stats.copies, 1);
  t.is(be.stats.alreadyPresent, 2);
});

test('zero placement reads back as zeros, also over memory that held data before a discard', (t) => {
  const { be } = listeningBackend([RAM]);
  be.copy(0, 0, filled(0x55), 0, PAGE);
  be.discard(0, 0, PAGE);
  t.is(be.zero(0, 0, PAGE), PlaceOutcome.PLACED);
  t.is(be.zero(0, 0, PAGE), PlaceOutcome.ALREADY_PRESENT);
  t.is(be.copy(0, 0, filled(1), 0, PAGE), PlaceOutcome.ALREADY_PRESENT);
  t.deepEqual(be.read(0, 0, PAGE), new Uint8Array(PAGE));
  t.true(be.isPresent(0, 0));
});

test('copy takes its bytes from data[dataOffset..] and reads back exactly', (t) => {
  const { be } = listeningBackend([RAM]);
  const src = sourceImage(RAM.length);
  be.copy(0, 5 * PAGE, src, 5 * PAGE, PAGE);
  t.deepEqual(be.read(0, 5 * PAGE, PAGE), src.subarray(5 * PAGE, 6 * PAGE));
  t.deepEqual(be.read(0, 5 * PAGE + 100, 10), src.subarray(5 * PAGE + 100, 5 * PAGE + 110));
});

test('reading a missing page of a registered block is refused; after unregister it reads zeros', (t) => {
  const { be } = listeningBackend([RAM]);
  be.copy(0, 0, filled(9), 0, PAGE);
  const err = throwsBackend(t, () => be.read(0, 0, 2 * PAGE));
  t.regex(err.message, /offset 0x1000 is missing and the block is registered/);
  t.deepEqual(be.read(0, 0, PAGE), filled(9));
  be.unregister(0);
  const both = be.read(0, 0, 2 * PAGE);
  t.deepEqual(both.subarray(0, PAGE), filled(9));
  t.deepEqual(both.subarray(PAGE), new Uint8Array(PAGE));
});

test('misaligned, partial, out-of-range and short-buffer placements are refused and write nothing', (t) => {
  const { be } = listeningBackend([RAM, HUGE]);
  const data = filled(0x77, 2 * MiB);
  throwsBackend(t, () => be.copy(0, 100, data, 0, PAGE), 'EINVAL');
  throwsBackend(t, () => be.copy(0, 0, data, 0, PAGE / 2), 'EINVAL');
  throwsBackend(t, () => be.copy(0, 0, data, 0, 2 * PAGE), 'EINVAL');
  throwsBackend(t, () => be.copy(0, RAM.length, data, 0, PAGE), 'EINVAL');
  throwsBackend(t, () => be.copy(0, -PAGE, data, 0, PAGE), 'EINVAL');
  throwsBackend(t, () => be.copy(0, 0, data, 2 * MiB - 100, PAGE), 'EINVAL');
  throwsBackend(t, () => be.copy(0, 0, data, -1, PAGE), 'EINVAL');
  throwsBackend(t, () => be.zero(0, PAGE + 1, PAGE), 'EINVAL');
  throwsBackend(t, () => be.copy(2, 0, data, 0, PAGE), 'EINVAL');
  // A huge-page block places whole 2 MiB pages only.
  throwsBackend(t, () => be.copy(1, 0, data, 0, PAGE), 'EINVAL');
  throwsBackend(t, () => be.zero(1, PAGE, 2 * MiB), 'EINVAL');
  throwsBackend(t, () => be.copy(1, 4 * MiB, data, 0, 2 * MiB), 'EINVAL');
  t.is(be.presentPageCount(0), 0);
  t.is(be.presentPageCount(1), 0);
  t.is(be.allocatedBytes(0) + be.allocatedBytes(1), 0);
  be.unregister(0);
  be.unregister(1);
  t.deepEqual(be.read(0, 0, RAM.length), new Uint8Array(RAM.length));
});

test('a huge host page is placed whole: every 4 KiB page of it becomes present', (t) => {
  const { be } = listeningBackend([RAM, HUGE]);
  const data = sourceImage(2 * MiB, 3);
  t.is(be.copy(1, 2 * MiB, data, 0, 2 * MiB), PlaceOutcome.PLACED);
  t.is(be.presentPageCount(1), 512);
  t.true(be.isPresent(1, 2 * MiB));
  t.true(be.isPresent(1, 4 * MiB - 1));
  t.false(be.isPresent(1, 2 * MiB - 1));
  t.deepEqual(be.read(1, 2 * MiB, 2 * MiB), data);
  t.is(be.zero(1, 0, 2 * MiB), PlaceOutcome.PLACED);
  t.is(be.stats.zeroCopies, 1, 'hugetlbfs has no UFFDIO_ZEROPAGE: a copy from a zeroed page');
  // hugetlbfs drops whole huge pages only.
  throwsBackend(t, () => be.discard(1, 0, PAGE), 'EINVAL');
  be.discard(1, 0, 2 * MiB);
  t.is(be.presentPageCount(1), 512);
});

test('a plain write is refused while the block is registered, allowed before and after', (t) => {
  const be = new MockBackend([RAM]);
  be.write(0, PAGE, filled(4), 0, PAGE);
  be.listen(() => {});
  be.register(0);
  const err = throwsBackend(t, () => be.write(0, 2 * PAGE, filled(5), 0, PAGE));
  t.regex(err.message, /registered/);
  t.false(be.isPresent(0, 2 * PAGE));
  t.is(be.copy(0, PAGE, filled(6), 0, PAGE), PlaceOutcome.ALREADY_PRESENT, 'the precopy write made it present');
  be.unregister(0);
  be.write(0, 2 * PAGE + 10, filled(5, 20), 0, 20);
  const page = be.read(0, 2 * PAGE, PAGE);
  t.deepEqual(page.subarray(10, 30), filled(5, 20));
  t.is(page[9], 0);
  t.is(page[30], 0);
  t.deepEqual(be.read(0, PAGE, PAGE), filled(4));
  throwsBackend(t, () => be.write(0, RAM.length - 10, filled(1, 20), 0, 20), 'EINVAL');
});

test('discard makes pages missing again: they fault, refuse reads and take a new placement', (t) => {
  const { be } = listeningBackend([RAM]);
  for (let p = 0; p < 4; p++) be.copy(0, p * PAGE, filled(p + 1), 0, PAGE);
  be.discard(0, PAGE, 2 * PAGE);
  t.deepEqual([0, 1, 2, 3].map((p) => be.isPresent(0, p * PAGE)), [true, false, false, true]);
  throwsBackend(t, () => be.read(0, PAGE, PAGE));
  t.is(be.copy(0, 2 * PAGE, filled(0xee), 0, PAGE), PlaceOutcome.PLACED);
  t.deepEqual(be.read(0, 2 * PAGE, PAGE), filled(0xee));
  throwsBackend(t, () => be.discard(0, 10, PAGE), 'EINVAL');
  throwsBackend(t, () => be.discard(0, 0, RAM.length + PAGE), 'EINVAL');
  be.unregister(0);
  t.deepEqual(be.read(0, PAGE, PAGE), new Uint8Array(PAGE), 'a dropped page reads as zeros once unregistered');
});

test('discarding whole chunks returns them to the pool, and a later copy reuses them', (t) => {
  const { be } = listeningBackend([{ name: 'pc.ram', length: 8 * MiB, hostPageSize: PAGE }]);
  be.copy(0, 0, filled(1), 0, PAGE);
  be.copy(0, 2 * MiB, filled(2), 0, PAGE);
  t.is(be.allocatedBytes(0), 4 * MiB);
  be.discard(0, 0, 8 * MiB);
  t.is(be.allocatedBytes(0), 0);
  t.is(be.pooledBytes, 4 * MiB);
  be.copy(0, 6 * MiB + PAGE, filled(3), 0, PAGE);
  t.is(be.pooledBytes, 2 * MiB);
  be.unregister(0);
  const pages = be.read(0, 6 * MiB, 2 * PAGE);
  t.deepEqual(pages.subarray(0, PAGE), new Uint8Array(PAGE), 'a reused chunk is zeroed');
  t.deepEqual(pages.subarray(PAGE), filled(3));
});

test('reserved memory is used for new chunks and reads as zeros where nothing was placed', (t) => {
  const { be } = listeningBackend([RAM]);
  be.reserveMemory(3 * MiB);
  t.is(be.pooledBytes, 4 * MiB);
  be.copy(0, PAGE, filled(8), 0, PAGE);
  t.is(be.pooledBytes, 2 * MiB);
  t.is(be.allocatedBytes(0), 2 * MiB);
  be.zero(0, 0, PAGE);
  t.deepEqual(be.read(0, 0, 2 * PAGE), Uint8Array.from([...new Uint8Array(PAGE), ...filled(8)]));
  throwsBackend(t, () => be.reserveMemory(-1), 'EINVAL');
});

test('placements need an open fd and a registered block', (t) => {
  const be = new MockBackend([RAM]);
  throwsBackend(t, () => be.register(0), 'EBADF');
  throwsBackend(t, () => be.copy(0, 0, filled(1), 0, PAGE), 'EBADF');
  be.listen(() => {});
  throwsBackend(t, () => be.copy(0, 0, filled(1), 0, PAGE), 'ENOENT');
  throwsBackend(t, () => be.zero(0, 0, PAGE), 'ENOENT');
  throwsBackend(t, () => be.listen(() => {}), 'EBUSY');
  be.register(0);
  be.register(0);
  t.true(be.isRegistered(0));
  t.is(be.copy(0, 0, filled(1), 0, PAGE), PlaceOutcome.PLACED);
  be.close();
  be.close();
  t.false(be.isRegistered(0), 'closing the fd drops every registration');
  throwsBackend(t, () => be.copy(0, PAGE, filled(1), 0, PAGE), 'EBADF');
  throwsBackend(t, () => be.register(0), 'EBADF');
  throwsBackend(t, () => be.listen(() => {}), 'EBADF');
  t.deepEqual(be.read(0, 0, PAGE), filled(1));
});

test('injected RETRY (EAGAIN) answers the next N overlapping placements and writes nothing', (t) => {
  const { be } = listeningBackend([RAM]);
  be.injectRetry(0, 2 * PAGE, 2 * PAGE, 2);
  t.is(be.copy(0, 0, filled(1), 0, PAGE), PlaceOutcome.PLACED, 'outside the range');
  t.is(be.copy(0, 3 * PAGE, filled(2), 0, PAGE), PlaceOutcome.RETRY);
  t.false(be.isPresent(0, 3 * PAGE));
  t.is(be.zero(0, 2 * PAGE, PAGE), PlaceOutcome.RETRY);
  t.is(be.zero(0, 2 * PAGE, PAGE), PlaceOutcome.PLACED);
  t.is(be.copy(0, 3 * PAGE, filled(2), 0, PAGE), PlaceOutcome.PLACED);
  t.is(be.stats.retries, 2);
  // Bad arguments are refused before an injection is used up.
  be.injectRetry(0, 4 * PAGE, PAGE, 1);
  throwsBackend(t, () => be.copy(0, 4 * PAGE, filled(1), 0, 10));
  t.is(be.copy(0, 4 * PAGE, filled(1), 0, PAGE), PlaceOutcome.RETRY);
});

test('setHugePages is recorded per block and in order', (t) => {
  const be = new MockBackend([RAM, HUGE]);
  t.true(be.hugePagesEnabled(0));
  be.setHugePages(0, false);
  be.setHugePages(1, false);
  be.setHugePages(0, true);
  t.true(be.hugePagesEnabled(0));
  t.false(be.hugePagesEnabled(1));
  t.deepEqual(be.hugePageCalls, [
    { block: 0, enabled: false },
    { block: 1, enabled: false },
    { block: 0, enabled: true },
  ]);
});

test('blocks get QEMU-like host addresses, 1 GiB aligned after the previous block', (t) => {
  const be = new MockBackend([RAM, { ...HUGE, maxLength: 1536 * MiB }, RAM]);
  t.is(be.hostAddress(0), DEFAULT_BASE_ADDRESS);
  t.is(be.hostAddress(1), DEFAULT_BASE_ADDRESS + 2 ** 30);
  t.is(be.hostAddress(2), DEFAULT_BASE_ADDRESS + 3 * 2 ** 30);
  t.is(new MockBackend([RAM], { baseAddress: 2 ** 40 }).hostAddress(0), 2 ** 40);
  throwsBackend(t, () => be.hostAddress(3));
  throwsBackend(t, () => new MockBackend([RAM], { baseAddress: 4096 }));
  throwsBackend(t, () => new MockBackend([{ name: 'x', length: PAGE, hostPageSize: 1000 }]));
});

test('the probe passes on the simulated host and names the check that fails', (t) => {
  const ok = new MockBackend([RAM, HUGE]).probe();
  t.true(ok.ok);
  t.is(ok.reason, undefined);
  t.deepEqual(
    ok.checks.map((c) => c.name),
    ['mlock', 'userfaultfd-open', 'api-handshake', 'register-ioctls', 'block-page-multiples', 'file-backed-blocks', 'test-page', 'huge-page-feature', 'thread-id', 'event-remove'],
  );

  const refused = new MockBackend([RAM], { supported: 'userfaultfd: Operation not permitted' });
  const r = refused.probe();
  t.false(r.ok);
  t.is(r.reason, 'userfaultfd-open: userfaultfd: Operation not permitted');
  throwsBackend(t, () => refused.listen(() => {}), 'ENOSYS');
  t.false(new MockBackend([RAM], { supported: false }).probe().ok);

  const badLength = new MockBackend([RAM, { name: 'odd', length: 3 * MiB, hostPageSize: 2 * MiB, hugetlbfs: true }]).probe();
  t.false(badLength.ok);
  t.is(badLength.reason, "block-page-multiples: block 'odd' length 3145728 is not a multiple of its page size 2097152");

  const noZero = new MockBackend([RAM], { zeroPlace: false }).probe();
  t.false(noZero.ok);
  t.regex(noZero.reason!, /^test-page: .*no ZEROPAGE/);
});

test('a block whose length is not a multiple of its page size cannot be registered', (t) => {
  const be = new MockBackend([{ name: 'odd', length: 3 * MiB, hostPageSize: 2 * MiB }]);
  be.listen(() => {});
  throwsBackend(t, () => be.register(0), 'EINVAL');
});
