import test from 'ava';
import { BackendError } from '../../../src/errors.js';
import { DEFAULT_TOUCH_OFFSET, expectedMemory, type AccessPlan } from '../../../src/io/backends/accessPatterns.js';
import { PlaceOutcome, type FaultBatch } from '../../../src/engine/ports.js';
import { FIRST_VCPU_TID, MockBackend } from '../../../src/io/backends/mockBackend.js';
import { faultsOf, listeningBackend, PAGE, serveFaultsUntilDone, sourceImage } from './helpers.js';

const RAM = { name: 'pc.ram', length: 64 * PAGE, hostPageSize: PAGE };

test('a blocked vCPU emits exactly one fault per blocking access and resumes only after placement', (t) => {
  const { be, batches } = listeningBackend([RAM]);
  const tids = be.startVcpus({ block: 0, vcpus: 1, pattern: 'sequential-increment', seed: 1 });
  t.deepEqual(tids, [FIRST_VCPU_TID]);
  t.is(be.stepVcpus(1, 500), 0);
  for (let i = 0; i < 5; i++) be.stepVcpus(100, 600 + i);
  const faults = faultsOf(batches);
  const address = be.hostAddress(0) + DEFAULT_TOUCH_OFFSET;
  t.deepEqual(faults, [{ address, tid: FIRST_VCPU_TID, timeNs: 500 }]);
  t.not(address % PAGE, 0, 'the fault names the accessed byte, not its page');
  t.like(be.vcpuStates()[0], { blockedOn: address, accessesDone: 0, faults: 1, finished: false });

  // Placing another page does not resume it.
  be.copy(0, PAGE, new Uint8Array(PAGE), 0, PAGE);
  t.is(be.vcpuStates()[0]!.blockedOn, address);

  const page = new Uint8Array(PAGE).fill(41);
  t.is(be.copy(0, 0, page, 0, PAGE), PlaceOutcome.PLACED);
  t.like(be.vcpuStates()[0], { blockedOn: null, accessesDone: 1 });
  const back = be.read(0, 0, PAGE);
  t.is(back[DEFAULT_TOUCH_OFFSET], 42, 'the blocked access ran on the placed content');
  t.is(back[DEFAULT_TOUCH_OFFSET + 1], 41);

  // Page 1 is already present: the next step goes through it and blocks on page 2.
  be.stepVcpus(100, 700);
  const after = faultsOf(batches);
  t.is(after.length, 2);
  t.is(after[1]!.address, be.hostAddress(0) + 2 * PAGE + DEFAULT_TOUCH_OFFSET);
  t.is(be.vcpuStates()[0]!.accessesDone, 2);
});

test('unregister and zero placement resume the waiters too', (t) => {
  const { be } = listeningBackend([RAM]);
  be.startVcpus({ block: 0, vcpus: 1, pattern: 'sequential-increment', seed: 1 });
  be.stepVcpus(1);
  be.unregister(0);
  t.is(be.vcpuStates()[0]!.blockedOn, null, 'unregister wakes it: the access completes on a zero page');
  t.is(be.read(0, 0, PAGE)[DEFAULT_TOUCH_OFFSET], 1);
  be.register(0);
  be.stepVcpus(1);
  t.not(be.vcpuStates()[0]!.blockedOn, null);
  be.zero(0, PAGE, PAGE);
  t.is(be.vcpuStates()[0]!.blockedOn, null);
  t.is(be.read(0, PAGE, PAGE)[DEFAULT_TOUCH_OFFSET], 1, 'the access ran on the zero page');
});

test('a wake on a page that is still missing makes the vCPU fault again on its next turn', (t) => {
  const { be, batches } = listeningBackend([RAM]);
  be.startVcpus({ block: 0, vcpus: 1, pattern: 'sequential-increment', seed: 1 });
  be.stepVcpus(1, 10);
  be.wake(0, 0, PAGE);
  t.not(be.vcpuStates()[0]!.blockedOn, null);
  be.stepVcpus(1, 20);
  be.stepVcpus(1, 30);
  t.deepEqual(faultsOf(batches).map((f) => f.timeNs), [10, 20]);
  t.is(be.vcpuStates()[0]!.faults, 2);
});

test('each vCPU blocked on the same page emits its own fault', (t) => {
  const { be, batches } = listeningBackend([{ name: 'tiny', length: 2 * PAGE, hostPageSize: PAGE }]);
  // The hot set is common to all vCPUs: with one hot page and hotFraction 1 they all touch it.
  const tids = be.startVcpus({ block: 0, vcpus: 2, pattern: 'hot-set', seed: 7, hotSetPages: 1, hotFraction: 1, accessesPerVcpu: 3 });
  be.stepVcpus(10, 1);
  const faults = faultsOf(batches);
  t.deepEqual(faults.map((f) => f.tid), tids);
  t.is(Math.floor(faults[0]!.address / PAGE), Math.floor(faults[1]!.address / PAGE));
  const hostPage = Math.floor((faults[0]!.address - be.hostAddress(0)) / PAGE) * PAGE;
  be.zero(0, hostPage, PAGE);
  t.deepEqual(be.vcpuStates().map((s) => s.blockedOn), [null, null], 'one placement wakes both');
  be.stepVcpus(10, 2);
  t.true(be.allVcpusFinished());
  t.is(faultsOf(batches).length, 2);
  t.deepEqual(be.vcpuStates().map((s) => s.accessesDone), [3, 3]);
});

test('sequential-increment over a small block ends with every touched byte incremented `passes` times', (t) => {
  const length = 96 * PAGE;
  const source = sourceImage(length);
  const plan: AccessPlan = { vcpus: 2, pattern: 'sequential-increment', seed: 3, passes: 3 };
  const be = new MockBackend([{ name: 'pc.ram', length, hostPageSize: PAGE }]);
  be.startVcpus({ block: 0, ...plan });
  const faults = serveFaultsUntilDone(be, 0, source);
  t.true(be.allVcpusFinished());
  t.is(faults.length, 96, 'one fault per page: later passes find every page present');
  be.unregister(0);
  const memory = be.read(0, 0, length);
  t.deepEqual(memory, expectedMemory(source, plan));
  for (let p = 0; p < 96; p++) {
    const at = p * PAGE + DEFAULT_TOUCH_OFFSET;
    t.is(memory[at], (source[at]! + 3) & 0xff);
  }
  let changed = 0;
  for (let i = 0; i < length; i++) if (memory[i] !== source[i]) changed++;
  t.is(changed, 96, 'no other byte changed');
  // vCPU 0 walks the first half, vCPU 1 the second, as in the bootblock guest.
  const tids = be.vcpuTids();
  const half = be.hostAddress(0) + 48 * PAGE;
  t.true(faults.every((f) => (f.tid === tids[0] ? f.address < half : f.address >= half)));
  t.deepEqual(be.vcpuStates().map((s) => s.accessesDone), [48 * 3, 48 * 3]);
});

for (const pattern of ['random', 'hot-set'] as const) {
  test(`${pattern}: the same seed gives the same faults and final memory; another seed does not`, (t) => {
    const length = 128 * PAGE;
    const source = sourceImage(length, 5);
    const run = (seed: number): { faults: number[]; memory: Uint8Array } => {
      const be = new MockBackend([{ name: 'pc.ram', length, hostPageSize: PAGE }]);
      be.startVcpus({ block: 0, vcpus: 3, pattern, seed, accessesPerVcpu: 200, hotSetPages: 8 });
      const faults = serveFaultsUntilDone(be, 0, source).map((f) => f.address);
      be.unregister(0);
      return { faults, memory: be.read(0, 0, length) };
    };
    const a = run(11);
    const b = run(11);
    const c = run(12);
    t.true(a.faults.length > 10);
    t.deepEqual(a.faults, b.faults);
    t.notDeepEqual(a.faults, c.faults);
    t.deepEqual(a.memory, expectedMemory(source, { pattern, vcpus: 3, seed: 11, accessesPerVcpu: 200, hotSetPages: 8 }));
    t.deepEqual(c.memory, expectedMemory(source, { pattern, vcpus: 3, seed: 12, accessesPerVcpu: 200, hotSetPages: 8 }));
    t.true(a.faults.some((f) => f % PAGE !== 0), 'fault addresses are byte addresses');
  });
}

test('hot-set accesses mostly hit the hot set', (t) => {
  const { be, batches } = listeningBackend([{ name: 'pc.ram', length: 4096 * PAGE, hostPageSize: PAGE }]);
  be.startVcpus({ block: 0, vcpus: 1, pattern: 'hot-set', seed: 9, hotSetPages: 4, accessesPerVcpu: 1000 });
  // Serve each fault with a zero page, counting distinct pages.
  const touched = new Set<number>();
  while (!be.allVcpusFinished()) {
    const before = batches.length;
    be.stepVcpus(1000);
    for (const f of faultsOf(batches.slice(before))) {
      const page = Math.floor((f.address - be.hostAddress(0)) / PAGE);
      touched.add(page);
      be.zero(0, page * PAGE, PAGE);
    }
  }
  // About 100 accesses go elsewhere in 4096 pages; far fewer distinct pages than accesses.
  t.true(touched.size < 150, `${touched.size} distinct pages`);
  t.true(touched.size >= 4);
});

test('close stops fault delivery and lets blocked vCPUs finish on zero pages', (t) => {
  const { be, batches } = listeningBackend([RAM]);
  be.startVcpus({ block: 0, vcpus: 2, pattern: 'sequential-increment', seed: 1 });
  be.stepVcpus(1);
  t.is(faultsOf(batches).length, 2);
  be.close();
  t.deepEqual(be.vcpuStates().map((s) => s.blockedOn), [null, null]);
  be.stepVcpus(1000);
  t.true(be.allVcpusFinished());
  t.is(faultsOf(batches).length, 2);
  t.is(be.read(0, 5 * PAGE + DEFAULT_TOUCH_OFFSET, 1)[0], 1);
});

test('faults are delivered in batches of at most 1024, oldest first', (t) => {
  const { be, batches } = listeningBackend([{ name: 'pc.ram', length: 3000 * PAGE, hostPageSize: PAGE }]);
  be.startVcpus({ block: 0, vcpus: 3000, pattern: 'sequential-increment', seed: 1 });
  be.stepVcpus(1, 77);
  t.deepEqual(batches.map((b: FaultBatch) => b.count), [1024, 1024, 952]);
  const faults = faultsOf(batches);
  t.deepEqual(faults.slice(0, 3).map((f) => f.tid), be.vcpuTids().slice(0, 3));
  t.true(faults.every((f, i) => f.address === be.hostAddress(0) + i * PAGE + DEFAULT_TOUCH_OFFSET && f.timeNs === 77));
});

test('vCPU plans and steps are checked', (t) => {
  const { be } = listeningBackend([RAM]);
  t.throws(() => be.stepVcpus(1), { instanceOf: BackendError });
  t.throws(() => be.startVcpus({ block: 0, vcpus: 65, pattern: 'random', seed: 1 }), { instanceOf: BackendError, message: /cannot share/ });
  t.throws(() => be.startVcpus({ block: 0, vcpus: 1, pattern: 'zigzag' as 'random', seed: 1 }), { instanceOf: BackendError, message: /unknown access pattern/ });
  t.throws(() => be.startVcpus({ block: 1, vcpus: 1, pattern: 'random', seed: 1 }), { instanceOf: BackendError });
  t.throws(() => be.startVcpus({ block: 0, vcpus: 1, pattern: 'random', seed: 1.5 }), { instanceOf: BackendError });
  be.startVcpus({ block: 0, vcpus: 1, pattern: 'random', seed: 1, accessesPerVcpu: 1 });
  t.throws(() => be.startVcpus({ block: 0, vcpus: 1, pattern: 'random', seed: 1 }), { instanceOf: BackendError, message: /already running/ });
  t.throws(() => be.stepVcpus(-1), { instanceOf: BackendError });
  be.unregister(0);
  be.stepVcpus(1);
  t.true(be.allVcpusFinished());
  const next = be.startVcpus({ block: 0, vcpus: 2, pattern: 'random', seed: 1 });
  t.deepEqual(next, [FIRST_VCPU_TID + 1, FIRST_VCPU_TID + 2], 'a restart gets new threads');
});
