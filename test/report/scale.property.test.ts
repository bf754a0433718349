import test from 'ava';
import fc from 'fast-check';
import { esc } from '../../src/report/escape.js';
import { decimateLine } from '../../src/report/decimate.js';
import { groupDigits, shortCount, tickLabel } from '../../src/text.js';
import { linearScale, logScale, logTicks, niceCeil, niceTicks } from '../../src/report/scale.js';
import { assertProperty, fcParams } from '../../src/testing/properties.js';

test('nice ticks lie within the domain, evenly spaced by 1, 2 or 5 × 10^k', (t) => {
  assertProperty(fc.property(fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.double({ min: 1e-3, max: 1e6, noNaN: true }), (min, span) => {
    const ticks = niceTicks(min, min + span, 8);
    if (ticks.length < 2 || ticks.length > 17) return false;
    const step = ticks[1]! - ticks[0]!;
    const mantissa = Number((step / 10 ** Math.floor(Math.log10(step))).toPrecision(6));
    if (![1, 2, 5, 10].includes(mantissa)) return false;
    return ticks.every((v) => v >= min - step * 1e-6 && v <= min + span + step * 1e-6);
  }), fcParams());
  t.true(true);
});

test('niceCeil is a round number at or above its input', (t) => {
  assertProperty(fc.property(fc.double({ min: 1e-3, max: 1e9, noNaN: true }), (v) => niceCeil(v) >= v && niceCeil(v) <= v * 2.5 + 1e-9), fcParams());
  t.is(niceCeil(0), 1);
  t.is(niceCeil(64000), 80000);
});

test('scales map their domain onto their range', (t) => {
  const lin = linearScale([0, 4200], [170, 1130]);
  t.is(lin(0), 170);
  t.is(lin(4200), 1130);
  const log = logScale([0.01, 1000], [78, 550]);
  t.is(log(0.01), 78);
  t.true(Math.abs(log(1000) - 550) < 1e-9);
  t.is(log(0), 78, 'values at or below zero clamp to the start');
  t.deepEqual(logTicks(0.01, 1000), [0.01, 0.1, 1, 10, 100, 1000]);
  t.deepEqual(logTicks(1, 100), [1, 2, 5, 10, 20, 50, 100]);
});

test('numbers read well on axes and cards', (t) => {
  t.is(groupDigits(61200), '61\u202f200');
  t.is(groupDigits(268435456), '268\u202f435\u202f456');
  t.is(shortCount(64000), '64k');
  t.is(shortCount(1500), '1.5k');
  t.is(shortCount(3_400_000), '3.4M');
  t.is(tickLabel(0.1 + 0.2), '0.3');
  t.is(tickLabel(2.5), '2.5');
  t.is(tickLabel(0.005), '0.005');
});

test('escaping covers the five characters that matter in text and attributes', (t) => {
  t.is(esc(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
});

test('decimating a line keeps the first, lowest, highest and last point of each pixel column', (t) => {
  const points = Array.from({ length: 10_000 }, (_, i): [number, number] => [i / 100, Math.sin(i)]);
  const kept = decimateLine(points, (v) => v * 10);
  t.true(kept.length <= 4 * 1001);
  t.deepEqual(kept[0], points[0]);
  t.deepEqual(kept.at(-1), points.at(-1));
  const max = Math.max(...points.map((p) => p[1]));
  t.true(kept.some((p) => p[1] === max));
});
