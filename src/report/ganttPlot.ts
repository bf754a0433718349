import { qemuBlocktimeSaid, qemuMs, type Analysis } from '../forensics/analysisTypes.js';
import { mergeForDrawing, type DrawnInterval } from './drawnIntervals.js';
import { groupDigits, formatMs, shortCount } from '../text.js';
import { el, svgPlot, text } from './svg.js';
import { PLOT_WIDTH, TIME_LEFT, TIME_RIGHT, pauseBands, timeAxis, timeScale } from './timeAxis.js';
import { textWidth } from './textWidth.js';

const TOP = 22;
const LANE_HEIGHT = 52;
const BAR_TOP = 18;
const BAR_HEIGHT = 24;
/** Bars drawn per vCPU at most, whatever the number of faults (the plot is 1 000 px wide). */
export const MAX_BARS_PER_VCPU = 600;
/** A blocked interval this many pixels long or more is drawn alone, never merged with its neighbours. */
const KEEP_PX = 3;
/** Duration labels per vCPU: the longest blocked intervals, so the eye goes to them first. */
const LABELS_PER_VCPU = 5;

/**
 * Pure: a Gantt chart of the time each vCPU spent blocked on a missing page (exact mode),
 * one lane per vCPU, pauses shaded, the longest intervals labelled with their duration.
 * Short intervals closer than a pixel are merged; a merged bar is as opaque as it is full.
 */
export function ganttPlot(a: Analysis, window?: readonly [number, number]): string {
  const x = timeScale(a.durationMs, window);
  const span = x.domain[1] - x.domain[0];
  const msPerPx = Math.max(span, 1) / (x.range[1] - x.range[0]);
  const vcpus = vcpuList(a);
  const axisY = TOP + Math.max(1, vcpus.length) * LANE_HEIGHT;
  let body = timeAxis(x, axisY, TOP - 16) + pauseBands(a, x, TOP - 16, axisY, true);
  vcpus.forEach((vcpu, i) => {
    const y = TOP + i * LANE_HEIGHT;
    body += laneLabel(a, vcpu, y);
    body += el('rect', { x: TIME_LEFT, y: y + BAR_TOP, width: PLOT_WIDTH - TIME_RIGHT - TIME_LEFT, height: BAR_HEIGHT, class: 'lane' });
    const all = a.series.vcpuBlocked.find((b) => b.vcpu === vcpu)?.intervals ?? [];
    const [from, to] = x.domain;
    const intervals = window === undefined ? all : all.filter(([s, e]) => e >= from && s <= to).map(([s, e]): [number, number] => [Math.max(s, from), Math.min(e, to)]);
    const bars = mergeForDrawing(intervals, msPerPx, MAX_BARS_PER_VCPU, KEEP_PX * msPerPx);
    const stillBlocked = a.blocktime.exact.stillBlocked.some((s) => s.vcpu === vcpu);
    for (const bar of bars) body += blockedBar(vcpu, bar, x, y, msPerPx, stillBlocked && bar.endMs >= a.durationMs - msPerPx);
    body += durationLabels(bars, x, y, span);
  });
  if (vcpus.length === 0) body += text(PLOT_WIDTH / 2, TOP + LANE_HEIGHT / 2, 'no vCPUs in this journal', { class: 'empty', 'text-anchor': 'middle' });
  return window === undefined
    ? svgPlot('plot-gantt', 'vCPUs blocked on missing pages, per vCPU (exact)', PLOT_WIDTH, axisY + 46, body)
    : svgPlot('plot-gantt-postcopy', 'vCPUs blocked on missing pages, close-up of the postcopy window (exact)', PLOT_WIDTH, axisY + 46, body);
}

function vcpuList(a: Analysis): number[] {
  const ids = new Set<number>();
  for (let v = 0; v < a.vcpus; v++) ids.add(v);
  for (const b of a.series.vcpuBlocked) ids.add(b.vcpu);
  return [...ids].sort((p, q) => p - q);
}

function laneLabel(a: Analysis, vcpu: number, y: number): string {
  const exact = a.blocktime.exact.perVcpuMs[vcpu];
  const faults = a.blocktime.exact.perVcpuFaults[vcpu];
  const qemu = qemuBlocktimeSaid(a).perVcpuMs[vcpu];
  const right = TIME_LEFT - 10;
  let out = text(right, y + BAR_TOP + 4, `vCPU ${vcpu}`, { class: 'lane-label strong', 'text-anchor': 'end' });
  const still = a.blocktime.exact.stillBlocked.some((s) => s.vcpu === vcpu);
  out += text(right, y + BAR_TOP + 18, `blocked ${exact === undefined ? '—' : formatMs(exact)}${still ? ' (open)' : ''}`, { class: 'lane-sub', 'text-anchor': 'end' });
  out += text(right, y + BAR_TOP + 31, `${faults === undefined ? '' : `${shortCount(faults)} faults · `}QEMU ${qemu === undefined ? '—' : qemuMs(qemu)}`, { class: 'lane-sub', 'text-anchor': 'end' });
  return out;
}

function blockedBar(vcpu: number, bar: DrawnInterval, x: (v: number) => number, y: number, msPerPx: number, stillBlocked: boolean): string {
  const x0 = x(bar.startMs);
  const w = Math.max(1, x(bar.endMs) - x0);
  const fullness = bar.blockedMs / Math.max(bar.endMs - bar.startMs, msPerPx);
  const opacity = Math.min(1, Math.max(0.3, fullness));
  const when = `from ${formatMs(bar.startMs)} to ${formatMs(bar.endMs)}${stillBlocked ? ' (still blocked at the end of the journal)' : ''}`;
  const tip = bar.count === 1
    ? `vCPU ${vcpu} blocked ${formatMs(bar.blockedMs)}, ${when}`
    : `vCPU ${vcpu}: ${groupDigits(bar.count)} blocked intervals ${when}, ${formatMs(bar.blockedMs)} blocked in all, the longest ${formatMs(bar.longestMs)}`;
  return el('rect', { x: x0, y: y + BAR_TOP, width: w, height: BAR_HEIGHT, class: stillBlocked ? 'blocked still-blocked' : 'blocked', 'fill-opacity': opacity, 'data-vcpu': vcpu }, '', tip);
}

/** `.duration-label`'s size (style.ts), bold. */
const DURATION_LABEL_PX = 11.5;

/** Pure: how wide a duration label is drawn, px (textWidth.ts). */
export function durationLabelWidth(label: string): number {
  return textWidth(label, DURATION_LABEL_PX, true);
}

/** Pure: "600 ms" above the longest bars of a lane, the longest first, never overlapping each other. */
export function durationLabels(bars: DrawnInterval[], x: (v: number) => number, y: number, durationMs: number): string {
  const worth = Math.max(1, durationMs * 0.01);
  const longest = bars.filter((b) => b.longestMs >= worth).sort((p, q) => q.longestMs - p.longestMs).slice(0, LABELS_PER_VCPU * 3);
  const placed: Array<[number, number]> = [];
  let out = '';
  for (const b of longest) {
    if (placed.length === LABELS_PER_VCPU) break;
    const label = formatMs(b.longestMs);
    const half = durationLabelWidth(label) / 2;
    const cx = Math.min(Math.max((x(b.startMs) + x(b.endMs)) / 2, TIME_LEFT + half), PLOT_WIDTH - TIME_RIGHT - half);
    if (placed.some(([l, r]) => cx + half + 4 > l && cx - half - 4 < r)) continue;
    placed.push([cx - half, cx + half]);
    out += text(cx, y + BAR_TOP - 4, label, { class: 'duration-label', 'text-anchor': 'middle' });
  }
  return out;
}
