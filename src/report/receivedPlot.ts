import type { Analysis } from '../forensics/analysisTypes.js';
import { yAxis } from './axes.js';
import { decimateLine } from './decimate.js';
import { groupDigits, hex, shortCount, formatMs } from '../text.js';
import { linearScale, niceCeil } from './scale.js';
import { el, px, svgPlot, text } from './svg.js';
import { PLOT_WIDTH, TIME_RIGHT, TIME_LEFT, pauseBands, timeAxis, timeScale } from './timeAxis.js';
import { textWidth } from './textWidth.js';

const TOP = 20;
const HEIGHT = 230;
/** Outstanding requests drawn as markers at most; the table lists them. */
const MAX_MARKERS = 200;

/**
 * Pure: pages received so far over time, as a filled line, pauses shaded; each request
 * still outstanding at the end is a red mark at the time it was made, under the curve.
 */
export function receivedPlot(a: Analysis): string {
  const x = timeScale(a.durationMs);
  const points = decimateLine(a.series.received, x);
  const maxPages = points.reduce((m, p) => Math.max(m, p[1]), 0);
  const y = linearScale([0, niceCeil(maxPages)], [TOP + HEIGHT, TOP], 6);
  let body = timeAxis(x, TOP + HEIGHT, TOP) + pauseBands(a, x, TOP, TOP + HEIGHT, true);
  body += yAxis(y, TIME_LEFT, PLOT_WIDTH - TIME_RIGHT, 'pages received (count)', shortCount);
  if (points.length > 0) {
    const line = points.map(([t, n], i) => `${i === 0 ? 'M' : 'L'}${px(x(t))},${px(y(n))}`).join('');
    const first = points[0]!;
    const last = points[points.length - 1]!;
    body += el('path', { d: `${line}L${px(x(last[0]))},${px(y(0))}L${px(x(first[0]))},${px(y(0))}Z`, class: 'area' });
    body += el('path', { d: line, class: 'line' }, '', `${groupDigits(last[1])} pages received by ${formatMs(last[0])}`);
  } else {
    body += text((TIME_LEFT + PLOT_WIDTH) / 2, TOP + HEIGHT / 2, 'no pages received', { class: 'empty', 'text-anchor': 'middle' });
  }
  for (const r of a.requests.outstanding.slice(0, MAX_MARKERS)) {
    const mx = x(r.requestedAtMs);
    body += el('path', { d: `M${px(mx)},${px(TOP + HEIGHT - 12)}l-5,10h10z`, class: 'outstanding-mark' }, '',
      `requested at ${formatMs(r.requestedAtMs)} and never placed: ${r.block} ${hex(r.offset)} (sequence number ${r.seq})`);
  }
  if (a.requests.outstanding.length > 0) body += outstandingLabel(a, x);
  return svgPlot('plot-received', 'Pages received over time', PLOT_WIDTH, TOP + HEIGHT + 46, body);
}

/** Pure: "2 requests never answered" in red beside the earliest outstanding mark. */
function outstandingLabel(a: Analysis, x: (t: number) => number): string {
  const n = a.requests.outstanding.length;
  const first = x(a.requests.outstanding.reduce((m, r) => Math.min(m, r.requestedAtMs), Infinity));
  const label = `${groupDigits(n)} request${n === 1 ? '' : 's'} never answered`;
  const left = first - 10 - textWidth(label, 12, true) > TIME_LEFT; // .outstanding-label
  return text(left ? first - 10 : first + 10, TOP + HEIGHT - 6, label, { class: 'outstanding-label', 'text-anchor': left ? 'end' : 'start' });
}
