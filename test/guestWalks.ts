/**
 * The walks of the guests in guest/ (bootblock.S and bootblock-random.S), written from
 * guest/README.md alone and independent of src/, so tests can hold the guests, the native
 * vCPU patterns and the simulated ones to the same description (its first steps are checked
 * against values computed apart, in test/io/backends/bootblockPatterns.test.ts).
 */

/** 4 KiB pages of the 256 MiB guest, and each vCPU's half: [1 MiB, 120 MiB) and [120 MiB, 240 MiB). */
export const GUEST_PAGES = 65536;
export const GUEST_HALVES = [
  { first: 256, count: 30464, seed: 1 },
  { first: 30720, count: 30720, seed: 2 },
] as const;

/** One LCG step: x * 1103515245 + 12345 mod 2^32 (Math.imul is the exact low 32 bits of the product). */
export function lcgNext(x: number): number {
  return (Math.imul(x, 1103515245) + 12345) >>> 0;
}

/**
 * The first `n` page indices (within a half of `count` pages) the random guest's vCPU with
 * LCG seed `seed` increments: x = x * 1103515245 + 12345 mod 2^32, stepped before each
 * access; page = (x >> 8) mod count.
 */
export function lcgPages(seed: number, count: number, n: number): number[] {
  let x = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    x = lcgNext(x);
    out.push((x >>> 8) % count);
  }
  return out;
}

/** How many times each page of a half of `count` pages is incremented by those `n` accesses, mod 256 (byte 0 of each page). */
export function lcgByte0(seed: number, count: number, n: number): Uint8Array {
  const out = new Uint8Array(count);
  for (const p of lcgPages(seed, count, n)) out[p] = (out[p]! + 1) & 0xff;
  return out;
}

/** The pages in the order they are first touched (later repeats dropped). */
export function firstTouches(pages: readonly number[]): number[] {
  const seen = new Set<number>();
  const out: number[] = [];
  for (const p of pages) {
    if (!seen.has(p)) {
      seen.add(p);
      out.push(p);
    }
  }
  return out;
}
