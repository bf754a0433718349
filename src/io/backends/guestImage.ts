import { hash } from 'node:crypto';
import { TARGET_PAGE_SIZE } from '../../engine/constants.js';

/**
 * A deterministic guest RAM image for simulations and end-to-end runs: about a quarter
 * of the pages are zero (as in a freshly booted guest), the rest hold a pattern derived
 * from the seed and the page number, so a page delivered to the wrong place is caught.
 */
export function seededImage(size: number, seed: number, into?: ArrayBuffer): Uint8Array {
  if (!Number.isSafeInteger(size) || size <= 0 || size % TARGET_PAGE_SIZE !== 0) {
    throw new RangeError(`guest image size ${size} is not a positive multiple of ${TARGET_PAGE_SIZE}`);
  }
  if (into !== undefined && into.byteLength < size) {
    throw new RangeError(`guest image buffer of ${into.byteLength} bytes is smaller than the image (${size})`);
  }
  // A reused buffer (`into`) saves the first-touch page fault of every 4 KiB of a fresh one;
  // its old bytes are overwritten, zero pages included.
  const buf = into ?? new ArrayBuffer(size);
  const words = new Int32Array(buf, 0, size / 4);
  const perPage = TARGET_PAGE_SIZE / 4;
  let s = seed | 0;
  for (let page = 0; page < size / TARGET_PAGE_SIZE; page++) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + page) | 0;
    if ((s & 3) === 0) {
      if (into !== undefined) words.fill(0, page * perPage, (page + 1) * perPage);
      continue; // zero page
    }
    const base = page * perPage;
    words.fill(s, base, base + perPage);
    words[base] = page; // every data page differs
    words[base + 1] = seed;
  }
  return new Uint8Array(buf, 0, size);
}

/**
 * The verification digest of guest memory, page by page: 8 bytes of SHA-1 over bytes
 * 1..4095, plus byte 0 (the byte the guest's vCPUs increment, compared separately).
 * Both sides of a migration compute it; the orchestrator compares them (pure).
 */
export function pageDigest(memory: Uint8Array, pages: number): { pages: number; hashes: string; byte0: string } {
  const hashes = Buffer.allocUnsafe(pages * 8);
  const byte0 = Buffer.allocUnsafe(pages);
  for (let p = 0; p < pages; p++) {
    const off = p * TARGET_PAGE_SIZE;
    // One-shot hash: no Hash object per page (65 536 of them for 256 MiB kept the GC busy).
    hash('sha1', memory.subarray(off + 1, off + TARGET_PAGE_SIZE), 'buffer').copy(hashes, p * 8, 0, 8);
    byte0[p] = memory[off]!;
  }
  return { pages, hashes: hashes.toString('base64'), byte0: byte0.toString('base64') };
}
