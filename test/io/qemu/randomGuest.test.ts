import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchQemu, RANDOM_GUEST_IMAGE, waitForGuestWork } from '../../../src/io/qemu/qemuProcess.js';
import { testDeps } from '../../testDeps.js';
import { GUEST_HALVES, lcgNext } from '../../guestWalks.js';

/**
 * guest/bootblock-random.S under real QEMU 7.2 (TCG here): one boot, until both vCPUs have
 * printed their first marker, then `stop` and a pmemsave of all RAM. Each half must hold
 * exactly the increments of the first N steps of its vCPU's LCG for some N (byte 0 of each
 * page, RAM starting zeroed), and the markers must number floor(N / 2^20).
 *
 * Except where the firmware left data: SeaBIOS uses some pages just below 240 MiB while it
 * boots (0xefe2000 and [0xefe5000, 0xf000000) with QEMU 7.2's SeaBIOS here, found by a
 * pmemsave of a guest stopped in its loop), so those pages did not start zeroed. A page
 * whose bytes 1..4095 are not all zero is such a page (the guest only writes byte 0): it is
 * left out of the comparison, and there must be few of them.
 */

const deps = testDeps();
const MIB = 1024 * 1024;
const GUEST_UP_MS = 60_000;
const MARKER_EVERY = 2 ** 20;
/** Far more steps than TCG makes in the seconds this test runs (about 1.6 M per second per vCPU here). */
const MAX_STEPS = 2 ** 30;


/**
 * The number of LCG steps from `seed` after which the histogram of pages (mod 256) equals
 * `byte0` (one byte per page of a half of byte0.length pages), found by stepping and keeping
 * the count of pages that still differ; null (with the closest it came) if none up to MAX_STEPS.
 */
function stepsMatching(seed: number, byte0: Uint8Array, firmware: Set<number>): { steps: number | null; closest: number } {
  const count = byte0.length;
  const predicted = new Uint8Array(count);
  let differing = 0;
  for (let p = 0; p < count; p++) if (byte0[p] !== 0 && !firmware.has(p)) differing++;
  let closest = differing;
  let x = seed >>> 0;
  for (let n = 1; n <= MAX_STEPS; n++) {
    x = lcgNext(x);
    const p = (x >>> 8) % count;
    if (firmware.has(p)) continue;
    const before = predicted[p] !== byte0[p];
    predicted[p] = (predicted[p]! + 1) & 0xff;
    const after = predicted[p] !== byte0[p];
    if (before !== after) differing += after ? 1 : -1;
    if (differing === 0) return { steps: n, closest: 0 };
    if (differing < closest) closest = differing;
  }
  return { steps: null, closest };
}

test.serial('the random guest boots under QEMU 7.2, prints its markers, and its RAM holds exactly its LCG walk', async (t) => {
  const q = await launchQemu({ name: 'random', guestImage: RANDOM_GUEST_IMAGE, qemuPath: deps.qemu, log: (l) => t.log(l) });
  t.teardown(() => q.dispose());
  const waited = await waitForGuestWork(q, GUEST_UP_MS);
  t.log(`first 'B' and 'D' after ${waited} ms (QEMU ${deps.qemuVersion}, ${q.accel})`);
  await q.qmp.execute('stop');
  const serial = q.serial();
  t.true(serial.includes('A') && serial.includes('C'), `start-up markers: ${JSON.stringify(serial.slice(0, 8))}`);
  t.regex(serial, /^[ABCD]+$/);

  const dump = join(q.dir, 'ram.bin');
  await q.qmp.execute('pmemsave', { val: 0, size: 256 * MIB, filename: dump });
  const ram = readFileSync(dump);
  t.is(ram.length, 256 * MIB);
  const words = new Uint32Array(ram.buffer, ram.byteOffset, ram.byteLength / 4);
  /** Pages (relative to firstPage) with a non-zero byte other than byte 0: the firmware's. */
  const firmwarePages = (firstPage: number, pages: number): Set<number> => {
    const out = new Set<number>();
    for (let p = 0; p < pages; p++) {
      const w0 = (firstPage + p) * 1024;
      if ((words[w0]! & 0xffffff00) !== 0) out.add(p);
      else for (let i = w0 + 1; i < w0 + 1024; i++) if (words[i] !== 0) { out.add(p); break; }
    }
    return out;
  };

  const markers = ['B', 'D'];
  GUEST_HALVES.forEach((h, i) => {
    const byte0 = new Uint8Array(h.count);
    for (let p = 0; p < h.count; p++) byte0[p] = ram[(h.first + p) * 4096]!;
    const firmware = firmwarePages(h.first, h.count);
    if (firmware.size > 0) t.log(`vCPU ${i}: ${firmware.size} pages of its half hold firmware data, left out: ${[...firmware].map((p) => `0x${((h.first + p) * 4096).toString(16)}`).join(' ')}`);
    t.true(firmware.size <= 64, `vCPU ${i}: ${firmware.size} pages of the half are not zero beyond byte 0`);
    const { steps, closest } = stepsMatching(h.seed, byte0, firmware);
    t.not(steps, null, `vCPU ${i}: no number of LCG steps from seed ${h.seed} gives its half's bytes (closest: ${closest} pages differ)`);
    const printed = [...serial].filter((c) => c === markers[i]).length;
    t.log(`vCPU ${i}: ${steps} accesses, ${printed} '${markers[i]}' markers`);
    if (steps !== null) {
      t.true(steps >= MARKER_EVERY, 'a marker means 2^20 accesses were done');
      t.is(printed, Math.floor(steps / MARKER_EVERY), `vCPU ${i} prints '${markers[i]}' once per 2^20 accesses`);
    }
  });
});
