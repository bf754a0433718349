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
import { launchQemu, type QemuProcess } from '../src/io/qemu/qemuProcess.js';
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
}

export interface QemuRunResult {
  /** The source's postcopy-active → completed, by QEMU's event timestamps (ms). */
  postcopyMs: number;
  /** The source's total-time (ms). */
  totalMs: number;
  /** The source's ram.postcopy-requests. */
  requests: number;
}

async function guestRunning(q: QemuProcess): Promise<void> {
  const start = Date.now();
  while (!(q.serial().includes('B') && q.serial().includes('D'))) {
    if (Date.now() - start > 60_000) throw new Error(`${q.name}: the guest did not start: ${JSON.stringify(q.serial())}`);
    await sleep(50);
  }
}

/** The source's MIGRATION status event time (QEMU's clock, µs), the first with `status`. */
function statusAtUs(q: QemuProcess, status: string): number {
  const e = q.qmp.events.find((x) => x.event === 'MIGRATION' && x.data.status === status);
  if (!e) throw new Error(`${q.name} sent no MIGRATION ${status} event`);
  return e.timestampUs;
}

/** One migration, disposed of at the end whatever happens. */
export async function runQemuMigration(o: QemuRunOptions): Promise<QemuRunResult> {
  const cleanups: Array<() => Promise<void> | void> = [];
  try {
    const caps = { ...postcopyCapabilities({ preempt: o.preempt }), events: true };
    const src = await launchQemu({ name: 'src', qemuPath: o.source.qemuPath, dataDirs: o.source.dataDirs, log: () => {} });
    cleanups.push(() => src.dispose());
    await setCapabilities(src.qmp, caps);
    if (o.postcopyBandwidth !== undefined) await setPostcopyBandwidth(src.qmp, o.postcopyBandwidth);
    const port = await freePort();
    let receiveExit: Promise<number | null> | null = null;
    if (o.destination === 'qemu') {
      const dst = await launchQemu({ name: 'dst', incoming: true, qemuPath: o.source.qemuPath, dataDirs: o.source.dataDirs, log: () => {} });
      cleanups.push(() => dst.dispose());
      await setCapabilities(dst.qmp, caps);
      await startIncoming(dst.qmp, `tcp:127.0.0.1:${port}`);
    } else {
      const dir = mkdtempSync(join(tmpdir(), 'postcopy-bench-receive-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const child = spawn(process.execPath, [CLI, 'receive', '--listen', `127.0.0.1:${port}`, '--journal', join(dir, 'receive.db'), ...(o.preempt ? ['--preempt'] : [])], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
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
    await guestRunning(src);
    const side = qemuSide('src', src.qmp);
    await migrateAndSwitch({ src: src.qmp, uri: `tcp:127.0.0.1:${port}`, sides: [side] });
    const infos = await waitStatus([side], ['completed'], 300_000);
    const s: MigrationInfo = infos.src!;
    if (receiveExit) {
      const code = await receiveExit;
      if (code !== 0) throw new Error(`receive exited ${code}`);
    }
    return {
      postcopyMs: (statusAtUs(src, 'completed') - statusAtUs(src, 'postcopy-active')) / 1000,
      totalMs: s['total-time'] ?? NaN,
      requests: s.ram?.['postcopy-requests'] ?? NaN,
    };
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}
