import type { Analysis } from '../forensics/analysisTypes.js';
import { xAxis } from './axes.js';
import { tickLabel, formatMs } from '../text.js';
import { linearScale, type Scale } from './scale.js';
import { el, text } from './svg.js';

/**
 * The three plots over time (states, pages received, vCPU blocked) share one horizontal
 * layout, so a moment lines up vertically across them.
 */
export const PLOT_WIDTH = 1160;
export const TIME_LEFT = 170;
export const TIME_RIGHT = 30;

/** Pure: journal time (ms) → x, over the whole journal. */
export function timeScale(durationMs: number): Scale {
  return linearScale([0, Math.max(durationMs, 1)], [TIME_LEFT, PLOT_WIDTH - TIME_RIGHT], 12);
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
    const x0 = x(p.startMs);
    const w = Math.max(2, x(end) - x0);
    const what = p.endMs === null ? `paused from ${formatMs(p.startMs)} until the end of the journal (never resumed)` : `paused ${formatMs(p.durationMs ?? end - p.startMs)} (${formatMs(p.startMs)} → ${formatMs(end)})`;
    out += el('rect', { x: x0, y: top, width: w, height: bottom - top, class: 'pause' }, '', `postcopy ${what}, from sequence number ${p.startSeq}`);
    if (labelled) {
      const label = p.endMs === null ? 'paused (still)' : `paused ${formatMs(p.durationMs ?? end - p.startMs)}`;
      out += text(x0 + 3, top + 11, label, { class: 'pause-label' });
    }
  }
  return out;
}
