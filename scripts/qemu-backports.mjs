#!/usr/bin/env node
// Unpacks Debian bookworm-backports' QEMU 10.0 (qemu-system-x86, -common, -data) into a cache
// folder with `dpkg -x`, beside the system's QEMU 7.2, which it never replaces. Used by the test
// setup (scripts/test-deps.mjs) and the head-to-head bench. Plain Node, no dependencies.
//
//   node scripts/qemu-backports.mjs [--cache DIR]    prints the JSON description on stdout
//
// The mirror is the machine's own (its apt sources' deb.debian.org-style URI for bookworm);
// apt-get runs with a private state folder, so the system's package lists are left alone. The
// packages' dependencies are the same libraries QEMU 7.2 uses, so the binary runs where 7.2 does.
// The result runs as `<root>/usr/bin/qemu-system-x86_64 -L <root>/usr/share/qemu -L /usr/share/seabios`.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_CACHE = join(root, '.cache', 'qemu-backports');
const SUITE = 'bookworm-backports';
const PACKAGES = ['qemu-system-x86', 'qemu-system-common', 'qemu-system-data'];

/** The Debian mirror this machine's apt uses for the main archive. */
function machineMirror() {
  const files = ['/etc/apt/sources.list', ...safeList('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f))];
  for (const f of files) {
    let text;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // deb822 (URIs: …) and one-line (deb URI suite …) forms; the security archive is not the main one.
    for (const m of text.matchAll(/^\s*URIs:\s*(\S+)/gm)) if (!/security/.test(m[1])) return m[1];
    for (const m of text.matchAll(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/gm)) if (!/security/.test(m[1])) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

function safeList(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function fail(message) {
  throw new Error(`qemu-backports: ${message}`);
}

/**
 * Returns { qemu, dataDirs, version, root } for QEMU 10.0 under `cache`, downloading and
 * unpacking it the first time. `log` gets one line per step that takes time.
 */
export function ensureQemuBackports(cache = DEFAULT_CACHE, log = (line) => console.error(line)) {
  const unpacked = join(cache, 'root');
  const described = join(cache, 'qemu.json');
  if (existsSync(described)) {
    const d = JSON.parse(readFileSync(described, 'utf8'));
    if (existsSync(d.qemu)) return d;
  }
  for (const tool of ['apt-get', 'dpkg']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) fail(`${tool} is not on PATH: QEMU 10.0 is unpacked from Debian's ${SUITE} packages`);
  }
  rmSync(cache, { recursive: true, force: true });
  const sources = join(cache, 'sources.list.d');
  const state = join(cache, 'apt-state');
  const apt = join(cache, 'apt-cache');
  const debs = join(cache, 'debs');
  for (const d of [sources, join(state, 'lists', 'partial'), join(apt, 'archives', 'partial'), debs]) mkdirSync(d, { recursive: true });
  const mirror = machineMirror();
  writeFileSync(join(sources, 'backports.sources'), `Types: deb\nURIs: ${mirror}\nSuites: ${SUITE}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`);
  const aptOptions = [
    '-o', 'Dir::Etc::SourceList=/dev/null', '-o', `Dir::Etc::SourceParts=${sources}`,
    '-o', `Dir::State=${state}`, '-o', `Dir::Cache=${apt}`, '-o', 'Dir::State::status=/var/lib/dpkg/status',
    '-o', 'APT::Sandbox::User=root', '-qq',
  ];
  log(`qemu-backports: fetching ${SUITE}'s package list from ${mirror}`);
  const update = spawnSync('apt-get', [...aptOptions, 'update'], { encoding: 'utf8' });
  if (update.status !== 0) fail(`apt-get update of ${SUITE} from ${mirror} failed (exit ${update.status}): ${update.stderr.trim().split('\n').pop()}`);
  const policy = execFileSync('apt-cache', [...aptOptions, 'policy', 'qemu-system-x86'], { encoding: 'utf8' });
  const version = [...policy.matchAll(/^\s+(?:\*\*\* )?(\S+) \d+\n\s+\d+ \S+ bookworm-backports\//gm)].map((m) => m[1])[0];
  if (!version) fail(`${SUITE} at ${mirror} has no qemu-system-x86`);
  log(`qemu-backports: downloading ${PACKAGES.join(', ')} ${version}`);
  const download = spawnSync('apt-get', [...aptOptions, 'download', ...PACKAGES.map((p) => `${p}=${version}`)], { cwd: debs, encoding: 'utf8' });
  if (download.status !== 0) fail(`apt-get download failed (exit ${download.status}): ${download.stderr.trim().split('\n').pop()}`);
  for (const f of readdirSync(debs).filter((f) => f.endsWith('.deb'))) execFileSync('dpkg', ['-x', join(debs, f), unpacked]);
  const qemu = join(unpacked, 'usr', 'bin', 'qemu-system-x86_64');
  if (!existsSync(qemu)) fail(`the unpacked packages have no usr/bin/qemu-system-x86_64 under ${unpacked}`);
  const dataDirs = [join(unpacked, 'usr', 'share', 'qemu'), '/usr/share/seabios'];
  const versionLine = execFileSync(qemu, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  const d = { qemu, dataDirs, version: versionLine.replace(/^QEMU emulator version\s*/, '').trim(), debianVersion: version, root: unpacked };
  writeFileSync(described, `${JSON.stringify(d, null, 2)}\n`);
  rmSync(debs, { recursive: true, force: true });
  rmSync(apt, { recursive: true, force: true });
  return d;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--cache');
  try {
    console.log(JSON.stringify(ensureQemuBackports(i > 0 ? process.argv[i + 1] : DEFAULT_CACHE), null, 2));
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
