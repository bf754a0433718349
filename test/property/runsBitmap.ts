import fc from 'fast-check';
import { Bitmap } from '../../src/engine/bitmap.js';

/**
 * A bitmap of `minSize`..`maxSize` bits built by setting and clearing up to `maxOps` random
 * runs of at most size / `runDivisor` bits: from a few scattered bits to nearly all set.
 * `minLength` is the shortest run (0 allows empty runs).
 */
export function runsBitmap(minSize: number, maxSize: number, opts: { runDivisor: number; maxOps: number; minLength: number }): fc.Arbitrary<Bitmap> {
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
        return bm;
      }),
  );
}
