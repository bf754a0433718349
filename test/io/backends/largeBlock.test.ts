import test from 'ava';
import { PlaceOutcome } from '../../../src/engine/ports.js';
import { MockBackend } from '../../../src/io/backends/mockBackend.js';
import { faultsOf, MiB, PAGE } from './helpers.js';

// Alone in its file: ava runs a file's tests concurrently, which would blur the memory figure.
test('a 1 TiB block (2^28 pages) is created, placed into and read with far less memory than its size', (t) => {
  const TiB = 2 ** 40;
  const before = process.memoryUsage().arrayBuffers;
  const be = new MockBackend([{ name: 'pc.ram', length: TiB, hostPageSize: PAGE }]);
  const batches: Parameters<Parameters<MockBackend['listen']>[0]>[0][] = [];
  be.listen((b) => batches.push(b));
  be.register(0);

  const page = new Uint8Array(PAGE).map((_, i) => (i * 13) & 0xff);
  t.is(be.copy(0, TiB - PAGE, page, 0, PAGE), PlaceOutcome.PLACED);
  t.is(be.zero(0, TiB / 2, PAGE), PlaceOutcome.PLACED);
  t.is(be.copy(0, TiB - PAGE, page, 0, PAGE), PlaceOutcome.ALREADY_PRESENT);
  t.deepEqual(be.read(0, TiB - PAGE, PAGE), page);
  t.deepEqual(be.read(0, TiB / 2, PAGE), new Uint8Array(PAGE));
  t.is(be.presentPageCount(0), 2);
  t.is(be.allocatedBytes(0), 2 * MiB, 'one chunk for the copied page, none for the zero page');

  // vCPUs roam the whole terabyte; their faults land inside it.
  be.startVcpus({ block: 0, vcpus: 4, pattern: 'random', seed: 5, accessesPerVcpu: 10 });
  be.stepVcpus(1, 1);
  const faults = faultsOf(batches);
  t.is(faults.length, 4);
  for (const f of faults) t.true(f.address >= be.hostAddress(0) && f.address < be.hostAddress(0) + TiB);

  const grown = process.memoryUsage().arrayBuffers - before;
  t.true(grown < 64 * MiB, `arrayBuffers grew by ${(grown / MiB).toFixed(1)} MiB`);

  // Emptying the whole block (what ADVISE does) is cheap and complete.
  be.unregister(0);
  be.discard(0, 0, TiB);
  t.is(be.presentPageCount(0), 0);
  t.is(be.allocatedBytes(0), 0);
  t.deepEqual(be.read(0, TiB - PAGE, PAGE), new Uint8Array(PAGE));
});
