#!/usr/bin/env node
// Finds what the tests need outside node_modules, installs what is missing with Debian's apt
// when it can, and writes what it found to test-output/test-deps.json (read by test/testDeps.ts).
// Run by `npm test`'s pretest step after the build. Plain Node, no dependencies.
//
//   chromium   CHROME_PATH, else chromium / chromium-browser / google-chrome / google-chrome-stable on PATH
//   qemu       QEMU_SYSTEM_X86, else qemu-system-x86_64 on PATH
//   as, ld     binutils, which build the guest (scripts/build-guest.mjs)
//   qemu10     QEMU 10.0 from Debian's bookworm-backports, unpacked into .cache/ (scripts/qemu-backports.mjs)
//              beside the system's 7.2; QEMU_10_SYSTEM_X86 (with QEMU_10_DATA_DIRS, ':'-separated) overrides it
//
// If the build skipped the guest for want of binutils, it is built here once they are installed.
// Missing ones: as root with apt-get, `apt-get update` once and then one `apt-get install` of the
// Debian packages (chromium, qemu-system-x86, binutils), one line printed per package. Otherwise
// exit 1 with one line that says exactly what to install.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, closeSync, existsSync, mkdirSync, openSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureQemuBackports } from './qemu-backports.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** Each dependency: how to find it, and the Debian package that provides it. */
const deps = [
  {
    key: 'chromium', pkg: 'chromium', env: 'CHROME_PATH',
    find: () => onPath('chromium') ?? onPath('chromium-browser') ?? onPath('google-chrome') ?? onPath('google-chrome-stable'),
  },
  { key: 'qemu', pkg: 'qemu-system-x86', env: 'QEMU_SYSTEM_X86', find: () => onPath('qemu-system-x86_64') },
  { key: 'as', pkg: 'binutils', find: () => onPath('as') },
  { key: 'ld', pkg: 'binutils', find: () => onPath('ld') },
];

function locate(dep) {
  if (dep.env && process.env[dep.env]) {
    const p = process.env[dep.env];
    if (!executable(p)) {
      console.error(`test-deps: ${dep.env}=${p} is not an executable file; fix or unset ${dep.env}`);
      process.exit(1);
    }
    return p;
  }
  return dep.find();
}

let found = Object.fromEntries(deps.map((d) => [d.key, locate(d)]));
const missingPkgs = () => [...new Set(deps.filter((d) => !found[d.key]).map((d) => d.pkg))];

let missing = missingPkgs();
if (missing.length > 0) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const aptGet = onPath('apt-get');
  if (!isRoot || !aptGet) {
    const names = deps.filter((d) => !found[d.key]).map((d) => (d.env ? `${d.key} (or set ${d.env})` : d.key));
    console.error(`test-deps: missing ${names.join(', ')}: install the Debian packages ${missing.join(' ')} (apt-get install -y ${missing.join(' ')}) and run npm test again`);
    process.exit(1);
  }
  for (const pkg of missing) console.log(`test-deps: installing Debian's ${pkg} (missing)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync(aptGet, ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const install = update.status === 0
    ? spawnSync(aptGet, ['install', '-y', '-qq', ...missing], { env, stdio: ['ignore', 'ignore', 'inherit'] })
    : update;
  found = Object.fromEntries(deps.map((d) => [d.key, locate(d)]));
  missing = missingPkgs();
  if (install.status !== 0 || missing.length > 0) {
    console.error(`test-deps: apt-get could not install ${missing.join(' ') || 'everything'} (exit ${install.status}): install the Debian packages ${missing.join(' ')} by hand and run npm test again`);
    process.exit(1);
  }
}

// The build skips the guests when binutils is missing; now that it is here, build them.
const guestImages = ['bootblock.bin', 'bootblock-random.bin'].map((f) => join(root, 'dist', 'guest', f));
if (!guestImages.every((f) => existsSync(f))) {
  console.log('test-deps: building the guests now that binutils is here (node scripts/build-guest.mjs)');
  const built = spawnSync(process.execPath, [join(root, 'scripts', 'build-guest.mjs')], { stdio: 'inherit' });
  if (built.status !== 0 || !guestImages.every((f) => existsSync(f))) {
    console.error('test-deps: the guest did not build (node scripts/build-guest.mjs): see the lines above');
    process.exit(1);
  }
}

// QEMU's version, e.g. "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".
let versionLine;
try {
  versionLine = execFileSync(found.qemu, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] ?? '';
} catch (err) {
  console.error(`test-deps: ${found.qemu} --version failed (${err.message.split('\n')[0]}): reinstall Debian's qemu-system-x86 or point QEMU_SYSTEM_X86 at a working qemu-system-x86_64`);
  process.exit(1);
}
const qemuVersion = versionLine.replace(/^QEMU emulator version\s*/, '').trim();

// KVM only where /dev/kvm opens read-write; else TCG, with the reason.
let accel = 'tcg';
let accelReason;
try {
  closeSync(openSync('/dev/kvm', 'r+'));
  accel = 'kvm';
  accelReason = '/dev/kvm opens read-write';
} catch (err) {
  accelReason = `/dev/kvm cannot be opened read-write (${err.code ?? err.message}): QEMU runs under TCG (-accel tcg,thread=multi)`;
}

// QEMU 10.0, the newer peer (SWITCHOVER_START on the wire): unpacked once, never installed.
let qemu10;
if (process.env.QEMU_10_SYSTEM_X86) {
  if (!executable(process.env.QEMU_10_SYSTEM_X86)) {
    console.error(`test-deps: QEMU_10_SYSTEM_X86=${process.env.QEMU_10_SYSTEM_X86} is not an executable file; fix or unset it`);
    process.exit(1);
  }
  const v = execFileSync(process.env.QEMU_10_SYSTEM_X86, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  qemu10 = { qemu: process.env.QEMU_10_SYSTEM_X86, dataDirs: (process.env.QEMU_10_DATA_DIRS ?? '').split(':').filter(Boolean), version: v.replace(/^QEMU emulator version\s*/, '').trim() };
} else {
  try {
    qemu10 = ensureQemuBackports(undefined, (line) => console.log(`test-deps: ${line.replace(/^qemu-backports: /, '')}`));
  } catch (err) {
    console.error(`test-deps: ${err.message}; or point QEMU_10_SYSTEM_X86 (and QEMU_10_DATA_DIRS) at a QEMU 10 and run npm test again`);
    process.exit(1);
  }
}

const result = { chromium: found.chromium, qemu: found.qemu, qemuVersion, qemu10: { qemu: qemu10.qemu, dataDirs: qemu10.dataDirs, version: qemu10.version }, accel, accelReason, as: found.as, ld: found.ld };
mkdirSync(join(root, 'test-output'), { recursive: true });
writeFileSync(join(root, 'test-output', 'test-deps.json'), `${JSON.stringify(result, null, 2)}\n`);
console.log(`test-deps: chromium ${result.chromium}, qemu ${result.qemu} (${qemuVersion}), qemu 10 ${qemu10.qemu} (${qemu10.version}), accel ${accel}: ${accelReason}`);
