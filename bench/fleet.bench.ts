/**
 * `fleet.export` and `fleet.summary` (issue 22) over a fleet of 1 000 simulated
 * migrations (bench/fleetBuild.ts: seeds, sizes, vCPUs, workloads, preempt, huge pages,
 * breaks and killed sources vary), built once into bench/.cache/fleet (git-ignored; or the
 * folder FLEET_DIR names, so that checkouts share one fleet) by two worker processes (the
 * machine's two cores) and kept there.
 *
 * - fleet.export: `postcopy export <fleet> --parquet --jobs 2` (two export processes, the
 *   machine's two cores) in a child process, journal events per second, with the largest
 *   peak RSS of its processes (getrusage's high-water mark, each process its own). Baseline, same
 *   run, same journals: the analysis alone (what `inspect` computes per journal), i.e.
 *   the pass the export adds its DuckDB staging and Parquet writing to. Issue goal: 2 M
 *   events/s or more.
 * - fleet.summary: `postcopy fleet <out>` (the summary through DuckDB over every file of
 *   the export), wall time of the whole command, node's start included. Goal: < 5 s.
 *
 * FLEET_BUILD_BUDGET_S limits how long the fleet build may run (the count built is
 * reported; a later run completes the cache). FLEET_BENCH_RUNS: export runs (default 1:
 * one export of the whole fleet takes minutes on a shared two-core machine).
 *
 * Also reported: events per CPU-second of the export process (user + system), which a
 * machine shared with other work changes far less than the wall-clock rate.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { analyzeJournal } from '../src/forensics/analysis.js';
import { JournalReader } from '../src/journal/journalReader.js';
import { exportToParquet } from '../src/io/fleet/parquetExport.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { buildFleet } from './fleetBuild.js';
import { median, type Benchmark } from './harness.js';

const CACHE = join(PACKAGE_ROOT, 'bench', '.cache');
/** The fleet's folder: FLEET_DIR, e.g. a fleet another checkout already built, or bench/.cache/fleet. */
const FLEET = process.env.FLEET_DIR ?? join(CACHE, 'fleet');
const OUT = join(CACHE, 'fleet-parquet');
const JOURNALS = 1000;
const MAIN = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');
const SELF = fileURLToPath(import.meta.url);

function fleetFiles(): string[] {
  return readdirSync(FLEET).filter((f) => f.endsWith('.db')).map((f) => join(FLEET, f));
}

async function ensureFleet(): Promise<{ journals: number; events: number; buildSeconds: number }> {
  const t0 = performance.now();
  const budget = process.env.FLEET_BUILD_BUDGET_S === undefined ? Infinity : Number(process.env.FLEET_BUILD_BUDGET_S);
  await buildFleet(FLEET, JOURNALS, 2, budget);
  const buildSeconds = (performance.now() - t0) / 1000;
  let events = 0;
  const files = fleetFiles();
  for (const f of files) {
    const r = JournalReader.open(f);
    events += r.eventCount();
    r.close();
  }
  return { journals: files.length, events, buildSeconds };
}

interface ChildExport {
  events: number;
  exported: number;
  skipped: number;
  files: number;
  seconds: number;
  cpuSeconds: number;
  maxRssKiB: number;
  rows: Record<string, number>;
}

/** The export in a child process, so its peak RSS is the export's own. */
function exportInChild(): ChildExport {
  const r = spawnSync(process.execPath, [SELF, '--export', FLEET, OUT], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`export child exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildExport;
}

let built: { journals: number; events: number; buildSeconds: number } | null = null;

export const benchmarks: Benchmark[] = [
  {
    name: 'fleet.export',
    description: 'postcopy export of the 1 000-journal bench fleet to Parquet (DuckDB), journal events/s, peak RSS in the notes',
    async run() {
      built ??= await ensureFleet();
      const count = Number(process.env.FLEET_BENCH_RUNS ?? 1);
      const runs: ChildExport[] = [];
      for (let i = 0; i < count; i++) runs.push(exportInChild());
      const rates = runs.map((x) => x.events / x.seconds);
      // Baseline: the same journals through the analysis alone (one pass, no DuckDB).
      const base: number[] = [];
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        let events = 0;
        for (const f of fleetFiles()) {
          const reader = JournalReader.open(f);
          try {
            events += analyzeJournal(reader).journal.events;
          } finally {
            reader.close();
          }
        }
        base.push(events / ((performance.now() - t0) / 1000));
      }
      const last = runs[runs.length - 1]!;
      const rss = Math.max(...runs.map((x) => x.maxRssKiB)) / 1024;
      return {
        median: median(rates),
        unit: 'events/s',
        runs: runs.length,
        higherIsBetter: true,
        baseline: { name: 'analysis alone (analyzeJournal over the same journals)', median: median(base), source: 'measured' },
        notes:
          `${last.exported} journals (${built.journals} in the fleet), ${last.events.toLocaleString('en-US')} events, ${last.files} Parquet files; ` +
          `export ${median(runs.map((x) => x.seconds)).toFixed(1)} s wall, ${median(runs.map((x) => x.cpuSeconds)).toFixed(1)} s CPU (${(median(runs.map((x) => x.events / x.cpuSeconds)) / 1e6).toFixed(2)} M events per CPU-second), peak RSS ${rss.toFixed(0)} MiB; ` +
          `rows ${Object.entries(last.rows).map(([t, n]) => `${t} ${n}`).join(', ')}; fleet built in ${built.buildSeconds.toFixed(0)} s this run (cached); goal 2 M events/s`,
      };
    },
  },
  {
    name: 'fleet.summary',
    description: '`postcopy fleet <export>` summary over the whole bench fleet through DuckDB, wall time of the command (node start included)',
    async run() {
      built ??= await ensureFleet();
      if (readdirSync(join(OUT, 'migrations')).length === 0) exportInChild();
      const secs: number[] = [];
      let migrations = 0;
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const r = spawnSync(process.execPath, [MAIN, 'fleet', OUT, '--json'], { encoding: 'utf8' });
        secs.push((performance.now() - t0) / 1000);
        if (r.status !== 0) throw new Error(`fleet exited ${r.status}: ${r.stderr}`);
        migrations = (JSON.parse(r.stdout) as { rows: Array<{ migrations: number }> }).rows[0]!.migrations;
      }
      const t0 = performance.now();
      const v = spawnSync(process.execPath, [MAIN, '--version'], { encoding: 'utf8' });
      if (v.status !== 0) throw new Error('postcopy --version failed');
      const start = (performance.now() - t0) / 1000;
      return {
        median: median(secs),
        unit: 's',
        runs: secs.length,
        higherIsBetter: false,
        baseline: { name: 'postcopy --version (node start alone)', median: start, source: 'measured' },
        notes: `${migrations} migrations, ${built.events.toLocaleString('en-US')} events in the fleet; goal < 5 s`,
      };
    },
  },
];

if (process.argv[1] === SELF && process.argv[2] === '--export') {
  const [, , , from, to] = process.argv;
  rmSync(to!, { recursive: true, force: true });
  mkdirSync(to!, { recursive: true });
  const s = await exportToParquet([from!], to!, { replace: true, jobs: 2 });
  const out: ChildExport = {
    events: s.events,
    exported: s.exported,
    skipped: s.skipped.length,
    files: s.files,
    seconds: s.seconds,
    cpuSeconds: s.processes.reduce((sum, p) => sum + p.cpuSeconds, 0),
    maxRssKiB: Math.max(process.resourceUsage().maxRSS, ...s.processes.map((p) => p.maxRssKiB)),
    rows: s.rows,
  };
  console.log(JSON.stringify(out));
}
