import { stateInWords, type Analysis } from '../forensics/analysisTypes.js';
import { MACHINE_NAMES } from '../engine/events.js';
import { stateColor } from './stateColors.js';
import { el, svgPlot, text } from './svg.js';
import { PLOT_WIDTH, TIME_LEFT, pauseBands, timeAxis, timeScale } from './timeAxis.js';
import { formatMs } from '../text.js';
import { textWidth } from './textWidth.js';

/** One bar of a lane: a state held from startMs to endMs, or a burst of changes too quick to draw one by one. */
interface Segment {
  state: string;
  startMs: number;
  endMs: number;
  event: string;
  seq: number | null;
  /** > 1: a burst of this many state changes, each narrower than a few pixels. */
  changes: number;
}

const LANE_HEIGHT = 30;
const TOP = 26;
const MIN_SEGMENT_PX = 3;
/** Hatching for bursts of quick state changes. */
const BURST_PATTERN = '<defs><pattern id="burst" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#e2e8f0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#64748b" stroke-width="2"/></pattern></defs>';
const LANE_TITLES: Record<string, string> = { postcopy: 'postcopy state', migration: 'migration status', faultThread: 'fault thread', preemptThread: 'preempt thread' };

/**
 * Pure: the state timeline: one lane per state machine, one coloured bar per state it
 * held, pauses shaded. Bursts of changes narrower than a few pixels are drawn as one
 * hatched bar, so the size of the plot does not grow with the journal.
 */
export function timelinePlot(a: Analysis): string {
  const x = timeScale(a.durationMs);
  const msPerPx = Math.max(a.durationMs, 1) / (x.range[1] - x.range[0]);
  const machines = machineOrder(a);
  const lanesBottom = TOP + Math.max(1, machines.length) * LANE_HEIGHT;
  const marks = timelineMarks(a);
  const placed = placeLabels(marks.map((m) => ({ x: x(m.tMs), label: m.label })), TIME_LEFT, PLOT_WIDTH - 4);
  const rows = placed.reduce((r, p) => Math.max(r, p.row + 1), 0);
  const axisY = lanesBottom + 6 + rows * MARK_ROW;
  let body = BURST_PATTERN + timeAxis(x, axisY, TOP - 16) + pauseBands(a, x, TOP - 16, axisY, true);
  marks.forEach((m, i) => {
    const p = placed[i]!;
    const y = lanesBottom + 6 + p.row * MARK_ROW + 11;
    body += el('line', { x1: p.x, x2: p.x, y1: TOP - 4, y2: y - 9, class: `mark mark-${m.kind}` }, '', `${m.label} (${formatMs(m.tMs)})`);
    body += text(p.anchor === 'end' ? p.x - 3 : p.x + 3, y, p.label, { class: `mark-label mark-${m.kind}`, 'text-anchor': p.anchor });
  });
  machines.forEach((machine, i) => {
    const y = TOP + i * LANE_HEIGHT;
    body += text(TIME_LEFT - 10, y + LANE_HEIGHT / 2 + 2, LANE_TITLES[machine] ?? machine, { class: 'lane-label', 'text-anchor': 'end' });
    const segments = coalesce(segmentsOf(a, machine), MIN_SEGMENT_PX * msPerPx);
    for (const s of segments) body += segmentBar(machine, s, x, y);
  });
  if (machines.length === 0) body += text(PLOT_WIDTH / 2, TOP + LANE_HEIGHT / 2, 'no state changes in this journal', { class: 'empty', 'text-anchor': 'middle' });
  return svgPlot('plot-timeline', 'State timeline: the state of each machine over time', PLOT_WIDTH, axisY + 46, body);
}

const MARK_ROW = 15;
/** `.mark-label` and `.bar-label` (style.ts): 11 px, regular. */
const LABEL_PX = 11;

interface Mark { tMs: number; label: string; kind: 'stderr' | 'source' | 'end' }

/** Pure: the moments the timeline marks below its lanes: QEMU's error lines, the source's last line, the end of the journal. */
function timelineMarks(a: Analysis): Mark[] {
  const out: Mark[] = [];
  for (const l of a.stderr) if (!/^warning:/i.test(l.text)) out.push({ tMs: l.tMs, label: `QEMU: ${l.text.length > 60 ? l.text.slice(0, 59) + '…' : l.text}`, kind: 'stderr' });
  if (a.sourceLast !== null) out.push({ tMs: a.sourceLast.tMs, label: `source's last trace line: ${a.sourceLast.event}`, kind: 'source' });
  out.push({ tMs: a.durationMs, label: `end of journal ${formatMs(a.durationMs)}`, kind: 'end' });
  return out.sort((p, q) => p.tMs - q.tMs);
}

/** A label placed on a row: it starts at x (anchor start) or ends there (anchor end), never past [left, right]. */
export interface PlacedLabel { x: number; label: string; row: number; anchor: 'start' | 'end'; from: number; to: number }

/**
 * Pure: labels on as few rows as needed so that none overlaps another: each goes right of its
 * mark, or left of it when it would pass `right`, on the first row where it keeps 6 px from
 * every other label. The geometry is returned, so a test can check it.
 */
export function placeLabels(marks: Array<{ x: number; label: string }>, left: number, right: number): PlacedLabel[] {
  const rows: Array<Array<[number, number]>> = [];
  return marks.map((m) => {
    const w = textWidth(m.label, LABEL_PX) + 3;
    const anchor: 'start' | 'end' = m.x + w <= right || m.x - w < left ? 'start' : 'end';
    const [from, to] = anchor === 'start' ? [m.x, m.x + w] : [m.x - w, m.x];
    let row = rows.findIndex((r) => r.every(([l, rr]) => to + 6 <= l || from - 6 >= rr));
    if (row < 0) row = rows.push([]) - 1;
    rows[row]!.push([from, to]);
    return { x: m.x, label: m.label, row, anchor, from, to };
  });
}

function machineOrder(a: Analysis): string[] {
  const seen = new Set(a.timeline.map((e) => e.machine));
  const known = MACHINE_NAMES.filter((m) => seen.has(m));
  return [...known, ...[...seen].filter((m) => !(MACHINE_NAMES as readonly string[]).includes(m))];
}

/** Pure: the states one machine held, from t = 0 (its first `from`) to the end of the journal. */
function segmentsOf(a: Analysis, machine: string): Segment[] {
  const changes = a.timeline.filter((e) => e.machine === machine);
  if (changes.length === 0) return [];
  const out: Segment[] = [{ state: changes[0]!.from, startMs: 0, endMs: changes[0]!.tMs, event: 'initial state', seq: null, changes: 1 }];
  changes.forEach((c, i) => {
    const end = i + 1 < changes.length ? changes[i + 1]!.tMs : Math.max(a.durationMs, c.tMs);
    out.push({ state: c.to, startMs: c.tMs, endMs: end, event: c.event, seq: c.seq, changes: 1 });
  });
  return out.filter((s) => s.endMs > s.startMs || s === out[out.length - 1]);
}

/** Pure: runs of two or more consecutive segments each shorter than `minMs` become one burst segment. */
function coalesce(segments: Segment[], minMs: number): Segment[] {
  const out: Segment[] = [];
  let run: Segment[] = [];
  const flush = () => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) {
      const states = [...new Set(run.map((s) => s.state))];
      out.push({ state: states.slice(0, 4).join(' / ') + (states.length > 4 ? ' / …' : ''), startMs: run[0]!.startMs, endMs: run[run.length - 1]!.endMs, event: run[0]!.event, seq: run[0]!.seq, changes: run.length });
    }
    run = [];
  };
  for (const s of segments) {
    if (s.endMs - s.startMs < minMs) run.push(s);
    else {
      flush();
      out.push(s);
    }
  }
  flush();
  return out;
}

function segmentBar(machine: string, s: Segment, x: (v: number) => number, y: number): string {
  const x0 = x(s.startMs);
  const w = Math.max(1, x(s.endMs) - x0);
  const h = LANE_HEIGHT - 8;
  const burst = s.changes > 1;
  const color = stateColor(s.state);
  const tip = burst
    ? `${machine}: ${s.changes} state changes between ${formatMs(s.startMs)} and ${formatMs(s.endMs)} (${s.state}), too quick to draw one by one`
    : `${machine}: ${stateInWords(machine, s.state) === s.state ? s.state : `${s.state} (${stateInWords(machine, s.state)})`} from ${formatMs(s.startMs)} to ${formatMs(s.endMs)} (${formatMs(s.endMs - s.startMs)})${s.seq === null ? '' : `, entered on ${s.event} at sequence number ${s.seq}`}`;
  let out = el('rect', { x: x0, y: y + 4, width: w, height: h, rx: 2, fill: burst ? 'url(#burst)' : color.fill, class: 'state', 'data-state': s.state }, '', tip);
  const words = stateInWords(machine, s.state);
  const label = (burst ? [`${s.changes} changes`] : [...(words === s.state ? [] : [`${s.state.split('.')[0]} — ${words}`, words.split(':')[0]!]), s.state, s.state.split('.')[0]!]).find((l) => w >= textWidth(l, LABEL_PX) + 8);
  if (label !== undefined) {
    out += text(x0 + 4, y + 4 + h / 2 + 4, label, { class: burst || !color.dark ? 'bar-label' : 'bar-label on-dark' });
  }
  return out;
}
