/**
 * Real QEMU postcopy migrations for the benches: a QEMU source (the bootblock guest, 256 MiB,
 * 2 vCPUs, postcopy started after 2 dirty syncs) into either a QEMU destination or our
 * `postcopy receive`, measured the same way for both: the source's own MIGRATION events, with
 * QEMU's timestamps (postcopy-active → completed), so neither side's instrument differs.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { launchQemu, type QemuProcess, waitForGuestWork } from '../src/io/qemu/qemuProcess.js';
import {
  freePort,
  migrateAndSwitch,
  postcopyCapabilities,
  qemuSide,
  setCapabilities,
  setPostcopyBandwidth,
  startIncoming,
  waitStatus,
  type MigrationInfo,
} from '../src/io/qemu/qemuMigration.js';
import { analyzeJournal } from '../src/forensics/analysis.js';
import type { Analysis } from '../src/forensics/analysisTypes.js';
import { JournalReader } from '../src/journal/journalReader.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A QEMU build: the system's 7.2, or one unpacked beside it (QEMU 10.0, with its data folders). */
export interface QemuBuild {
  label: string;
  qemuPath?: string;
  dataDirs?: string[];
}

export const QEMU_7_2: QemuBuild = { label: 'QEMU 7.2' };

/** QEMU 10.0 from bookworm-backports, unpacked into .cache/ on first use (scripts/qemu-backports.mjs). */
export async function qemu10(): Promise<QemuBuild> {
  const script = pathToFileURL(join(fileURLToPath(new URL('../../scripts/', import.meta.url)), 'qemu-backports.mjs')).href;
  const mod = (await import(script)) as { ensureQemuBackports: () => { qemu: string; dataDirs: string[]; version: string } };
  const d = mod.ensureQemuBackports();
  return { label: `QEMU ${d.version.split(' ')[0]}`, qemuPath: d.qemu, dataDirs: d.dataDirs };
}

export interface QemuRunOptions {
  source: QemuBuild;
  /** Where it migrates to: a QEMU of the same build, or our `postcopy receive`. */
  destination: 'qemu' | 'receive';
  preempt: boolean;
  /** max-postcopy-bandwidth on the source (bytes/s). */
  postcopyBandwidth?: number;
  /** The guest image (default: the bootblock guest; RANDOM_GUEST_IMAGE for random access). */
  guestImage?: string;
  /** What `postcopy receive`'s vCPU threads do (default: read-sequential). */
  receiveWorkload?: 'read-sequential' | 'read-random' | 'read-hot-set';
  /** Through `postcopy tap` (source → tap → destination): the result then holds its figures. */
  throughTap?: boolean;
}

/** Requests as the wire shows them, and the blocktime the destination counted. */
export interface WireFigures {
  /** Requests on the return path. */
  requests: number;
  /** Answered by a page sent after the request (at the tap: it crossed the relay after the request). */
  served: number;
  /** Their page was already on its way when asked for. */
  inFlight: number;
  /** Request → page of the served ones, all channels together, ms (NaN: none served). */
  servedP50Ms: number;
  servedP99Ms: number;
}

export interface Blocktime {
  totalMs: number;
  perVcpuMs: number[];
  /** Whose accounting: QEMU's own (query-migrate on the destination), or exact from our journal. */
  how: 'qemu' | 'exact';
}

export interface QemuRunResult {
  /** The source's postcopy-active → completed, by QEMU's event timestamps (ms). */
  postcopyMs: number;
  /** The source's total-time (ms). */
  totalMs: number;
  /** The source's ram.postcopy-requests. */
  requests: number;
  /** QEMU destination: its postcopy-blocktime / postcopy-vcpu-blocktime; receive: exact, from its journal. */
  blocktime: Blocktime | null;
  /** Through the tap: what its journal shows. */
  tap: WireFigures | null;
}

async function guestRunning(q: QemuProcess): Promise<void> {
  await waitForGuestWork(q);
}

/** The source's MIGRATION status event time (QEMU's clock, µs), the first with `status`. */
function statusAtUs(q: QemuProcess, status: string): number {
  const e = q.qmp.events.find((x) => x.event === 'MIGRATION' && x.data.status === status);
  if (!e) throw new Error(`${q.name} sent no MIGRATION ${status} event`);
  return e.timestampUs;
}

/** Analyses a journal (engine, receive or tap) in this process. */
export function analyzeJournalFile(path: string): Analysis {
  const j = JournalReader.open(path);
  try {
    return analyzeJournal(j);
  } finally {
    j.close();
  }
}

/** A tap journal's request figures: served (page crossed after the request), in flight, latency at the wire. */
export function tapWireFigures(a: Analysis): WireFigures {
  if (a.tap === undefined) throw new Error(`${a.journal.path} is not a tap journal`);
  const any = a.requests.answered;
  return {
    requests: a.tap.requests.count,
    served: a.tap.requests.served,
    inFlight: a.tap.requests.alreadyInFlight,
    servedP50Ms: any.count > 0 ? any.p50Ms : NaN,
    servedP99Ms: any.count > 0 ? any.p99Ms : NaN,
  };
}

/** An engine journal's exact blocktime, ms. */
export function exactBlocktime(a: Analysis): Blocktime {
  return { totalMs: a.blocktime.exact.totalMs, perVcpuMs: a.blocktime.exact.perVcpuMs, how: 'exact' };
}

/** A running `postcopy tap` (its own process) relaying to `toPort`. */
export interface TapRelay {
  /** Where the source connects: 127.0.0.1:port. */
  port: number;
  journal: string;
  /** Waits for it to end (SIGINT after `graceMs` if the connections did not close), then analyses its journal. */
  finish(graceMs?: number): Promise<Analysis>;
  kill(): void;
}

/** Starts `postcopy tap --listen 127.0.0.1:0 --to 127.0.0.1:toPort` with its journal in `dir`. */
export async function startTapRelay(toPort: number, dir: string): Promise<TapRelay> {
  const journal = join(dir, 'tap.db');
  const child = spawn(process.execPath, [CLI, 'tap', '--listen', '127.0.0.1:0', '--to', `127.0.0.1:${toPort}`, '--journal', journal, '--json', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 15_000;
  while (!out.includes('\n')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`tap did not listen: ${out} ${err}`);
    await sleep(10);
  }
  const port = Number(/:(\d+)"/.exec(out)![1]);
  return {
    port,
    journal,
    async finish(graceMs = 10_000) {
      const done = await Promise.race([exited, sleep(graceMs).then(() => 'timeout' as const)]);
      if (done === 'timeout') {
        child.kill('SIGINT');
        await exited;
      }
      return analyzeJournalFile(journal);
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** One migration, disposed of at the end whatever happens. */
export async function runQemuMigration(o: QemuRunOptions): Promise<QemuRunResult> {
  const cleanups: Array<() => Promise<void> | void> = [];
  const dir = mkdtempSync(join(tmpdir(), 'postcopy-bench-qemu-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  try {
    const caps = { ...postcopyCapabilities({ preempt: o.preempt }), events: true };
    const src = await launchQemu({ name: 'src', qemuPath: o.source.qemuPath, dataDirs: o.source.dataDirs, log: () => {}, ...(o.guestImage ? { guestImage: o.guestImage } : {}) });
    cleanups.push(() => src.dispose());
    await setCapabilities(src.qmp, caps);
    if (o.postcopyBandwidth !== undefined) await setPostcopyBandwidth(src.qmp, o.postcopyBandwidth);
    const port = await freePort();
    let receiveExit: Promise<number | null> | null = null;
    let dst: QemuProcess | null = null;
    const receiveJournal = join(dir, 'receive.db');
    if (o.destination === 'qemu') {
      dst = await launchQemu({ name: 'dst', incoming: true, qemuPath: o.source.qemuPath, dataDirs: o.source.dataDirs, log: () => {}, ...(o.guestImage ? { guestImage: o.guestImage } : {}) });
      const d = dst;
      cleanups.push(() => d.dispose());
      await setCapabilities(dst.qmp, caps);
      await startIncoming(dst.qmp, `tcp:127.0.0.1:${port}`);
    } else {
      const child = spawn(
        process.execPath,
        [CLI, 'receive', '--listen', `127.0.0.1:${port}`, '--journal', receiveJournal, '--workload', o.receiveWorkload ?? 'read-sequential', ...(o.preempt ? ['--preempt'] : [])],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      cleanups.push(() => {
        if (child.exitCode === null) child.kill('SIGKILL');
      });
      receiveExit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
      // It listens once it says so (a probe connection would be taken for the source's main stream).
      const deadline = Date.now() + 15_000;
      while (!/listening on/.test(stderr)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`receive did not listen: ${stderr}`);
        await sleep(20);
      }
    }
    const tap = o.throughTap ? await startTapRelay(port, dir) : null;
    if (tap !== null) cleanups.push(() => tap.kill());
    await guestRunning(src);
    const side = qemuSide('src', src.qmp);
    const sides = dst === null ? [side] : [side, qemuSide('dst', dst.qmp)];
    await migrateAndSwitch({ src: src.qmp, uri: `tcp:127.0.0.1:${tap?.port ?? port}`, sides });
    const infos = await waitStatus(sides, ['completed'], 300_000);
    const s: MigrationInfo = infos.src!;
    let blocktime: Blocktime | null = null;
    if (dst !== null) {
      const d = infos.dst!;
      const per = d['postcopy-vcpu-blocktime'];
      if (typeof d['postcopy-blocktime'] === 'number' && Array.isArray(per)) blocktime = { totalMs: d['postcopy-blocktime'], perVcpuMs: per, how: 'qemu' };
    }
    if (receiveExit) {
      const code = await receiveExit;
      if (code !== 0) throw new Error(`receive exited ${code}`);
      blocktime = exactBlocktime(analyzeJournalFile(receiveJournal));
    }
    const result = {
      postcopyMs: (statusAtUs(src, 'completed') - statusAtUs(src, 'postcopy-active')) / 1000,
      totalMs: s['total-time'] ?? NaN,
      requests: s.ram?.['postcopy-requests'] ?? NaN,
      blocktime,
    };
    if (tap === null) return { ...result, tap: null };
    // The relay ends when both ends have closed their connections: the QEMUs go first.
    await src.dispose();
    await dst?.dispose();
    return { ...result, tap: tapWireFigures(await tap.finish()) };
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}
