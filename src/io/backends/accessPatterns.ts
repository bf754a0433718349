import { TARGET_PAGE_SIZE } from '../../engine/constants.js';
import { BackendError } from '../../errors.js';

/**
 * What simulated vCPUs do: seeded, scripted sequences of one-byte increments over a RAM
 * block. Every access increments one byte (like the bootblock guest in
 * /work/shared/fixtures/qemu-7.2/bootblock.S), so the memory a migration must end with
 * is computable from the source image and the plan alone (`expectedMemory`).
 *
 * Sequential-increment follows the bootblock and the native vCPU workers: the block's
 * 4 KiB pages are cut into consecutive shares of floor(pages / vcpus) pages, the last
 * vCPU taking the remainder, and each vCPU walks its own share. Random and hot-set
 * accesses range over the whole block, and the hot set is common to all vCPUs (like a
 * guest kernel's hot data), so several vCPUs can block on one page, each faulting.
 *
 * Bootblock and bootblock-random play the guests of guest/ (bootblock.S and
 * bootblock-random.S) over the block: each vCPU has its part of [1/256, 240/256) of the
 * block (`bootblockShare`; for 256 MiB and 2 vCPUs the guest's halves [1 MiB, 120 MiB) and
 * [120 MiB, 240 MiB)) and increments byte 0 of its pages, in order (bootblock) or at the
 * pages of the guest's LCG (`bootblockLcgNext`, vCPU i seeded i + 1; the plan seed is not
 * used, so the walk is the guest's). The native vCPU workers make the same accesses.
 */

export type AccessPatternName = 'sequential-increment' | 'random' | 'hot-set' | 'bootblock' | 'bootblock-random';
export const ACCESS_PATTERN_NAMES: readonly AccessPatternName[] = ['sequential-increment', 'random', 'hot-set', 'bootblock', 'bootblock-random'];

/** How a set of vCPUs walks one block. */
export interface AccessPlan {
  pattern: AccessPatternName;
  vcpus: number;
  /** Any safe integer; the same seed gives the same accesses. */
  seed: number;
  /** sequential-increment / bootblock: walks over the share (default 1). */
  passes?: number;
  /** random / hot-set: accesses per vCPU (default: pages / vcpus); bootblock-random: default the pages of the vCPU's share. */
  accessesPerVcpu?: number;
  /** hot-set: pages in the hot set shared by all vCPUs (default 64, at most the block). */
  hotSetPages?: number;
  /** hot-set: share of accesses that go to the hot set (default 0.9). */
  hotFraction?: number;
  /**
   * sequential-increment: the byte incremented in every page (default 0x80). The bootblock
   * touches byte 0; a byte inside the page makes fault addresses unaligned, as real fault
   * addresses generally are, so the engine's rounding is exercised. bootblock /
   * bootblock-random: default 0, as the guests. random / hot-set: default a seeded byte.
   */
  touchOffset?: number;
}

export const DEFAULT_TOUCH_OFFSET = 0x80;
export const DEFAULT_HOT_SET_PAGES = 64;
export const DEFAULT_HOT_FRACTION = 0.9;

/** One vCPU's access sequence. */
export interface AccessPattern {
  /** Byte offset in the block of the next access, or -1 when the vCPU is done. */
  next(): number;
}

/** First page and page count of vCPU `index`'s share of `pages` pages (pure). */
export function vcpuShare(pages: number, vcpus: number, index: number): { first: number; count: number } {
  const per = Math.floor(pages / vcpus);
  const first = per * index;
  return { first, count: index === vcpus - 1 ? pages - first : per };
}

/**
 * First page and page count of vCPU `index`'s share under the bootblock patterns (pure):
 * boundaries b_0 = floor(pages / 256) and b_i = floor(pages * 240 * i / (256 * vcpus)) for
 * i >= 1, vCPU i taking [b_i, b_(i+1)). For 65 536 pages (256 MiB) and 2 vCPUs: pages
 * [256, 30 720) and [30 720, 61 440), the guest's [1 MiB, 120 MiB) and [120 MiB, 240 MiB).
 * The count is 0 when the block is too small for that many vCPUs (validateAccessPlan refuses).
 */
export function bootblockShare(pages: number, vcpus: number, index: number): { first: number; count: number } {
  const boundary = (i: number): number =>
    i === 0 ? Math.floor(pages / 256) : Number((BigInt(pages) * 240n * BigInt(i)) / (256n * BigInt(vcpus)));
  const first = boundary(index);
  return { first, count: Math.max(0, boundary(index + 1) - first) };
}

/** One step of the random guest's 32-bit LCG: x * 1103515245 + 12345 mod 2^32 (pure). */
export function bootblockLcgNext(x: number): number {
  return (Math.imul(x, 1103515245) + 12345) >>> 0;
}

/** The page, within a share of `count` pages, that LCG state `x` (already stepped) picks: (x >> 8) mod count (pure). */
export function bootblockLcgPage(x: number, count: number): number {
  return (x >>> 8) % count;
}

/** Checks a plan against a block of `usedLength` bytes; throws BackendError naming the bad field. */
export function validateAccessPlan(plan: AccessPlan, usedLength: number): void {
  const bad = (what: string): never => {
    throw new BackendError('startVcpus', '', what);
  };
  if (!ACCESS_PATTERN_NAMES.includes(plan.pattern)) {
    bad(`unknown access pattern '${String(plan.pattern)}' (${ACCESS_PATTERN_NAMES.join(', ')})`);
  }
  if (!Number.isInteger(plan.vcpus) || plan.vcpus < 1 || plan.vcpus > 4096) bad(`vcpus ${plan.vcpus} is not an integer in 1..4096`);
  if (!Number.isSafeInteger(plan.seed)) bad(`seed ${plan.seed} is not a safe integer`);
  const pages = Math.floor(usedLength / TARGET_PAGE_SIZE);
  if (pages < plan.vcpus) bad(`${plan.vcpus} vCPUs cannot share ${pages} pages`);
  if (plan.pattern === 'bootblock' || plan.pattern === 'bootblock-random') {
    for (let i = 0; i < plan.vcpus; i++) {
      if (bootblockShare(pages, plan.vcpus, i).count === 0) {
        bad(`the ${plan.pattern} pattern gives vCPU ${i} no page of [1/256, 240/256) of ${pages} pages split ${plan.vcpus} ways: use a larger block or fewer vCPUs`);
      }
    }
  }
  const { passes, accessesPerVcpu, hotSetPages, hotFraction, touchOffset } = plan;
  if (passes !== undefined && !(Number.isSafeInteger(passes) && passes >= 0)) bad(`passes ${passes} is not a non-negative integer`);
  if (accessesPerVcpu !== undefined && !(Number.isSafeInteger(accessesPerVcpu) && accessesPerVcpu >= 0)) {
    bad(`accessesPerVcpu ${accessesPerVcpu} is not a non-negative integer`);
  }
  if (hotSetPages !== undefined && !(Number.isSafeInteger(hotSetPages) && hotSetPages >= 1)) bad(`hotSetPages ${hotSetPages} is not a positive integer`);
  if (hotFraction !== undefined && !(hotFraction >= 0 && hotFraction <= 1)) bad(`hotFraction ${hotFraction} is not in [0, 1]`);
  if (touchOffset !== undefined && !(Number.isInteger(touchOffset) && touchOffset >= 0 && touchOffset < TARGET_PAGE_SIZE)) {
    bad(`touchOffset ${touchOffset} is not a byte offset inside a ${TARGET_PAGE_SIZE}-byte page`);
  }
}

/**
 * A seeded generator of uniform numbers in [0, 1) (mulberry32): tiny, fast, and the
 * same seed gives the same sequence on every platform. Pure apart from its own state.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The 32-bit seed of vCPU `index` under plan seed `seed`: distinct per vCPU (pure). */
function vcpuSeed(seed: number, index: number): number {
  const hi = Math.floor(seed / 4294967296) >>> 0;
  return (Math.imul((seed >>> 0) ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) ^ Math.imul(index + 1, 0x632be59b)) >>> 0;
}

/** The access sequence of vCPU `index` under `plan` over a block of `usedLength` bytes. */
export function createAccessPattern(plan: AccessPlan, index: number, usedLength: number): AccessPattern {
  const pages = Math.floor(usedLength / TARGET_PAGE_SIZE);
  if (plan.pattern === 'sequential-increment') {
    const { first, count } = vcpuShare(pages, plan.vcpus, index);
    return sequentialPattern(first, count, plan.passes ?? 1, plan.touchOffset ?? DEFAULT_TOUCH_OFFSET);
  }
  if (plan.pattern === 'bootblock') {
    const { first, count } = bootblockShare(pages, plan.vcpus, index);
    return sequentialPattern(first, count, plan.passes ?? 1, plan.touchOffset ?? 0);
  }
  if (plan.pattern === 'bootblock-random') {
    const { first, count } = bootblockShare(pages, plan.vcpus, index);
    return lcgPattern(first, count, index + 1, plan.accessesPerVcpu ?? count, plan.touchOffset ?? 0);
  }
  const random = seededRandom(vcpuSeed(plan.seed, index));
  const limit = plan.accessesPerVcpu ?? Math.floor(pages / plan.vcpus);
  const anyPage = (): number => Math.floor(random() * pages);
  if (plan.pattern === 'random') return randomPattern(limit, random, anyPage, plan.touchOffset);
  const hot = hotSet(plan, pages);
  const fraction = plan.hotFraction ?? DEFAULT_HOT_FRACTION;
  const hotOrAnywhere = (): number => (random() < fraction ? hot[Math.floor(random() * hot.length)]! : anyPage());
  return randomPattern(limit, random, hotOrAnywhere, plan.touchOffset);
}

/** Pure: the hot set of a hot-set plan, the same for every vCPU (seeded by the plan seed alone). */
export function hotSet(plan: AccessPlan, pages: number): Float64Array {
  const random = seededRandom(vcpuSeed(plan.seed, -1));
  const hot = new Float64Array(Math.min(plan.hotSetPages ?? DEFAULT_HOT_SET_PAGES, pages));
  for (let k = 0; k < hot.length; k++) hot[k] = Math.floor(random() * pages);
  return hot;
}

/** Walks pages first..first+count-1 `passes` times, touching byte `touch` of each. */
function sequentialPattern(first: number, count: number, passes: number, touch: number): AccessPattern {
  let pass = 0;
  let page = 0;
  return {
    next(): number {
      if (page === count) {
        pass++;
        page = 0;
      }
      if (pass >= passes || count === 0) return -1;
      return (first + page++) * TARGET_PAGE_SIZE + touch;
    },
  };
}

/** `limit` accesses at the pages the random guest's LCG picks from seed `seed`, in a share of `count` pages from `first`. */
function lcgPattern(first: number, count: number, seed: number, limit: number, touch: number): AccessPattern {
  let x = seed >>> 0;
  let done = 0;
  return {
    next(): number {
      if (done >= limit || count === 0) return -1;
      done++;
      x = bootblockLcgNext(x);
      return (first + bootblockLcgPage(x, count)) * TARGET_PAGE_SIZE + touch;
    },
  };
}

/** `limit` accesses, each at a page from `pickPage` and a seeded byte inside it. */
function randomPattern(limit: number, random: () => number, pickPage: () => number, touch?: number): AccessPattern {
  let done = 0;
  return {
    next(): number {
      if (done >= limit) return -1;
      done++;
      const page = pickPage();
      return page * TARGET_PAGE_SIZE + (touch ?? Math.floor(random() * TARGET_PAGE_SIZE));
    },
  };
}

/** Calls `fn(offset)` for every access every vCPU of `plan` makes, vCPU by vCPU (pure apart from fn). */
export function forEachPlannedAccess(plan: AccessPlan, usedLength: number, fn: (offset: number, vcpu: number) => void): void {
  validateAccessPlan(plan, usedLength);
  for (let i = 0; i < plan.vcpus; i++) {
    const pattern = createAccessPattern(plan, i, usedLength);
    for (let offset = pattern.next(); offset >= 0; offset = pattern.next()) fn(offset, i);
  }
}

/**
 * Pure: the block's memory once every vCPU of `plan` has finished, given the memory the
 * migration delivers (`source`, the block's used length). The mock backend does not keep
 * vCPU writes apart: they land in its memory, so `read()` must equal this.
 *
 * Valid when every page a vCPU touches holds its source content before that vCPU's
 * first access to it, as in postcopy where the destination's vCPUs start at RUN and
 * block on every page not yet received. Increments commute, so the interleaving of
 * vCPUs does not matter.
 */
export function expectedMemory(source: Uint8Array, plan: AccessPlan): Uint8Array {
  const out = source.slice();
  forEachPlannedAccess(plan, source.length, (offset) => {
    out[offset] = (out[offset]! + 1) & 0xff;
  });
  return out;
}
