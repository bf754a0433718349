import test, { type ExecutionContext } from 'ava';
import { launchQemu, type QemuProcess, waitForGuestWork } from '../../../src/io/qemu/qemuProcess.js';
import {
  freeTcpUri,
  getCapabilities,
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
  MigrationDriveError,
  type MigrationInfo,
} from '../../../src/io/qemu/qemuMigration.js';
import { QmpError } from '../../../src/io/qemu/qmp.js';
import { testDeps } from '../../testDeps.js';

/**
 * Real QEMU → real QEMU postcopy on 127.0.0.1, both booting guest/bootblock.S (two vCPUs
 * dirtying RAM forever), under whatever accelerator this machine has (TCG without /dev/kvm).
 * Serial: each test runs two QEMUs with two vCPUs each.
 *
 * A test is skipped only when the destination QEMU refuses the postcopy-ram capability
 * (the kernel refuses userfaultfd), and then the reason is printed.
 */

const deps = testDeps();
const MIB = 1024 * 1024;
/** Bounds per phase; under TCG here a whole migration takes a few seconds. */
const GUEST_UP_MS = 60_000;
const PRECOPY_MS = 120_000;
const POSTCOPY_MS = 180_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function launch(t: ExecutionContext, name: string, incoming: boolean): Promise<QemuProcess> {
  const q = await launchQemu({ name, incoming, qemuPath: deps.qemu, log: (l) => t.log(l) });
  t.teardown(() => q.dispose());
  return q;
}

/** Does the destination QEMU take postcopy-ram here? (It asks the kernel for userfaultfd.) */
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
console.log(`[qemu tests] ${deps.qemu}: QEMU ${deps.qemuVersion}`);
if (refused) console.log(`[qemu tests] the destination QEMU refuses postcopy-ram on this host, QEMU→QEMU tests are skipped: ${refused}`);
const qemuTest = refused ? test.serial.skip : test.serial;

/** Until the guest's two vCPUs are both in their work loop on `q` ('B' and 'D' on COM1). */
function guestRunning(q: QemuProcess): Promise<number> {
  return waitForGuestWork(q, GUEST_UP_MS);
}

interface PairOptions {
  preempt?: boolean;
  /** max-postcopy-bandwidth on the source (bytes/s), before migrate. */
  postcopyBandwidth?: number;
}

async function startPair(t: ExecutionContext, o: PairOptions) {
  const [src, dst] = await Promise.all([launch(t, 'src', false), launch(t, 'dst', true)]);
  const caps = { ...postcopyCapabilities({ preempt: o.preempt }), events: true };
  await setCapabilities(src.qmp, caps);
  await setCapabilities(dst.qmp, caps);
  if (o.postcopyBandwidth !== undefined) await setPostcopyBandwidth(src.qmp, o.postcopyBandwidth);
  const bootMs = await guestRunning(src);
  const uri = await freeTcpUri();
  await startIncoming(dst.qmp, uri);
  const sides = [qemuSide('src', src.qmp), qemuSide('dst', dst.qmp)];
  const [srcCaps, dstCaps] = [await getCapabilities(src.qmp), await getCapabilities(dst.qmp)];
  const on = (c: Record<string, boolean>) => Object.keys(c).filter((k) => c[k]).join(',');
  t.log(`capabilities on: src ${on(srcCaps)}; dst ${on(dstCaps)}`);
  for (const [name, c] of [['src', srcCaps], ['dst', dstCaps]] as const) {
    for (const cap of Object.keys(caps)) t.true(c[cap], `${name} has ${cap} on`);
  }
  return { src, dst, uri, sides, bootMs };
}

/** Waits (bounded) until `q`'s COM1 has both a 'B' and a 'D' past byte `from`. */
async function serialGrows(q: QemuProcess, from: number, timeoutMs: number): Promise<{ grew: boolean; text: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = q.serial();
    const tail = text.slice(from);
    if (tail.includes('B') && tail.includes('D')) return { grew: true, text };
    if (Date.now() >= deadline) return { grew: text.length > from, text };
    await sleep(100);
  }
}

function statuses(q: QemuProcess): string[] {
  return q.qmp.events.filter((e) => e.event === 'MIGRATION').map((e) => String(e.data.status));
}

/** The checks shared by every completed run; returns the source's query-migrate. */
async function checkCompleted(t: ExecutionContext, src: QemuProcess, dst: QemuProcess, infos: Record<string, MigrationInfo>, switchedAtSerial: number) {
  const s = infos.src!;
  const d = infos.dst!;
  t.is(s.status, 'completed');
  t.is(d.status, 'completed');
  const requests = s.ram?.['postcopy-requests'] ?? 0;
  t.true(requests > 0, `the source served page requests (postcopy-requests ${requests})`);
  t.true((s.ram?.['postcopy-bytes'] ?? 0) > 0, 'pages went after the switch');
  t.is(typeof d['postcopy-blocktime'], 'number', 'the destination reports its blocktime once completed');
  t.truthy(dst.qmp.events.find((e) => e.event === 'RESUME'), 'the destination ran the guest (RESUME)');
  t.truthy(src.qmp.events.find((e) => e.event === 'STOP'), 'the source stopped the guest (STOP)');
  // The guest goes on on the destination: its COM1 keeps growing with both vCPUs' markers
  // (a few per second under TCG here; bounded wait for slower, busier machines).
  const first = dst.serial();
  const grown = await serialGrows(dst, first.length, 20_000);
  const later = grown.text.slice(first.length);
  t.true(grown.grew, `the destination's serial keeps growing after completion (${first.length} → ${grown.text.length} bytes)`);
  t.true(later.includes('B') && later.includes('D'), `both vCPUs write on the destination after completion: ${JSON.stringify(later.slice(0, 40))}…`);
  t.log(`src serial up to the switch ${JSON.stringify(src.serial().slice(0, Math.min(switchedAtSerial, 24)))}…, dst serial (all of it starts after the switch) ${JSON.stringify(grown.text.slice(0, 24))}… (${grown.text.length} bytes)`);
  t.log(`src: total-time ${s['total-time']} ms, downtime ${s.downtime} ms, dirty-sync-count ${s.ram?.['dirty-sync-count']}, postcopy-requests ${requests}, precopy ${((s.ram?.['precopy-bytes'] ?? 0) / MIB).toFixed(1)} MiB, postcopy ${((s.ram?.['postcopy-bytes'] ?? 0) / MIB).toFixed(1)} MiB`);
  t.log(`dst: postcopy-blocktime ${d['postcopy-blocktime']} ms, per vCPU ${JSON.stringify(d['postcopy-vcpu-blocktime'])}`);
  t.log(`MIGRATION events: src ${statuses(src).join(' ')}; dst ${statuses(dst).join(' ')}`);
  return s;
}

async function plainOrPreempt(t: ExecutionContext, preempt: boolean) {
  const start = Date.now();
  const { src, dst, uri, sides, bootMs } = await startPair(t, { preempt });
  const migrateAt = Date.now();
  const switchedAt = await migrateAndSwitch({ src: src.qmp, uri, sides, precopyTimeoutMs: PRECOPY_MS });
  const switchedAtSerial = src.serial().length;
  const infos = await waitCompleted(sides, POSTCOPY_MS);
  const done = Date.now();
  await checkCompleted(t, src, dst, infos, switchedAtSerial);
  t.deepEqual(statuses(src), ['setup', 'active', 'postcopy-active', 'completed']);
  t.deepEqual(statuses(dst), ['setup', 'active', 'postcopy-active', 'completed']);
  t.log(`durations: boot to B+D ${bootMs} ms, precopy (migrate → start-postcopy) ${switchedAt - migrateAt} ms, postcopy (→ both completed) ${done - switchedAt} ms, whole test ${done - start} ms`);
}

qemuTest('QEMU → QEMU: plain postcopy completes on both sides, pages are requested, and the guest runs on in the destination', async (t) => {
  await plainOrPreempt(t, false);
});

qemuTest('QEMU → QEMU: postcopy with postcopy-preempt completes the same way', async (t) => {
  await plainOrPreempt(t, true);
});

qemuTest('QEMU → QEMU: migrate-pause in postcopy, then migrate-recover + migrate resume=true, completes', async (t) => {
  const start = Date.now();
  // A capped push keeps postcopy going long enough to be paused in the middle.
  const { src, dst, uri, sides } = await startPair(t, { postcopyBandwidth: 16 * MIB });
  const switchedAt = await migrateAndSwitch({ src: src.qmp, uri, sides, precopyTimeoutMs: PRECOPY_MS });
  const switchedAtSerial = src.serial().length;
  await waitStatus(sides, ['postcopy-active'], 30_000);
  await sleep(1000);
  const before = (await sides[0]!.queryMigrate()).ram?.['postcopy-requests'] ?? 0;
  t.true(before > 0, `requests were served before the pause (${before})`);
  const pausedAt = Date.now();
  await pausePostcopy(src.qmp);
  await waitStatus(sides, ['postcopy-paused'], 30_000);
  const paused = Date.now();
  // While paused the destination's vCPUs wait on pages that cannot come (each pass touches
  // every page of its range, and only ~16 MiB of 240 have arrived): COM1 stands still.
  await sleep(300);
  const stalled = dst.serial().length;
  await sleep(1000);
  t.is(dst.serial().length, stalled, 'the destination guest makes no progress while paused');
  const resumeUri = await freeTcpUri();
  await setPostcopyBandwidth(src.qmp, 0);
  await recoverIncoming(dst.qmp, resumeUri);
  await resumeMigration(src.qmp, resumeUri);
  await waitResumed(sides, 30_000);
  const infos = await waitCompleted(sides, POSTCOPY_MS);
  const done = Date.now();
  const s = await checkCompleted(t, src, dst, infos, switchedAtSerial);
  const srcStatuses = statuses(src);
  const paused1 = srcStatuses.indexOf('postcopy-paused');
  t.true(paused1 > 0, `the source went postcopy-paused (${srcStatuses.join(' ')})`);
  t.deepEqual(srcStatuses.slice(paused1), ['postcopy-paused', 'postcopy-recover', 'postcopy-active', 'completed']);
  // The destination's extra 'setup' comes with migrate-recover (query-migrate says postcopy-paused then).
  t.deepEqual(statuses(dst), ['setup', 'active', 'postcopy-active', 'postcopy-paused', 'setup', 'postcopy-recover', 'postcopy-active', 'completed']);
  t.log(`postcopy-requests: ${before} before the pause, ${s.ram?.['postcopy-requests']} in all`);
  t.log(`durations: postcopy before the pause ${pausedAt - switchedAt} ms, migrate-pause → both paused ${paused - pausedAt} ms, recover → both completed ${done - paused} ms, whole test ${done - start} ms`);
});

qemuTest('QEMU → QEMU: the source SIGKILLed in postcopy leaves the destination paused, and waiting for completion fails at once with both sides\' query-migrate', async (t) => {
  const { src, dst, uri, sides } = await startPair(t, { postcopyBandwidth: 16 * MIB });
  await migrateAndSwitch({ src: src.qmp, uri, sides, precopyTimeoutMs: PRECOPY_MS });
  await waitStatus(sides, ['postcopy-active'], 30_000);
  await sleep(500);
  src.kill('SIGKILL');
  await src.exited;
  const dstSide = sides[1]!;
  const killedAt = Date.now();
  const paused = await waitStatus([dstSide], ['postcopy-paused'], 30_000);
  t.log(`dst postcopy-paused ${Date.now() - killedAt} ms after the SIGKILL: ${JSON.stringify(paused.dst)}`);
  t.is(paused.dst!['postcopy-blocktime'], undefined, 'no blocktime figures while paused');
  const started = Date.now();
  const err = await t.throwsAsync(waitCompleted(sides, 60_000), { instanceOf: MigrationDriveError });
  t.true(Date.now() - started < 5000, 'it does not wait for the timeout');
  t.regex(err?.message ?? '', /src did not answer query-migrate/);
  t.regex(err?.message ?? '', /"dst":\{"status":"postcopy-paused"/);
  const err2 = await t.throwsAsync(waitCompleted([dstSide], 60_000), { instanceOf: MigrationDriveError });
  t.regex(err2?.message ?? '', /dst went postcopy-paused/);
  t.regex(dst.output(), /Detected IO failure for postcopy\. Migration paused\./);
});
