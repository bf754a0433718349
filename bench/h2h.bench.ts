/**
 * `h2h.<shape>.<mode>.*`: head to head with QEMU on this machine (issue 21). For each shape
 * (unlimited; postcopy capped at 32 MiB/s; random access capped at 32 MiB/s) and mode (plain,
 * preempt), alternating in one run, H2H_RUNS times (default 3):
 *
 * - QEMU 7.2 → tap → QEMU 7.2 and QEMU 10.0 → tap → QEMU 10.0 (bootblock guest, 256 MiB,
 *   2 vCPUs, postcopy after 2 dirty syncs; bootblock-random for the random shape);
 * - QEMU 10.0 → tap → `postcopy receive`;
 * - our `migrate` in the same shape (--workload bootblock / bootblock-random).
 *
 * The same `postcopy tap` code measures every peer at the wire: our migrate speaks QEMU's wire
 * and runs through the tap too (`migrate --tap-journal`), so its served-request figures come from
 * the same analysis of the same kind of journal as QEMU's. Its blocktime is exact, from its own
 * destination journal (QEMU's is QEMU's own accounting, from query-migrate).
 *
 * Each figure is reported as a BenchResult (ours, against QEMU 10.0's in the same run) and in
 * the head-to-head table of BENCHMARKS.md (between the h2h markers; bench/run.ts keeps it, as
 * text above its own figures marker).
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMigration } from '../src/cli/migrateCommand.js';
import { RANDOM_GUEST_IMAGE } from '../src/io/qemu/qemuProcess.js';
import { median, type Benchmark } from './harness.js';
import { analyzeJournalFile, qemu10, QEMU_7_2, runQemuMigration, tapWireFigures, type Blocktime, type QemuBuild, type WireFigures } from './qemuRuns.js';

const RUNS = Math.max(1, Number(process.env.H2H_RUNS ?? '3') || 3);
const MiB = 2 ** 20;
const CAP = 32 * MiB;
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

type ShapeName = 'unlimited' | 'capped' | 'random';
type ModeName = 'plain' | 'preempt';
const SHAPES: Record<ShapeName, { label: string; cap: number | null; random: boolean }> = {
  unlimited: { label: 'unlimited', cap: null, random: false },
  capped: { label: 'postcopy capped at 32 MiB/s', cap: CAP, random: false },
  random: { label: 'random access, postcopy capped at 32 MiB/s', cap: CAP, random: true },
};
const MODES: ModeName[] = ['plain', 'preempt'];

type PeerName = 'qemu72' | 'qemu10' | 'receive' | 'ours';
const PEERS: PeerName[] = ['qemu72', 'qemu10', 'receive', 'ours'];

/** One migration's figures, whoever ran it. */
interface PeerRun {
  wire: WireFigures | null;
  blocktime: Blocktime | null;
  postcopyMs: number;
  totalMs: number;
}

/** Our migrate in the shape: its destination journal and its source's counters. */
async function ourFigures(shape: ShapeName, mode: ModeName, seed: number): Promise<PeerRun> {
  const s = SHAPES[shape];
  const journal = join(tmpdir(), `bench-h2h-${process.pid}-${seed}.db`);
  const tapJournal = join(tmpdir(), `bench-h2h-${process.pid}-${seed}-tap.db`);
  try {
    const r = await runMigration({
      size: '256M', vcpus: '2', workload: s.random ? 'bootblock-random' : 'bootblock',
      // The same cap as QEMU's max-postcopy-bandwidth: postcopy only, urgent pages past it on the preempt channel.
      bandwidth: '0', maxPostcopyBandwidth: s.cap === null ? '0' : String(s.cap), dirtyRate: '40000',
      journal, force: true, backend: 'uffd', faultReader: 'loop', seed: String(seed), quiet: true, ...(mode === 'preempt' ? { preempt: true } : {}),
      tapJournal,
    });
    if (!r.verified) throw new Error(`our migrate (${shape}, ${mode}) did not verify: ${r.message}`);
    const a = analyzeJournalFile(journal);
    // At the wire, as for QEMU: the tap between our source and destination.
    if (!r.tap?.summary) throw new Error(`our migrate (${shape}, ${mode}): the tap recorded nothing`);
    const wire = tapWireFigures(analyzeJournalFile(r.tap.journalPath));
    return {
      wire,
      blocktime: { totalMs: a.blocktime.exact.totalMs, perVcpuMs: a.blocktime.exact.perVcpuMs, how: 'exact' },
      postcopyMs: r.source!.postcopyMs,
      totalMs: r.source!.precopyMs + r.source!.postcopyMs,
    };
  } finally {
    // H2H_KEEP=DIR keeps our journals there, for `postcopy inspect` on where the time went.
    const keep = process.env.H2H_KEEP;
    if (keep) {
      renameSync(journal, join(keep, `ours-${shape}-${mode}-${seed}-${Date.now()}.db`));
      if (existsSync(tapJournal)) renameSync(tapJournal, join(keep, `ours-${shape}-${mode}-${seed}-${Date.now()}-tap.db`));
    } else for (const f of [journal, tapJournal]) rmSync(f, { force: true });
  }
}


async function qemuPeer(build: QemuBuild, destination: 'qemu' | 'receive', shape: ShapeName, mode: ModeName): Promise<PeerRun> {
  const s = SHAPES[shape];
  const r = await runQemuMigration({
    source: build,
    destination,
    preempt: mode === 'preempt',
    throughTap: true,
    ...(s.cap === null ? {} : { postcopyBandwidth: s.cap }),
    ...(s.random ? { guestImage: RANDOM_GUEST_IMAGE, receiveWorkload: 'read-random' as const } : {}),
  });
  return { wire: r.tap, blocktime: r.blocktime, postcopyMs: r.postcopyMs, totalMs: r.totalMs };
}

type Runs = Record<PeerName, PeerRun[]>;
const measured = new Map<string, Promise<Runs>>();

async function measure(shape: ShapeName, mode: ModeName): Promise<Runs> {
  const q10 = await qemu10();
  const out: Runs = { qemu72: [], qemu10: [], receive: [], ours: [] };
  for (let i = 0; i < RUNS; i++) {
    // Peers alternate, the order rotated each run: none always runs on a warmer machine.
    const order = PEERS.map((_, k) => PEERS[(k + i) % PEERS.length]!);
    for (const p of order) {
      process.stdout.write(`[${p}] `);
      switch (p) {
        case 'qemu72':
          out.qemu72.push(await qemuPeer(QEMU_7_2, 'qemu', shape, mode));
          break;
        case 'qemu10':
          out.qemu10.push(await qemuPeer(q10, 'qemu', shape, mode));
          break;
        case 'receive':
          out.receive.push(await qemuPeer(q10, 'receive', shape, mode));
          break;
        case 'ours':
          out.ours.push(await ourFigures(shape, mode, i + 1));
          break;
        default:
          assertNever(p);
      }
    }
  }
  writeTable(shape, mode, out);
  return out;
}

function assertNever(x: never): never {
  throw new Error(`unexpected ${String(x)}`);
}

function runsOf(shape: ShapeName, mode: ModeName): Promise<Runs> {
  const key = `${shape}.${mode}`;
  if (!measured.has(key)) measured.set(key, measure(shape, mode));
  return measured.get(key)!;
}

/** The figures of the head-to-head, each picked from one run (NaN: not measured for that peer). */
const FIGURES = {
  'served.p50': { label: 'served request → page, p50 (ms)', unit: 'ms', pick: (r: PeerRun) => r.wire?.servedP50Ms ?? NaN },
  'served.p99': { label: 'served request → page, p99 (ms)', unit: 'ms', pick: (r: PeerRun) => r.wire?.servedP99Ms ?? NaN },
  'served.count': { label: 'requests served (page sent after the request)', unit: 'requests', pick: (r: PeerRun) => r.wire?.served ?? NaN },
  'inflight.count': { label: 'requests answered in flight (apart)', unit: 'requests', pick: (r: PeerRun) => r.wire?.inFlight ?? NaN },
  'blocktime.vcpu': { label: 'blocktime, worst vCPU (ms)', unit: 'ms', pick: (r: PeerRun) => (r.blocktime && r.blocktime.perVcpuMs.length > 0 ? Math.max(...r.blocktime.perVcpuMs) : NaN) },
  'blocktime.all': { label: 'blocktime, all vCPUs at once (ms)', unit: 'ms', pick: (r: PeerRun) => r.blocktime?.totalMs ?? NaN },
  postcopy: { label: 'postcopy phase (ms)', unit: 'ms', pick: (r: PeerRun) => r.postcopyMs },
  total: { label: 'total time (ms)', unit: 'ms', pick: (r: PeerRun) => r.totalMs },
} as const;
type FigureName = keyof typeof FIGURES;
/** Figures that get a BenchResult (the counts are in the table and the notes). */
const HEADLINES: FigureName[] = ['served.p50', 'served.p99', 'blocktime.vcpu', 'blocktime.all', 'postcopy', 'total'];

const finite = (xs: number[]): number[] => xs.filter((x) => Number.isFinite(x));
const med = (xs: number[]): number => (finite(xs).length > 0 ? median(finite(xs)) : NaN);

function fmt(x: number): string {
  if (!Number.isFinite(x)) return '—';
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 1 ? x.toFixed(1) : x.toPrecision(2);
}

/** "median (min–max)" over the runs, or the one value. */
function cell(xs: number[]): string {
  const f = finite(xs);
  if (f.length === 0) return '—';
  if (f.length === 1) return fmt(f[0]!);
  return `${fmt(median(f))} (${fmt(Math.min(...f))}–${fmt(Math.max(...f))})`;
}

function perVcpuCell(rs: PeerRun[]): string {
  return rs.map((r) => (r.blocktime ? r.blocktime.perVcpuMs.map((v) => fmt(v)).join(' / ') : '—')).join('; ');
}

const H2H_BEGIN = '<!-- h2h: generated by npm run bench -- h2h (bench/h2h.bench.ts); rows are replaced per shape and mode -->';
const H2H_END = '<!-- /h2h -->';

/** Rewrites this shape and mode's rows of the head-to-head table in BENCHMARKS.md, keeping the others. */
function writeTable(shape: ShapeName, mode: ModeName, runs: Runs): void {
  const path = join(root, 'BENCHMARKS.md');
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n\n';
  const key = `| ${SHAPES[shape].label} | ${mode} |`;
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  const rows: string[] = [];
  for (const name of Object.keys(FIGURES) as FigureName[]) {
    const f = FIGURES[name];
    const v = (p: PeerName) => runs[p].map(f.pick);
    const ratio = med(v('ours')) / med(v('qemu10'));
    rows.push(`${key} ${f.label} | ${cell(v('qemu72'))} | ${cell(v('qemu10'))} | ${cell(v('receive'))} | ${cell(v('ours'))} | ${fmt(ratio)} | ${RUNS} | ${date} |`);
  }
  rows.push(`${key} blocktime per vCPU, each run (ms) | ${perVcpuCell(runs.qemu72)} | ${perVcpuCell(runs.qemu10)} | ${perVcpuCell(runs.receive)} | ${perVcpuCell(runs.ours)} | — | ${RUNS} | ${date} |`);
  const header = [
    H2H_BEGIN,
    '',
    `Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, TCG (no /dev/kvm). Cells: median (min–max) over the runs; ratio = ours / QEMU 10.0 (medians).`,
    '',
    'QEMU columns are measured at `postcopy tap` (request on the return path → its page on any channel; served = the page crossed the relay after the request), blocktime by QEMU\'s own accounting (the destination\'s query-migrate, postcopy-blocktime capability). `receive`: wire figures at the tap, blocktime exact from its journal (its vCPU threads read their share of RAM: read-sequential, read-random for the random shape; not the guest\'s walk). **Our migrate is measured at the same tap** (`migrate --tap-journal`: its source and destination speak QEMU\'s wire), its blocktime exact from its destination journal; the cap of the capped shapes is `migrate --max-postcopy-bandwidth`, like QEMU\'s max-postcopy-bandwidth: postcopy only, requested pages past it on the preempt channel (the pages our source prefetches after a request count against it).',
    '',
    '| shape | mode | figure | QEMU 7.2 → 7.2 | QEMU 10.0 → 10.0 | QEMU 10.0 → receive | our migrate | ours / 10.0 | runs | date (UTC) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const b = text.indexOf(H2H_BEGIN);
  const e = text.indexOf(H2H_END);
  let kept: string[] = [];
  let before = text;
  let after = '';
  if (b >= 0 && e > b) {
    kept = text.slice(b, e).split('\n').filter((l) => l.startsWith('| ') && !l.startsWith(key) && !l.startsWith('| shape |') && !l.startsWith('| --- |'));
    before = text.slice(0, b);
    after = text.slice(e + H2H_END.length);
  } else {
    // New: above bench/run.ts's figures marker, so that its regeneration keeps it.
    const marker = '<!-- figures: generated by npm run bench';
    const m = text.indexOf(marker);
    before = m >= 0 ? text.slice(0, m) : text.trimEnd() + '\n\n';
    after = m >= 0 ? '\n\n' + text.slice(m) : '\n';
  }
  const order = (l: string): number => {
    const shapeIdx = (Object.keys(SHAPES) as ShapeName[]).findIndex((s) => l.startsWith(`| ${SHAPES[s].label} |`));
    return shapeIdx * 2 + (l.includes('| preempt |') ? 1 : 0);
  };
  const all = [...kept, ...rows].map((l, i) => ({ l, i })).sort((x, y) => order(x.l) - order(y.l) || x.i - y.i).map((x) => x.l);
  writeFileSync(path, before + [...header, ...all, '', H2H_END].join('\n') + after);
}

function entry(shape: ShapeName, mode: ModeName, figure: FigureName): Benchmark {
  const f = FIGURES[figure];
  return {
    name: `h2h.${shape}.${mode}.${figure}`,
    description: `${f.label}: our migrate against QEMU 10.0 → QEMU 10.0 through postcopy tap, ${SHAPES[shape].label}, ${mode}, 256 MiB, 2 vCPUs, bootblock${SHAPES[shape].random ? '-random' : ''} guest`,
    async run() {
      const r = await runsOf(shape, mode);
      const v = (p: PeerName) => r[p].map(f.pick);
      const list = (p: PeerName) => v(p).map(fmt).join(', ');
      const served = (p: PeerName) => r[p].map((x) => `${x.wire?.served ?? '—'} of ${x.wire?.requests ?? '—'}`).join(', ');
      return {
        median: med(v('ours')),
        unit: f.unit,
        runs: RUNS,
        higherIsBetter: false,
        baseline: { name: `QEMU 10.0 → QEMU 10.0${mode === 'preempt' ? ' preempt' : ''}, through the tap (same run)`, median: med(v('qemu10')), source: 'measured' },
        notes:
          `per run: ours ${list('ours')}; QEMU 10.0 ${list('qemu10')}; QEMU 7.2 ${list('qemu72')}; QEMU 10.0 → receive ${list('receive')}. ` +
          `Served of requests: ours ${served('ours')}; 10.0 ${served('qemu10')}; 7.2 ${served('qemu72')}; receive ${served('receive')}. ` +
          `QEMU's blocktime is its own accounting (destination query-migrate, postcopy-blocktime capability); receive's and ours exact from our journal. ` +
          `Every peer's served figures at the tap (ours through migrate --tap-journal); ours capped by --max-postcopy-bandwidth, as QEMU's max-postcopy-bandwidth. Load average ${loadavg()[0]!.toFixed(1)}.`,
      };
    },
  };
}

export const benchmarks: Benchmark[] = (Object.keys(SHAPES) as ShapeName[]).flatMap((shape) =>
  MODES.flatMap((mode) => HEADLINES.map((figure) => entry(shape, mode, figure))),
);
