import type { Analysis } from '../forensics/analysisTypes.js';
import { xAxis } from './axes.js';
import { tickLabel, formatMs } from '../text.js';
import { linearScale, type Scale } from './scale.js';
import { el, text } from './svg.js';
import { textWidth } from './textWidth.js';

/**
 * The three plots over time (states, pages received, vCPU blocked) share one horizontal
 * layout, so a moment lines up vertically across them.
 */
export const PLOT_WIDTH = 1160;
export const TIME_LEFT = 170;
export const TIME_RIGHT = 30;

/** Pure: journal time (ms) → x, over the whole journal (0 to its last event), or over a window of it (a close-up). */
export function timeScale(durationMs: number, window?: readonly [number, number]): Scale {
  const [from, to] = window ?? [0, durationMs];
  return linearScale([from, Math.max(to, from + 1)], [TIME_LEFT, PLOT_WIDTH - TIME_RIGHT], 12);
}

/**
 * Pure: the postcopy window worth a close-up: from the first LISTENING (or postcopy-active)
 * to the end of the journal, when it is under 40 % of the journal; else null (the full plot shows it well).
 */
export function postcopyWindow(a: Analysis): [number, number] | null {
  const start = a.timeline.find((e) => (e.machine === 'postcopy' && e.to === 'LISTENING') || (e.machine === 'migration' && e.to === 'postcopy-active'));
  if (start === undefined || a.durationMs <= 0) return null;
  const done = a.timeline.find((e) => e.tMs >= start.tMs && ((e.machine === 'migration' && /completed|failed|cancelled/.test(e.to)) || (e.machine === 'postcopy' && e.to === 'END')));
  const end = done === undefined ? a.durationMs : Math.max(...a.timeline.filter((e) => e.tMs >= done.tMs && e.tMs - done.tMs < 50).map((e) => e.tMs));
  const span = end - start.tMs;
  if (span <= 0 || span > 0.4 * a.durationMs) return null;
  return [Math.max(0, start.tMs - span * 0.02), Math.min(a.durationMs, end + span * 0.02)];
}

/** Pure: the time axis at `y`, in s for runs of 2 s and more, else in ms. */
export function timeAxis(x: Scale, y: number, gridTop: number): string {
  const inSeconds = x.domain[1] >= 2000;
  const format = inSeconds ? (v: number) => tickLabel(v / 1000) : (v: number) => tickLabel(v);
  return xAxis(x, y, gridTop, `time since the journal started (${inSeconds ? 's' : 'ms'})`, format);
}

/**
 * Pure: an amber band over each postcopy pause, from `top` to `bottom`; `labelled` adds
 * "paused 600 ms" above it (a pause still open at the end of the journal says so).
 */
export function pauseBands(a: Analysis, x: Scale, top: number, bottom: number, labelled: boolean): string {
  let out = '';
  for (const p of a.pauses) {
    const end = p.endMs ?? a.durationMs;
    if (end < x.domain[0] || p.startMs > x.domain[1]) continue;
    const x1 = x(Math.min(end, x.domain[1]));
    const w = Math.max(2, x1 - x(Math.max(p.startMs, x.domain[0])));
    // At least 2 px wide, and never past the axis: a pause at the very end is drawn just inside it.
    const x0 = Math.min(x(Math.max(p.startMs, x.domain[0])), x.range[1] - w);
    const what = p.endMs === null ? `paused from ${formatMs(p.startMs)} until the end of the journal (never resumed)` : `paused ${formatMs(p.durationMs ?? end - p.startMs)} (${formatMs(p.startMs)} → ${formatMs(end)})`;
    out += el('rect', { x: x0, y: top, width: w, height: bottom - top, class: 'pause' }, '', `postcopy ${what}, from sequence number ${p.startSeq}`);
    if (labelled) {
      const label = p.endMs === null ? 'paused (still)' : `paused ${formatMs(p.durationMs ?? end - p.startMs)}`;
      // Right of the band's start, or left of it when it would pass the plot's right edge.
      const fits = x0 + 3 + textWidth(label, 11, true) <= PLOT_WIDTH; // .pause-label
      out += text(fits ? x0 + 3 : x0 - 3, top + 11, label, fits ? { class: 'pause-label' } : { class: 'pause-label', 'text-anchor': 'end' });
    }
  }
  return out;
}
