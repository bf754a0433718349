import test from 'ava';
import fc from 'fast-check';
import { mergeForDrawing } from '../../src/report/drawnIntervals.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';

const interval = fc.tuple(fc.double({ min: 0, max: 10_000, noNaN: true }), fc.double({ min: 0, max: 500, noNaN: true })).map(([s, len]): [number, number] => [s, s + len]);

test('merging for drawing keeps every interval, its count and its blocked time, within the bar budget', (t) => {
  assertProperty(fc.property(fc.array(interval, { maxLength: 400 }), fc.double({ min: 0, max: 50, noNaN: true }), fc.integer({ min: 1, max: 60 }), fc.double({ min: 0.1, max: 1000, noNaN: true }),
    (intervals, gap, maxDrawn, keep) => {
      const bars = mergeForDrawing(intervals, gap, maxDrawn, keep);
      if (bars.length > Math.max(1, maxDrawn)) return false;
      if (bars.reduce((n, b) => n + b.count, 0) !== intervals.length) return false;
      const total = intervals.reduce((s, [a, e]) => s + e - a, 0);
      if (Math.abs(bars.reduce((s, b) => s + b.blockedMs, 0) - total) > 1e-6 * Math.max(1, total)) return false;
      for (let i = 1; i < bars.length; i++) if (bars[i]!.startMs < bars[i - 1]!.endMs) return false;
      return intervals.every(([s, e]) => bars.some((b) => b.startMs <= s && e <= b.endMs && e - s <= b.longestMs + 1e-9));
    }), fcParams());
  t.true(true);
});

test('a long interval stays a bar of its own between dense short ones', (t) => {
  const short = Array.from({ length: 100 }, (_, i): [number, number] => [i, i + 0.1]);
  const long: [number, number] = [100.5, 700];
  const after = Array.from({ length: 100 }, (_, i): [number, number] => [700.5 + i, 700.6 + i]);
  const bars = mergeForDrawing([...after, long, ...short], 1, 600, 10);
  t.deepEqual(bars.find((b) => b.longestMs === 599.5), { startMs: 100.5, endMs: 700, blockedMs: 599.5, count: 1, longestMs: 599.5 });
  t.is(bars.length, 3, 'the short ones merge on each side');
});

test('intervals closer than the gap merge; farther ones do not', (t) => {
  t.is(mergeForDrawing([[0, 1], [1.5, 2]], 1, 10).length, 1);
  t.is(mergeForDrawing([[0, 1], [2.5, 3]], 1, 10).length, 2);
  t.deepEqual(mergeForDrawing([], 1, 10), []);
});
