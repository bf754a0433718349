/**
 * The Gantt plot's duration labels are placed by their drawn width (DejaVu Sans Bold, the
 * report's widest font): the kill-source run that drew "7.912 ms" 57 px from "3.545 ms" (the
 * old guess of 6.6 px a character let them touch in Chromium) now drops the shorter one.
 */
import test from 'ava';
import { durationLabels, durationLabelWidth } from '../../src/report/ganttPlot.js';
import type { DrawnInterval } from '../../src/report/drawnIntervals.js';

const bar = (centerPx: number, longestMs: number): DrawnInterval => ({ startMs: centerPx - 1, endMs: centerPx + 1, blockedMs: longestMs, count: 1, longestMs });
const placed = (svg: string): Array<{ x: number; label: string }> => [...svg.matchAll(/<text x="([\d.]+)"[^>]*>([^<]*)<\/text>/g)].map((m) => ({ x: Number(m[1]), label: m[2]! }));

test('a duration label is as wide as DejaVu Sans Bold draws it at 11.5 px', (t) => {
  // Advances: digits 0.696 em, '.' 0.38, ' ' 0.348, 'm' 1.042, 's' 0.595.
  t.is(Math.round(durationLabelWidth('7.912 ms') * 10) / 10, 59.2);
  t.is(Math.round(durationLabelWidth('1.20 s') * 10) / 10, 39.2);
  t.is(durationLabelWidth('漢'), 11.5, 'a character the tables do not list counts as 1 em');
});

test('the kill-source run\'s two labels 57 px apart: only the longer interval is labelled', (t) => {
  const svg = durationLabels([bar(314.8, 7.912), bar(257.5, 3.545)], (ms) => ms, 0, 100);
  t.deepEqual(placed(svg).map((p) => p.label), ['7.912 ms']);
});

test('labels far enough apart are all drawn, and no two drawn labels come closer than their widths and a 4 px gap', (t) => {
  const bars = [bar(300, 9.5), bar(366, 8.25), bar(420, 7.125), bar(500, 6.5), bar(700, 5.0), bar(760, 4.5)];
  const drawn = placed(durationLabels(bars, (ms) => ms, 0, 100));
  t.true(drawn.length >= 4, `${drawn.length} labels drawn`);
  for (let i = 0; i < drawn.length; i++) {
    for (let j = i + 1; j < drawn.length; j++) {
      const [p, q] = [drawn[i]!, drawn[j]!];
      t.true(Math.abs(p.x - q.x) >= (durationLabelWidth(p.label) + durationLabelWidth(q.label)) / 2 + 4, `${p.label} at ${p.x} and ${q.label} at ${q.x}`);
    }
  }
});
