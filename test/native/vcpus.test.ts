import { BackendError } from '../../src/errors.js';
import type { VcpuOptions } from '../../src/native/native.js';
import { UffdBackend } from '../../src/io/backends/uffdBackend.js';
import { PAGE, layout, startPager, uffdTest } from './helpers.js';

/** Runs a pattern over zero-served memory and returns the first byte of every page. */
async function run(pages: number, options: VcpuOptions): Promise<{ counts: number[]; faults: number; accesses: number[] }> {
  const backend = new UffdBackend([layout('pc.ram', pages)]);
  try {
    const zeros = new Set<string>();
    for (let p = 0; p < pages; p++) zeros.add(`0:${p * PAGE}`);
    const pager = startPager(backend, [new Uint8Array(0)], zeros);
    backend.register(0);
    const r = backend.startVcpus(options);
    const reports = await r.done;
    backend.unregister(0); // pages never touched are still missing: read them as zeros
    const mem = backend.read(0, 0, pages * PAGE);
    const counts: number[] = [];
    for (let p = 0; p < pages; p++) counts.push(mem[p * PAGE]!);
    // Every fault came from one of the vCPUs, and only missing pages faulted.
    for (const f of pager.faults) if (!r.tids.includes(f.tid)) throw new Error(`fault from tid ${f.tid}`);
    return { counts, faults: pager.faults.length, accesses: reports.map((x) => x.accesses) };
  } finally {
    backend.close();
  }
}

uffdTest('random is seeded: the same seed touches the same pages the same number of times', async (t) => {
  const options: VcpuOptions = { pattern: 'random', vcpus: 2, iterations: 500, seed: 42 };
  const a = await run(128, options);
  const b = await run(128, options);
  const c = await run(128, { ...options, seed: 43 });
  t.deepEqual(a.counts, b.counts);
  t.notDeepEqual(a.counts, c.counts);
  t.deepEqual(a.accesses, [500, 500]);
  t.is(a.counts.reduce((s, x) => s + x, 0), 1000);
  // Each vCPU stays in its half: each half received exactly its vCPU's accesses.
  t.is(a.counts.slice(0, 64).reduce((s, x) => s + x, 0), 500);
  t.is(a.faults, a.counts.filter((x) => x > 0).length);
});

uffdTest('hot-set sends most accesses to a small seeded set of pages', async (t) => {
  const r = await run(256, { pattern: 'hot-set', vcpus: 1, iterations: 800, hotSetPages: 8, hotFraction: 0.9, seed: 5 });
  const sorted = [...r.counts].sort((a, b) => b - a);
  const hot = sorted.slice(0, 8).reduce((s, x) => s + x, 0);
  t.log(`top 8 pages took ${hot} of 800 accesses`);
  t.true(hot >= 0.8 * 800);
  t.is(r.counts.reduce((s, x) => s + x, 0), 800);
});

uffdTest('random with durationMs runs for a while and ends by itself', async (t) => {
  const r = await run(64, { pattern: 'random', vcpus: 2, durationMs: 30, seed: 1 });
  t.true(r.accesses.every((n) => n > 0));
});

uffdTest('sequential-increment makes the requested number of passes, like the bootblock guest', async (t) => {
  const r = await run(32, { pattern: 'sequential-increment', vcpus: 2, passes: 5 });
  t.deepEqual(r.counts, new Array(32).fill(5));
  t.is(r.faults, 32);
  t.deepEqual(r.accesses, [80, 80]);
});

uffdTest('bad vCPU configurations are refused', (t) => {
  const backend = new UffdBackend([layout('pc.ram', 4)]);
  try {
    t.throws(() => backend.startVcpus({ pattern: 'nope' as never }), { instanceOf: BackendError, message: /unknown access pattern/ });
    t.throws(() => backend.startVcpus({ vcpus: 5 }), { instanceOf: BackendError, message: /cannot share/ });
    t.throws(() => backend.startVcpus({ block: 1 }), { instanceOf: BackendError });
    t.throws(() => backend.startVcpus({ offset: 100 }), { instanceOf: BackendError });
    t.false(backend.status().vcpusActive);
  } finally {
    backend.close();
  }
});
