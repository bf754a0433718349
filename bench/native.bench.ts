/**
 * Benchmarks of the native userfaultfd backend, each beside a baseline measured in the
 * same run:
 * - fault.local.roundtrip*: a vCPU thread touches a missing page -> fault read ->
 *   JavaScript handler -> UFFDIO_COPY (page already at hand) -> the vCPU resumes; p50 of
 *   the per-touch latency, beside bench/c/uffd_roundtrip.c (a C handler thread doing
 *   the same with no JavaScript), compiled here with the system `cc` into bench/.build/.
 *   Both sides are pinned the same way: one core (everything on CPU 0) or two cores (the
 *   vCPU on CPU 0, the handler side — JavaScript thread and fault reader — on CPU 1).
 * - uffd.copy.4k / uffd.copy.2m: placements per second from a JavaScript loop calling
 *   copy() per page, beside the same ioctls in a native loop (no JavaScript per call).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlockLayout } from '../src/engine/ports.js';
import { loadNative } from '../src/native/native.js';
import { UffdBackend, type UffdBackendOptions } from '../src/io/backends/uffdBackend.js';
import { median, quantile, type Benchmark, type BenchResult } from './harness.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PAGE = 4096;
const HUGE = 2 << 20;
const ROUNDTRIP_PAGES = 2000;
const ROUNDTRIP_RUNS = 7;

interface Latency {
  p50: number;
  p99: number;
}

/** Compiles bench/c/<name>.c into bench/.build/<name> when the binary is missing or stale. */
function cProgram(name: string): string {
  const src = join(root, 'bench', 'c', `${name}.c`);
  const out = join(root, 'bench', '.build', name);
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(dirname(out), { recursive: true });
    execFileSync('cc', ['-O2', '-pthread', '-o', out, src], { stdio: 'inherit' });
  }
  return out;
}

function cRoundtrip(vcpuCpu: number, handlerCpu: number, spin: boolean): Latency {
  const out = execFileSync(cProgram('uffd_roundtrip'), [String(ROUNDTRIP_PAGES), String(vcpuCpu), String(handlerCpu), spin ? '1' : '0'], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as Latency;
}

/** One run of the JavaScript round trip; the calling thread is pinned to `handlerCpu` meanwhile. */
async function jsRoundtrip(vcpuCpu: number, handlerCpu: number, options: UffdBackendOptions): Promise<Latency> {
  const native = loadNative();
  const affinity = native.threadAffinity();
  native.pinThread([handlerCpu]);
  const backend = new UffdBackend([{ name: 'ram', length: ROUNDTRIP_PAGES * PAGE, hostPageSize: PAGE }], {
    ...options,
    readerCpus: [handlerCpu],
  });
  try {
    const page = new Uint8Array(PAGE).fill(0x5a);
    const base = backend.hostAddress(0);
    backend.listen((batch) => {
      for (let i = 0; i < batch.count; i++) {
        const offset = batch.addresses[i]! - base;
        backend.copy(0, offset - (offset % PAGE), page, 0, PAGE);
      }
    });
    backend.register(0);
    const [report] = await backend.startVcpus({ vcpus: 1, cpus: [vcpuCpu], latencySamples: ROUNDTRIP_PAGES }).done;
    const sorted = Float64Array.from(report!.latenciesNs).sort();
    return { p50: quantile(sorted, 0.5) / 1000, p99: quantile(sorted, 0.99) / 1000 };
  } finally {
    backend.close();
    native.pinThread(affinity);
  }
}

function requireUffd(): void {
  const report = UffdBackend.probe([{ name: 'ram', length: PAGE, hostPageSize: PAGE }]);
  if (!report.ok) throw new Error(`userfaultfd is refused on this host: ${report.reason}`);
}

function roundtripBenchmark(name: string, placement: 'one core' | 'two cores', options: UffdBackendOptions, cSpin: boolean): Benchmark {
  const reader = `${options.readerMode ?? 'thread'} reader${options.spinUs ? `, spin ${options.spinUs} µs` : ''}`;
  return {
    name,
    description: `vCPU fault -> ${reader} -> JS handler -> UFFDIO_COPY -> vCPU resumes, ${placement}; p50 µs`,
    async run(): Promise<BenchResult> {
      requireUffd();
      const twoCpus = cpus().length >= 2;
      const vcpuCpu = 0;
      const handlerCpu = placement === 'two cores' && twoCpus ? 1 : 0;
      const js: Latency[] = [];
      const c: Latency[] = [];
      for (let i = 0; i < ROUNDTRIP_RUNS; i++) {
        c.push(cRoundtrip(vcpuCpu, handlerCpu, cSpin));
        js.push(await jsRoundtrip(vcpuCpu, handlerCpu, options));
      }
      const p99 = median(js.map((x) => x.p99));
      const cP99 = median(c.map((x) => x.p99));
      return {
        median: median(js.map((x) => x.p50)),
        unit: 'µs',
        runs: ROUNDTRIP_RUNS,
        higherIsBetter: false,
        baseline: { name: `C handler thread${cSpin ? ' (spinning)' : ' (poll)'}`, median: median(c.map((x) => x.p50)), source: 'measured' },
        notes:
          `${reader}; vCPU on CPU ${vcpuCpu}, handler side on CPU ${handlerCpu}${twoCpus ? '' : ' (only one CPU here)'}; ` +
          `${ROUNDTRIP_PAGES} faults per run; p99 ${p99.toFixed(1)} µs (C ${cP99.toFixed(1)} µs)`,
      };
    },
  };
}

/** Reserves hugetlbfs pages when root allows; returns how to undo it, or undefined. */
function reserveHugetlb(pages: number): (() => void) | undefined {
  const native = loadNative();
  if (native.hugePageSupport().hugetlbfs.free >= pages) return () => {};
  const path = '/proc/sys/vm/nr_hugepages';
  try {
    const original = readFileSync(path, 'utf8').trim();
    writeFileSync(path, String(Number(original) + pages));
    const undo = () => writeFileSync(path, original);
    if (native.hugePageSupport().hugetlbfs.free >= pages) return undo;
    undo();
  } catch {
    // not root, or no hugetlbfs: fall back to transparent huge pages
  }
  return undefined;
}

/**
 * Copies every host page of a registered block, alternately from JavaScript (one copy()
 * per page) and from the addon's native loop; returns pages/s (in 4 KiB equivalents).
 */
function copyRate(layout: BlockLayout, runs: number): { js: number[]; native: number[] } {
  const backend = new UffdBackend([layout]);
  try {
    backend.listen(() => {});
    backend.register(0);
    const hps = layout.hostPageSize;
    const count = layout.length / hps;
    const source = new Uint8Array(hps).fill(0x42);
    const equivalents = layout.length / PAGE;
    const js: number[] = [];
    const native: number[] = [];
    for (let r = 0; r < runs + 1; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < count; i++) backend.copy(0, i * hps, source, 0, hps);
      const jsSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      backend.discard(0, 0, layout.length);
      const loop = backend.copyLoop(0, 0, count, source);
      backend.discard(0, 0, layout.length);
      if (r === 0) continue; // warm-up
      js.push(equivalents / jsSeconds);
      native.push(equivalents / (loop.ns / 1e9));
    }
    return { js, native };
  } finally {
    backend.close();
  }
}

export const benchmarks: Benchmark[] = [
  roundtripBenchmark('fault.local.roundtrip', 'one core', { readerMode: 'loop' }, false),
  roundtripBenchmark('fault.local.roundtrip.2cores', 'two cores', { readerMode: 'loop' }, false),
  roundtripBenchmark('fault.local.roundtrip.2cores.spin', 'two cores', { readerMode: 'loop', spinUs: 100 }, true),
  roundtripBenchmark('fault.local.roundtrip.thread', 'one core', { readerMode: 'thread' }, false),
  roundtripBenchmark('fault.local.roundtrip.thread.2cores', 'two cores', { readerMode: 'thread' }, false),
  roundtripBenchmark('fault.local.roundtrip.thread.2cores.spin', 'two cores', { readerMode: 'thread', spinUs: 100 }, true),
  {
    name: 'uffd.copy.4k',
    description: 'UFFDIO_COPY of 4 KiB pages from a JavaScript loop (copy() per page); pages/s',
    run(): BenchResult {
      requireUffd();
      const runs = 5;
      const r = copyRate({ name: 'ram', length: 64 << 20, hostPageSize: PAGE }, runs);
      return {
        median: median(r.js),
        unit: 'pages/s',
        runs,
        higherIsBetter: true,
        baseline: { name: 'addon loop, no JS per call', median: median(r.native), source: 'measured' },
        notes: '64 MiB registered block, copied whole then discarded, per run',
      };
    },
  },
  {
    name: 'uffd.copy.2m',
    description: 'UFFDIO_COPY of 2 MiB huge pages from a JavaScript loop; 4 KiB-equivalents/s',
    run(): BenchResult {
      requireUffd();
      const runs = 5;
      const hugePages = 32;
      const undo = reserveHugetlb(hugePages);
      const hugetlbfs = undo !== undefined;
      try {
        const r = copyRate({ name: 'ram', length: hugePages * HUGE, hostPageSize: HUGE, hugetlbfs }, runs);
        return {
          median: median(r.js),
          unit: 'pages/s',
          runs,
          higherIsBetter: true,
          baseline: { name: 'addon loop, no JS per call', median: median(r.native), source: 'measured' },
          notes: `${hugePages} x 2 MiB per run, ${hugetlbfs ? 'hugetlbfs pages (reserved for the run)' : 'transparent huge pages (hugetlbfs pages unavailable): the kernel places them 4 KiB at a time'}; in 4 KiB equivalents`,
        };
      } finally {
        undo?.();
      }
    },
  },
];
