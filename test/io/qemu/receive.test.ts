import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventKind, RequestFlag } from '../../../src/engine/events.js';
import { launchQemu, type QemuProcess, waitForGuestWork } from '../../../src/io/qemu/qemuProcess.js';
import {
  freePort,
  migrateAndSwitch,
  pausePostcopy,
  postcopyCapabilities,
  qemuSide,
  resumeMigration,
  setCapabilities,
  setPostcopyBandwidth,
  waitStatus,
  type MigrationInfo,
} from '../../../src/io/qemu/qemuMigration.js';
import type { ReceiveResult } from '../../../src/io/qemu/qemuReceiver.js';
import { JournalReader } from '../../../src/journal/journalReader.js';
import { replay } from '../../../src/journal/replay.js';
import { scratchDir } from '../../scratchDir.js';
import { testDeps } from '../../testDeps.js';

/**
 * A real QEMU 7.2 source (launchQemu without -incoming, booting guest/bootblock.S) migrating
 * in postcopy to our `postcopy receive`, run as a child process through the compiled CLI.
 * Serial: each test runs a QEMU with two vCPUs under TCG and our destination's two vCPUs.
 */

const deps = testDeps();
const CLI = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));
const MIB = 1024 * 1024;
const RAM = 256 * MIB;
const GUEST_UP_MS = 60_000;
const PRECOPY_MS = 120_000;
const POSTCOPY_MS = 180_000;
/** The legacy VGA/BIOS hole: pmemsave reads ROM and VGA there, not pc.ram. */
const HOLE = [0xa0000, 0x100000] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Receiver {
  port: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts `postcopy receive` and waits until it listens. */
async function startReceive(t: ExecutionContext, args: string[]): Promise<Receiver> {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'receive', '--listen', `127.0.0.1:${port}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const deadline = Date.now() + 15_000;
  while (!/listening on/.test(stderr) && !args.includes('--quiet')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`receive did not start listening: ${stderr}`);
    await sleep(20);
  }
  return { port, stderr: () => stderr, exited };
}

/** The two QEMU sources: Debian's 7.2 and bookworm-backports' 10.0 (which adds SWITCHOVER_START to the stream). */
type QemuRelease = '7.2' | '10.0';

async function launchSource(t: ExecutionContext, preempt: boolean, release: QemuRelease = '7.2'): Promise<QemuProcess> {
  const binary = release === '7.2' ? { qemuPath: deps.qemu } : { qemuPath: deps.qemu10.qemu, dataDirs: deps.qemu10.dataDirs };
  const q = await launchQemu({ name: 'src', ...binary, log: (l) => t.log(l) });
  t.teardown(() => q.dispose());
  await setCapabilities(q.qmp, { ...postcopyCapabilities({ preempt }), events: true });
  await waitForGuestWork(q, GUEST_UP_MS);
  return q;
}

/** FX_REQUEST records that went out (NOT_SENT clear): what the source should have counted. */
function journalRequests(path: string): number {
  return requestsAroundBreak(path, 0).sent;
}

/**
 * Requests sent, and those sent within `windowMs` before the first break (IN_CHANNEL_BROKEN):
 * the ones a source that stopped reading may never have counted.
 */
function requestsAroundBreak(path: string, windowMs: number): { sent: number; beforeBreak: number } {
  const j = JournalReader.open(path);
  try {
    const times: number[] = [];
    let breakAt = -1;
    for (const e of j.records()) {
      if (e.kind === EventKind.FX_REQUEST && (e.b & RequestFlag.NOT_SENT) === 0) times.push(e.t);
      if (e.kind === EventKind.IN_CHANNEL_BROKEN && breakAt < 0) breakAt = e.t;
    }
    const beforeBreak = breakAt < 0 ? 0 : times.filter((t) => t <= breakAt && t >= breakAt - windowMs * 1e6).length;
    return { sent: times.length, beforeBreak };
  } finally {
    j.close();
  }
}

function replaysCleanly(t: ExecutionContext, path: string): void {
  const j = JournalReader.open(path);
  try {
    const r = replay(j);
    t.true(r.ok, `the journal replays with zero divergence: ${r.divergence?.message ?? ''}`);
  } finally {
    j.close();
  }
}

/** pc.ram as we hold it vs the source's memory (pmemsave after completion), outside the legacy hole. */
async function compareMemory(t: ExecutionContext, src: QemuProcess, saveDir: string): Promise<void> {
  const dump = join(src.dir, 'src-memory.bin');
  await src.qmp.execute('pmemsave', { val: 0, size: RAM, filename: dump });
  const theirs = readFileSync(dump);
  const ours = readFileSync(join(saveDir, 'pc.ram.bin'));
  t.is(ours.length, RAM, 'pc.ram is 256 MiB');
  let differing = 0;
  let first = -1;
  for (let off = 0; off < RAM; off += 4096) {
    if (off >= HOLE[0] && off < HOLE[1]) continue;
    if (theirs.compare(ours, off, off + 4096, off, off + 4096) !== 0) {
      differing++;
      if (first < 0) first = off;
    }
  }
  t.is(differing, 0, `every page of pc.ram outside 0xA0000-0xFFFFF equals the source's (first differing page at 0x${first.toString(16)})`);
  t.true(existsSync(join(saveDir, 'pc.bios.bin')), 'every RAM block is saved');
}

function parseResult(out: string): ReceiveResult {
  return JSON.parse(out.trim().split('\n').pop()!) as ReceiveResult;
}

async function completedRun(t: ExecutionContext, preempt: boolean, release: QemuRelease = '7.2') {
  const dir = scratchDir('pcrecv-');
  const journal = join(dir, 'receive.db');
  const saveDir = join(dir, 'memory');
  const started = Date.now();
  const src = await launchSource(t, preempt, release);
  const rcv = await startReceive(t, ['--journal', journal, '--json', '--save-memory', saveDir, '--device-state', join(dir, 'device.bin'), ...(preempt ? ['--preempt'] : [])]);
  const side = qemuSide('src', src.qmp);
  const migrateAt = Date.now();
  // A connection beyond main (and preempt) during precopy is refused; the migration goes on.
  // It connects once receive has read MEM_SIZE: the main connection is taken and the migration
  // under way (a fixed delay once came after a fast migration had ended).
  let intruderClosed = false;
  const intruderDone = (async () => {
    const giveUpAt = Date.now() + PRECOPY_MS;
    while (!/MEM_SIZE/.test(rcv.stderr())) {
      if (Date.now() > giveUpAt) return;
      await sleep(5);
    }
    await new Promise<void>((resolve) => {
      const intruder = connect(rcv.port, '127.0.0.1', () => intruder.write('GET / HTTP/1.1\r\n\r\n'));
      intruder.on('error', () => {});
      intruder.on('close', () => {
        intruderClosed = true;
        resolve();
      });
    });
  })();
  const switchedAt = await migrateAndSwitch({ src: src.qmp, uri: `tcp:127.0.0.1:${rcv.port}`, sides: [side], precopyTimeoutMs: PRECOPY_MS });
  const infos = await waitStatus([side], ['completed'], POSTCOPY_MS);
  await Promise.race([intruderDone, sleep(10_000)]);
  t.true(intruderClosed, 'the extra connection was closed');
  const doneAt = Date.now();
  const exit = await rcv.exited;
  // A hang guard, not a speed figure: a forgotten 30 s timer once kept receive alive after the end.
  const lingeredMs = Date.now() - doneAt;
  t.true(lingeredMs < 15_000, `receive exits once the migration is over (it took ${lingeredMs} ms after the source completed)`);
  t.is(exit.code, 0, `receive exits 0: ${exit.stderr.slice(-2000)}`);
  const r = parseResult(exit.stdout);
  const s: MigrationInfo = infos.src!;
  t.is(r.status, 'completed');
  t.is(r.connections.refused, 1, 'the extra connection was refused');
  // The preempt channel is known by its first record; QEMU may send nothing on it.
  t.is(r.connections.preempt + r.connections.silent, preempt ? 1 : 0, 'one preempt channel, recognised or silent');
  const srcRequests = s.ram?.['postcopy-requests'] ?? -1;
  t.true(srcRequests > 0, `the source served requests (${srcRequests})`);
  t.is(r.requests, srcRequests, 'our requests = the source\'s postcopy-requests');
  t.is(journalRequests(journal), srcRequests, 'the journal\'s requests = the source\'s postcopy-requests');
  t.true(r.deviceStateBytes > 0);
  t.is(readFileSync(join(dir, 'device.bin')).length, r.deviceStateBytes);
  if (preempt) t.true(r.pagesByChannel.preempt > 0, `pages came on the preempt channel (${r.pagesByChannel.preempt})`);
  await compareMemory(t, src, saveDir);
  replaysCleanly(t, journal);
  t.log(`requests ${r.requests} (source ${srcRequests}); pages ${JSON.stringify(r.pagesByChannel)}; blocktime ${r.blocktime?.qemu.totalMs} ms (qemu), ${((r.blocktime?.exact.totalNs ?? 0) / 1e6).toFixed(1)} ms (exact); device state ${r.deviceStateBytes} bytes`);
  t.log(`durations: precopy (migrate → start-postcopy) ${switchedAt - migrateAt} ms, postcopy (→ source completed) ${doneAt - switchedAt} ms, whole test ${Date.now() - started} ms; source total-time ${s['total-time']} ms, downtime ${s.downtime} ms`);
}

test.serial('(a) QEMU → receive: plain postcopy completes; requests match the source\'s; memory equals the source\'s', async (t) => {
  await completedRun(t, false);
});

test.serial('(b) QEMU → receive with postcopy-preempt (--preempt): completes the same way, urgent pages on the preempt channel', async (t) => {
  await completedRun(t, true);
});

test.serial('QEMU 10.0 → receive with postcopy-preempt: the newer stream (SWITCHOVER_START) completes the same way', async (t) => {
  await completedRun(t, true, '10.0');
});

async function pauseAndResume(t: ExecutionContext, preempt: boolean) {
  const dir = scratchDir('pcrecv-');
  const journal = join(dir, 'receive.db');
  const saveDir = join(dir, 'memory');
  const src = await launchSource(t, preempt);
  await setPostcopyBandwidth(src.qmp, 16 * MIB);
  const recoverPort = await freePort();
  const rcv = await startReceive(t, ['--journal', journal, '--json', '--save-memory', saveDir, '--recover-listen', `127.0.0.1:${recoverPort}`, '--pause-timeout', '60', ...(preempt ? ['--preempt'] : [])]);
  const side = qemuSide('src', src.qmp);
  const switchedAt = await migrateAndSwitch({ src: src.qmp, uri: `tcp:127.0.0.1:${rcv.port}`, sides: [side], precopyTimeoutMs: PRECOPY_MS });
  await waitStatus([side], ['postcopy-active'], 30_000);
  await sleep(1000);
  const before = (await side.queryMigrate()).ram?.['postcopy-requests'] ?? 0;
  const pausedAt = Date.now();
  await pausePostcopy(src.qmp);
  await waitStatus([side], ['postcopy-paused'], 30_000);
  const deadline = Date.now() + 10_000;
  while (!/postcopy paused/.test(rcv.stderr()) && Date.now() < deadline) await sleep(50);
  t.regex(rcv.stderr(), /postcopy paused/, 'receive noticed the break and paused');
  await setPostcopyBandwidth(src.qmp, 0);
  const resumeAt = Date.now();
  await resumeMigration(src.qmp, `tcp:127.0.0.1:${recoverPort}`);
  const infos = await waitStatus([side], ['completed'], POSTCOPY_MS, { fatal: [] });
  const doneAt = Date.now();
  const exit = await rcv.exited;
  t.is(exit.code, 0, `receive exits 0: ${exit.stderr.slice(-3000)}`);
  const r = parseResult(exit.stdout);
  t.is(r.status, 'completed');
  t.is(r.connections.resumes, 1);
  const srcRequests = infos.src!.ram?.['postcopy-requests'] ?? -1;
  const { sent: ours, beforeBreak } = requestsAroundBreak(journal, 500);
  t.is(ours, r.requests);
  t.true(ours >= srcRequests, `ours ${ours} >= the source's ${srcRequests}`);
  // What may be lost at the break: requests written in the last moments before we saw the
  // connection close, which the source had stopped reading (migrate-pause shut it down).
  t.true(ours - srcRequests <= beforeBreak, `ours ${ours} exceeds the source's ${srcRequests} by at most the ${beforeBreak} requests sent in the 500 ms before the break`);
  await compareMemory(t, src, saveDir);
  replaysCleanly(t, journal);
  t.log(`requests: source ${before} before the pause, ${srcRequests} in all; ours ${ours} (${beforeBreak} sent in the 500 ms before the break); pages ${JSON.stringify(r.pagesByChannel)}; pauses ${r.pauses}`);
  t.log(`durations: postcopy before the pause ${pausedAt - switchedAt} ms, pause → resume ${resumeAt - pausedAt} ms, resume → completed ${doneAt - resumeAt} ms`);
  if (preempt) t.is(r.connections.preempt, 2, 'a preempt channel before the pause and one after the resume');
  t.log(`receive said: ${exit.stderr.split('\n').filter((l) => /connection #|paused|RESUME|completed/.test(l)).join(' | ')}`);
}

test.serial('(c) migrate-pause on the source mid-postcopy, then migrate resume=true to --recover-listen: completes, memory equal', async (t) => {
  await pauseAndResume(t, false);
});

test.serial('(c) with postcopy-preempt: the same recovery, with a new preempt channel', async (t) => {
  await pauseAndResume(t, true);
});

test.serial('(d) the source SIGKILLed mid-postcopy: receive stays paused with its outstanding requests, then exits 3', async (t) => {
  const dir = scratchDir('pcrecv-');
  const journal = join(dir, 'receive.db');
  const src = await launchSource(t, false);
  await setPostcopyBandwidth(src.qmp, 16 * MIB);
  const rcv = await startReceive(t, ['--journal', journal, '--json', '--pause-timeout', '3']);
  const side = qemuSide('src', src.qmp);
  await migrateAndSwitch({ src: src.qmp, uri: `tcp:127.0.0.1:${rcv.port}`, sides: [side], precopyTimeoutMs: PRECOPY_MS });
  await waitStatus([side], ['postcopy-active'], 30_000);
  await sleep(500);
  src.kill('SIGKILL');
  const killedAt = Date.now();
  const exit = await rcv.exited;
  t.is(exit.code, 3, exit.stderr.slice(-2000));
  const r = parseResult(exit.stdout);
  t.is(r.status, 'paused');
  t.true(r.outstanding > 0, `requests outstanding at the end (${r.outstanding})`);
  t.is(r.outstandingPages.length, Math.min(r.outstanding, 64));
  const j = JournalReader.open(journal);
  try {
    t.is(j.meta.run?.result && (j.meta.run.result as { status: string }).status, 'paused');
  } finally {
    j.close();
  }
  replaysCleanly(t, journal);
  t.log(`exit 3 ${Date.now() - killedAt} ms after the SIGKILL (pause timeout 3 s); ${r.outstanding} outstanding: ${JSON.stringify(r.outstandingPages.slice(0, 4))}…; requests ${r.requests}; pages ${JSON.stringify(r.pagesByChannel)}`);
});

const NOT_THE_MAGIC = /^postcopy receive: refused the incoming migration \(not-qemu\): main stream: stream starts with .* not the magic/;
for (const [name, bytes, expected, reason] of [
  ['random bytes', randomBytes(4096), NOT_THE_MAGIC, 'bad-magic'],
  ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'), NOT_THE_MAGIC, 'bad-magic'],
  ['a truncated header', Buffer.from('QEVM\0\0'), /^postcopy receive: refused the incoming migration \(not-qemu\): main stream cut at byte 6 inside the stream header \(6 of its 8 bytes arrived\)$/, 'cut'],
] as const) {
  test.serial(`bad input: ${name} → exit 2, a typed one-line error, the refusal journaled`, async (t) => {
    const dir = scratchDir('pcrecv-');
    const journal = join(dir, 'receive.db');
    if (name === 'random bytes') bytes[0] = 0x00; // never 'Q' by chance
    const rcv = await startReceive(t, ['--journal', journal, '--quiet']);
    // --quiet says nothing when it listens: connect until it does (a loaded machine starts it slowly).
    let sock: Socket | null = null;
    for (let i = 0; i < 200 && sock === null; i++) {
      sock = await new Promise<Socket | null>((resolve) => {
        const s = connect(rcv.port, '127.0.0.1', () => resolve(s));
        s.once('error', () => resolve(null));
      });
      if (sock === null) await sleep(50);
    }
    t.truthy(sock, 'receive listens');
    sock!.on('error', () => {});
    sock!.end(bytes);
    const exit = await rcv.exited;
    sock!.destroy();
    t.is(exit.code, 2);
    const lines = exit.stderr.trim().split('\n');
    t.is(lines.length, 1, `one line: ${exit.stderr}`);
    t.regex(lines[0]!, expected);
    const j = JournalReader.open(journal);
    try {
      const refused = j.meta.run?.refused as { code: string; wire: { reason: string } } | undefined;
      t.is(refused?.code, 'RECEIVE_REFUSED');
      t.is(refused?.wire.reason, reason);
    } finally {
      j.close();
    }
    replaysCleanly(t, journal);
  });
}

test.serial('(e) a MEM_SIZE above --max-memory is refused before allocating: exit 2, journaled; the source fails', async (t) => {
  const dir = scratchDir('pcrecv-');
  const journal = join(dir, 'receive.db');
  const src = await launchSource(t, false);
  const rcv = await startReceive(t, ['--journal', journal, '--json', '--max-memory', '64M']);
  await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${rcv.port}` });
  const exit = await rcv.exited;
  t.is(exit.code, 2, exit.stderr);
  const r = parseResult(exit.stdout);
  t.is(r.status, 'refused');
  t.regex(r.error?.message ?? '', /\(too-large\): MEM_SIZE offers \d+ bytes .* above --max-memory 67108864/);
  t.deepEqual(r.blocks, [], 'no guest memory was laid out');
  const infos = await waitStatus([qemuSide('src', src.qmp)], ['failed'], 30_000, { fatal: [] });
  t.is(infos.src!.status, 'failed');
  const j = JournalReader.open(journal);
  try {
    t.is((j.meta.run?.refused as { reason: string }).reason, 'too-large');
  } finally {
    j.close();
  }
  replaysCleanly(t, journal);
});

test.serial('(f) the source cancels during precopy (migrate_cancel): the migration fails before postcopy, exit 1', async (t) => {
  const dir = scratchDir('pcrecv-');
  const journal = join(dir, 'receive.db');
  const src = await launchSource(t, false);
  const rcv = await startReceive(t, ['--journal', journal, '--json']);
  const side = qemuSide('src', src.qmp);
  await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${rcv.port}` });
  await waitStatus([side], ['active'], 30_000);
  await sleep(300);
  await src.qmp.execute('migrate_cancel');
  const exit = await rcv.exited;
  t.is(exit.code, 1, exit.stderr.slice(-2000));
  const r = parseResult(exit.stdout);
  t.is(r.status, 'failed');
  t.is(r.requests, 0);
  replaysCleanly(t, journal);
  t.log(`receive said: ${exit.stderr.trim().split('\n').slice(-2).join(' | ')}`);
});
