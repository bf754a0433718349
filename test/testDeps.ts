import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * What `scripts/test-deps.mjs` (npm test's pretest step) found on this machine, read from
 * test-output/test-deps.json: the one place tests take the paths of outside programs from.
 */
export interface TestDeps {
  /** Chrome or Chromium executable (CHROME_PATH, else on PATH). */
  chromium: string;
  /** qemu-system-x86_64 (QEMU_SYSTEM_X86, else on PATH). */
  qemu: string;
  /** What `qemu --version` says after "QEMU emulator version", e.g. "7.2.22 (Debian …)". */
  qemuVersion: string;
  /** QEMU 10.0 from Debian's bookworm-backports, unpacked beside 7.2 (scripts/qemu-backports.mjs): run with `-L` each data dir. */
  qemu10: { qemu: string; dataDirs: string[]; version: string };
  /** kvm only when /dev/kvm opens read-write. */
  accel: 'kvm' | 'tcg';
  /** Why that accelerator, in words (printed once by the QEMU tests). */
  accelReason: string;
  as: string;
  ld: string;
}

export const TEST_DEPS_FILE = fileURLToPath(new URL('../../test-output/test-deps.json', import.meta.url));

let cached: TestDeps | undefined;

/** The dependencies found by the pretest step; throws with what to do when it has not run. */
export function testDeps(): TestDeps {
  if (cached) return cached;
  let text: string;
  try {
    text = readFileSync(TEST_DEPS_FILE, 'utf8');
  } catch {
    throw new Error(`${TEST_DEPS_FILE} is missing: run npm test, whose pretest finds the dependencies (or node scripts/test-deps.mjs)`);
  }
  const d = JSON.parse(text) as Partial<TestDeps>;
  for (const key of ['chromium', 'qemu', 'qemuVersion', 'accel', 'accelReason'] as const) {
    if (typeof d[key] !== 'string') {
      throw new Error(`${TEST_DEPS_FILE} has no '${key}': run npm test, whose pretest finds the dependencies (or node scripts/test-deps.mjs)`);
    }
  }
  if (typeof d.qemu10?.qemu !== 'string' || !Array.isArray(d.qemu10.dataDirs)) {
    throw new Error(`${TEST_DEPS_FILE} has no 'qemu10': run npm test, whose pretest unpacks QEMU 10.0 (or node scripts/test-deps.mjs)`);
  }
  if (d.accel !== 'kvm' && d.accel !== 'tcg') throw new Error(`${TEST_DEPS_FILE}: accel is '${d.accel}', expected kvm or tcg`);
  cached = d as TestDeps;
  return cached;
}
