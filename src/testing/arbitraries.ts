/**
 * fast-check arbitraries for postcopy data: bitmaps made of runs, discard ranges, host-page
 * layouts of RAM blocks, wire frames. Every generated value prints as ranges and pages in a
 * counterexample (its `fc.toStringMethod`), never as a raw Int32Array.
 */
import fc from 'fast-check';
import { Bitmap } from '../engine/bitmap.js';
import { MigCommand, TARGET_PAGE_SIZE } from '../engine/constants.js';
import type { RamBlockConfig } from '../engine/ramBlock.js';
import { encodeAdvise, encodeCommandFrame, encodeRamDiscard, hostPageSizeSummary } from '../engine/wire.js';

/** Gives `value` a counterexample text (non-enumerable: equality and spreading ignore it). */
export function withText<T extends object>(value: T, text: (value: T) => string): T {
  Object.defineProperty(value, fc.toStringMethod, { value: () => text(value), enumerable: false, configurable: true });
  return value;
}

/** A bitmap as people read it: `Bitmap(100 bits, 12 set: [0..3], [10..17])`, long lists cut. */
export function describeBitmap(bm: Bitmap, maxRuns = 12): string {
  const runs = bm.runs();
  const shown = runs.slice(0, maxRuns).map(([s, n]) => (n === 1 ? `[${s}]` : `[${s}..${s + n - 1}]`));
  const more = runs.length > maxRuns ? `, … ${runs.length - maxRuns} more runs` : '';
  return `Bitmap(${bm.size} bits, ${bm.count()} set${runs.length ? `: ${shown.join(', ')}${more}` : ''})`;
}

/** Options of `runsBitmap`. */
export interface RunsBitmapOptions {
  /** A run is at most size / runDivisor bits long. */
  runDivisor: number;
  /** At most this many set or clear runs. */
  maxOps: number;
  /** The shortest run (0 allows empty runs). */
  minLength: number;
}

/**
 * A bitmap of `minSize`..`maxSize` bits built by setting and clearing up to `maxOps` random
 * runs of at most size / `runDivisor` bits: from a few scattered bits to nearly all set.
 */
export function runsBitmap(minSize: number, maxSize: number, opts: RunsBitmapOptions): fc.Arbitrary<Bitmap> {
  return fc.integer({ min: minSize, max: maxSize }).chain((size) =>
    fc
      .array(fc.tuple(fc.nat({ max: Math.max(0, size - 1) }), fc.integer({ min: opts.minLength, max: Math.max(1, Math.floor(size / opts.runDivisor)) }), fc.boolean()), {
        maxLength: size === 0 ? 0 : opts.maxOps,
      })
      .map((ops) => {
        const bm = new Bitmap(size);
        for (const [start, count, set] of ops) {
          const c = Math.min(count, size - start);
          if (set) bm.setRange(start, c);
          else bm.clearRange(start, c);
        }
        return withText(bm, (b) => describeBitmap(b));
      }),
  );
}

/** One byte range of a block, as RAM_DISCARD carries it. */
export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}

/** Ranges as people read them: `pages [3..5], [9]` (4 KiB target pages). */
export function describeRanges(ranges: readonly ByteRange[]): string {
  if (ranges.length === 0) return 'no ranges';
  return `pages ${ranges
    .map(({ offsetBytes, lengthBytes }) => {
      const first = offsetBytes / TARGET_PAGE_SIZE;
      const n = lengthBytes / TARGET_PAGE_SIZE;
      return n === 1 ? `[${first}]` : `[${first}..${first + n - 1}]`;
    })
    .join(', ')}`;
}

/** Options of `discardRanges`. */
export interface DiscardRangesOptions {
  /** The block's length in bytes (a multiple of the host page size). */
  blockLengthBytes: number;
  /** Ranges are whole host pages of this size (default 4096). */
  hostPageSizeBytes?: number;
  /** At most this many ranges (default 12, one RAM_DISCARD command's worth). */
  maxRanges?: number;
  /** Sorted and disjoint, as a source sends them (default true); false allows overlaps and any order. */
  canonical?: boolean;
}

/** Discard ranges over one block, host-page aligned and within the block. */
export function discardRanges(opts: DiscardRangesOptions): fc.Arbitrary<ByteRange[]> {
  const hps = opts.hostPageSizeBytes ?? TARGET_PAGE_SIZE;
  const hostPages = Math.floor(opts.blockLengthBytes / hps);
  if (hostPages < 1) throw new RangeError(`a block of ${opts.blockLengthBytes} bytes holds no ${hps}-byte host page`);
  const maxRanges = opts.maxRanges ?? 12;
  const canonical = opts.canonical ?? true;
  const raw = fc.array(fc.tuple(fc.nat({ max: hostPages - 1 }), fc.integer({ min: 1, max: hostPages })), { minLength: 1, maxLength: maxRanges });
  return raw.map((pairs) => {
    let ranges = pairs.map(([first, n]) => ({ offsetBytes: first * hps, lengthBytes: Math.min(n, hostPages - first) * hps }));
    if (canonical) {
      const bits = new Bitmap(hostPages);
      for (const r of ranges) bits.setRange(r.offsetBytes / hps, r.lengthBytes / hps);
      ranges = bits.runs().map(([s, n]) => ({ offsetBytes: s * hps, lengthBytes: n * hps }));
    }
    return withText(ranges, describeRanges);
  });
}

/** Options of `hostPageLayout`. */
export interface HostPageLayoutOptions {
  /** 1..maxBlocks blocks (default 3). */
  maxBlocks?: number;
  /** Host page sizes to choose from (default 4 KiB, 16 KiB, 2 MiB). */
  hostPageSizesBytes?: readonly number[];
  /** At most this many host pages per block (default 64). */
  maxHostPages?: number;
}

/** RAM blocks with distinct names and host page sizes: what ADVISE and the backend's layout describe. */
export function hostPageLayout(opts: HostPageLayoutOptions = {}): fc.Arbitrary<RamBlockConfig[]> {
  const sizes = opts.hostPageSizesBytes ?? [4096, 16384, 2 * 2 ** 20];
  const block = fc.record({ hostPageSize: fc.constantFrom(...sizes), hostPages: fc.integer({ min: 1, max: opts.maxHostPages ?? 64 }) });
  return fc.array(block, { minLength: 1, maxLength: opts.maxBlocks ?? 3 }).map((bs) =>
    withText(
      bs.map((b, i) => ({ name: i === 0 ? 'pc.ram' : `block${i}`, length: b.hostPageSize * b.hostPages, hostPageSize: b.hostPageSize })),
      (blocks) => blocks.map((b) => `${b.name}: ${b.length / b.hostPageSize!} × ${b.hostPageSize! / 1024} KiB`).join('; '),
    ),
  );
}

/** A command frame of the main stream, decoded and encoded: what the engine's `command` input gets. */
export interface WireCommandFrame {
  command: number;
  payload: Uint8Array;
  /** The whole frame as it travels (QEMU_VM_COMMAND, number, length, payload). */
  bytes: Uint8Array;
}

const COMMAND_NAMES = Object.fromEntries(Object.entries(MigCommand).map(([k, v]) => [v, k])) as Record<number, string>;

function frame(command: number, payload: Uint8Array, detail: string): WireCommandFrame {
  return withText({ command, payload, bytes: encodeCommandFrame(command, payload) }, () => `${COMMAND_NAMES[command] ?? `command ${command}`}${detail}`);
}

/**
 * Valid postcopy command frames over `blocks`: ADVISE (with the blocks' host page
 * summary), RAM_DISCARD of host-page ranges of one block, LISTEN, RUN, RESUME.
 */
export function wireCommandFrame(blocks: readonly RamBlockConfig[]): fc.Arbitrary<WireCommandFrame> {
  const summary = hostPageSizeSummary(blocks.map((b) => b.hostPageSize ?? TARGET_PAGE_SIZE));
  const empty = new Uint8Array(0);
  const discard = fc.nat({ max: Math.max(0, blocks.length - 1) }).chain((i) => {
    const b = blocks[i]!;
    return discardRanges({ blockLengthBytes: b.length, hostPageSizeBytes: b.hostPageSize ?? TARGET_PAGE_SIZE }).map((ranges) =>
      frame(
        MigCommand.POSTCOPY_RAM_DISCARD,
        encodeRamDiscard({ blockName: b.name, ranges: ranges.map((r) => [r.offsetBytes, r.lengthBytes] as [number, number]) }),
        `(${b.name}, ${describeRanges(ranges)})`,
      ),
    );
  });
  return fc.oneof(
    fc.constant(null).map(() => frame(MigCommand.POSTCOPY_ADVISE, encodeAdvise({ hostPageSizeSummary: summary, targetPageSize: TARGET_PAGE_SIZE }), '')),
    discard,
    fc.constantFrom(MigCommand.POSTCOPY_LISTEN, MigCommand.POSTCOPY_RUN, MigCommand.POSTCOPY_RESUME).map((c) => frame(c, empty, '')),
  );
}
