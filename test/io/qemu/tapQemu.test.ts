/**
 * Real QEMU 7.2 source → `postcopy tap` (the compiled CLI, a child process) → real QEMU 7.2
 * destination on 127.0.0.1, both booting guest/bootblock.S under TCG. Four migrations:
 * plain, preempt, migrate-pause + recover/resume through the tap, and the source SIGKILLed.
 * Each ends as it does without the tap (qemuToQemu.test.ts): query-migrate completed on both
 * sides and the guest's COM1 going on at the destination (the killed run: paused); the tap's
 * journal counts the requests the source counted, and `inspect` / `replay` read it.
 *
 * Skipped (with the reason printed) only when the destination QEMU refuses postcopy-ram.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Analysis } from '../../../src/forensics/analysisTypes.js';
import { launchQemu, type QemuProcess, waitForGuestWork } from '../../../src/io/qemu/qemuProcess.js';
import {
  freePort,
  migrateAndSwitch,
  pausePostcopy,
  postcopyCapabilities,
  qemuSide,
  recoverIncoming,
  resumeMigration,
  setCapabilities,
  setPostcopyBandwidth,
  startIncoming,
  waitCompleted,
  waitResumed,
  waitStatus,
  type MigrationInfo,
} from '../../../src/io/qemu/qemuMigration.js';
import { QmpError } from '../../../src/io/qemu/qmp.js';
import { scratchDir } from '../../scratchDir.js';
import { testDeps } from '../../testDeps.js';

const deps = testDeps();
const CLI = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));
const MIB = 1024 * 1024;
const GUEST_UP_MS = 60_000;
const PRECOPY_MS = 120_000;
const POSTCOPY_MS = 180_000;
const dir = scratchDir('tap-qemu-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function launch(t: ExecutionContext, name: string, incoming: boolean): Promise<QemuProcess> {
  const q = await launchQemu({ name, incoming, qemuPath: deps.qemu, log: (l) => t.log(l) });
  t.teardown(() => q.dispose());
  return q;
}

async function probePostcopy(): Promise<string | null> {
  const q = await launchQemu({ name: 'probe', incoming: true, qemuPath: deps.qemu });
  try {
    await setCapabilities(q.qmp, { 'postcopy-ram': true });
    return null;
  } catch (err) {
    if (err instanceof QmpError) return `${err.message}; QEMU's stderr: ${q.output().trim()}`;
    throw err;
  } finally {
    await q.dispose();
  }
}

const refused = await probePostcopy();
if (refused) console.log(`[tap qemu tests] the destination QEMU refuses postcopy-ram on this host, these tests are skipped: ${refused}`);
const qemuTest = refused ? test.serial.skip : test.serial;

interface Tap {
  child: ChildProcess;
  port: number;
  journal: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts `postcopy tap` on a port of its choosing, forwarding to `toPort` (and `resumeToPort` after a break). */
async function startTap(t: ExecutionContext, name: string, toPort: number, resumeToPort?: number): Promise<Tap> {
  const journal = join(dir, `${name}.db`);
  const args = [CLI, 'tap', '--listen', '127.0.0.1:0', '--to', `127.0.0.1:${toPort}`, '--journal', journal, '--json'];
  if (resumeToPort !== undefined) args.push('--resume-to', `127.0.0.1:${resumeToPort}`);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const deadline = Date.now() + 20_000;
  while (!stdout.includes('\n')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the tap did not say where it listens: ${stdout} ${stderr}`);
    await sleep(20);
  }
  const port = Number(/"listening":"127\.0\.0\.1:(\d+)"/.exec(stdout)![1]);
  return { child, port, journal, exited };
}

/** The tap ends by itself once the migration completed and every connection closed; else SIGINT ends it. */
async function tapEnds(t: ExecutionContext, tap: Tap, bySignal: boolean) {
  if (bySignal) tap.child.kill('SIGINT');
  const timeout = sleep(30_000).then(() => null);
  const r = await Promise.race([tap.exited, timeout]);
  if (r === null) {
    tap.child.kill('SIGINT');
    t.fail('the tap did not end by itself within 30 s of the migration\'s end');
    return tap.exited;
  }
  t.is(r.code, 0, `the tap exits 0: ${r.stderr.slice(-2000)}`);
  t.log(`tap: ${r.stdout.trim().split('\n').pop()}`);
  return r;
}

function inspect(journal: string): Analysis {
  const r = spawnSync(process.execPath, [CLI, 'inspect', journal, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`inspect exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Analysis;
}

function replayOk(t: ExecutionContext, journal: string): void {
  const r = spawnSync(process.execPath, [CLI, 'replay', journal], { encoding: 'utf8' });
  t.is(r.status, 0, `replay of the tap journal: ${r.stdout}${r.stderr}`);
  t.regex(r.stdout, /drive a fresh engine as a consistency check/);
  t.log(r.stdout.trim().split('\n')[1]);
}

async function guestRunning(q: QemuProcess): Promise<void> {
  await waitForGuestWork(q, GUEST_UP_MS);
}

/** Two QEMUs with postcopy on, the destination listening, a tap in front of it. */
async function startRun(t: ExecutionContext, name: string, o: { preempt?: boolean; postcopyBandwidth?: number; resumeToPort?: number }) {
  const [src, dst] = await Promise.all([launch(t, 'src', false), launch(t, 'dst', true)]);
  const caps = { ...postcopyCapabilities({ preempt: o.preempt }), events: true };
  await setCapabilities(src.qmp, caps);
  await setCapabilities(dst.qmp, caps);
  if (o.postcopyBandwidth !== undefined) await setPostcopyBandwidth(src.qmp, o.postcopyBandwidth);
  await guestRunning(src);
  const dstPort = await freePort();
  await startIncoming(dst.qmp, `tcp:127.0.0.1:${dstPort}`);
  const tap = await startTap(t, name, dstPort, o.resumeToPort);
  const sides = [qemuSide('src', src.qmp), qemuSide('dst', dst.qmp)];
  return { src, dst, tap, sides, uri: `tcp:127.0.0.1:${tap.port}` };
}

/** Both sides completed and the guest goes on at the destination: as without the tap. */
async function checkCompleted(t: ExecutionContext, dst: QemuProcess, infos: Record<string, MigrationInfo>): Promise<number> {
  t.is(infos.src!.status, 'completed');
  t.is(infos.dst!.status, 'completed');
  const first = dst.serial().length;
  const deadline = Date.now() + 20_000;
  let later = '';
  while (Date.now() < deadline) {
    later = dst.serial().slice(first);
    if (later.includes('B') && later.includes('D')) break;
    await sleep(100);
  }
  t.true(later.includes('B') && later.includes('D'), `both vCPUs write on the destination after completion: ${JSON.stringify(later.slice(0, 40))}`);
  const requests = infos.src!.ram?.['postcopy-requests'] ?? 0;
  t.log(`src: total-time ${infos.src!['total-time']} ms, postcopy-requests ${requests}; dst blocktime ${infos.dst!['postcopy-blocktime']} ms`);
  return requests;
}

async function plainOrPreempt(t: ExecutionContext, preempt: boolean) {
  const { dst, tap, sides, uri, src } = await startRun(t, preempt ? 'preempt' : 'plain', { preempt });
  await migrateAndSwitch({ src: src.qmp, uri, sides, precopyTimeoutMs: PRECOPY_MS });
  const infos = await waitCompleted(sides, POSTCOPY_MS);
  const sourceRequests = await checkCompleted(t, dst, infos);
  await tapEnds(t, tap, false);
  const a = inspect(tap.journal);
  t.is(a.journal.source, 'tap');
  t.is(a.status, 'completed');
  t.is(a.postcopyState, 'END');
  t.is(a.tap!.requests.count, sourceRequests, 'the tap saw every request the source counted');
  t.true(sourceRequests > 0);
  t.deepEqual(a.tap!.connections.map((c) => c.role), preempt ? ['main', 'preempt'] : ['main']);
  t.is(a.tap!.requests.unanswered, 0);
  t.is(a.tap!.shut?.status, 0, 'the destination said SHUT 0');
  t.true(a.pages.placed > 0, 'pages crossed in postcopy');
  t.log(`tap: served ${a.tap!.requests.served} (main p50 ${a.requests.answeredBy.main.p50Ms} ms, preempt p50 ${a.requests.answeredBy.preempt.p50Ms} ms, ${a.requests.answeredBy.preempt.count} on preempt), already in flight ${a.tap!.requests.alreadyInFlight}; pages ${JSON.stringify(a.pages.byChannel)}`);
  replayOk(t, tap.journal);
}

qemuTest('QEMU → tap → QEMU, plain postcopy: completes on both sides, the guest runs on, the tap journal counts the source\'s requests', async (t) => {
  await plainOrPreempt(t, false);
});

qemuTest('QEMU → tap → QEMU with postcopy-preempt: both connections forwarded, the same checks', async (t) => {
  await plainOrPreempt(t, true);
});

qemuTest('QEMU → tap → QEMU, migrate-pause and recover through the tap (--resume-to): completes; the source\'s count is the tap\'s less at most the requests in flight at the break', async (t) => {
  const resumePort = await freePort();
  const { src, dst, tap, sides, uri } = await startRun(t, 'recover', { postcopyBandwidth: 16 * MIB, resumeToPort: resumePort });
  await migrateAndSwitch({ src: src.qmp, uri, sides, precopyTimeoutMs: PRECOPY_MS });
  await waitStatus(sides, ['postcopy-active'], 30_000);
  await sleep(1000);
  await pausePostcopy(src.qmp);
  await waitStatus(sides, ['postcopy-paused'], 30_000);
  await setPostcopyBandwidth(src.qmp, 0);
  await recoverIncoming(dst.qmp, `tcp:127.0.0.1:${resumePort}`);
  await resumeMigration(src.qmp, uri);
  await waitResumed(sides, 30_000);
  const infos = await waitCompleted(sides, POSTCOPY_MS);
  const sourceRequests = await checkCompleted(t, dst, infos);
  await tapEnds(t, tap, false);
  const a = inspect(tap.journal);
  t.is(a.status, 'completed');
  t.deepEqual(a.tap!.connections.map((c) => c.role), ['main', 'resumed main']);
  t.is(a.tap!.connections[1]!.upstream, `127.0.0.1:${resumePort}`, 'the resumed connection went to --resume-to');
  t.deepEqual(a.timeline.filter((e) => e.machine === 'migration').map((e) => e.to), ['active', 'postcopy-active', 'postcopy-paused', 'postcopy-recover', 'postcopy-active', 'completed']);
  t.is(a.tap!.breaks.length, 1);
  const inFlight = a.tap!.breaks[0]!.requestsInFlight;
  const tapRequests = a.tap!.requests.count;
  t.true(sourceRequests <= tapRequests && tapRequests - sourceRequests <= inFlight, `source ${sourceRequests} ≤ tap ${tapRequests}, lower by at most the ${inFlight} in flight at the break`);
  t.is(a.tap!.resumeAcks, 1);
  t.true(a.tap!.recvBitmaps.length > 0, 'the receive bitmaps were journaled');
  t.log(`break: ${inFlight} request(s) in flight, ${a.tap!.breaks[0]!.pagesLost} page(s) lost in flight; source ${sourceRequests}, tap ${tapRequests}`);
  replayOk(t, tap.journal);
});

qemuTest('QEMU → tap → QEMU, the source SIGKILLed in postcopy: the destination stays paused, and inspect lists the requests never answered with their ages', async (t) => {
  const { src, tap, sides, uri } = await startRun(t, 'killed', { postcopyBandwidth: 16 * MIB });
  await migrateAndSwitch({ src: src.qmp, uri, sides, precopyTimeoutMs: PRECOPY_MS });
  await waitStatus(sides, ['postcopy-active'], 30_000);
  await sleep(500);
  src.kill('SIGKILL');
  await src.exited;
  await waitStatus([sides[1]!], ['postcopy-paused'], 30_000);
  await sleep(300);
  await tapEnds(t, tap, true);
  const a = inspect(tap.journal);
  t.is(a.status, 'postcopy-paused');
  t.is(a.pauses.length, 1);
  t.is(a.pauses[0]!.endMs, null, 'still paused at the end of the journal');
  const outstanding = a.requests.outstanding;
  t.true(outstanding.length > 0, 'requests that no page answered');
  t.is(outstanding.length, a.tap!.requests.unanswered);
  for (const o of outstanding) t.true(o.ageMs > 0 && o.requestedAtMs <= a.durationMs, `request of ${o.block} 0x${o.offset.toString(16)} has an age`);
  const text = spawnSync(process.execPath, [CLI, 'inspect', tap.journal], { encoding: 'utf8' }).stdout;
  t.regex(text, /Outstanding requests \(requested, never answered by a page on the wire\): [1-9]/);
  t.log(text.split('\n').filter((l) => /Outstanding|pc\.ram|verdict/.test(l)).slice(0, 8).join('\n'));
});
