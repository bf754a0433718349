/**
 * migrate.*: the QEMU fixture's shape — 256 MiB, 2 vCPUs each incrementing one byte per
 * page over its half, unlimited bandwidth, loopback — as a real two-process migration,
 * measured the way the fixtures measure (page request → placement of that page).
 * Baselines: QEMU 7.2's figures on this machine, from ../shared/fixtures/qemu-7.2/README.md.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMigration, type MigrateResult } from '../src/cli/migrateCommand.js';
import { importQemuTrace } from '../src/io/qemu/qemuImport.js';
import { analyzeJournal } from '../src/forensics/analysis.js';
import type { Analysis } from '../src/forensics/analysisTypes.js';
import { JournalReader } from '../src/journal/journalReader.js';
import { median, type Benchmark } from './harness.js';

const RUNS = 5;
/** dist/bench -> repository root -> ../shared/fixtures */
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'fixtures', 'qemu-7.2');

type Run = MigrateResult & { answeredBy: Analysis['requests']['answeredBy'] };

function answeredBy(journal: string): Analysis['requests']['answeredBy'] {
  const j = JournalReader.open(journal);
  try {
    return analyzeJournal(j).requests.answeredBy;
  } finally {
    j.close();
  }
}

async function runs(preempt: boolean): Promise<Run[]> {
  const out: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    const journal = join(tmpdir(), `bench-migrate-${process.pid}-${i}.journal`);
    const r = await runMigration({
      size: '256M', vcpus: '2', workload: 'sequential-increment', bandwidth: '0', dirtyRate: '40000',
      journal, backend: 'auto', faultReader: 'loop', seed: String(i + 1), quiet: true, ...(preempt ? { preempt: true } : {}),
    });
    if (!r.verified) throw new Error(`migration ${i} did not verify: ${r.message}`);
    out.push({ ...r, answeredBy: answeredBy(journal) });
    rmSync(journal, { force: true });
  }
  return out;
}

/** QEMU's preempt fixture imported and analysed in this run: who answered its requests. */
async function qemuPreemptAnswers(): Promise<Analysis['requests']['answeredBy']> {
  const out = join(tmpdir(), `bench-migrate-qemu-${process.pid}.journal`);
  await importQemuTrace({ dstTrace: join(FIXTURES, 'preempt', 'dst-trace.log.gz'), out, overwrite: true });
  try {
    return answeredBy(out);
  } finally {
    rmSync(out, { force: true });
  }
}

const cache = new Map<boolean, Promise<Run[]>>();
const measured = (preempt: boolean): Promise<Run[]> => {
  if (!cache.has(preempt)) cache.set(preempt, runs(preempt));
  return cache.get(preempt)!;
};

function entry(name: string, preempt: boolean, pick: 'p50' | 'p99' | 'total', qemu: number): Benchmark {
  return {
    name,
    description: `${pick === 'total' ? 'migration wall time (s)' : `page request → placement ${pick} (ms) of every request, mostly in-flight answers (the page already on its way; served requests: h2h.*)`}${preempt ? ', preempt' : ''}, 256 MiB, 2 vCPUs`,
    async run() {
      const rs = await measured(preempt);
      const values = rs.map((r) => {
        const l = r.destination!.requestLatency;
        return pick === 'p50' ? l.p50Ns / 1e6 : pick === 'p99' ? l.p99Ns / 1e6 : r.wallMs / 1000;
      });
      const exact = median(rs.map((r) => r.destination!.blocktime.exact.perVcpuBlockedNs.reduce((a, b) => a + b, 0) / 1e6));
      const requests = median(rs.map((r) => r.destination!.stats.requests));
      return {
        median: median(values),
        unit: pick === 'total' ? 's' : 'ms',
        runs: rs.length,
        higherIsBetter: false,
        baseline: { name: `QEMU 7.2${preempt ? ' preempt' : ''} (fixture)`, median: qemu, source: 'published' },
        notes: `${pick === 'total' ? '' : 'in-flight answers mostly (every request, the page mostly already on its way; served requests: h2h.*); '}median over ${rs.length} runs; runs: ${values.map((v) => v.toFixed(3)).join(', ')}; ~${requests} requests per run; exact blocktime summed over vCPUs ${exact.toFixed(1)} ms (median)`,
      };
    },
  };
}

/** Bandwidth-capped postcopy, where the vCPUs outrun the push: prefetch on (default) against off, alternating in one run. */
const CAPPED_RUNS = 3;
async function cappedBlocktime(): Promise<{ on: number[]; off: number[]; requestsOn: number[]; requestsOff: number[] }> {
  const r = { on: [] as number[], off: [] as number[], requestsOn: [] as number[], requestsOff: [] as number[] };
  for (let i = 0; i < CAPPED_RUNS; i++) {
    for (const prefetch of ['32', '0']) {
      const journal = join(tmpdir(), `bench-migrate-capped-${process.pid}-${i}.journal`);
      const m = await runMigration({
        size: '256M', vcpus: '2', workload: 'sequential-increment', bandwidth: '100M', dirtyRate: '40000', prefetch,
        journal, backend: 'auto', faultReader: 'loop', seed: String(i + 1), quiet: true,
      });
      rmSync(journal, { force: true });
      if (!m.verified) throw new Error(`capped migration ${i} (prefetch ${prefetch}) did not verify: ${m.message}`);
      const exact = m.destination!.blocktime.exact.perVcpuBlockedNs.reduce((a, b) => a + b, 0) / 1e6;
      (prefetch === '0' ? r.off : r.on).push(exact);
      (prefetch === '0' ? r.requestsOff : r.requestsOn).push(m.destination!.stats.requests);
    }
  }
  return r;
}

/**
 * The QEMU wire against the project's own framing, before and after in one run: set
 * POSTCOPY_BENCH_BASE to a built tree of the commit before the change (its `migrate` still
 * speaks the own framing with ACK frames); the same migrations then run alternately through
 * that tree's CLI and this one's, and both journals are analysed here.
 * - served: preempt, push capped at 100 MiB/s, --prefetch 0, so the preempt channel carries
 *   only requested pages, each sent after its request: request → placement of those;
 * - exact blocktime (summed over vCPUs) and all requests' p99, in that shape and in the
 *   default one (plain, unlimited);
 * - the same in a plain, unlimited shape whose postcopy has a fixed size: --dirty-rate 400000
 *   laps the guest's RAM many times during precopy, so nearly all of it is dirty at the switch.
 *   The default shape's guest dirties 40 000 pages/s, about the speed of the precopy pass
 *   itself, so what is left for postcopy swings from ~2 000 to ~38 000 pages between runs of
 *   the same tree (pages dirtied ahead of the pass are sent by it, those behind are not), so
 *   postcopy pages per run are in the notes: read its blocktime beside them;
 * - the same in a plain shape capped at 100 MiB/s (`capped`): both trees' precopy then lasts
 *   as long (unlimited, the wire's is the faster), so the guest leaves the same pages dirty
 *   at the switch and the vCPUs meet them at the same places; its many requests (1 400–2 600
 *   per run) are the plain channel's request path compared on equal ground. Precopy ms per
 *   run are in every shape's notes.
 */
const BASE_TREE = process.env.POSTCOPY_BENCH_BASE;
const HEAD_TREE = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const AB_ROUNDS = Number(process.env.POSTCOPY_BENCH_AB_ROUNDS ?? 4);

interface AbRun {
  servedP50: number;
  servedP99: number;
  served: number;
  blocktime: number;
  p99: number;
  wallMs: number;
  postcopyPages: number;
  precopyMs: number;
}

function cliMigrate(tree: string, args: string[], journal: string): Promise<{ blocktime: number; p99: number; wallMs: number; postcopyPages: number; precopyMs: number }> {
  return new Promise((resolve, reject) => {
    execFile('node', [join(tree, 'dist', 'src', 'cli', 'main.js'), 'migrate', ...args, '--journal', journal, '--force', '--json'], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        let said = stderr.trim().split('\n').slice(-3).join(' | ');
        try {
          said += ` ${(JSON.parse(stdout) as { message?: string }).message ?? ''}`;
        } catch {
          said += ` ${stdout.slice(0, 300)}`;
        }
        return reject(new Error(`${tree}: migrate ${args.join(' ')}: exit ${String(err.code)}: ${said}`));
      }
      const r = JSON.parse(stdout) as { verified: boolean; wallMs: number; source: { counters: { postcopyPages: number }; precopyMs: number }; destination: { requestLatency: { p99Ms: number }; blocktime: { exact: { perVcpuBlockedMs: number[] } } } };
      if (!r.verified) return reject(new Error(`${tree}: migrate did not verify`));
      resolve({ blocktime: r.destination.blocktime.exact.perVcpuBlockedMs.reduce((a, b) => a + b, 0), p99: r.destination.requestLatency.p99Ms, wallMs: r.wallMs, postcopyPages: r.source.counters.postcopyPages, precopyMs: r.source.precopyMs });
    });
  });
}

type Shape = 'served' | 'default' | 'full' | 'capped';
const SHAPES: Record<Shape, string[]> = {
  served: ['--size', '256M', '--vcpus', '2', '--preempt', '--bandwidth', '100M', '--prefetch', '0'],
  default: ['--size', '256M', '--vcpus', '2'],
  full: ['--size', '256M', '--vcpus', '2', '--dirty-rate', '400000'],
  capped: ['--size', '256M', '--vcpus', '2', '--bandwidth', '100M'],
};
const SHAPE_ORDER = Object.keys(SHAPES) as Shape[];

let abCache: Promise<Record<'base' | 'head', Record<Shape, AbRun[]>> & { failures: string[] }> | null = null;
function abRuns(): Promise<Record<'base' | 'head', Record<Shape, AbRun[]>> & { failures: string[] }> {
  abCache ??= (async () => {
    const runs = (): Record<Shape, AbRun[]> => ({ served: [], default: [], full: [], capped: [] });
    const out = { base: runs(), head: runs(), failures: [] as string[] };
    const failures = out.failures;
    for (let round = 0; round < AB_ROUNDS; round++) {
      for (const shape of SHAPE_ORDER) {
        // Alternate which tree goes first, so neither always runs on a warmer machine.
        const order = round % 2 === 0 ? (['base', 'head'] as const) : (['head', 'base'] as const);
        for (const tree of order) {
          const journal = join(tmpdir(), `bench-wire-${process.pid}-${tree}.journal`);
          const args = [...SHAPES[shape], '--seed', String(round + 1)];
          const treeDir = tree === 'base' ? BASE_TREE! : HEAD_TREE;
          // A run that fails is said and run again once; twice, it gives no figure (either way it is in the notes).
          const attempt = (): Promise<Awaited<ReturnType<typeof cliMigrate>> | null> =>
            cliMigrate(treeDir, args, journal).catch((err: Error) => {
              failures.push(`${tree}: ${err.message}`);
              return null;
            });
          const m = (await attempt()) ?? (await attempt());
          if (m === null) continue; // failed twice: said in the notes, no figure
          const served = answeredBy(journal).preempt;
          rmSync(journal, { force: true });
          out[tree][shape].push({ servedP50: served.p50Ms, servedP99: served.p99Ms, served: served.count, ...m });
        }
      }
    }
    return out;
  })();
  return abCache;
}

/**
 * The runs of each tree whose precopy took as long as some run of the other: `migrate`'s guest
 * dirties by wall time, laps its RAM every 1.64 s (65 536 pages at 40 000/s) and so leaves a
 * different set of pages for postcopy after a faster or slower precopy; runs within the
 * precopy range both trees covered moved comparable postcopies.
 */
function precopyMatched(head: AbRun[], base: AbRun[], pick: keyof AbRun): string {
  const span = (runs: AbRun[]): [number, number] => [Math.min(...runs.map((x) => x.precopyMs)), Math.max(...runs.map((x) => x.precopyMs))];
  if (head.length === 0 || base.length === 0) return 'no runs to match';
  const [hLo, hHi] = span(head);
  const [bLo, bHi] = span(base);
  const [from, to] = [Math.max(hLo, bLo), Math.min(hHi, bHi)];
  if (from > to) return `no precopy time common to both trees (wire ${hLo}–${hHi} ms, own ${bLo}–${bHi} ms)`;
  const within = (runs: AbRun[]): number[] => runs.filter((x) => x.precopyMs >= from && x.precopyMs <= to).map((x) => x[pick]);
  const [h, b] = [within(head), within(base)];
  return `runs whose precopy took ${from}–${to} ms (the range both trees covered): wire median ${median(h).toFixed(3)} of ${h.length}, own ${median(b).toFixed(3)} of ${b.length}`;
}

function abEntry(name: string, shape: Shape, pick: keyof AbRun, description: string): Benchmark {
  return {
    name,
    description,
    async run() {
      const r = await abRuns();
      // A run without served requests has no served latency (not 0): it is left out of those figures.
      const counts = (x: AbRun): boolean => !pick.startsWith('served') || x.served > 0;
      const head = r.head[shape].filter(counts).map((x) => x[pick]);
      const base = r.base[shape].filter(counts).map((x) => x[pick]);
      return {
        median: median(head),
        unit: 'ms',
        runs: head.length,
        higherIsBetter: false,
        baseline: { name: `the own framing with ACK frames (f638c04), alternating in this run`, median: median(base), source: 'measured' },
        notes: `QEMU wire: ${head.map((v) => v.toFixed(3)).join(', ')}; own framing: ${base.map((v) => v.toFixed(3)).join(', ')}; ${precopyMatched(r.head[shape].filter(counts), r.base[shape].filter(counts), pick)}; served requests per run: wire ${r.head[shape].map((x) => x.served).join(', ')}, own ${r.base[shape].map((x) => x.served).join(', ')}; postcopy pages per run: wire ${r.head[shape].map((x) => x.postcopyPages).join(', ')}, own ${r.base[shape].map((x) => x.postcopyPages).join(', ')}; precopy ms: wire ${r.head[shape].map((x) => x.precopyMs).join(', ')}, own ${r.base[shape].map((x) => x.precopyMs).join(', ')}; wall ms: wire ${r.head[shape].map((x) => x.wallMs).join(', ')}, own ${r.base[shape].map((x) => x.wallMs).join(', ')}; runs that failed and were run again: ${r.failures.length === 0 ? 'none' : r.failures.join('; ')}`,
      };
    },
  };
}

const wireAgainstOwnFraming: Benchmark[] = BASE_TREE === undefined ? [] : [
  abEntry('migrate.wire.served.p50', 'served', 'servedP50', 'served requests (answered by a page sent after the request) request → placement p50 (ms); preempt, 100 MiB/s, --prefetch 0, 256 MiB, 2 vCPUs'),
  abEntry('migrate.wire.served.p99', 'served', 'servedP99', 'served requests request → placement p99 (ms); preempt, 100 MiB/s, --prefetch 0, 256 MiB, 2 vCPUs'),
  abEntry('migrate.wire.served.blocktime', 'served', 'blocktime', 'exact blocktime summed over vCPUs (ms); preempt, 100 MiB/s, --prefetch 0, 256 MiB, 2 vCPUs'),
  abEntry('migrate.wire.default.blocktime', 'default', 'blocktime', 'exact blocktime summed over vCPUs (ms); plain, unlimited, 256 MiB, 2 vCPUs'),
  abEntry('migrate.wire.default.p99', 'default', 'p99', 'all requests request → placement p99 (ms); plain, unlimited, 256 MiB, 2 vCPUs'),
  abEntry('migrate.wire.full.blocktime', 'full', 'blocktime', 'exact blocktime summed over vCPUs (ms); plain, unlimited, 256 MiB, 2 vCPUs, --dirty-rate 400000 (nearly all RAM left for postcopy)'),
  abEntry('migrate.wire.full.p99', 'full', 'p99', 'all requests request → placement p99 (ms); plain, unlimited, 256 MiB, 2 vCPUs, --dirty-rate 400000'),
  abEntry('migrate.wire.capped.blocktime', 'capped', 'blocktime', 'exact blocktime summed over vCPUs (ms); plain, 100 MiB/s (precopy as long in both trees: the same pages left at the switch), 256 MiB, 2 vCPUs'),
  abEntry('migrate.wire.capped.p99', 'capped', 'p99', 'all requests request → placement p99 (ms); plain, 100 MiB/s, 256 MiB, 2 vCPUs'),
];

export const benchmarks: Benchmark[] = [
  ...wireAgainstOwnFraming,
  {
    name: 'migrate.capped.blocktime',
    description: 'exact blocktime summed over vCPUs (ms), 256 MiB, 2 vCPUs, postcopy capped at 100 MiB/s, prefetch 32 pages against --prefetch 0',
    async run() {
      const r = await cappedBlocktime();
      return {
        median: median(r.on),
        unit: 'ms',
        runs: r.on.length,
        higherIsBetter: false,
        baseline: { name: 'the same migration with --prefetch 0', median: median(r.off), source: 'measured' },
        notes: `runs alternate; prefetch on: ${r.on.map((v) => v.toFixed(0)).join(', ')} ms (~${median(r.requestsOn)} requests); off: ${r.off.map((v) => v.toFixed(0)).join(', ')} ms (~${median(r.requestsOff)} requests)`,
      };
    },
  },
  entry('migrate.fault.p50', false, 'p50', 0.054),
  entry('migrate.fault.p99', false, 'p99', 23.34),
  entry('migrate.total', false, 'total', 3.06),
  entry('migrate.preempt.fault.p50', true, 'p50', 0.047),
  entry('migrate.preempt.fault.p99', true, 'p99', 26.22),
  {
    name: 'migrate.preempt.urgent.p50',
    description: 'page request → placement p50 (ms) of the requests answered on the preempt channel (the urgent path), 256 MiB, 2 vCPUs',
    async run() {
      const rs = await measured(true);
      const q = await qemuPreemptAnswers();
      // A run whose requests were all answered by the main channel has no urgent p50 (not 0).
      const served = rs.filter((r) => r.answeredBy.preempt.count > 0);
      const p50 = served.map((r) => r.answeredBy.preempt.p50Ms);
      const max = served.map((r) => r.answeredBy.preempt.maxMs);
      const main = rs.map((r) => r.answeredBy.main);
      return {
        median: served.length > 0 ? median(p50) : Number.NaN,
        unit: 'ms',
        runs: served.length,
        higherIsBetter: false,
        baseline: { name: `QEMU 7.2 preempt fixture, imported and analysed in this run (${q.preempt.count} of ${q.preempt.count + q.main.count} requests urgent)`, median: q.preempt.p50Ms, source: 'measured' },
        notes: `${served.length} of ${rs.length} runs had urgent answers (${rs.map((r) => r.answeredBy.preempt.count).join(', ')} per run); their p50s: ${p50.map((v) => v.toFixed(3)).join(', ') || 'none'}; max ${served.length > 0 ? median(max).toFixed(2) : '-'} ms (QEMU ${q.preempt.maxMs.toFixed(2)} ms); ~${median(rs.map((r) => r.answeredBy.preempt.count))} urgent and ~${median(main.map((m) => m.count))} main-channel answers per run (main p50 ${median(main.map((m) => m.p50Ms)).toFixed(3)} ms; QEMU's ${q.main.count} main-channel answers p50 ${q.main.p50Ms.toFixed(3)} ms)`,
      };
    },
  },
];
