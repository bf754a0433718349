import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { uffdTest } from './helpers.js';

const backendUrl = new URL('../../src/io/backends/uffdBackend.js', import.meta.url).href;

// A child without CAP_SYS_PTRACE cannot use userfaultfd(2) while
// vm.unprivileged_userfaultfd is 0; the backend must then open /dev/userfaultfd.
uffdTest('without CAP_SYS_PTRACE the userfault fd comes from /dev/userfaultfd, and faults are served through it', (t) => {
  const sysctl = readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
  t.log(`vm.unprivileged_userfaultfd=${sysctl}, /dev/userfaultfd ${existsSync('/dev/userfaultfd') ? 'present' : 'absent'}`);
  const child = `
    const { UffdBackend } = await import(${JSON.stringify(backendUrl)});
    const probe = UffdBackend.probe([{ name: 'ram', length: 4096, hostPageSize: 4096 }]);
    if (!probe.ok) { console.log(JSON.stringify({ open: probe.checks.find((c) => c.name === 'userfaultfd-open') })); process.exit(0); }
    const b = new UffdBackend([{ name: 'ram', length: 16 * 4096, hostPageSize: 4096 }]);
    const page = new Uint8Array(4096).fill(7);
    const base = b.hostAddress(0);
    b.listen((batch) => { for (let i = 0; i < batch.count; i++) b.copy(0, Math.floor((batch.addresses[i] - base) / 4096) * 4096, page, 0, 4096); });
    b.register(0);
    await b.startVcpus({ pattern: 'sequential-increment' }).done;
    const mem = b.read(0, 0, 16 * 4096);
    const status = b.status();
    b.close();
    console.log(JSON.stringify({ open: probe.checks.find((c) => c.name === 'userfaultfd-open'), openedWith: status.openedWith, faults: status.stats.faults, first: mem[0], second: mem[1] }));
  `;
  const r = spawnSync('setpriv', ['--bounding-set', '-sys_ptrace', '--inh-caps', '-sys_ptrace', process.execPath, '--input-type=module', '-e', child], {
    encoding: 'utf8',
  });
  t.is(r.status, 0, `${r.error?.message ?? ''} ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { open: { ok: boolean; detail: string }; openedWith: string; faults: number; first: number; second: number };
  t.log(out.open.detail);
  if (sysctl === '0' && !existsSync('/dev/userfaultfd')) {
    // Nothing to fall back to: the probe must say both ways were refused.
    t.false(out.open.ok);
    t.regex(out.open.detail, /userfaultfd\(2\): EPERM.*\/dev\/userfaultfd: ENOENT/);
    return;
  }
  t.true(out.open.ok);
  if (sysctl === '0') {
    t.is(out.openedWith, '/dev/userfaultfd');
    t.regex(out.open.detail, /userfaultfd\(2\): EPERM/);
  }
  t.is(out.faults, 16);
  t.is(out.first, 8);
  t.is(out.second, 7);
});
