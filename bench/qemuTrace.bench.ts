/**
 * QEMU trace import speed and the blocktime models' per-page cost.
 *
 * - `import.qemu.parse`: lines/s of readTrace parsing every event of the largest capture
 *   (preempt dst, 209 453 lines, gzip). Baseline, same run, same .gz: a readline loop
 *   over the gunzipped stream that only counts lines. (The whole import, journal
 *   included, is `import.qemu` in import.bench.ts.)
 * - `blocktime.qemu.end` / `blocktime.exact.placed`: placed pages/s through each model,
 *   2 vCPUs, one fault every 64 pages (most placements have no waiter, as in the
 *   captures). Baseline, same run: setting one bitmap bit per page, the least
 *   bookkeeping any placement does.
 */
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { ExactBlocktime } from '../src/engine/blocktimeExact.js';
import { QemuBlocktime } from '../src/engine/blocktimeQemu.js';
import { readTrace } from '../src/io/qemu/qemuTrace.js';
import { median, timeRuns, type Benchmark } from './harness.js';
import { PACKAGE_ROOT } from '../src/paths.js';

const TRACE = join(PACKAGE_ROOT, '..', 'shared', 'fixtures', 'qemu-7.2', 'preempt', 'dst-trace.log.gz');

async function timeAsync(runs: number, fn: () => Promise<void>): Promise<number[]> {
  await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return out;
}

async function countLinesWithReadline(path: string): Promise<number> {
  let n = 0;
  const rl = createInterface({ input: createReadStream(path).pipe(createGunzip()), crlfDelay: Infinity });
  for await (const _line of rl) n++;
  return n;
}

const PAGES = 2_000_000;
const FAULT_EVERY = 64;
const BASE = 0x7f0000000000;

/** Pages in placement order; every FAULT_EVERY-th page is first faulted on by a vCPU. */
function runQemu(): void {
  const m = new QemuBlocktime(2, 0);
  for (let i = 0; i < PAGES; i++) {
    const addr = BASE + i * 4096;
    const t = i * 1000;
    if (i % FAULT_EVERY === 0) m.begin((i / FAULT_EVERY) & 1, addr, t - 500, false);
    m.end(addr, t);
  }
  if (m.totalMs < 0) throw new Error('unreachable');
}

function runExact(): void {
  const m = new ExactBlocktime(2);
  for (let i = 0; i < PAGES; i++) {
    const key = BASE + i * 4096;
    const t = i * 1000;
    if (i % FAULT_EVERY === 0) m.fault((i / FAULT_EVERY) & 1, key, key, t - 500);
    m.placed(key, t);
  }
  if (m.totalNs < 0) throw new Error('unreachable');
}

function runBitmapBaseline(): void {
  const bits = new Uint8Array(PAGES >> 3);
  for (let i = 0; i < PAGES; i++) bits[i >> 3]! |= 1 << (i & 7);
  if (bits[0] === 2) throw new Error('unreachable');
}

function pagesPerSecond(fn: () => void): number {
  return PAGES / median(timeRuns(5, fn));
}

export const benchmarks: Benchmark[] = [
  {
    name: 'import.qemu.parse',
    description: 'QEMU 7.2 trace lines parsed per second (every event, gzip input)',
    async run() {
      if (!existsSync(TRACE)) throw new Error(`fixture missing: ${TRACE}`);
      let lines = 0;
      const ours = await timeAsync(5, async () => {
        lines = (await readTrace(TRACE, () => {})).lines;
      });
      let counted = 0;
      const baseline = await timeAsync(5, async () => {
        counted = await countLinesWithReadline(TRACE);
      });
      if (counted !== lines) throw new Error(`line counts differ: ${lines} vs ${counted}`);
      return {
        median: lines / median(ours),
        unit: 'lines/s',
        runs: 5,
        higherIsBetter: true,
        baseline: { name: 'readline counting lines', median: counted / median(baseline), source: 'measured' },
        notes: `preempt/dst-trace.log.gz, ${lines} lines, gunzip included in both`,
      };
    },
  },
  {
    name: 'blocktime.qemu.end',
    description: 'placed pages/s through the qemu-mode blocktime model',
    run() {
      return {
        median: pagesPerSecond(runQemu),
        unit: 'pages/s',
        runs: 5,
        higherIsBetter: true,
        baseline: { name: 'one bitmap bit per page', median: pagesPerSecond(runBitmapBaseline), source: 'measured' },
        notes: `2 vCPUs, a fault every ${FAULT_EVERY} pages, ${PAGES} pages`,
      };
    },
  },
  {
    name: 'blocktime.exact.placed',
    description: 'placed pages/s through the exact-mode blocktime model',
    run() {
      return {
        median: pagesPerSecond(runExact),
        unit: 'pages/s',
        runs: 5,
        higherIsBetter: true,
        baseline: { name: 'one bitmap bit per page', median: pagesPerSecond(runBitmapBaseline), source: 'measured' },
        notes: `2 vCPUs, a fault every ${FAULT_EVERY} pages, ${PAGES} pages`,
      };
    },
  },
];
