/**
 * Builds the bench fleet: journals of simulated migrations (runSimulatedMigration, what
 * `postcopy simulate` runs) in a cache folder outside the repository's tracked files
 * (bench/.cache/fleet, git-ignored). Run i's seed, size, vCPUs, workload, preempt,
 * huge pages, break and killed source all follow from i, so the fleet is the same on
 * every machine. A journal already there is kept (the cache): only missing ones are made.
 *
 * A killed source: simulate's sources always come back after a break, so a killed-source
 * journal is a break run's journal cut right after the destination paused, which is what
 * the destination journals when its source never returns (it stays postcopy-paused).
 *
 * `node dist/bench/fleetBuild.js <dir> <count> <workers> [budgetSeconds]` builds in
 * `workers` child processes (each takes every workers-th index).
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSimulatedMigration, SimulationScratch } from '../src/io/migration/simulatedMigration.js';
import { seededRandom, ACCESS_PATTERN_NAMES, type AccessPatternName } from '../src/io/backends/accessPatterns.js';
import { JournalReader } from '../src/journal/journalReader.js';
import { JournalWriter } from '../src/journal/journalWriter.js';
import { EventKind, MachineId, type EventKindValue } from '../src/engine/events.js';
import { unpack } from 'msgpackr';

/** What run i of the fleet is (pure). */
export function fleetRun(i: number): {
  seed: number;
  sizeMiB: number;
  vcpus: number;
  workload: AccessPatternName;
  preempt: boolean;
  hugePages: boolean;
  breakAt: number | null;
  killSource: boolean;
} {
  const r = seededRandom(0xf1ee7 + i * 7919);
  // 32–512 MiB, 221 MiB on average: ~117 000 events per journal at ~530 events per MiB, 1.2 × 10^8 for the fleet.
  const sizes = [32, 64, 128, 192, 256, 384, 512];
  const sizeMiB = sizes[Math.floor(r() * sizes.length)]!;
  const vcpus = 1 + Math.floor(r() * 4);
  const workload = ACCESS_PATTERN_NAMES[Math.floor(r() * ACCESS_PATTERN_NAMES.length)]!;
  const preempt = r() < 0.5;
  const hugePages = r() < 0.05;
  const failure = r();
  const breakAt = failure < 0.3 ? 0.1 + 0.8 * r() : null;
  const killSource = breakAt !== null && failure < 0.1;
  return { seed: i + 1, sizeMiB, vcpus, workload, preempt, hugePages, breakAt, killSource };
}

export function fleetJournalPath(dir: string, i: number): string {
  return join(dir, `sim-${String(i).padStart(5, '0')}.db`);
}

/** Builds journal i unless it exists; returns its event count (0 when it was already there). */
export function buildOne(dir: string, i: number, scratch?: SimulationScratch): number {
  const path = fleetJournalPath(dir, i);
  if (existsSync(path)) return 0;
  const run = fleetRun(i);
  const tmp = `${path}.part`;
  rmSync(tmp, { force: true });
  const r = runSimulatedMigration({
    sizeBytes: run.sizeMiB * 2 ** 20,
    hostPageSize: run.hugePages ? 2 * 2 ** 20 : 4096,
    vcpus: run.vcpus,
    workload: run.workload,
    seed: run.seed,
    preempt: run.preempt,
    prefetchPages: 8,
    ...(run.breakAt !== null ? { breakAt: run.breakAt } : {}),
    journalPath: tmp,
    // The fleet needs the journals only: the replay check and the end-of-run memory check
    // record nothing (the tests run both), and the scratch reuses memory across runs.
    verifyReplay: false,
    verifyMemory: false,
    ...(scratch ? { scratch } : {}),
  });
  let events = r.records;
  if (run.killSource) events = cutAtPause(tmp, `${path}.cut`);
  else renameSync(tmp, path);
  if (run.killSource) {
    rmSync(tmp, { force: true });
    renameSync(`${path}.cut`, path);
  }
  for (const s of ['-wal', '-shm', '-tail']) rmSync(tmp + s, { force: true });
  return events;
}

/** Copies `from`'s events up to and including its first postcopy-paused into `to`: a source killed there. */
function cutAtPause(from: string, to: string): number {
  const reader = JournalReader.open(from);
  const writer = JournalWriter.create(to, { ...reader.meta, run: { ...reader.meta.run, killedSource: true } }, { overwrite: true, snapshotEvery: 0 });
  let n = 0;
  try {
    for (const e of reader.records()) {
      writer.append(e.kind as EventKindValue, e.t, e.cause, e.block, e.offset, e.a, e.b, e.payload);
      n++;
      if (e.kind === EventKind.FX_STATE && e.a === MachineId.MIGRATION && e.payload !== null && (unpack(e.payload) as { to?: string }).to === 'postcopy-paused') break;
    }
  } finally {
    writer.close();
    reader.close();
  }
  return n;
}

/** Builds journals 0..count-1 in `workers` child processes; stops starting new ones after `budgetS`. */
export async function buildFleet(dir: string, count: number, workers: number, budgetS = Infinity): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const self = fileURLToPath(import.meta.url);
  await Promise.all(
    Array.from({ length: workers }, (_, w) =>
      new Promise<void>((resolve, reject) => {
        const child = fork(self, ['--worker', dir, String(count), String(workers), String(w), String(budgetS)], { stdio: 'inherit' });
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`fleet builder worker ${w} exited ${code}`))));
      }),
    ),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args[0] === '--worker') {
    const [, dir, count, workers, w, budget] = args;
    const t0 = Date.now();
    let made = 0;
    let events = 0;
    const scratch = new SimulationScratch();
    for (let i = Number(w); i < Number(count); i += Number(workers)) {
      if ((Date.now() - t0) / 1000 > Number(budget)) break;
      const n = buildOne(dir!, i, scratch);
      events += n;
      if (n > 0) made++;
      if (n > 0 && made % 25 === 0) process.stdout.write(`worker ${w}: ${made} journals made, ${events} events (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    }
    process.stdout.write(`worker ${w}: done, ${made} journals made, ${events} events in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  } else {
    const [dir, count, workers, budget] = args;
    await buildFleet(dir!, Number(count ?? 1000), Number(workers ?? 2), budget === undefined ? Infinity : Number(budget));
  }
}
