import test from 'ava';
import { compareDigests } from '../../src/cli/migrateCommand.js';
import { pageDigest, seededImage } from '../../src/io/backends/guestImage.js';

const PAGE = 4096;
const PAGES = 64;

/** The destination after one sequential-increment pass: byte 0 of every page + 1. */
function afterOnePass(src: Uint8Array): Uint8Array {
  const dst = src.slice();
  for (let p = 0; p < PAGES; p++) dst[p * PAGE] = (dst[p * PAGE]! + 1) & 0xff;
  return dst;
}

test('verification passes when the destination is the source plus the vCPUs\' own writes', (t) => {
  const src = seededImage(PAGES * PAGE, 3);
  const dst = afterOnePass(src);
  t.deepEqual(compareDigests(pageDigest(src, PAGES), { ...pageDigest(dst, PAGES), vcpuAccesses: [PAGES / 2, PAGES / 2], passes: 1 }, 'sequential-increment'), []);
});

test('verification names the first differing pages: a changed byte anywhere in a page, or a missing increment', (t) => {
  const src = seededImage(PAGES * PAGE, 3);
  const dst = afterOnePass(src);
  dst[5 * PAGE + 100] ^= 0x40; // content lost or corrupted
  dst[9 * PAGE] = (dst[9 * PAGE]! - 1) & 0xff; // the vCPU's write was lost (page placed over it)
  dst[63 * PAGE + 4095] ^= 1; // the last byte of the last page
  t.deepEqual(compareDigests(pageDigest(src, PAGES), { ...pageDigest(dst, PAGES), vcpuAccesses: [PAGES / 2, PAGES / 2], passes: 1 }, 'sequential-increment'), [5, 9, 63]);
});

test('for random workloads the increments must add up to the vCPUs\' accesses', (t) => {
  const src = seededImage(PAGES * PAGE, 4);
  const dst = src.slice();
  dst[7 * PAGE] = (dst[7 * PAGE]! + 3) & 0xff;
  dst[8 * PAGE] = (dst[8 * PAGE]! + 2) & 0xff;
  const digest = pageDigest(dst, PAGES);
  t.deepEqual(compareDigests(pageDigest(src, PAGES), { ...digest, vcpuAccesses: [4, 1], passes: 1 }, 'random'), []);
  t.deepEqual(compareDigests(pageDigest(src, PAGES), { ...digest, vcpuAccesses: [4, 2], passes: 1 }, 'random'), [-1], 'one access unaccounted for');
});
