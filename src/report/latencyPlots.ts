import type { Analysis } from '../forensics/analysisTypes.js';
import { xAxis, yAxis } from './axes.js';
import { decimateLine } from './decimate.js';
import { groupDigits, shortCount, tickLabel, formatMs } from '../text.js';
import { linearScale, logScale, niceCeil, type Scale } from './scale.js';
import { el, px, svgPlot, text } from './svg.js';
import { textWidth } from './textWidth.js';

/** The two latency plots sit side by side. */
export const HALF_WIDTH = 570;
const HEIGHT = 320;
const LEFT = 78;
const RIGHT = 20;
const TOP = 66;
const BOTTOM = 52;
/** Histograms with more buckets than this are regrouped into 10 bins per decade for drawing. */
const MAX_BARS = 60;

/** Pure: the fault → placement latency histogram on a log time axis, with p50 / p90 / p99 / max marked. */
export function latencyHistogramPlot(a: Analysis): string {
  const x = latencyScale(a);
  const bins = displayBins(a, x.domain[0]);
  const maxCount = bins.reduce((m, b) => Math.max(m, b.count), 0);
  const y = linearScale([0, niceCeil(maxCount)], [HEIGHT - BOTTOM, TOP], 5);
  let body = yAxis(y, LEFT, HALF_WIDTH - RIGHT, 'faults (count)', shortCount);
  body += xAxis(x, HEIGHT - BOTTOM, TOP, 'fault → page placed (ms, log scale)', tickLabel);
  for (const b of bins) {
    if (b.count === 0) continue;
    const x0 = x(b.fromMs);
    const w = Math.max(1, x(b.toMs) - x0 - 1);
    body += el('rect', { x: x0, y: y(b.count), width: w, height: y(0) - y(b.count), class: 'bar' }, '', `${groupDigits(b.count)} faults placed after ${tickLabel(b.fromMs)}–${tickLabel(b.toMs)} ms`);
  }
  body += a.faults.count === 0 ? noFaults() : percentileMarkers(a, x);
  return svgPlot('plot-latency-histogram', 'Fault latency histogram: time from a fault until its page was placed', HALF_WIDTH, HEIGHT, body);
}

/** Pure: the fraction of faults placed within a given time (log axis), with p50 / p90 / p99 / max marked. */
export function latencyCdfPlot(a: Analysis): string {
  const x = latencyScale(a);
  const y = linearScale([0, 1], [HEIGHT - BOTTOM, TOP], 4);
  const percent = (v: number) => `${tickLabel(v * 100)} %`;
  let body = yAxis(y, LEFT, HALF_WIDTH - RIGHT, 'faults placed within (%)', percent, [0, 0.25, 0.5, 0.75, 0.9, 1]);
  body += xAxis(x, HEIGHT - BOTTOM, TOP, 'fault → page placed (ms, log scale)', tickLabel);
  const points = decimateLine([...a.series.latencyCdf].sort((p, q) => p[0] - q[0]), x);
  if (points.length > 0) {
    let d = `M${px(x.range[0])},${px(y(0))}`;
    for (const [ms, f] of points) d += `H${px(x(ms))}V${px(y(Math.min(1, Math.max(0, f))))}`;
    d += `H${px(x.range[1])}`;
    body += el('path', { d, class: 'cdf' }, '', `latency CDF of ${groupDigits(a.faults.count)} faults`);
  }
  body += a.faults.count === 0 ? noFaults() : percentileMarkers(a, x);
  return svgPlot('plot-latency-cdf', 'Fault latency CDF: fraction of faults whose page was placed within a time', HALF_WIDTH, HEIGHT, body);
}

/** Pure: a log scale over every latency the analysis mentions, widened to whole decades. */
function latencyScale(a: Analysis): Scale {
  const values = [
    ...a.faults.histogram.flatMap((b) => [b.fromMs, b.toMs]),
    ...a.series.latencyCdf.map((p) => p[0]),
    a.faults.p50Ms, a.faults.maxMs,
  ].filter((v) => Number.isFinite(v) && v > 0);
  const min = values.reduce((m, v) => Math.min(m, v), Infinity);
  const max = values.reduce((m, v) => Math.max(m, v), 0);
  let lo = values.length ? 10 ** Math.floor(Math.log10(min)) : 0.01;
  let hi = values.length ? 10 ** Math.ceil(Math.log10(max)) : 1;
  if (hi <= lo) hi = lo * 10;
  if (hi / lo > 1e7) lo = hi / 1e7;
  return logScale([lo, hi], [LEFT, HALF_WIDTH - RIGHT]);
}

interface Bin { fromMs: number; toMs: number; count: number }

/** Pure: the buckets to draw: as given, or regrouped 10 per decade when there are too many. */
function displayBins(a: Analysis, lo: number): Bin[] {
  const buckets = a.faults.histogram
    .filter((b) => b.count > 0)
    .map((b) => ({ fromMs: Math.max(b.fromMs, lo), toMs: Number.isFinite(b.toMs) && b.toMs > 0 ? Math.max(b.toMs, lo) : Math.max(b.fromMs * 2, a.faults.maxMs, lo), count: b.count }));
  if (buckets.length <= MAX_BARS) return buckets;
  const byBin = new Map<number, number>();
  for (const b of buckets) {
    const i = Math.floor(Math.log10(Math.sqrt(b.fromMs * b.toMs) / lo) * 10);
    byBin.set(i, (byBin.get(i) ?? 0) + b.count);
  }
  return [...byBin].map(([i, count]) => ({ fromMs: lo * 10 ** (i / 10), toMs: lo * 10 ** ((i + 1) / 10), count }));
}

/** Pure: dashed vertical lines at p50, p90, p99 and max, each label on the first of two rows where it fits. */
function percentileMarkers(a: Analysis, x: Scale): string {
  const raw: Array<[string, number]> = [['p50', a.faults.p50Ms], ['p90', a.faults.p90Ms], ['p99', a.faults.p99Ms], ['max', a.faults.maxMs]];
  // Marks that print the same figure share one label ("p99 = max 103.6 ms").
  const marks: Array<[string, number]> = [];
  for (const [name, ms] of raw) {
    const same = marks.find(([, m]) => formatMs(m) === formatMs(ms));
    if (same !== undefined) same[0] += ` = ${name}`;
    else marks.push([name, ms]);
  }
  const rows: Array<Array<[number, number]>> = [[]];
  let out = '';
  for (const [name, ms] of marks) {
    if (!Number.isFinite(ms)) continue;
    const mx = x(ms);
    const label = `${name} ${formatMs(ms)}`;
    const width = textWidth(label, 11); // .marker-label
    const fitsRight = mx + 3 + width < HALF_WIDTH - 2;
    const [l, r] = fitsRight ? [mx + 3, mx + 3 + width] : [mx - 3 - width, mx - 3];
    let row = rows.findIndex((placed) => placed.every(([pl, pr]) => r + 4 < pl || l - 4 > pr));
    if (row < 0) row = rows.push([]) - 1; // a new row: labels never overlap (4 rows fit above the plot)
    rows[row]!.push([l, r]);
    out += el('line', { x1: mx, x2: mx, y1: TOP - 4 - row * 15, y2: HEIGHT - BOTTOM, class: `marker marker-${name.split(' ')[0]}` }, '', `${name}: ${formatMs(ms)}`);
    out += text(fitsRight ? mx + 3 : mx - 3, TOP - 8 - row * 15, label, { class: 'marker-label', 'text-anchor': fitsRight ? 'start' : 'end' });
  }
  return out;
}

function noFaults(): string {
  return text(HALF_WIDTH / 2, HEIGHT / 2, 'no faults in this journal', { class: 'empty', 'text-anchor': 'middle' });
}
