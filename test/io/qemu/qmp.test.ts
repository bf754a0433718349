import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setCapabilities, type MigrationInfo } from '../../../src/io/qemu/qemuMigration.js';
import { launchQemu, QemuLaunchError, type QemuProcess } from '../../../src/io/qemu/qemuProcess.js';
import { QmpClient, QmpConnectionError, QmpError } from '../../../src/io/qemu/qmp.js';
import { scratchDir } from '../../scratchDir.js';
import { testDeps } from '../../testDeps.js';

/**
 * The QMP client and the QEMU launcher against a real qemu-system-x86_64. The QEMUs here are
 * started with -S (vCPUs stopped), so they cost next to no CPU.
 */

const deps = testDeps();

async function quiet(t: { teardown: (f: () => Promise<void>) => void }, name: string, incoming = false): Promise<QemuProcess> {
  const q = await launchQemu({ name, incoming, qemuPath: deps.qemu, extraArgs: ['-S'], log: () => {} });
  t.teardown(() => q.dispose());
  return q;
}

test.serial('QMP: an unknown command and a bad argument reject with QMP\'s class and description; the connection goes on', async (t) => {
  const q = await quiet(t, 'qmp', true);
  const unknown = await t.throwsAsync(q.qmp.execute('no-such-command'), { instanceOf: QmpError });
  t.is(unknown?.qmpClass, 'CommandNotFound');
  t.is(unknown?.desc, 'The command no-such-command has not been found');
  t.is(unknown?.command, 'no-such-command');
  t.is(unknown?.code, 'QMP');
  const bad = await t.throwsAsync(setCapabilities(q.qmp, { 'no-such-capability': true }), { instanceOf: QmpError });
  t.is(bad?.qmpClass, 'GenericError');
  t.regex(bad?.desc ?? '', /no-such-capability/);
  // Still usable afterwards, and concurrent commands get their own answers (ids).
  const [status, info] = await Promise.all([q.qmp.execute<{ status: string }>('query-status'), q.qmp.execute<MigrationInfo>('query-migrate')]);
  t.is(status.status, 'inmigrate');
  t.deepEqual(info, {});
  t.deepEqual((q.qmp.greeting.QMP as { version: { qemu: { major: number } } }).version.qemu.major, Number(deps.qemuVersion.split('.')[0]));
  t.log(`greeting: ${JSON.stringify(q.qmp.greeting)}`);
});

test.serial('QMP: events are collected and waited for, from a mark or from now on; a missing one times out', async (t) => {
  const q = await quiet(t, 'events');
  const mark = q.qmp.mark();
  await q.qmp.execute('cont');
  const resume = await q.qmp.waitEvent('RESUME', 5000, { since: mark });
  t.true(resume.timestampUs > 1e15, 'QEMU\'s timestamp in µs');
  await q.qmp.execute('stop');
  const stop = await q.qmp.waitEvent('STOP', 5000, { since: mark });
  t.true(stop.timestampUs >= resume.timestampUs);
  // From now on (the default), the STOP above no longer counts.
  const err = await t.throwsAsync(q.qmp.waitEvent('STOP', 200), { instanceOf: QmpConnectionError });
  t.regex(err?.message ?? '', /no STOP event within 200 ms/);
  t.deepEqual(q.qmp.events.map((e) => e.event), ['RESUME', 'STOP']);
});

test.serial('QMP: connecting to a socket that never appears fails in bounded time; a killed QEMU closes the connection', async (t) => {
  const dir = scratchDir('postcopy-qmp-');
  const started = Date.now();
  const err = await t.throwsAsync(QmpClient.connect(join(dir, 'none.qmp'), { timeoutMs: 300 }), { instanceOf: QmpConnectionError });
  t.regex(err?.message ?? '', /cannot connect/);
  t.true(Date.now() - started < 3000);

  const q = await quiet(t, 'killed');
  q.kill('SIGKILL');
  t.deepEqual(await q.exited, { code: null, signal: 'SIGKILL' });
  await t.throwsAsync(q.qmp.execute('query-status'), { instanceOf: QmpConnectionError });
  t.true(q.qmp.closed);
});

test.serial('a QEMU that exits before QMP answers is reported with its own error output', async (t) => {
  const err = await t.throwsAsync(launchQemu({ name: 'bad', qemuPath: deps.qemu, extraArgs: ['-no-such-option'], log: () => {} }), { instanceOf: QemuLaunchError });
  t.regex(err?.message ?? '', /exited \(code 1/);
  t.regex(err?.message ?? '', /-no-such-option: invalid option/);
});

/** Dead or a zombie (nobody may reap an orphan in a container). */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

for (const how of ['exit', 'SIGKILL'] as const) {
  test.serial(`a QEMU is killed when the Node process that launched it ends (${how})`, async (t) => {
    const dir = scratchDir('postcopy-orphan-');
    const script = join(dir, 'orphan.mjs');
    const module = new URL('../../../src/io/qemu/qemuProcess.js', import.meta.url).href;
    writeFileSync(script, [
      `import { launchQemu } from ${JSON.stringify(module)};`,
      `const q = await launchQemu({ name: 'orphan', qemuPath: ${JSON.stringify(deps.qemu)}, extraArgs: ['-S'], log: () => {} });`,
      'console.log(JSON.stringify({ pid: q.pid, dir: q.dir }));',
      `${how === 'exit' ? 'process.exit(0)' : "process.kill(process.pid, 'SIGKILL')"};`,
    ].join('\n'));
    const run = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
    const { pid, dir: qemuDir } = JSON.parse(run.stdout.trim()) as { pid: number; dir: string };
    const deadline = Date.now() + 5000;
    while (!gone(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.true(gone(pid), `QEMU ${pid} is gone after its parent ended by ${how}`);
    if (how === 'exit') t.false(existsSync(qemuDir), 'its folder is removed by the exit hook');
    else rmSync(qemuDir, { recursive: true, force: true });
  });
}
