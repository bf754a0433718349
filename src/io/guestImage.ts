import { TARGET_PAGE_SIZE } from '../engine/constants.js';

/**
 * A deterministic guest RAM image for simulations and end-to-end runs: about a quarter
 * of the pages are zero (as in a freshly booted guest), the rest hold a pattern derived
 * from the seed and the page number, so a page delivered to the wrong place is caught.
 */
export function seededImage(size: number, seed: number): Uint8Array {
  if (!Number.isSafeInteger(size) || size <= 0 || size % TARGET_PAGE_SIZE !== 0) {
    throw new RangeError(`guest image size ${size} is not a positive multiple of ${TARGET_PAGE_SIZE}`);
  }
  const buf = new ArrayBuffer(size);
  const words = new Int32Array(buf);
  const perPage = TARGET_PAGE_SIZE / 4;
  let s = seed | 0;
  for (let page = 0; page < size / TARGET_PAGE_SIZE; page++) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + page) | 0;
    if ((s & 3) === 0) continue; // zero page
    const base = page * perPage;
    words.fill(s, base, base + perPage);
    words[base] = page; // every data page differs
    words[base + 1] = seed;
  }
  return new Uint8Array(buf);
}
